//! Collects every error of one derive, so the user sees them all in one build
//! (serde_derive's `internals/ctxt.rs`).

use proc_macro2::TokenStream;
use quote::ToTokens;
use std::fmt::Display;

#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Option<syn::Error>,
}

impl Ctxt {
    /// An error pointing at `tokens`.
    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.syn_error(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn syn_error(&mut self, error: syn::Error) {
        match &mut self.errors {
            Some(errors) => errors.combine(error),
            None => self.errors = Some(error),
        }
    }

    /// `Err` with one `compile_error!` per error, if any was reported.
    pub(crate) fn check(self) -> Result<(), TokenStream> {
        match self.errors {
            Some(errors) => Err(errors.to_compile_error()),
            None => Ok(()),
        }
    }
}
