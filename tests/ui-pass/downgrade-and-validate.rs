//! `downgrade` and `validate` on a concrete and on a generic type, with `TryFrom` steps and an
//! application's error type.

use persist::Persisted;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 1)]
struct ListV1<T> {
    items: Vec<T>,
}

#[derive(Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = ListV1<T>, downgrade, validate = not_empty)]
struct List<T> {
    items: Vec<T>,
    title: String,
}

impl<T> From<ListV1<T>> for List<T> {
    fn from(old: ListV1<T>) -> Self {
        List {
            items: old.items,
            title: String::new(),
        }
    }
}

impl<T> TryFrom<List<T>> for ListV1<T> {
    type Error = std::io::Error;

    fn try_from(new: List<T>) -> Result<Self, Self::Error> {
        Ok(ListV1 { items: new.items })
    }
}

fn not_empty<T>(list: &List<T>) -> Result<(), &'static str> {
    match list.items.is_empty() {
        true => Err("the list is empty"),
        false => Ok(()),
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("list.json");
    let list = List {
        items: vec![1u32],
        title: "t".into(),
    };
    persist::Options::new()
        .save_as_version(1)
        .save(&list, &path)
        .unwrap();
    assert_eq!(List::<u32>::load(&path).unwrap().items, [1]);
}
