//! The migration chain as the type system holds it: `T`, `T::Previous`, ... down to the oldest
//! version, whose `Previous` is [`Origin`](crate::Origin) (version 0). Walked at compile time
//! through generics; nothing here allocates on the load path.

use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer};

use crate::Persisted;

/// Whether `T`'s chain goes on below `T`: `T::Previous` is an older, real version. False for
/// the oldest version (whose `Previous` is the origin) and for a hand-written impl whose
/// `Previous` does not go down, which would otherwise recurse forever. The one test of the
/// chain's end that every walk below uses.
pub(crate) fn has_older<T: Persisted>() -> bool {
    T::VERSION != 0 && T::Previous::VERSION != 0 && T::Previous::VERSION < T::VERSION
}

/// Whether some step of `T`'s chain is an upcast (one value into any number).
pub(crate) fn chain_upcasts<T: Persisted>() -> bool {
    T::UPCASTS || (has_older::<T>() && chain_upcasts::<T::Previous>())
}

/// Something done for each type of a chain, oldest first (see [`walk_chain`]).
pub(crate) trait VisitVersion {
    fn visit<V: Persisted>(&mut self);
}

/// Calls `visitor` with every type of `T`'s chain, oldest first.
pub(crate) fn walk_chain<T: Persisted, W: VisitVersion>(visitor: &mut W) {
    if T::VERSION == 0 {
        return;
    }
    if has_older::<T>() {
        walk_chain::<T::Previous, W>(visitor);
    }
    visitor.visit::<T>();
}

/// The versions of `T`'s chain, oldest first.
pub(crate) fn chain_versions<T: Persisted>() -> Vec<u32> {
    struct Versions(Vec<u32>);

    impl VisitVersion for Versions {
        fn visit<V: Persisted>(&mut self) {
            self.0.push(V::VERSION);
        }
    }

    let mut versions = Versions(Vec::new());
    walk_chain::<T, _>(&mut versions);
    versions.0
}

/// Whether `version` is one of the chain's versions: [`chain_versions`] without the allocation,
/// for the load path.
pub(crate) fn in_chain<T: Persisted>(version: u32) -> bool {
    if T::VERSION == 0 || version > T::VERSION {
        false
    } else if version == T::VERSION {
        true
    } else {
        has_older::<T>() && in_chain::<T::Previous>(version)
    }
}

/// The oldest version, when it accepts files without an envelope.
pub(crate) fn unversioned_root<T: Persisted>() -> Option<u32> {
    if T::VERSION == 0 {
        None
    } else if has_older::<T>() {
        unversioned_root::<T::Previous>()
    } else {
        T::ACCEPTS_UNVERSIONED.then_some(T::VERSION)
    }
}

/// A `migrate` step that refused the stored data.
#[derive(Debug)]
pub(crate) struct MigrationFailure {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) source: crate::BoxError,
}

/// Deserializes the struct of `version` and migrates it up to `T`. `version` must be in `T`'s
/// chain (checked by the caller with [`in_chain`]); the guard below only stops a hand-written,
/// malformed chain.
pub(crate) fn deserialize_at<'de, T: Persisted, D: Deserializer<'de>>(
    version: u32,
    deserializer: D,
) -> Result<Result<T, MigrationFailure>, D::Error> {
    if version == T::VERSION {
        return T::deserialize(deserializer).map(Ok);
    }
    if version > T::VERSION || !has_older::<T>() {
        return Err(de::Error::custom(format_args!(
            "version {version} is not in the migration chain"
        )));
    }
    Ok(
        deserialize_at::<T::Previous, D>(version, deserializer)?.and_then(|previous| {
            T::migrate(previous).map_err(|source| MigrationFailure {
                from: T::Previous::VERSION,
                to: T::VERSION,
                source,
            })
        }),
    )
}

/// [`deserialize_at`] for the value a load returns: then checked with `T::validate`, whose
/// refusal is a failure of the whole walk, from `version` to `T`'s.
pub(crate) fn deserialize_checked<'de, T: Persisted, D: Deserializer<'de>>(
    version: u32,
    deserializer: D,
) -> Result<Result<T, MigrationFailure>, D::Error> {
    Ok(deserialize_at::<T, D>(version, deserializer)?.and_then(|value| validated(version, value)))
}

/// `value`, read from a file of `version`, if `T::validate` accepts it.
pub(crate) fn validated<T: Persisted>(version: u32, value: T) -> Result<T, MigrationFailure> {
    match value.validate() {
        Ok(()) => Ok(value),
        Err(reason) => Err(MigrationFailure {
            from: version,
            to: T::VERSION,
            source: Box::new(crate::ValidationError { reason }),
        }),
    }
}

/// [`deserialize_checked`] as a seed, for the `data` member of an envelope.
pub(crate) struct DataSeed<T> {
    pub(crate) version: u32,
    pub(crate) marker: PhantomData<T>,
}

impl<'de, T: Persisted> DeserializeSeed<'de> for DataSeed<T> {
    type Value = Result<T, MigrationFailure>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserialize_checked::<T, D>(self.version, deserializer)
    }
}
