//! Rules across keys and about the input as a whole, checked after every key is parsed.

use syn::{Data, GenericParam};

use crate::ast::Input;
use crate::ctxt::Ctxt;

pub(crate) fn check(input: &Input<'_>, cx: &mut Ctxt) {
    if let Data::Union(union) = &input.original.data {
        cx.error_spanned_by(
            union.union_token,
            "Persisted cannot be derived for a union: serde cannot serialize unions; \
             use a struct or an enum",
        );
    }
    for param in &input.generics.params {
        if let GenericParam::Lifetime(lifetime) = param {
            cx.error_spanned_by(
                lifetime,
                "Persisted types must own their data (they are deserialized from a file as \
                 `DeserializeOwned`): remove the lifetime parameter and use owned types \
                 such as `String`",
            );
        }
    }
    let attrs = &input.attrs;
    if !attrs.version_written {
        match &attrs.first {
            Some(attr) => cx.error_spanned_by(
                attr,
                "missing `version`: write `#[persist(version = N)]`, N = 1 for the first \
                 version of a type",
            ),
            None => cx.error_spanned_by(
                input.ident,
                format_args!(
                    "`#[derive(Persisted)]` needs a schema version: add \
                     `#[persist(version = 1)]` above `{}`",
                    input.ident
                ),
            ),
        }
    }
    if let (Some((key, _)), Some(_)) = (&attrs.upcast_from, &attrs.migrate_from) {
        cx.error_spanned_by(
            key,
            "`upcast_from` and `migrate_from` both name the previous version: a step converts \
             each old value into one (`migrate_from`) or into any number (`upcast_from`), not \
             both",
        );
    }
    if let Some(key) = &attrs.downgrade
        && attrs.migrate_from.is_none()
    {
        let reason = match &attrs.upcast_from {
            Some(_) => {
                "`downgrade` needs a one-to-one step: an `upcast_from` step makes any number of \
                 values from one, which no conversion undoes; use `migrate_from`"
            }
            None => {
                "`downgrade` converts this version back into the one it migrates from: add \
                 `migrate_from = PreviousVersion` (the oldest version has nothing to go down to)"
            }
        };
        cx.error_spanned_by(key, reason);
    }
    if let (Some(key), Some(_)) = (&attrs.accept_unversioned, &attrs.upcast_from) {
        cx.error_spanned_by(
            key,
            "`accept_unversioned` belongs on the oldest version, the one without \
             `upcast_from`: files written before persist was adopted are read as that version",
        );
    }
    if let (Some(key), Some(_)) = (&attrs.accept_unversioned, &attrs.migrate_from) {
        cx.error_spanned_by(
            key,
            "`accept_unversioned` belongs on the oldest version, the one without \
             `migrate_from`: files written before persist was adopted are read as that version",
        );
    }
}
