//! Upcasting on replay: a record of an old version becomes any number of current values when a
//! step of the chain is an upcast (`#[persist(upcast_from = Older)]`). [`Many`] runs the chain
//! on lists, so the codec's one decode path (versions, checksums, migrations, errors naming
//! the field) reads them unchanged.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Error as _, Serialize, Serializer};

use crate::{BoxError, Persisted};

/// The values one stored value of `T`'s chain became.
pub(super) struct Many<T>(pub(super) Vec<T>);

impl<T: Serialize> Serialize for Many<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(serializer),
            _ => Err(S::Error::custom("only one value is saved at a time")),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Many<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(|value| Many(vec![value]))
    }
}

impl<T: Persisted> Persisted for Many<T> {
    const VERSION: u32 = T::VERSION;
    const ACCEPTS_UNVERSIONED: bool = T::ACCEPTS_UNVERSIONED;
    const CHECKSUM: bool = T::CHECKSUM;
    const PRETTY: bool = T::PRETTY;
    const UPCASTS: bool = T::UPCASTS;
    type Previous = Many<T::Previous>;

    fn migrate(previous: Many<T::Previous>) -> Result<Self, BoxError> {
        let mut values = Vec::with_capacity(previous.0.len());
        for value in previous.0 {
            values.extend(T::upcast(value)?);
        }
        Ok(Many(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct V1 {
        n: u32,
    }

    impl Persisted for V1 {
        const VERSION: u32 = 1;
        type Previous = crate::Origin;
        fn migrate(previous: crate::Origin) -> Result<Self, BoxError> {
            match previous {}
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct V2 {
        n: u32,
    }

    impl Persisted for V2 {
        const VERSION: u32 = 2;
        const UPCASTS: bool = true;
        type Previous = V1;
        fn migrate(previous: V1) -> Result<Self, BoxError> {
            crate::__private::single_upcast(Self::upcast(previous))
        }
        fn upcast(previous: V1) -> Result<Vec<Self>, BoxError> {
            Ok((0..previous.n).map(|n| V2 { n }).collect())
        }
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct V3 {
        n: u32,
    }

    impl Persisted for V3 {
        const VERSION: u32 = 3;
        type Previous = V2;
        fn migrate(previous: V2) -> Result<Self, BoxError> {
            Ok(V3 { n: previous.n * 10 })
        }
    }

    #[test]
    fn an_old_value_becomes_any_number_of_current_ones_through_later_steps() {
        assert!(codec::chain_upcasts::<V3>());
        assert!(!codec::chain_upcasts::<V1>());
        let decode = |bytes: &[u8]| codec::decode::<Many<V3>>(bytes).map(|many| many.0);
        assert_eq!(
            decode(br#"{"version":1,"data":{"n":3}}"#).unwrap(),
            [V3 { n: 0 }, V3 { n: 10 }, V3 { n: 20 }]
        );
        assert_eq!(decode(br#"{"version":1,"data":{"n":0}}"#).unwrap(), []);
        assert_eq!(
            decode(br#"{"version":2,"data":{"n":4}}"#).unwrap(),
            [V3 { n: 40 }]
        );
        // A single-value load refuses what does not become exactly one value.
        assert!(codec::decode::<V3>(br#"{"version":1,"data":{"n":2}}"#).is_err());
        assert_eq!(
            codec::decode::<V3>(br#"{"version":1,"data":{"n":1}}"#).unwrap(),
            V3 { n: 0 }
        );
    }
}
