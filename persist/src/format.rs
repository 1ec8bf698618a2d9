//! [`Format`]: the text a file's envelope is written in.

/// The text format a save writes: JSON (the default) or, with the `toml` feature, TOML.
///
/// A type chooses its format with `#[persist(format = "toml")]` ([`Persisted::FORMAT`]);
/// [`Options::format`] chooses it for one call. Loads do not need to be told: a file that starts
/// with `{` is JSON, and with the `toml` feature a file holding `persist-version = N` is TOML, so
/// a type that moves from one format to the other reads the files it wrote before (its next
/// save writes the new format).
///
/// The checksum, compression and encryption layers work on either format's bytes.
///
/// A closed set rather than a trait: each format carries parts of the file contract persist
/// answers for (where the version and the checksum live, how a load tells the formats apart,
/// how a save keeps what a person wrote), so a new one is added here, with its tests, not
/// plugged in from outside.
///
/// [`Persisted::FORMAT`]: crate::Persisted::FORMAT
/// [`Options::format`]: crate::Options::format
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "toml")]
/// # fn main() -> Result<(), persist::Error> {
/// use persist::{Format, Options, Persisted};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Persisted)]
/// #[persist(version = 1)]
/// struct Settings {
///     theme: String,
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("settings.toml");
/// let settings = Settings { theme: "dark".into() };
/// Options::new().format(Format::Toml).save(&settings, &path)?;
/// assert_eq!(
///     std::fs::read_to_string(&path).unwrap(),
///     "persist-version = 1\n\ntheme = \"dark\"\n"
/// );
/// assert_eq!(Settings::load(&path)?.theme, "dark");
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "toml"))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `{"version":N,"data":...}`: compact, or indented with `pretty`.
    #[default]
    Json,
    /// `persist-version = N` as the first key, then the data's own keys (feature `toml`).
    /// A save over a TOML file keeps its comments, blank lines, key order and quoting.
    #[cfg(feature = "toml")]
    Toml,
}

impl Format {
    /// The format's usual file extension, without the dot: `json` or `toml`.
    pub const fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            #[cfg(feature = "toml")]
            Format::Toml => "toml",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            #[cfg(feature = "toml")]
            Format::Toml => "TOML",
        })
    }
}
