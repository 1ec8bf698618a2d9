//! The three-way merge of a [`SavePolicy::Coalesce`](super::SavePolicy::Coalesce) handle whose
//! file another program changed while changes of the handle waited to be saved: the other
//! program's value with this handle's changes (since the last value both knew) re-applied on
//! top, field by field.
//!
//! The values are compared as serde sees them (objects by field, anything else as a whole):
//! a field only one side changed takes that side's value; a field both changed to different
//! values is an overlap, where this handle's value wins. The result must deserialize as `T`
//! again, or there is no merge.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What [`three_way`] made of the two changes.
pub(super) enum Merge<T> {
    /// Every change of both sides is in the value.
    Clean(T),
    /// Both sides changed some field to different values; this handle's values are in.
    Overlap(T),
    /// The values could not be compared or the result is not a `T`.
    Failed,
}

/// Merges `ours` (this handle's value) and `theirs` (the file's), both changed from `base`.
pub(super) fn three_way<T: Serialize + DeserializeOwned>(
    base: &T,
    ours: &T,
    theirs: &T,
) -> Merge<T> {
    let (Ok(base), Ok(ours), Ok(theirs)) = (
        serde_json::to_value(base),
        serde_json::to_value(ours),
        serde_json::to_value(theirs),
    ) else {
        return Merge::Failed;
    };
    let mut overlap = false;
    let Some(merged) = merge(Some(&base), Some(&ours), Some(&theirs), &mut overlap) else {
        return Merge::Failed;
    };
    match serde_json::from_value(merged) {
        Ok(value) if overlap => Merge::Overlap(value),
        Ok(value) => Merge::Clean(value),
        Err(_) => Merge::Failed,
    }
}

/// One node of the merge; `None` is a field that is not there.
fn merge(
    base: Option<&Value>,
    ours: Option<&Value>,
    theirs: Option<&Value>,
    overlap: &mut bool,
) -> Option<Value> {
    if ours == base {
        return theirs.cloned();
    }
    if theirs == base || theirs == ours {
        return ours.cloned();
    }
    if let (Some(Value::Object(ours)), Some(Value::Object(theirs))) = (ours, theirs) {
        let base = match base {
            Some(Value::Object(base)) => Some(base),
            _ => None,
        };
        let mut merged = Map::new();
        let keys = theirs
            .keys()
            .chain(ours.keys().filter(|key| !theirs.contains_key(*key)));
        for key in keys {
            let base = base.and_then(|base| base.get(key));
            if let Some(value) = merge(base, ours.get(key), theirs.get(key), overlap) {
                merged.insert(key.clone(), value);
            }
        }
        return Some(Value::Object(merged));
    }
    *overlap = true;
    ours.cloned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(base: Value, ours: Value, theirs: Value) -> (Value, bool) {
        let mut overlap = false;
        let merged = merge(Some(&base), Some(&ours), Some(&theirs), &mut overlap).unwrap();
        (merged, overlap)
    }

    #[test]
    fn changes_of_different_fields_both_stay() {
        let (merged, overlap) = run(
            json!({"theme": "light", "size": 14, "window": {"w": 800, "h": 600}}),
            json!({"theme": "light", "size": 15, "window": {"w": 800, "h": 700}}),
            json!({"theme": "dark", "size": 14, "window": {"w": 1024, "h": 600}}),
        );
        assert_eq!(
            merged,
            json!({"theme": "dark", "size": 15, "window": {"w": 1024, "h": 700}})
        );
        assert!(!overlap);
    }

    #[test]
    fn a_field_both_changed_keeps_ours_and_says_so() {
        let (merged, overlap) = run(json!({"n": 1}), json!({"n": 2}), json!({"n": 3}));
        assert_eq!(merged, json!({"n": 2}));
        assert!(overlap);
        // The same change on both sides is no overlap.
        let (merged, overlap) = run(json!({"n": 1}), json!({"n": 2}), json!({"n": 2}));
        assert_eq!((merged, overlap), (json!({"n": 2}), false));
    }

    #[test]
    fn added_and_removed_fields() {
        let (merged, overlap) = run(
            json!({"a": 1, "b": 2}),
            json!({"a": 1, "b": 2, "c": 3}),
            json!({"a": 1}),
        );
        assert_eq!(merged, json!({"a": 1, "c": 3}));
        assert!(!overlap);
    }

    #[test]
    fn arrays_are_values() {
        let (merged, overlap) = run(
            json!({"l": [1]}),
            json!({"l": [1, 2]}),
            json!({"l": [0, 1]}),
        );
        assert_eq!(merged, json!({"l": [1, 2]}));
        assert!(overlap);
    }

    #[test]
    fn the_result_must_be_a_t() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Pair {
            a: u32,
            b: u32,
        }
        let merged = three_way(
            &Pair { a: 1, b: 1 },
            &Pair { a: 2, b: 1 },
            &Pair { a: 1, b: 3 },
        );
        assert!(matches!(merged, Merge::Clean(Pair { a: 2, b: 3 })));
    }
}
