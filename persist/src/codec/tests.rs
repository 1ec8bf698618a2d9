use std::fmt;

use serde::{Deserialize, Serialize};

use super::chain::in_chain;
use super::{
    DecodeError, Parser, Pass, Style, chain_versions, decode, decode_compact, encode, finish,
    leading_version, parse, redact, stored_version, verify_checksum,
};
use crate::{BoxError, Format, Origin, Persisted};

// Hand-written impls: the core is tested without the derive.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct V1 {
    name: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct V3 {
    name: String,
    size: u8,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct V7 {
    label: String,
    size: u8,
    tags: Vec<String>,
}

#[derive(Debug)]
struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

impl Persisted for V1 {
    const VERSION: u32 = 1;
    const ACCEPTS_UNVERSIONED: bool = true;
    type Previous = Origin;
    fn migrate(previous: Origin) -> Result<Self, BoxError> {
        match previous {}
    }
}

impl Persisted for V3 {
    const VERSION: u32 = 3;
    type Previous = V1;
    fn migrate(previous: V1) -> Result<Self, BoxError> {
        if previous.name == "refuse me" {
            return Err(Box::new(Refused));
        }
        Ok(V3 {
            name: previous.name,
            size: 1,
        })
    }
}

impl Persisted for V7 {
    const VERSION: u32 = 7;
    type Previous = V3;
    fn migrate(previous: V3) -> Result<Self, BoxError> {
        Ok(V7 {
            label: previous.name,
            size: previous.size * 2,
            tags: vec!["migrated".to_owned()],
        })
    }
}

fn encoded<T: Persisted>(value: &T) -> String {
    let mut bytes = Vec::new();
    encode(value, &mut bytes, Style::default()).unwrap();
    String::from_utf8(bytes).unwrap()
}

fn corrupt_reason(
    result: Result<impl fmt::Debug, DecodeError>,
) -> (usize, usize, Option<String>, String) {
    match result {
        Err(DecodeError::Corrupt {
            line,
            column,
            field,
            reason,
        }) => (line, column, field, reason),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn encodes_version_first() {
    let value = V3 {
        name: "a".into(),
        size: 4,
    };
    assert_eq!(
        encoded(&value),
        r#"{"version":3,"data":{"name":"a","size":4}}"#
    );
}

fn checksummed<T: Persisted>(value: &T) -> String {
    let mut bytes = Vec::new();
    encode(
        value,
        &mut bytes,
        Style {
            checksum: true,
            pretty: false,
            format: Format::Json,
        },
    )
    .unwrap();
    String::from_utf8(bytes).unwrap()
}

fn sample() -> V7 {
    V7 {
        label: "a label long enough to damage".into(),
        size: 9,
        tags: vec!["t".into()],
    }
}

#[test]
fn a_checksum_is_the_last_member_over_the_exact_data_bytes() {
    let file = checksummed(&sample());
    let data = r#"{"label":"a label long enough to damage","size":9,"tags":["t"]}"#;
    assert_eq!(
        file,
        format!(
            r#"{{"version":7,"data":{data},"crc32c":"{:08x}"}}"#,
            crc32c::crc32c(data.as_bytes())
        )
    );
    assert_eq!(decode::<V7>(file.as_bytes()).unwrap(), sample());
    // A trailing newline (an editor's) is not part of the data.
    assert_eq!(
        decode::<V7>(format!("{file}\n").as_bytes()).unwrap(),
        sample()
    );
}

#[test]
fn a_damaged_string_that_is_still_valid_json_fails_the_checksum() {
    let file = checksummed(&sample()).replace("long enough", "long enougH");
    let (_, _, _, reason) = corrupt_reason(decode::<V7>(file.as_bytes()));
    assert!(
        reason.starts_with("checksum mismatch: the data was damaged after it was written"),
        "{reason}"
    );
    // The same file without its checksum would have loaded the damaged value.
    let plain = encoded(&sample()).replace("long enough", "long enougH");
    assert_eq!(
        decode::<V7>(plain.as_bytes()).unwrap().label,
        "a label long enougH to damage"
    );
}

#[test]
fn a_reformatted_file_is_checked_by_parsing_and_fails_because_its_bytes_changed() {
    let file = checksummed(&sample()).replace(",\"size\"", ", \"size\"");
    let (_, _, _, reason) = corrupt_reason(decode::<V7>(file.as_bytes()));
    assert!(reason.starts_with("checksum mismatch"), "{reason}");
    // A member after `data` (a later format's, say) is not taken for part of it.
    let data = r#"{"label":"x","size":1,"tags":[]}"#;
    let crc = crc32c::crc32c(data.as_bytes());
    let later = format!(r#"{{"version":7,"data":{data},"note":1,"crc32c":"{crc:08x}"}}"#);
    assert_eq!(decode::<V7>(later.as_bytes()).unwrap().label, "x");
    // Envelope members reordered by hand, data untouched: still verified, and it passes.
    let data = r#"{"label":"x","size":1,"tags":[]}"#;
    let crc = crc32c::crc32c(data.as_bytes());
    let reordered = format!(r#"{{ "data": {data}, "version": 7, "crc32c": "{crc:08x}" }}"#);
    assert_eq!(decode::<V7>(reordered.as_bytes()).unwrap().label, "x");
}

#[test]
fn a_checksum_that_is_not_last_or_not_canonical_is_refused_not_skipped() {
    let data = r#"{"label":"x","size":1,"tags":[]}"#;
    let crc = crc32c::crc32c(data.as_bytes());
    for file in [
        format!(r#"{{"version":7,"crc32c":"{crc:08x}","data":{data}}}"#),
        format!(r#"{{"version":7,"data":{data},"crc32c":"{crc:08X}"}}"#),
        format!(r#"{{"version":7,"data":{data},"crc32c":{crc}}}"#),
    ] {
        let (_, _, _, reason) = corrupt_reason(decode::<V7>(file.as_bytes()));
        assert!(
            reason.contains("must be the last member"),
            "{file}: {reason}"
        );
    }
}

#[test]
fn an_older_version_with_a_checksum_migrates() {
    let old = checksummed(&V1 { name: "old".into() });
    assert_eq!(decode::<V7>(old.as_bytes()).unwrap().label, "old");
    let damaged = old.replace("old", "olt");
    assert!(decode::<V7>(damaged.as_bytes()).is_err());
}

#[test]
fn round_trips_current_version() {
    let value = V7 {
        label: "x".into(),
        size: 9,
        tags: vec!["t".into()],
    };
    assert_eq!(decode::<V7>(encoded(&value).as_bytes()).unwrap(), value);
}

#[test]
fn migrates_through_non_consecutive_versions() {
    let old = encoded(&V1 { name: "old".into() });
    let expected = V7 {
        label: "old".into(),
        size: 2,
        tags: vec!["migrated".into()],
    };
    assert_eq!(decode::<V7>(old.as_bytes()).unwrap(), expected);
    let middle = encoded(&V3 {
        name: "mid".into(),
        size: 5,
    });
    assert_eq!(decode::<V7>(middle.as_bytes()).unwrap().size, 10);
}

#[test]
fn lists_the_chain() {
    for version in 0..9 {
        assert_eq!(
            in_chain::<V7>(version),
            chain_versions::<V7>().contains(&version),
            "{version}"
        );
    }
    assert_eq!(chain_versions::<V7>(), [1, 3, 7]);
    assert_eq!(chain_versions::<V1>(), [1]);
    assert!(chain_versions::<Origin>().is_empty());
}

#[test]
fn reads_data_before_version_and_ignores_extra_fields() {
    let file = br#"{"checksum":"abc","data":{"name":"n"},"extra":[1,{"a":null}],"version":1}"#;
    assert_eq!(decode::<V3>(file).unwrap().name, "n");
}

#[test]
fn strips_a_byte_order_mark() {
    let file = b"\xEF\xBB\xBF{\"version\":1,\"data\":{\"name\":\"bom\"}}";
    assert_eq!(decode::<V1>(file).unwrap().name, "bom");
}

#[test]
fn refuses_a_future_version_without_reading_its_data() {
    let file = br#"{"version":8,"data":{"entirely":"different"}}"#;
    assert!(matches!(
        decode::<V7>(file),
        Err(DecodeError::FutureVersion { found: 8 })
    ));
    let huge = br#"{"version":18446744073709551615,"data":1}"#;
    assert!(matches!(
        decode::<V7>(huge),
        Err(DecodeError::FutureVersion { found: u64::MAX })
    ));
    // Found before `data` is even present.
    assert!(matches!(
        decode::<V7>(br#"{"version":9}"#),
        Err(DecodeError::FutureVersion { found: 9 })
    ));
}

#[test]
fn refuses_versions_outside_the_chain() {
    for version in [0, 2, 5] {
        let file = format!(r#"{{"version":{version},"data":{{"name":"n"}}}}"#);
        match decode::<V7>(file.as_bytes()) {
            Err(DecodeError::UnknownVersion { found }) => assert_eq!(found, version),
            other => panic!("version {version}: {other:?}"),
        }
    }
}

#[test]
fn refuses_malformed_versions() {
    for (file, expected) in [
        (r#"{"version":-1,"data":{}}"#, "negative"),
        (
            r#"{"version":"1","data":{}}"#,
            "expected `version` to be a positive integer",
        ),
        (
            r#"{"version":1.5,"data":{}}"#,
            "expected `version` to be a positive integer",
        ),
        (
            r#"{"version":null,"data":{}}"#,
            "expected `version` to be a positive integer",
        ),
        (
            r#"{"version":1,"version":1,"data":{}}"#,
            "duplicate field `version`",
        ),
        (r#"{"version":1}"#, "missing field `data`"),
    ] {
        let (_, _, _, reason) = corrupt_reason(decode::<V3>(file.as_bytes()));
        assert!(reason.contains(expected), "{file}: {reason}");
    }
}

#[test]
fn reports_a_migration_failure_with_its_step() {
    let file = encoded(&V1 {
        name: "refuse me".into(),
    });
    match decode::<V7>(file.as_bytes()) {
        Err(DecodeError::Migration(failure)) => {
            assert_eq!((failure.from, failure.to), (1, 3));
            assert_eq!(failure.source.to_string(), "refused");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn names_the_field_and_position_of_bad_data() {
    let file = b"{\"version\":7,\n\"data\":{\"label\":\"x\",\"size\":300,\"tags\":[]}}";
    let (line, column, field, reason) = corrupt_reason(decode::<V7>(file));
    assert_eq!((line, field.as_deref()), (2, Some("data.size")));
    assert!(column > 0);
    assert_eq!(reason, "invalid value: an integer, expected u8");

    let file = br#"{"version":7,"data":{"label":"x","size":1,"tags":[1]}}"#;
    let (_, _, field, _) = corrupt_reason(decode::<V7>(file));
    assert_eq!(field.as_deref(), Some("data.tags[0]"));
}

#[test]
fn does_not_repeat_values_from_the_file() {
    let file = br#"{"version":7,"data":{"label":"x","size":"hunter2","tags":[]}}"#;
    let (_, _, _, reason) = corrupt_reason(decode::<V7>(file));
    assert!(!reason.contains("hunter2"), "{reason}");
    assert_eq!(reason, "invalid type: a string, expected u8");
}

#[test]
fn reports_broken_json() {
    for file in [
        &b""[..],
        b"{",
        b"{\"version\":1,\"data\":{\"name\":\"n\"}} trailing",
        b"\0\0\0\0",
        b"{\"version\":1,\"data\":{\"name\":\"\xFF\"}}",
    ] {
        corrupt_reason(decode::<V1>(file));
    }
}

#[test]
fn reads_plain_json_as_the_oldest_version_when_allowed() {
    let plain = br#"{"name":"legacy"}"#;
    assert_eq!(decode::<V7>(plain).unwrap().label, "legacy");
    // A value that is not an object at all is not an envelope either.
    corrupt_reason(decode::<V7>(b"[1,2]"));
}

#[test]
fn refuses_plain_json_otherwise() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Strict {
        name: String,
    }
    impl Persisted for Strict {
        const VERSION: u32 = 1;
        type Previous = Origin;
        fn migrate(previous: Origin) -> Result<Self, BoxError> {
            match previous {}
        }
    }
    let (_, _, _, reason) = corrupt_reason(decode::<Strict>(br#"{"name":"legacy"}"#));
    assert!(reason.starts_with("not a persist file"), "{reason}");
}

#[test]
fn finds_the_stored_version_without_decoding_data() {
    assert_eq!(leading_version(br#"{"version":12,"data":{}}"#), Some(12));
    assert_eq!(leading_version(b"\xEF\xBB\xBF{\"version\":3}"), Some(3));
    for head in [
        &br#"{ "version": 3"#[..],
        br#"{"version":"3","#,
        br#"{"data":1}"#,
        b"",
    ] {
        assert_eq!(leading_version(head), None);
    }
    assert_eq!(
        leading_version(br#"{"version":99999999999999999999,"#),
        None
    );
    assert_eq!(
        stored_version(b"{\n \"data\": [1, {}],\n \"version\": 7\n}"),
        Some(7)
    );
    assert_eq!(stored_version(br#"{"name":"legacy"}"#), None);
    assert_eq!(stored_version(b"[1,2]"), None);
    assert_eq!(stored_version(b"{broken"), None);
}

#[test]
fn redacts_quoted_values() {
    assert_eq!(
        redact(r#"invalid type: string "a \"quoted\" secret", expected u32"#),
        "invalid type: a string, expected u32"
    );
    assert_eq!(
        redact("invalid value: integer `1234`, expected a boolean"),
        "invalid value: an integer, expected a boolean"
    );
    assert_eq!(
        redact("unknown variant `s3cr`et`, expected one of `A`, `B`"),
        "an unknown variant, expected one of `A`, `B`"
    );
    assert_eq!(
        redact("invalid type: floating point `1.5`, expected u8"),
        "invalid type: a floating-point number, expected u8"
    );
    assert_eq!(redact("missing field `name`"), "missing field `name`");
}

/// The compact fast path and the general decode agree on every shape: the fast path takes
/// only persist's own compact envelope at the current version, and anything else is read (or
/// refused) the general way.
#[test]
fn the_compact_path_agrees_with_the_general_decode() {
    let general = |bytes: &[u8]| {
        let pass = Pass::Envelope {
            known_version: None,
            checksum_checked: verify_checksum(bytes).unwrap_or(false),
        };
        parse::<V7>(bytes, pass, Parser::Json)
            .ok()
            .and_then(|outcome| finish(outcome, bytes, Parser::Json).ok())
    };
    let data = r#"{"label":"a","size":3,"tags":["x"]}"#;
    let cases = [
        format!(r#"{{"version":7,"data":{data}}}"#),
        format!(r#"{{"version":7,"data":{data} }}"#),
        format!(r#"{{"version":07,"data":{data}}}"#),
        format!(r#"{{"version":70,"data":{data}}}"#),
        format!(r#"{{"version":7,"data":{data},"extra":1}}"#),
        format!(r#"{{"version":7,"data":{data},"version":7}}"#),
        format!(r#"{{"version":7,"data":{data}}}}}"#),
        format!(r#"{{"version":7,"data":{data}}} "#),
        r#"{"version":7,"data":{"label":"a","size":3}}"#.to_owned(),
        r#"{"version":7,"data":{"label":"a","size":300,"tags":[]}}"#.to_owned(),
        format!(r#"{{"version":7,"data":{data},"crc32c":"00000000"}}"#),
        r#"{"version":7,"data":[1,2]},{"#.to_owned(),
        format!(r#"{{"version":7,"data":{data}}},"x":{{}}"#),
        format!(r#"{{ "version":7,"data":{data}}}"#),
        r#"{"version":3,"data":{"name":"b","size":1}}"#.to_owned(),
        format!(r#"{{"data":{data},"version":7}}"#),
        format!(r#"{{"version":7,"data":{data}"#),
        // Collection entries: the key member between the two.
        format!(r#"{{"version":7,"key":"alice","data":{data}}}"#),
        format!(r#"{{"version":7,"key":"é ~/","data":{data}}}"#),
        format!(r#"{{"version":7,"key":"a\"b","data":{data}}}"#),
        format!(r#"{{"version":7,"key":"a\u0041","data":{data}}}"#),
        format!("{{\"version\":7,\"key\":\"a\u{1}\",\"data\":{data}}}"),
        format!(r#"{{"version":7,"key":"alice,"data":{data}}}"#),
        format!(r#"{{"version":7,"key":1,"data":{data}}}"#),
        format!(r#"{{"version":7,"key":"alice","data":{data},"crc32c":"00000000"}}"#),
        format!(r#"{{"version":7,"key":"alice","key":"bob","data":{data}}}"#),
        format!(r#"{{"version":7,"data":{data},"key":"alice"}}"#),
        format!(r#"{{"version":7,"key":"alice","data":{data},"key":"bob"}}"#),
    ];
    for case in &cases {
        let fast = decode_compact::<V7>(case.as_bytes());
        if let Some(fast) = &fast {
            assert_eq!(Some(fast), general(case.as_bytes()).as_ref(), "{case}");
        }
        assert_eq!(
            decode::<V7>(case.as_bytes()).ok(),
            general(case.as_bytes()),
            "{case}"
        );
    }
    assert!(decode_compact::<V7>(cases[0].as_bytes()).is_some());
    assert!(decode_compact::<V7>(cases[2].as_bytes()).is_none());
    assert!(decode_compact::<V7>(cases[17].as_bytes()).is_some());
    assert!(decode_compact::<V7>(cases[18].as_bytes()).is_some());
    // Escapes and control characters are left to the general way.
    assert!(decode_compact::<V7>(cases[19].as_bytes()).is_none());
    assert!(decode_compact::<V7>(cases[20].as_bytes()).is_none());
    assert!(decode_compact::<V7>(cases[21].as_bytes()).is_none());
    // Invalid UTF-8 in the key, too.
    let mut invalid = br#"{"version":7,"key":"a"#.to_vec();
    invalid.push(0xff);
    invalid.extend_from_slice(format!(r#"","data":{data}}}"#).as_bytes());
    assert!(decode_compact::<V7>(&invalid).is_none());
    assert_eq!(decode::<V7>(&invalid).ok(), general(&invalid));
}

/// The compact path parses the value inside the envelope, so serde_json's nesting limit
/// counts the envelope as the general way does: the same depths pass and fail.
#[test]
fn the_compact_path_has_the_general_nesting_limit() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Json(serde_json::Value);

    impl Persisted for Json {
        const VERSION: u32 = 1;
        type Previous = Origin;
        fn migrate(previous: Origin) -> Result<Self, BoxError> {
            match previous {}
        }
    }

    let general = |bytes: &str| {
        let pass = Pass::Envelope {
            known_version: None,
            checksum_checked: false,
        };
        parse::<Json>(bytes.as_bytes(), pass, Parser::Json)
            .ok()
            .and_then(|outcome| finish(outcome, bytes.as_bytes(), Parser::Json).ok())
    };
    for depth in [120, 126, 127, 128, 129] {
        for padding in [0, 1_000] {
            // Long strings beside the brackets: the length alone does not send the value the
            // general way.
            let nested = format!(
                "{}\"{}\"{}",
                "[".repeat(depth),
                " ".repeat(padding),
                "]".repeat(depth)
            );
            for head in [r#""version":1"#, r#""version":1,"key":"k""#] {
                let bytes = format!(r#"{{{head},"data":{nested}}}"#);
                assert_eq!(
                    decode_compact::<Json>(bytes.as_bytes()).is_some(),
                    general(&bytes).is_some(),
                    "depth {depth}, {head}"
                );
            }
        }
    }
    // A long value with few brackets is read the compact way; brackets in strings count.
    let long = format!(
        r#"{{"version":1,"key":"k","data":["{}"]}}"#,
        "x".repeat(1_000)
    );
    assert!(decode_compact::<Json>(long.as_bytes()).is_some());
    let brackets = format!(r#"{{"version":1,"data":["{}"]}}"#, "[".repeat(300));
    assert!(decode_compact::<Json>(brackets.as_bytes()).is_none());
    assert!(general(&brackets).is_some());
}

/// A mapped file's bytes can change under the parser (a truncation turns its tail into zeros),
/// so sonic-rs, which trusts a byte it reads twice to read the same, is never shown them:
/// serde_json decodes a mapped file even with the `simd` feature.
#[cfg(all(feature = "simd", target_os = "linux"))]
#[test]
fn sonic_rs_is_never_shown_a_mapped_file() {
    use std::io::Write;

    let name = "n".repeat(crate::mapped::MAP_AT_LEAST as usize);
    let document = format!(r#"{{"version":1,"data":{{"name":"{name}"}}}}"#);
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(document.as_bytes()).unwrap();
    let mapped = crate::mapped::Contents::map(&file, document.len() as u64).expect("the file maps");
    let pass = Pass::Envelope {
        known_version: None,
        checksum_checked: false,
    };
    assert!(crate::mapped::holds(&mapped));
    assert!(crate::mapped::holds(&mapped[document.len() - 1..]));
    assert!(super::simd::parse::<V1>(&mapped, pass).is_none());
    // The same bytes in the heap go to sonic-rs, and the mapped ones still load.
    assert!(!crate::mapped::holds(document.as_bytes()));
    assert!(matches!(
        super::simd::parse::<V1>(document.as_bytes(), pass),
        Some(super::Outcome::Decoded(Ok(V1 { name: decoded }))) if decoded == name
    ));
    assert_eq!(decode::<V1>(&mapped).unwrap(), V1 { name });
}
