//! The `simd` feature: the decode pass through sonic-rs, a SIMD JSON parser, with serde_json's
//! results. Same envelope visitor, same typed chain; only the bytes-to-serde step differs.
//!
//! sonic-rs is taken only where it agrees with serde_json, and serde_json decides everything
//! else:
//!
//! - Any error from sonic-rs (malformed data, a type mismatch, a trailing character) is thrown
//!   away and the document parsed again by serde_json, whose error (message, line, column,
//!   field path) is the one reported: errors are identical by construction, and a document
//!   sonic-rs refuses but serde_json accepts still loads.
//! - [`screen`] sends to serde_json, without showing them to sonic-rs, the documents where
//!   sonic-rs 0.5 is known to differ (each found by comparing both parsers):
//!   - nested deeper than [`SIMD_MAX_DEPTH`]: sonic-rs skips an ignored value (an unknown
//!     field, `IgnoredAny`) by recursion without a depth limit (cloudwego/sonic-rs#232, #239),
//!     so a hostile file of nested brackets would overflow the stack and abort the process;
//!   - holding a negative zero (`-0`, `-0.0`, `-0e3`), which sonic-rs parses as positive zero:
//!     that would break the float round trip (persist writes -0.0 as `-0.0`);
//!   - with a `\u` escape not followed by four hex digits, which serde_json refuses even in a
//!     value it skips and sonic-rs skips unread.
//!
//! The screen is one pass over 64-byte blocks, as simdjson's first stage works (bit masks of
//! quotes, backslashes and brackets; escapes from the backslash runs; strings from a prefix XOR
//! of the unescaped quotes), and costs a few percent of the parse (BENCHMARKS.md). The fuzz
//! target `parsers` feeds arbitrary documents to both parsers and treats any difference as a
//! finding (RELIABILITY.md).

use super::{Outcome, Pass, run_pass};
use crate::Persisted;

/// The deepest nesting sonic-rs is shown; a document nested deeper is left to serde_json, which
/// accepts values up to 127 levels (its recursion limit is 128, the envelope included) and
/// refuses or skips the rest exactly as without the feature. Lower than serde_json's limit
/// because sonic-rs needs more stack per level: measured in release builds, about 1 KiB per
/// level for both parsers, but in debug builds 32 KiB for sonic-rs against 2 KiB for serde_json,
/// so 127 levels would overflow the 2 MiB stack of a spawned thread. 64 levels take 64 KiB in
/// release builds; 16 take 512 KiB in debug builds. State files nest far less than either.
const SIMD_MAX_DEPTH: usize = if cfg!(debug_assertions) { 16 } else { 64 };

/// The outcome of the pass through sonic-rs, or `None` when serde_json must decide: the bytes
/// are a mapped file's, the screen refused the document or sonic-rs did not accept it.
///
/// A mapped file's bytes can change while they are parsed (another program rewrites or
/// truncates the file; a truncation turns the lost pages into zeros). sonic-rs reads some bytes
/// twice and trusts the second reading to match the first (a digit it has just checked, say), so
/// it panics or misreads on such input; serde_json reads each byte once and reports an error,
/// which the load then replaces with the truncation. Mapped files are 1 MiB and more.
pub(super) fn parse<T: Persisted>(bytes: &[u8], pass: Pass) -> Option<Outcome<T>> {
    if crate::mapped::holds(bytes) || !screen(bytes, SIMD_MAX_DEPTH) {
        return None;
    }
    let mut deserializer = sonic_rs::Deserializer::from_slice(bytes);
    let outcome = run_pass::<T, _>(&mut deserializer, pass).ok()?;
    deserializer.end().ok()?;
    Some(outcome)
}

/// Whether sonic-rs may be shown `bytes`: brackets outside strings nest at most `limit` deep, no
/// number is a negative zero, and every `\u` escape has four hex digits.
///
/// A string starts and ends at a `"` that no backslash escapes; a backslash escapes the byte
/// after it anywhere (outside a string that is already an error for a parser, which stops
/// there, so what the screen makes of the bytes after it never matters). A closing bracket at
/// depth 0 leaves the depth at 0.
pub(super) fn screen(bytes: &[u8], limit: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("popcnt")
        && std::is_x86_feature_detected!("bmi1")
    {
        // SAFETY: the CPU has AVX2, POPCNT and BMI1, checked just above.
        return unsafe { screen_avx2(bytes, limit) };
    }
    screen_with(bytes, limit, Masks::of)
}

/// [`screen`] compiled for AVX2 (so that the block loop inlines [`Masks::of_avx2`]), POPCNT and
/// BMI1 (bit counts in one instruction each; without them they are a dozen).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1")]
fn screen_avx2(bytes: &[u8], limit: usize) -> bool {
    // The closure inherits this function's AVX2, so it may call `of_avx2` safely.
    screen_with(bytes, limit, |block| Masks::of_avx2(block))
}

#[inline(always)]
fn screen_with(bytes: &[u8], limit: usize, masks_of: impl Fn(&[u8; 64]) -> Masks) -> bool {
    let mut state = Screen {
        bytes,
        limit,
        depth: 0,
        in_string_before: 0,
        escape_pending: 0,
    };
    let mut chunks = bytes.chunks_exact(64);
    let mut base = 0;
    for chunk in &mut chunks {
        let block = chunk.try_into().expect("chunks_exact(64) yields 64 bytes");
        if !state.passes(masks_of(block), base) {
            return false;
        }
        base += 64;
    }
    let rest = chunks.remainder();
    // Padded with spaces, which none of the masks select.
    let mut block = [b' '; 64];
    block[..rest.len()].copy_from_slice(rest);
    state.passes(masks_of(&block), base)
}

/// What [`screen`] carries from one block to the next.
struct Screen<'b> {
    bytes: &'b [u8],
    limit: usize,
    depth: usize,
    /// All ones when the previous block ended inside a string.
    in_string_before: u64,
    /// 1 when the previous block ended with a backslash that escapes this block's first byte.
    escape_pending: u64,
}

impl Screen<'_> {
    /// Whether the block at `base`, whose masks are `masks`, passes.
    #[inline(always)]
    fn passes(&mut self, masks: Masks, base: usize) -> bool {
        let escaped = escaped_bytes(masks.backslash, &mut self.escape_pending);
        let quotes = masks.quote & !escaped;
        let in_string = prefix_xor(quotes) ^ self.in_string_before;
        self.in_string_before = ((in_string as i64) >> 63) as u64;
        let outside = !in_string & !escaped;

        let mut escapes = masks.backslash & !escaped;
        while escapes != 0 {
            let at = base + escapes.trailing_zeros() as usize;
            if self.bytes.get(at + 1) == Some(&b'u') && !hex4(self.bytes.get(at + 2..at + 6)) {
                return false;
            }
            escapes &= escapes - 1;
        }

        // A `-` followed by `0` (in this block, or the last byte, whose next byte is in the
        // next block): the only numbers that can be a negative zero.
        let mut minus = masks.minus & ((masks.zero >> 1) | 1 << 63) & outside;
        while minus != 0 {
            let at = base + minus.trailing_zeros() as usize;
            if is_negative_zero(&self.bytes[at + 1..]) {
                return false;
            }
            minus &= minus - 1;
        }

        let (open, close) = (masks.open & outside, masks.close & outside);
        let (opens, closes) = (open.count_ones() as usize, close.count_ones() as usize);
        // A block that can neither pass `limit` nor close more than is open just adds up.
        if self.depth + opens <= self.limit && closes <= self.depth {
            self.depth = self.depth + opens - closes;
            return true;
        }
        let mut brackets = open | close;
        while brackets != 0 {
            let bit = brackets & brackets.wrapping_neg();
            if open & bit != 0 {
                self.depth += 1;
                if self.depth > self.limit {
                    return false;
                }
            } else {
                self.depth = self.depth.saturating_sub(1);
            }
            brackets ^= bit;
        }
        true
    }
}

/// Whether `digits` are four hex digits.
fn hex4(digits: Option<&[u8]>) -> bool {
    digits.is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
}

/// Whether the number after a `-` (`after`) is a zero: `0`, then optionally `.` and zeros, then
/// anything but a digit (an exponent, a delimiter, the end).
fn is_negative_zero(after: &[u8]) -> bool {
    let Some(mut tail) = after.strip_prefix(b"0") else {
        return false;
    };
    if let Some(fraction) = tail.strip_prefix(b".") {
        let zeros = fraction.iter().take_while(|&&byte| byte == b'0').count();
        tail = &fraction[zeros..];
    }
    // A digit here (`-0.5`, `-05`) makes the number not a zero (or not JSON).
    !tail.first().is_some_and(u8::is_ascii_digit)
}

/// Bit `i` set for every byte `i` of the block that a backslash escapes: the byte after each
/// odd-numbered backslash of a run (simdjson's escape scanner). `escape_pending` carries a
/// run that ends the block into the next one.
fn escaped_bytes(backslash: u64, escape_pending: &mut u64) -> u64 {
    const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    if backslash == 0 {
        return std::mem::take(escape_pending);
    }
    // Backslashes that escape, if each run started on an even bit: a run's odd-numbered
    // backslashes are escapes, the subtraction finds where each run of escapes ends.
    let potential_escape = backslash & !*escape_pending;
    let maybe_escaped = potential_escape << 1;
    let even_series_codes_and_odd_bits = (maybe_escaped | ODD_BITS).wrapping_sub(potential_escape);
    let escape_and_terminal_code = even_series_codes_and_odd_bits ^ ODD_BITS;
    let escaped = escape_and_terminal_code ^ (backslash | *escape_pending);
    let escape = escape_and_terminal_code & backslash;
    *escape_pending = escape >> 63;
    escaped
}

/// Bit `i` of the result is the XOR of bits `0..=i` of `bits`: set from an opening quote up to
/// (not including) its closing quote.
fn prefix_xor(mut bits: u64) -> u64 {
    bits ^= bits << 1;
    bits ^= bits << 2;
    bits ^= bits << 4;
    bits ^= bits << 8;
    bits ^= bits << 16;
    bits ^= bits << 32;
    bits
}

/// Which bytes of a 64-byte block are quotes, backslashes, opening and closing brackets, minus
/// signs and zeros.
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
    minus: u64,
    zero: u64,
}

impl Masks {
    #[cfg(target_arch = "x86_64")]
    fn of(block: &[u8; 64]) -> Masks {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above (std caches the answer).
            unsafe { Masks::of_avx2(block) }
        } else {
            Masks::of_sse2(block)
        }
    }

    /// [`Masks::of`] 32 bytes at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    fn of_avx2(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::{
            __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
            _mm256_set1_epi8,
        };

        let quote = _mm256_set1_epi8(b'"' as i8);
        let backslash = _mm256_set1_epi8(b'\\' as i8);
        let case = _mm256_set1_epi8(0x20);
        let open = _mm256_set1_epi8(b'{' as i8);
        let close = _mm256_set1_epi8(b'}' as i8);
        let minus = _mm256_set1_epi8(b'-' as i8);
        let zero = _mm256_set1_epi8(b'0' as i8);
        let mut masks = Masks {
            quote: 0,
            backslash: 0,
            open: 0,
            close: 0,
            minus: 0,
            zero: 0,
        };
        for half in 0..2 {
            // SAFETY: both 32-byte loads are within the 64-byte block; unaligned loads are
            // allowed.
            let bytes =
                unsafe { _mm256_loadu_si256(block.as_ptr().add(half * 32).cast::<__m256i>()) };
            let folded = _mm256_or_si256(bytes, case);
            let shift = half * 32;
            let mask = |equal| u64::from(_mm256_movemask_epi8(equal) as u32) << shift;
            masks.quote |= mask(_mm256_cmpeq_epi8(bytes, quote));
            masks.backslash |= mask(_mm256_cmpeq_epi8(bytes, backslash));
            masks.open |= mask(_mm256_cmpeq_epi8(folded, open));
            masks.close |= mask(_mm256_cmpeq_epi8(folded, close));
            masks.minus |= mask(_mm256_cmpeq_epi8(bytes, minus));
            masks.zero |= mask(_mm256_cmpeq_epi8(bytes, zero));
        }
        masks
    }

    #[cfg(target_arch = "x86_64")]
    fn of_sse2(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };

        // SSE2 is part of x86_64, so these need no run-time detection. `[` and `{` differ only
        // in bit 0x20, as do `]` and `}`: one comparison after OR-ing it in finds both.
        // SAFETY: SSE2 is always available on x86_64; the four 16-byte loads are within the
        // 64-byte block and unaligned loads are allowed.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            let case = _mm_set1_epi8(0x20);
            let open = _mm_set1_epi8(b'{' as i8);
            let close = _mm_set1_epi8(b'}' as i8);
            let minus = _mm_set1_epi8(b'-' as i8);
            let zero = _mm_set1_epi8(b'0' as i8);
            let mut masks = Masks {
                quote: 0,
                backslash: 0,
                open: 0,
                close: 0,
                minus: 0,
                zero: 0,
            };
            for lane in 0..4 {
                let bytes = _mm_loadu_si128(block.as_ptr().add(lane * 16).cast::<__m128i>());
                let folded = _mm_or_si128(bytes, case);
                let shift = lane * 16;
                let mask = |equal| u64::from(_mm_movemask_epi8(equal) as u16) << shift;
                masks.quote |= mask(_mm_cmpeq_epi8(bytes, quote));
                masks.backslash |= mask(_mm_cmpeq_epi8(bytes, backslash));
                masks.open |= mask(_mm_cmpeq_epi8(folded, open));
                masks.close |= mask(_mm_cmpeq_epi8(folded, close));
                masks.minus |= mask(_mm_cmpeq_epi8(bytes, minus));
                masks.zero |= mask(_mm_cmpeq_epi8(bytes, zero));
            }
            masks
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn of(block: &[u8; 64]) -> Masks {
        Masks::of_scalar(block)
    }

    /// [`Masks::of`] a byte at a time: the definition the vector versions are tested against.
    #[cfg(any(test, not(target_arch = "x86_64")))]
    fn of_scalar(block: &[u8; 64]) -> Masks {
        let mut masks = Masks {
            quote: 0,
            backslash: 0,
            open: 0,
            close: 0,
            minus: 0,
            zero: 0,
        };
        for (bit, &byte) in block.iter().enumerate() {
            let one = 1u64 << bit;
            match byte {
                b'"' => masks.quote |= one,
                b'\\' => masks.backslash |= one,
                b'[' | b'{' => masks.open |= one,
                b']' | b'}' => masks.close |= one,
                b'-' => masks.minus |= one,
                b'0' => masks.zero |= one,
                _ => {}
            }
        }
        masks
    }
}

#[cfg(test)]
mod tests {
    use super::{Masks, screen};

    /// The nesting `screen` measures, byte by byte.
    fn reference_depth(bytes: &[u8]) -> usize {
        let (mut depth, mut deepest) = (0usize, 0usize);
        let (mut in_string, mut escaped) = (false, false);
        for &byte in bytes {
            if escaped {
                escaped = false;
                continue;
            }
            match byte {
                b'\\' => escaped = true,
                b'"' => in_string = !in_string,
                b'[' | b'{' if !in_string => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b']' | b'}' if !in_string => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        deepest
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn depth_agrees_with_the_byte_by_byte_definition() {
        // Random documents over the bytes that matter, of every length around the block size,
        // so that strings, escapes and backslash runs cross block boundaries; each against
        // limits around its depth, so that both the counting and the walking paths run.
        let alphabet = b"\"\\[]{}a ";
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..20_000 {
            let doc: Vec<u8> = (0..round % 300)
                .map(|_| {
                    // Brackets twice as likely as the rest, so that depths grow.
                    let pick = (xorshift(&mut state) % 12) as usize;
                    alphabet[if pick >= 8 { 2 + pick % 4 } else { pick }]
                })
                .collect();
            let depth = reference_depth(&doc);
            for limit in depth.saturating_sub(2)..depth + 2 {
                assert_eq!(
                    screen(&doc, limit),
                    depth <= limit,
                    "limit {limit}: {:?}",
                    String::from_utf8_lossy(&doc)
                );
            }
        }
    }

    #[test]
    fn depth_of_real_documents() {
        let depth_of = |doc: &[u8]| (0..).find(|&limit| screen(doc, limit)).unwrap();
        assert_eq!(depth_of(br#"{"version":1,"data":{"a":[1,[2]]}}"#), 4);
        assert_eq!(depth_of(br#"{"a":"[[[[{{{{\"[[["}"#), 1);
        assert_eq!(depth_of(br#"{"a":"\\","b":[[]]}"#), 3);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(!screen(deep.as_bytes(), 9_999));
        assert!(screen(deep.as_bytes(), 10_000));
        let hidden = format!("\"{}\"", "[".repeat(10_000));
        assert!(screen(hidden.as_bytes(), 0));
    }

    #[test]
    fn bad_unicode_escapes_are_refused() {
        for bad in [
            &br#""\uqqqq""#[..],
            br#""\u12""#,
            br#"\u"#,
            br#""\u12g4""#,
            br#"["\\\uzzzz"]"#,
        ] {
            assert!(!screen(bad, 64), "{}", String::from_utf8_lossy(bad));
        }
        for good in [
            &br#""\u00e9""#[..],
            br#""\uABCD\ud83d\ude00""#,
            b"\"u\"",
            b"u1234",
            br#""C:\\users""#,
        ] {
            assert!(screen(good, 64), "{}", String::from_utf8_lossy(good));
        }
    }

    #[test]
    fn negative_zeros_are_refused() {
        for found in [
            &b"-0"[..],
            b"[-0]",
            b"-0.0",
            b"-0.000,",
            b"{\"x\":-0e5}",
            b"-0.0E-3",
        ] {
            assert!(!screen(found, 64), "{}", String::from_utf8_lossy(found));
        }
        for clean in [
            &b"0"[..],
            b"-0.5",
            b"-0.05",
            b"-1",
            b"-10",
            b"[-0.0001e5]",
            b"\"2024-01-02\"",
            b"\"1-0\"",
            b"0.0",
        ] {
            assert!(screen(clean, 64), "{}", String::from_utf8_lossy(clean));
        }
        // A minus sign as the last byte of a block, its zero in the next.
        let mut split = vec![b' '; 63];
        split.extend_from_slice(b"-0.0");
        assert!(!screen(&split, 64));
    }

    #[test]
    fn the_vector_masks_are_the_byte_by_byte_masks() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..10_000 {
            let mut block = [0u8; 64];
            for byte in &mut block {
                let random = xorshift(&mut state);
                // Half of the bytes from the ones that matter, the rest anything.
                *byte = if random.is_multiple_of(2) {
                    b"\"\\[]{}-0a"[(random >> 8) as usize % 9]
                } else {
                    (random >> 16) as u8
                };
            }
            let expected = Masks::of_scalar(&block);
            #[cfg(target_arch = "x86_64")]
            {
                assert_eq!(Masks::of_sse2(&block), expected);
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    assert_eq!(unsafe { Masks::of_avx2(&block) }, expected);
                }
            }
            assert_eq!(Masks::of(&block), expected);
        }
    }
}
