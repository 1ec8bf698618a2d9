//! A value written at an older version of its chain, for a release that is rolled back: each
//! version's declared downgrade step (`#[persist(downgrade)]`) in turn, down to the version
//! asked for.

use std::path::Path;

use crate::codec::{self, EncodeError, Style};
use crate::{BoxError, Error, Persisted};

/// Why a value could not be taken down to a version: the step from `from` to `to` failed or
/// is not declared, or the version is not below the value's in its chain.
#[derive(Debug)]
pub(crate) struct DowngradeFailure {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) source: BoxError,
}

impl DowngradeFailure {
    /// The error of a save of `path` that failed this way.
    pub(crate) fn at(self, path: &Path) -> Error {
        Error::Downgrade {
            path: path.to_owned(),
            from: self.from,
            to: self.to,
            source: self.source,
        }
    }
}

/// The envelope of `value` at `version`, an older version of `T`'s chain, reached through
/// every downgrade step from `T` down; the outer error is a step's, the inner the encoding's.
pub(crate) fn encode_at<T: Persisted>(
    value: &T,
    version: u32,
    style: Style,
) -> Result<Result<Vec<u8>, EncodeError>, DowngradeFailure> {
    let failure = |source: BoxError| DowngradeFailure {
        from: T::VERSION,
        to: version,
        source,
    };
    if version == T::VERSION {
        return Ok(codec::encode_to_vec(value, style));
    }
    if version > T::VERSION {
        return Err(failure(
            format!(
                "version {version} is newer than this program's version {}",
                T::VERSION
            )
            .into(),
        ));
    }
    if !codec::in_chain::<T>(version) {
        return Err(failure(
            format!(
                "version {version} is not in the migration chain (known versions: {})",
                codec::chain_versions::<T>()
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into(),
        ));
    }
    // The steps take their value by value; the caller's stays theirs. A copy through the
    // value's own serialization, so that no `Clone` is asked of the type.
    let owned: T = serde_json::to_value(value)
        .and_then(T::deserialize)
        .map_err(|error| failure(format!("the value could not be copied: {error}").into()))?;
    down(owned, version, style)
}

/// `value` taken down step by step to `version` (in its chain, not newer), then encoded.
fn down<T: Persisted>(
    value: T,
    version: u32,
    style: Style,
) -> Result<Result<Vec<u8>, EncodeError>, DowngradeFailure> {
    if version == T::VERSION || !codec::has_older::<T>() {
        return Ok(codec::encode_to_vec(&value, style));
    }
    let previous = value.downgrade().map_err(|source| DowngradeFailure {
        from: T::VERSION,
        to: T::Previous::VERSION,
        source,
    })?;
    down::<T::Previous>(previous, version, style)
}
