//! `#[derive(Persisted)]`, re-exported by the `persist` crate as `persist::Persisted`: see its
//! documentation. This crate is the compile-time half and holds no logic of its own beyond
//! checking the attribute and declaring the trait impl.
//!
//! The stages, one per file: `ast` reads the input, `attr` the `#[persist(...)]` keys,
//! `valid` the rules across keys, `expand` writes the impl, `fallback` the stub that
//! stands in for it beside the errors; `renames` reads serde's aliases.

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod renames;
#[cfg(test)]
mod tests;
mod valid;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `persist::Persisted`; documented in the `persist` crate.
#[proc_macro_derive(Persisted, attributes(persist))]
pub fn derive_persisted(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
