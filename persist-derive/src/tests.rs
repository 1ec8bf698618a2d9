//! Expansion snapshots: the derive's output for typical inputs, pretty-printed.

use syn::{DeriveInput, parse_quote};

fn expand(input: DeriveInput) -> String {
    let tokens = crate::expand::derive(&input);
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

#[test]
fn oldest_version() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[persist(version = 1)]
        struct SettingsV1 { theme: String }
    }));
}

#[test]
fn migrated_version() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[persist(version = 3, migrate_from = SettingsV2)]
        struct Settings { theme: Theme, font_size: u32 }
    }));
}

#[test]
fn unversioned_oldest_version() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[persist(version = 1, accept_unversioned)]
        struct LegacyV1(String, u32);
    }));
}

#[test]
fn generic_enum_with_custom_crate_path() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[persist(version = 2, migrate_from = ListV1<T>, crate = ::app::persist)]
        enum List<T: Clone> where T: Default { Empty, Items(Vec<T>) }
    }));
}

#[test]
fn every_error_of_the_attribute_at_once() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[persist(version = 0, bogus = 1, migrate_from = "V1", version = 2)]
        struct Broken { field: u8 }
    }));
}

#[test]
fn toml_format_with_renamed_keys() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[persist(version = 2, migrate_from = PrefsV1, format = "toml",
                  renamed("window.old_width" => "window.width"))]
        #[serde(rename_all = "kebab-case")]
        struct Prefs {
            #[serde(alias = "name")]
            display_title: String,
            window: Window,
        }
    }));
}

#[test]
fn errors_of_format_and_renamed() {
    insta::assert_snapshot!(expand(parse_quote! {
        #[persist(version = 1, format = "yaml",
                  renamed("a.b" => "c.d", "same" => "same"), )]
        struct Broken { field: u8 }
    }));
}
