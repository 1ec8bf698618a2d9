//! Large files: loads of at least 1 MiB go through the mapped path (Linux), smaller ones are
//! read into the heap. Each input becomes a file of more than 1 MiB in one of three shapes (the
//! input after a valid envelope holding a large string, the input followed by white space, the
//! input repeated), and loading it from disk must give exactly what decoding the same bytes in
//! memory gives: the same value, or an error of the same kind. Never a panic, never a crash.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run mapped` (see RELIABILITY.md).

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use persist::__private::decode;
use persist::{Options, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 1, accept_unversioned)]
struct BlobV1 {
    name: String,
    #[serde(default)]
    body: String,
}

#[derive(Debug, Serialize, Deserialize, Persisted)]
#[persist(version = 2, migrate_from = BlobV1)]
struct Blob {
    name: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    tags: BTreeMap<String, Vec<f64>>,
}

impl From<BlobV1> for Blob {
    fn from(old: BlobV1) -> Blob {
        Blob {
            name: old.name,
            body: old.body,
            tags: BTreeMap::new(),
        }
    }
}

/// Just over the size from which loads map the file.
const LARGE: usize = (1 << 20) + 17;

/// A directory for the target's one file, kept for the whole run.
fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn large(shape: u8, input: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(LARGE + input.len() + 64);
    match shape % 3 {
        // A valid envelope whose large string is followed by the input where the rest of the
        // data object would be.
        0 => {
            bytes.extend_from_slice(br#"{"version":2,"data":{"name":"n","body":""#);
            bytes.resize(LARGE, b'x');
            bytes.extend_from_slice(b"\",");
            bytes.extend_from_slice(input);
        }
        // The input, then white space up to the size.
        1 => {
            bytes.extend_from_slice(input);
            bytes.resize(bytes.len().max(LARGE), b' ');
        }
        // The input repeated.
        _ => {
            let unit = if input.is_empty() { b" ".as_slice() } else { input };
            while bytes.len() < LARGE {
                bytes.extend_from_slice(unit);
            }
        }
    }
    bytes
}

fuzz_target!(|input: &[u8]| {
    let Some((&shape, input)) = input.split_first() else {
        return;
    };
    let bytes = large(shape, input);
    let path = dir().join("large.json");
    std::fs::write(&path, &bytes).unwrap();
    let from_disk = Options::new().max_size(64 << 20).load::<Blob>(&path);
    let in_memory = decode::<Blob>(&bytes);
    match (&from_disk, &in_memory) {
        (Ok(disk), Ok(memory)) => {
            assert_eq!(disk.name, memory.name);
            assert_eq!(disk.body, memory.body);
            assert_eq!(
                serde_json::to_string(&disk.tags).unwrap(),
                serde_json::to_string(&memory.tags).unwrap()
            );
        }
        (Err(disk), Err(memory)) => assert_eq!(
            disk.kind(),
            memory.kind(),
            "{disk} / {memory}"
        ),
        _ => panic!("the mapped load and the decode disagree: {from_disk:?} / {in_memory:?}"),
    }
});
