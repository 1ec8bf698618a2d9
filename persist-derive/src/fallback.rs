//! The stub impl emitted beside `compile_error!`, so that one mistake in the attribute does not
//! also make every use of the type fail with "`Persisted` is not implemented" (thiserror's
//! `fallback.rs`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, GenericParam};

use crate::ast::Input;
use crate::expand::krate;

pub(crate) fn expand(input: &Input<'_>) -> TokenStream {
    // A union or a borrowing type cannot satisfy the supertraits: a stub would only add errors.
    let borrows = input
        .generics
        .params
        .iter()
        .any(|param| matches!(param, GenericParam::Lifetime(_)));
    if matches!(input.original.data, Data::Union(_)) || borrows {
        return TokenStream::new();
    }
    let krate = krate(input);
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // Version 0 is below every real version, so `migrate_from` checks of other types that name
    // this one do not fail in turn.
    let version = input.attrs.version.unwrap_or(0);
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Persisted for #ident #ty_generics #where_clause {
            const VERSION: u32 = #version;
            type Previous = #krate::Origin;

            fn migrate(
                previous: #krate::Origin,
            ) -> ::core::result::Result<Self, #krate::BoxError> {
                match previous {}
            }
        }
    }
}
