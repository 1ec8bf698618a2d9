//! Writes the `Persisted` impl: declarations and compile-time checks only. Every line of
//! behaviour lives in the `persist` crate. Never parses.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Type};

use crate::ast::Input;
use crate::attr::FormatName;
use crate::ctxt::Ctxt;
use crate::{fallback, renames, valid};

/// The whole derive: the impl, or the errors beside a stub impl.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let parsed = Input::from_syn(input, &mut cx);
    valid::check(&parsed, &mut cx);
    match (cx.check(), parsed.attrs.version) {
        (Ok(()), Some(version)) => impl_persisted(&parsed, version),
        (Err(errors), _) => {
            let stub = fallback::expand(&parsed);
            quote!(#errors #stub)
        }
        // valid::check reports a missing version, so this arm is not reached.
        (Ok(()), None) => fallback::expand(&parsed),
    }
}

pub(crate) fn krate(input: &Input<'_>) -> TokenStream {
    match &input.attrs.krate {
        Some(path) => quote!(#path),
        None => quote!(::persist),
    }
}

fn impl_persisted(input: &Input<'_>, version: u32) -> TokenStream {
    let krate = krate(input);
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let ty = quote!(#ident #ty_generics);

    // A generic type must state what its supertraits and its chain need; for a concrete type
    // the same bounds would only repeat the errors rustc already gives.
    let mut predicates: Vec<TokenStream> = where_clause
        .map(|clause| clause.predicates.iter().map(|p| quote!(#p)).collect())
        .unwrap_or_default();
    if input.is_generic() {
        predicates.push(quote!(
            #ty: #krate::__private::serde::Serialize + #krate::__private::serde::de::DeserializeOwned
        ));
        // The user's `From` impl may carry bounds of its own: the impl holds where it does.
        if let Some(previous) = &input.attrs.migrate_from {
            predicates.push(quote_spanned!(previous.span()=> #previous: #krate::Persisted));
            predicates.push(quote_spanned!(previous.span()=>
                #ty: #krate::__private::MigrateFrom<#previous>
            ));
        }
        if let Some((_, previous)) = &input.attrs.upcast_from {
            predicates.push(quote_spanned!(previous.span()=> #previous: #krate::Persisted));
            predicates.push(quote_spanned!(previous.span()=>
                #ty: #krate::__private::UpcastFrom<#previous>
            ));
        }
    }
    let accepts_unversioned = input.attrs.accept_unversioned.as_ref().map(|_| {
        quote!(
            const ACCEPTS_UNVERSIONED: bool = true;
        )
    });

    let checksum = input.attrs.checksum.as_ref().map(|_| {
        quote!(
            const CHECKSUM: bool = true;
        )
    });

    let pretty = input.attrs.pretty.as_ref().map(|_| {
        quote!(
            const PRETTY: bool = true;
        )
    });

    let format = match input.attrs.format {
        Some(FormatName::Toml) => Some(quote!(
            const FORMAT: #krate::Format = #krate::Format::Toml;
        )),
        Some(FormatName::Json) | None => None,
    };

    // Keys renamed since an older version (serde's aliases, and `renamed(...)`), for TOML saves.
    let mut renamed = renames::renamed(input.original);
    renamed.extend(
        input
            .attrs
            .renamed
            .iter()
            .map(|(from, to)| (from.value(), to.value())),
    );
    let renamed = (!renamed.is_empty()).then(|| {
        let (old, new): (Vec<_>, Vec<_>) = renamed.into_iter().unzip();
        quote!(
            const RENAMED: &'static [(&'static str, &'static str)] = &[#((#old, #new)),*];
        )
    });

    // `validate = path`: spanned at the path, so that a function of the wrong shape is reported
    // there.
    let validate = input.attrs.validate.as_ref().map(|path| {
        let call = quote_spanned!(path.span()=>
            #krate::__private::Validation::validated(#path(self))
        );
        quote! {
            fn validate(&self) -> ::core::result::Result<(), #krate::BoxError> {
                #call
            }
        }
    });

    // `downgrade`: the step back, spanned at the key (a missing `From<Self> for Previous`).
    let downgrade = input
        .attrs
        .downgrade
        .as_ref()
        .zip(input.attrs.migrate_from.as_ref())
        .map(|(key, previous)| {
            let body = quote_spanned!(key.span()=>
                <#previous as #krate::__private::DowngradeFrom<Self>>::downgrade_from(self)
            );
            quote! {
                const DOWNGRADES: bool = true;

                fn downgrade(
                    self,
                ) -> ::core::result::Result<<Self as #krate::Persisted>::Previous, #krate::BoxError> {
                    #body
                }
            }
        });
    if input.is_generic()
        && let (Some(_), Some(previous)) = (&input.attrs.downgrade, &input.attrs.migrate_from)
    {
        predicates.push(quote_spanned!(previous.span()=>
            #previous: #krate::__private::DowngradeFrom<#ty>
        ));
    }
    let where_clause = (!predicates.is_empty()).then(|| quote!(where #(#predicates),*));

    let step = match (&input.attrs.migrate_from, &input.attrs.upcast_from) {
        (Some(previous), _) => Some((previous, false)),
        (None, Some((_, previous))) => Some((previous, true)),
        (None, None) => None,
    };
    let (previous, migrate_body, order_check) = match step {
        None => (
            quote!(#krate::Origin),
            quote!(match previous {}),
            TokenStream::new(),
        ),
        Some((previous, upcasts)) => {
            let check = version_order_check(input, previous, &krate);
            // Spanned so that a missing `From`/`TryFrom` impl or a type that is not
            // `Persisted` is reported at the type inside the attribute.
            let previous_spanned = quote_spanned!(previous.span()=> #previous);
            let body = match upcasts {
                false => quote_spanned!(previous.span()=>
                    <Self as #krate::__private::MigrateFrom<#previous>>::migrate_from(previous)
                ),
                true => quote_spanned!(previous.span()=>
                    #krate::__private::single_upcast(
                        <Self as #krate::__private::UpcastFrom<#previous>>::upcast_from(previous)
                    )
                ),
            };
            if input.is_generic() {
                let body = quote!(const { #check }; #body);
                (previous_spanned, body, TokenStream::new())
            } else {
                (previous_spanned, body, quote!(const _: () = #check;))
            }
        }
    };

    // An upcast step: one old value into any number (journals replay each).
    let upcast = input
        .attrs
        .upcast_from
        .as_ref()
        .filter(|_| input.attrs.migrate_from.is_none())
        .map(|(_, previous)| {
            let body = quote_spanned!(previous.span()=>
                <Self as #krate::__private::UpcastFrom<#previous>>::upcast_from(previous)
            );
            quote! {
                const UPCASTS: bool = true;

                fn upcast(
                    previous: <Self as #krate::Persisted>::Previous,
                ) -> ::core::result::Result<::std::vec::Vec<Self>, #krate::BoxError> {
                    #body
                }
            }
        });

    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Persisted for #ty #where_clause {
            const VERSION: u32 = #version;
            #accepts_unversioned
            #checksum
            #pretty
            #format
            #renamed
            type Previous = #previous;

            fn migrate(
                previous: <Self as #krate::Persisted>::Previous,
            ) -> ::core::result::Result<Self, #krate::BoxError> {
                #migrate_body
            }
            #upcast
            #downgrade
            #validate
        }
        #order_check
    }
}

/// `assert!(Previous::VERSION < VERSION)`, pointing at the type in `migrate_from`. A concrete
/// type is checked by a free constant (evaluated by `cargo check`); a generic one by an inline
/// constant in `migrate`, where its parameters are in scope (evaluated when the chain is used).
fn version_order_check(input: &Input<'_>, previous: &Type, krate: &TokenStream) -> TokenStream {
    let ident = input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let key = match &input.attrs.migrate_from {
        Some(_) => "migrate_from",
        None => "upcast_from",
    };
    let message = format!(
        "`{key} = {}` must name a type with a lower `version` than `{}`",
        quote!(#previous).to_string().replace(' ', ""),
        ident,
    );
    quote_spanned! {previous.span()=>
        ::core::assert!(
            <#previous as #krate::Persisted>::VERSION
                < <#ident #ty_generics as #krate::Persisted>::VERSION,
            #message
        )
    }
}
