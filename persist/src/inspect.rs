//! A dry run of a load: what version a file holds, which migration steps a load would run, and
//! whether it would succeed, without writing anything.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::codec::{
    chain_versions, decode, leading_version, stored_version, unframe, unversioned_root,
};
use crate::key::Key;
use crate::shell::read;
use crate::{Error, Persisted};

/// The report of [`Options::inspect`](crate::Options::inspect).
#[derive(Debug)]
#[non_exhaustive]
pub struct Inspection {
    /// The file inspected.
    pub path: PathBuf,
    /// The version in the file's envelope; `None` if it has none (or is not readable JSON).
    pub stored_version: Option<u64>,
    /// `true` if the file has no envelope and would be read as the oldest version
    /// (`#[persist(accept_unversioned)]`).
    pub unversioned: bool,
    /// The version the program reads and writes.
    pub current_version: u32,
    /// The migration steps a load would run, as `(from, to)` pairs, in order. Empty when the
    /// file is at the current version or cannot be read.
    pub steps: Vec<(u32, u32)>,
    /// What the load would return: `Ok` or the error it would report.
    pub outcome: Result<(), Error>,
}

impl Inspection {
    /// `true` if a load would succeed.
    pub fn would_load(&self) -> bool {
        self.outcome.is_ok()
    }
}

pub(crate) fn inspect<T: Persisted>(
    path: &Path,
    max_size: u64,
    key: Option<&Key>,
) -> Result<Inspection, Error> {
    let framed = read::read(path, max_size)?;
    // A file cut short still tells its version when it starts as persist writes one.
    let stored = stored_version(&framed).or_else(|| leading_version(&framed));
    let bytes = match unframe(&framed, key, max_size) {
        Ok(bytes) => bytes,
        Err(error) => {
            return Ok(Inspection {
                path: path.to_owned(),
                stored_version: stored,
                unversioned: false,
                current_version: T::VERSION,
                steps: Vec::new(),
                outcome: Err(error.at(path)),
            });
        }
    };
    let root = unversioned_root::<T>();
    let unversioned = stored.is_none()
        && root.is_some()
        && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok();
    let from = stored.or(root.filter(|_| unversioned).map(u64::from));
    let chain = chain_versions::<T>();
    let steps = match from.and_then(|from| chain.iter().position(|&v| u64::from(v) == from)) {
        Some(start) => chain[start..]
            .windows(2)
            .map(|pair| (pair[0], pair[1]))
            .collect(),
        None => Vec::new(),
    };
    let outcome = decode::<T>(&bytes)
        .map(drop)
        .map_err(|error| error.at::<T>(path));
    Ok(Inspection {
        path: path.to_owned(),
        stored_version: stored,
        unversioned,
        current_version: T::VERSION,
        steps,
        outcome,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        match (self.stored_version, self.unversioned) {
            (Some(version), _) => write!(f, "stored at version {version}")?,
            (None, true) => {
                f.write_str("plain JSON without a version, read as the oldest version")?
            }
            (None, false) => f.write_str("no readable version")?,
        }
        writeln!(f, "; this program reads version {}", self.current_version)?;
        if !self.steps.is_empty() {
            f.write_str("migration: ")?;
            for (i, (from, to)) in self.steps.iter().enumerate() {
                if i == 0 {
                    write!(f, "{from}")?;
                }
                write!(f, " -> {to}")?;
            }
            writeln!(f)?;
        }
        match &self.outcome {
            Ok(()) => f.write_str("a load would succeed"),
            Err(error) => write!(f, "a load would fail: {error}"),
        }
    }
}
