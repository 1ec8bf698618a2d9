//! A typed model of the derive input: what the later stages need, read once.

use syn::{DeriveInput, Generics, Ident};

use crate::attr::Attrs;
use crate::ctxt::Ctxt;

pub(crate) struct Input<'a> {
    pub(crate) original: &'a DeriveInput,
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) attrs: Attrs,
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput, cx: &mut Ctxt) -> Self {
        Input {
            original: input,
            ident: &input.ident,
            generics: &input.generics,
            attrs: Attrs::from_syn(&input.attrs, cx),
        }
    }

    pub(crate) fn is_generic(&self) -> bool {
        !self.generics.params.is_empty()
    }
}
