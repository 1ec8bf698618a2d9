//! `?` from persist's other public error types into `persist::Error`: in a function that
//! returns `Result<_, persist::Error>`, `AppDirs::new(..)?` and `Key::from_env(..)?` compile,
//! and give `Error::Setup` carrying the original error, with its message; so do
//! `ValidationError`, `SealError` and the testing kit's `ShapeError` and `FixtureError`.

use std::path::Path;

use persist::{AppDirs, AppDirsError, Error, ErrorKind};

/// What a caller's function does: `?` on each error type, into `persist::Error`.
fn app_dirs(result: Result<AppDirs, AppDirsError>) -> Result<AppDirs, Error> {
    let dirs = result?;
    Ok(dirs)
}

#[test]
fn app_dirs_error_becomes_setup() {
    let no_home = AppDirsError::NoHome {
        application: "Editor".into(),
        which: "config",
        variable: "EDITOR_CONFIG_DIR".into(),
    };
    let message = no_home.to_string();
    let error = app_dirs(Err(no_home)).unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Setup);
    assert_eq!(error.kind().as_str(), "setup");
    assert!(!error.is_transient());
    assert_eq!(error.path(), Path::new(""));
    // The message is the converted error's, without a path in front of it.
    assert_eq!(error.to_string(), message);
    assert_eq!(
        message,
        "no home directory for Editor's config directory: set HOME, or EDITOR_CONFIG_DIR to the \
         directory to use"
    );
    // Nothing of the original error is lost: it is the variant's source, with its fields.
    let Error::Setup { source } = &error else {
        panic!("{error:?}")
    };
    match source.downcast_ref::<AppDirsError>() {
        Some(AppDirsError::NoHome {
            application,
            which,
            variable,
        }) => {
            assert_eq!(application, "Editor");
            assert_eq!(*which, "config");
            assert_eq!(variable, "EDITOR_CONFIG_DIR");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn app_dirs_new_works_with_question_mark() {
    // The call as the issue wrote it. Whether this machine knows a home directory or not, the
    // function compiles, and a failure is `Error::Setup`.
    fn config_dir() -> Result<std::path::PathBuf, Error> {
        let dirs = AppDirs::new("com", "Example", "Editor")?;
        Ok(dirs.config().to_owned())
    }
    match config_dir() {
        Ok(dir) => assert!(!dir.as_os_str().is_empty()),
        Err(error) => assert_eq!(error.kind(), ErrorKind::Setup, "{error:?}"),
    }
}

#[cfg(feature = "encryption")]
mod key {
    use std::path::Path;

    use persist::{Error, ErrorKind, Key, KeyError, Options};

    /// A variable no test sets.
    const UNSET: &str = "PERSIST_ERROR_CONVERSIONS_NEVER_SET";

    fn options_from_env(name: &str) -> Result<Options, Error> {
        Ok(Options::new().encrypt(Key::from_env(name)?))
    }

    fn options_from_hex(hex: &str) -> Result<Options, Error> {
        Ok(Options::new().encrypt(Key::from_hex(hex)?))
    }

    #[test]
    fn missing_variable_becomes_setup() {
        assert!(std::env::var_os(UNSET).is_none());
        let error = options_from_env(UNSET).unwrap_err();

        assert_eq!(error.kind(), ErrorKind::Setup);
        assert_eq!(error.path(), Path::new(""));
        assert_eq!(
            error.to_string(),
            format!("environment variable {UNSET} is not set")
        );
        let Error::Setup { source } = &error else {
            panic!("{error:?}")
        };
        match source.downcast_ref::<KeyError>() {
            Some(KeyError::MissingVariable { name }) => assert_eq!(name, UNSET),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_that_is_not_a_key_becomes_setup_without_the_text() {
        let secret = "0123456789abcdef-not-a-key";
        let error = options_from_hex(secret).unwrap_err();

        assert_eq!(error.kind(), ErrorKind::Setup);
        assert_eq!(error.to_string(), "a key must be 64 hex digits (32 bytes)");
        assert!(!format!("{error:?}").contains(secret));
        let Error::Setup { source } = &error else {
            panic!("{error:?}")
        };
        assert!(matches!(
            source.downcast_ref::<KeyError>(),
            Some(KeyError::NotHex)
        ));
    }

    #[test]
    fn a_valid_key_is_no_error() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        assert!(options_from_hex(hex).is_ok());
    }
}

/// Every public error type of persist converts into `persist::Error`, so `?` works on each.
#[test]
fn every_public_error_type_converts() {
    fn converts<E: Into<Error>>() {}
    converts::<AppDirsError>();
    converts::<persist::ValidationError>();
    converts::<persist::SealError>();
    converts::<persist::testing::ShapeError>();
    converts::<persist::testing::FixtureError>();
    #[cfg(feature = "encryption")]
    converts::<persist::KeyError>();

    // A fixture that exists, converted by `?`: Setup, the original error inside.
    let fixture = || -> Result<(), Error> {
        Err(persist::testing::FixtureError::Exists {
            path: "fixtures/v1/a.json".into(),
        })?
    };
    let error = fixture().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Setup);
    let Error::Setup { source } = &error else {
        panic!("{error:?}")
    };
    assert!(
        source
            .downcast_ref::<persist::testing::FixtureError>()
            .is_some()
    );
    assert!(error.to_string().contains("fixtures/v1/a.json"), "{error}");
}
