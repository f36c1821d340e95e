//! JSON strings written straight into octets, for the summaries the event stream writes one
//! per message: escaped exactly as serde_json escapes them (RFC 8259 §7: the quotation mark,
//! the reverse solidus and the control characters U+0000 to U+001F must be escaped; nothing
//! else is, U+2028 included), the runs that need no escape copied whole.
//!
//! What it does not do: build or parse values, or write anything but strings (numbers are
//! `itoa`'s, keys constant octets in the caller).

/// The short escapes RFC 8259 §7 allows, and `\u00XX` for the other control characters.
const fn escapes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut octet = 0;
    while octet < 0x20 {
        table[octet] = b'u';
        octet += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
}

/// What each octet becomes inside a JSON string: 0 itself; `u` a `\u00XX`; any other
/// letter, a reverse solidus and that letter.
static ESCAPE: [u8; 256] = escapes();

/// Lowercase, as serde_json writes them.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Eight copies of an octet, to test eight octets at once.
const fn lanes(octet: u8) -> u64 {
    u64::from_ne_bytes([octet; 8])
}

/// Whether any of the eight octets in `word` needs an escape: one below 0x20, a `"` or a
/// `\` (the classic "has a zero byte" tests: exact for "any", which is all this asks).
fn needs_escape(word: u64) -> bool {
    const LOW: u64 = lanes(0x01);
    const HIGH: u64 = lanes(0x80);
    let below_space = word.wrapping_sub(lanes(0x20)) & !word;
    let quote = word ^ lanes(b'"');
    let backslash = word ^ lanes(b'\\');
    let zero = |v: u64| v.wrapping_sub(LOW) & !v;
    (below_space | zero(quote) | zero(backslash)) & HIGH != 0
}

/// Appends `text` as a JSON string, quotes included.
pub fn string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[..start]` is written; `at` is where the scan is.
    let mut start = 0;
    let mut at = 0;
    loop {
        // Eight octets at a time while none needs an escape (most text has none).
        while let Some(word) = bytes
            .get(at..at + 8)
            .and_then(|chunk| <[u8; 8]>::try_from(chunk).ok())
        {
            if needs_escape(u64::from_ne_bytes(word)) {
                break;
            }
            at += 8;
        }
        if at == bytes.len() {
            break;
        }
        // Then octet by octet through that word (or what is left).
        let end = (at + 8).min(bytes.len());
        while at < end {
            let octet = bytes[at];
            let escape = ESCAPE[usize::from(octet)];
            if escape != 0 {
                out.extend_from_slice(&bytes[start..at]);
                if escape == b'u' {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(octet >> 4)]);
                    out.push(HEX[usize::from(octet & 0x0f)]);
                } else {
                    out.push(b'\\');
                    out.push(escape);
                }
                start = at + 1;
            }
            at += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::string;
    use proptest::prelude::*;

    fn ours(text: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_escape_is_serde_jsons() {
        let every_ascii: String = (0u8..0x80).map(char::from).collect();
        for text in [
            "",
            "plain",
            &every_ascii,
            "\"\\\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}",
            "a\u{2028}b\u{2029}c é😀",
            "exactly8",
            "sixteen octets!!",
            "seven\"7",
            "\\at the start, and at the end\\",
        ] {
            assert_eq!(ours(text), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(text in any::<String>()) {
            prop_assert_eq!(ours(&text), serde_json::to_string(&text).unwrap());
        }

        #[test]
        fn any_ascii_is_escaped_as_serde_json_escapes_it(text in "[\\x00-\\x7f]{0,40}") {
            prop_assert_eq!(ours(&text), serde_json::to_string(&text).unwrap());
        }
    }
}
