//! The framed decoder (header, zstd, XChaCha20-Poly1305, then the envelope) on arbitrary bytes:
//! it must return a value or a typed error, never panic, never allocate past the size cap.
//!
//! Inputs that do not start like a frame get a well-formed header put in front of them (layers
//! from the first byte, payload length matching), so that the fuzzer spends its time inside the
//! layers rather than rediscovering the magic.
//!
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run frame` (see RELIABILITY.md).

#![no_main]

use libfuzzer_sys::fuzz_target;
use persist::{Key, Persisted};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize, Persisted)]
#[persist(version = 2)]
struct State {
    name: String,
    values: Vec<u32>,
}

const MAGIC: [u8; 8] = [0x89, b'p', b's', b't', 0x0D, 0x0A, 0x1A, 0x0A];

fuzz_target!(|input: &[u8]| {
    let key = Key::from_bytes([42; 32]);
    let bytes = if input.first() == Some(&0x89) {
        input.to_vec()
    } else {
        let (flags, rest) = input
            .split_first()
            .map_or((0, input), |(f, r)| (f & 0b11, r));
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&[1, flags, 0, 0]);
        framed.extend_from_slice(&2u32.to_le_bytes());
        let block = if flags & 0b10 != 0 {
            56.min(rest.len())
        } else {
            0
        };
        framed.extend_from_slice(&((rest.len() - block) as u64).to_le_bytes());
        framed.extend_from_slice(rest);
        framed
    };
    let _ = persist::__private::decode_framed::<State>(&bytes, Some(&key), 1 << 20);
    let _ = persist::__private::decode_framed::<State>(&bytes, None, 1 << 20);
});
