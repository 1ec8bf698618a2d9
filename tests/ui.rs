//! Compile errors of `#[derive(Persisted)]`: one mistake per file under `tests/ui/`, each with
//! the committed `.stderr` it must produce; `tests/ui-pass/` holds what must compile. Regenerate with `TRYBUILD=overwrite cargo test
//! --test ui` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
