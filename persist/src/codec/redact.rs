//! Values quoted from the file are taken out of serde's messages, so that a secret stored in the
//! wrong place does not end up in a log. Field and variant names of the schema stay.

/// `message` with every value serde quoted from the file replaced by what kind of value it was.
pub(crate) fn redact(message: &str) -> String {
    const QUOTED: [(&str, &str); 6] = [
        ("string \"", "a string"),
        ("integer `", "an integer"),
        ("floating point `", "a floating-point number"),
        ("character `", "a character"),
        ("boolean `", "a boolean"),
        ("unknown variant `", "an unknown variant"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        for (opening, replacement) in QUOTED {
            if let Some(after) = rest.strip_prefix(opening) {
                let end = if opening.ends_with('"') {
                    closing_quote(after)
                } else if opening.starts_with("unknown variant") {
                    after.rfind("`, expected").or_else(|| after.rfind('`'))
                } else {
                    after.find('`')
                };
                if let Some(end) = end {
                    out.push_str(replacement);
                    rest = &after[end + 1..];
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        out.extend(chars.next());
        rest = chars.as_str();
    }
    out
}

/// Index of the `"` that closes a Debug-escaped string.
fn closing_quote(escaped: &str) -> Option<usize> {
    let mut backslash = false;
    for (index, byte) in escaped.bytes().enumerate() {
        match byte {
            b'\\' if !backslash => backslash = true,
            b'"' if !backslash => return Some(index),
            _ => backslash = false,
        }
    }
    None
}
