//! The renamed fields a TOML save honours, read from serde's own attributes: each
//! `#[serde(alias = "old")]` on a field of a struct with named fields is the pair
//! `(old, the field's name in the file)`. An attribute this cannot read is serde's to report:
//! it is skipped here, never an error of this derive.

use syn::meta::ParseNestedMeta;
use syn::{Attribute, Data, DeriveInput, Fields, LitStr, Token};

/// `(old name, new name)` for every alias of every named field of `input`.
pub(crate) fn renamed(input: &DeriveInput) -> Vec<(String, String)> {
    let Data::Struct(data) = &input.data else {
        return Vec::new();
    };
    let Fields::Named(fields) = &data.fields else {
        return Vec::new();
    };
    let rename_all = serde_keys(&input.attrs, "rename_all").pop();
    let mut pairs = Vec::new();
    for field in &fields.named {
        let Some(ident) = &field.ident else { continue };
        let ident = ident.to_string();
        let ident = ident.strip_prefix("r#").unwrap_or(&ident);
        let name = serde_keys(&field.attrs, "rename").pop().unwrap_or_else(|| {
            rename_all
                .as_deref()
                .map_or_else(|| ident.to_owned(), |case| apply_case(case, ident))
        });
        for alias in serde_keys(&field.attrs, "alias") {
            if alias != name {
                pairs.push((alias, name.clone()));
            }
        }
    }
    pairs
}

/// The string values of `key` in the `#[serde(...)]` attributes: `key = "x"`, or the
/// `serialize = "x"` of `key(serialize = "x", deserialize = "y")` (the name written).
fn serde_keys(attrs: &[Attribute], key: &str) -> Vec<String> {
    let mut values = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if !meta.path.is_ident(key) {
                return skip(&meta);
            }
            if meta.input.peek(Token![=]) {
                values.push(meta.value()?.parse::<LitStr>()?.value());
                return Ok(());
            }
            meta.parse_nested_meta(|inner| {
                if inner.path.is_ident("serialize") {
                    values.push(inner.value()?.parse::<LitStr>()?.value());
                    Ok(())
                } else {
                    skip(&inner)
                }
            })
        });
    }
    values
}

/// Skips a key's value: `= expression`, `(...)` or nothing.
fn skip(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip(&inner))?;
    }
    Ok(())
}

/// A field's name under serde's `rename_all = case` (serde_derive's rules for fields, which
/// are written in snake_case).
fn apply_case(case: &str, field: &str) -> String {
    let pascal = || {
        let mut out = String::new();
        let mut capitalize = true;
        for ch in field.chars() {
            if ch == '_' {
                capitalize = true;
            } else if capitalize {
                out.push(ch.to_ascii_uppercase());
                capitalize = false;
            } else {
                out.push(ch);
            }
        }
        out
    };
    match case {
        "lowercase" => field.to_ascii_lowercase(),
        "UPPERCASE" | "SCREAMING_SNAKE_CASE" => field.to_ascii_uppercase(),
        "PascalCase" => pascal(),
        "camelCase" => {
            let pascal = pascal();
            let mut chars = pascal.chars();
            match chars.next() {
                Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                None => pascal,
            }
        }
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.to_ascii_uppercase().replace('_', "-"),
        _ => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_pair_with_the_name_the_field_is_written_under() {
        let input: DeriveInput = syn::parse_quote! {
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase", deny_unknown_fields)]
            struct Settings {
                #[serde(alias = "name", alias = "label", default)]
                display_title: String,
                #[serde(rename = "w", alias = "width")]
                window_width: u32,
                #[serde(rename(serialize = "h", deserialize = "height"), alias = "tall")]
                height: u32,
                #[serde(skip_serializing_if = "Option::is_none", with = "x")]
                r#type: Option<u32>,
                #[serde(alias = "r#loop")]
                r#loop: u32,
            }
        };
        assert_eq!(
            renamed(&input),
            [
                ("name".to_owned(), "displayTitle".to_owned()),
                ("label".to_owned(), "displayTitle".to_owned()),
                ("width".to_owned(), "w".to_owned()),
                ("tall".to_owned(), "h".to_owned()),
                ("r#loop".to_owned(), "loop".to_owned()),
            ]
        );
        for (case, expected) in [
            ("lowercase", "window_width"),
            ("UPPERCASE", "WINDOW_WIDTH"),
            ("PascalCase", "WindowWidth"),
            ("camelCase", "windowWidth"),
            ("snake_case", "window_width"),
            ("SCREAMING_SNAKE_CASE", "WINDOW_WIDTH"),
            ("kebab-case", "window-width"),
            ("SCREAMING-KEBAB-CASE", "WINDOW-WIDTH"),
        ] {
            assert_eq!(apply_case(case, "window_width"), expected, "{case}");
        }
    }
}
