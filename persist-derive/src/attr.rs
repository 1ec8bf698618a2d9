//! Parses the `#[persist(...)]` keys. Reports every error of every key and keeps going, so one
//! build shows them all. Never generates code.

use proc_macro2::TokenTree;
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Lit, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;

const KEYS: &str = "`version`, `migrate_from`, `upcast_from`, `downgrade`, `validate`, \
                    `accept_unversioned`, `checksum`, `pretty`, `format`, `renamed`, `crate`";

/// A format `format = "..."` names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormatName {
    Json,
    Toml,
}

#[derive(Default)]
pub(crate) struct Attrs {
    /// The first `#[persist]` attribute, for errors about a key that is missing from it.
    pub(crate) first: Option<Attribute>,
    pub(crate) version: Option<u32>,
    /// `version` was written, even if its value was rejected.
    pub(crate) version_written: bool,
    pub(crate) migrate_from: Option<Type>,
    /// `upcast_from`: the previous version, whose values each become any number of this one's.
    pub(crate) upcast_from: Option<(Path, Type)>,
    /// The `accept_unversioned` key, for errors that point at it.
    pub(crate) accept_unversioned: Option<Path>,
    /// The `checksum` key: saves of this type store a checksum of the data.
    pub(crate) checksum: Option<Path>,
    /// The `pretty` key: saves of this type write indented JSON.
    pub(crate) pretty: Option<Path>,
    /// `format = "json"` or `"toml"`: what saves of this type write.
    pub(crate) format: Option<FormatName>,
    /// `renamed("old.path" => "new.path", ...)`: keys renamed since an older version, for
    /// TOML saves (beside the fields' serde aliases).
    pub(crate) renamed: Vec<(LitStr, LitStr)>,
    /// The `downgrade` key: this version converts back into the one it migrates from.
    pub(crate) downgrade: Option<Path>,
    /// `validate = path`: the function that checks every value a load returns.
    pub(crate) validate: Option<Path>,
    pub(crate) krate: Option<Path>,
}

impl Attrs {
    pub(crate) fn from_syn(attrs: &[Attribute], cx: &mut Ctxt) -> Self {
        let mut parsed = Attrs::default();
        // Keys seen, valid or not, so a duplicate is reported even after a bad first value.
        let mut seen: Vec<String> = Vec::new();
        for attr in attrs.iter().filter(|attr| attr.path().is_ident("persist")) {
            parsed.first.get_or_insert_with(|| attr.clone());
            let result = attr.parse_nested_meta(|meta| {
                let key = path_to_string(&meta.path);
                let known = matches!(
                    key.as_str(),
                    "version"
                        | "migrate_from"
                        | "upcast_from"
                        | "downgrade"
                        | "validate"
                        | "accept_unversioned"
                        | "checksum"
                        | "pretty"
                        | "format"
                        | "renamed"
                        | "crate"
                );
                if !known {
                    cx.error_spanned_by(
                        &meta.path,
                        format_args!(
                            "unknown key `{key}` in #[persist(...)]; expected one of {KEYS}"
                        ),
                    );
                    return skip_value(&meta);
                }
                if seen.contains(&key) {
                    cx.error_spanned_by(
                        &meta.path,
                        format_args!("duplicate key `{key}` in #[persist(...)]"),
                    );
                    return skip_value(&meta);
                }
                seen.push(key.clone());
                match key.as_str() {
                    "version" => {
                        parsed.version_written = true;
                        parsed.version = parse_version(&meta, cx)?;
                    }
                    "migrate_from" => {
                        parsed.migrate_from =
                            parse_value(&meta, cx, "a type, as in `migrate_from = SettingsV2`")?
                    }
                    "upcast_from" => {
                        let key = meta.path.clone();
                        parsed.upcast_from =
                            parse_value(&meta, cx, "a type, as in `upcast_from = EventV2`")?
                                .map(|previous| (key, previous))
                    }
                    "format" => {
                        let name = parse_value::<LitStr>(
                            &meta,
                            cx,
                            "a format's name, as in `format = \"toml\"`",
                        )?;
                        parsed.format = name.and_then(|name| match name.value().as_str() {
                            "json" => Some(FormatName::Json),
                            "toml" => Some(FormatName::Toml),
                            other => {
                                cx.error_spanned_by(
                                    &name,
                                    format_args!(
                                        "unknown format `{other}`: expected \"json\" or \"toml\""
                                    ),
                                );
                                None
                            }
                        });
                    }
                    "renamed" => {
                        if !meta.input.peek(syn::token::Paren) {
                            cx.error_spanned_by(
                                &meta.path,
                                "`renamed` takes a list of renames, as in \
                                 `renamed(\"window.old_width\" => \"window.width\")`",
                            );
                            return skip_value(&meta);
                        }
                        let content;
                        syn::parenthesized!(content in meta.input);
                        let pairs = content.parse_terminated(Rename::parse, Token![,])?;
                        for Rename(from, to) in pairs {
                            let parent = |path: &str| {
                                path.rsplit_once('.').map(|(parent, _)| parent.to_owned())
                            };
                            let (old, new) = (from.value(), to.value());
                            if old.is_empty() || new.is_empty() || old == new {
                                cx.error_spanned_by(
                                    &to,
                                    "a rename names two different, non-empty keys",
                                );
                            } else if parent(&old) != parent(&new) {
                                cx.error_spanned_by(
                                    &to,
                                    format_args!(
                                        "a rename keeps the key in its table: `{old}` and \
                                         `{new}` differ before their last `.`"
                                    ),
                                );
                            } else {
                                parsed.renamed.push((from, to));
                            }
                        }
                    }
                    "validate" => {
                        parsed.validate =
                            parse_value(&meta, cx, "a function, as in `validate = check_settings`")?
                    }
                    "accept_unversioned" | "checksum" | "pretty" | "downgrade" => {
                        if meta.input.peek(Token![=]) || !at_key_end(meta.input) {
                            cx.error_spanned_by(
                                &meta.path,
                                format_args!("`{key}` takes no value: write `{key}`"),
                            );
                            return skip_value(&meta);
                        }
                        let flag = match key.as_str() {
                            "checksum" => &mut parsed.checksum,
                            "pretty" => &mut parsed.pretty,
                            "downgrade" => &mut parsed.downgrade,
                            _ => &mut parsed.accept_unversioned,
                        };
                        *flag = Some(meta.path.clone());
                    }
                    _ => {
                        parsed.krate = parse_value::<CratePath>(
                            &meta,
                            cx,
                            "a path, as in `crate = ::my_crate::persist`",
                        )?
                        .map(|krate| krate.0)
                    }
                }
                Ok(())
            });
            if let Err(error) = result {
                cx.syn_error(error);
            }
        }
        parsed
    }
}

fn parse_version(meta: &ParseNestedMeta<'_>, cx: &mut Ctxt) -> syn::Result<Option<u32>> {
    let Some(literal) = parse_value::<LitInt>(meta, cx, "an integer, as in `version = 3`")? else {
        return Ok(None);
    };
    match literal.base10_parse::<u32>() {
        Ok(0) => {
            cx.error_spanned_by(
                &literal,
                "`version` must be 1 or higher: version 0 is reserved for `persist::Origin`, \
                 the start of every migration chain",
            );
            Ok(None)
        }
        Ok(value) => Ok(Some(value)),
        Err(error) => {
            cx.error_spanned_by(
                &literal,
                format_args!("`version` must fit in a u32: {error}"),
            );
            Ok(None)
        }
    }
}

/// Parses `= value`. A value of the wrong kind is reported and skipped, so the keys after it are
/// still read.
fn parse_value<T: Parse>(
    meta: &ParseNestedMeta<'_>,
    cx: &mut Ctxt,
    expected: &str,
) -> syn::Result<Option<T>> {
    let key = path_to_string(&meta.path);
    if !meta.input.peek(Token![=]) {
        cx.error_spanned_by(
            &meta.path,
            format_args!("`{key}` needs a value: {expected}"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let input = meta.value()?;
    let fork = input.fork();
    match fork.parse::<T>() {
        Ok(_) if at_key_end(&fork) => Ok(Some(input.parse::<T>()?)),
        _ => {
            let span = match input.cursor().token_tree() {
                Some((token, _)) => token.span(),
                None => meta.path.span(),
            };
            cx.syn_error(syn::Error::new(
                span,
                format_args!("`{key}` expects {expected}"),
            ));
            skip_value(meta)?;
            Ok(None)
        }
    }
}

fn at_key_end(input: ParseStream<'_>) -> bool {
    input.is_empty() || input.peek(Token![,])
}

/// Skips what is left of the current key, up to the next comma.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    while !at_key_end(meta.input) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn path_to_string(path: &Path) -> String {
    let mut out = String::new();
    if path.leading_colon.is_some() {
        out.push_str("::");
    }
    for (i, segment) in path.segments.iter().enumerate() {
        if i > 0 {
            out.push_str("::");
        }
        out.push_str(&segment.ident.to_string());
    }
    out
}

/// `"old.path" => "new.path"`, one rename of `renamed(...)`.
struct Rename(LitStr, LitStr);

impl Parse for Rename {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let from: LitStr = input.parse()?;
        input.parse::<Token![=>]>()?;
        let to: LitStr = input.parse()?;
        Ok(Rename(from, to))
    }
}

/// `crate = path` or, as serde spells it, `crate = "path"`.
struct CratePath(Path);

impl Parse for CratePath {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Lit) {
            let literal: LitStr = input.parse()?;
            literal.parse_with(Path::parse_mod_style).map(CratePath)
        } else {
            Path::parse_mod_style(input).map(CratePath)
        }
    }
}
