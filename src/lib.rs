//! The unpublished root package: it owns the workspace's `tests/` and `examples/`, and runs the
//! README's code blocks as doc tests so the quickstart cannot rot.

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
