//! The tag that names a message of this run at the far end: its `Subject:` header.
//!
//! What it does: write and parse `smtp-loadgen run RRRRRRRR seq NNNNNNNNNNNNNNNNNNNN`, a run
//! id of [`RUN_ID_DIGITS`] hexadecimal digits and the message's sequence number in
//! [`SEQ_DIGITS`] decimal digits. The width is fixed, so a generated message keeps its exact
//! size whatever its number: the template carries the line once and each message only
//! overwrites the digits. The subject is used because the capture API's event summary
//! carries it (`docs/api.md`, "Summaries"; cut at 256 characters, far past the tag) and
//! because relays pass it on untouched (RFC 5321 §2.3.1: a relay does not change the
//! content beyond adding trace headers, §4.4).
//!
//! What it does not do: decide which run id a run has (the settings do), or track which
//! messages arrived (`tracker`).

/// What every tag starts with, in the subject.
pub const TAG_PREFIX: &str = "smtp-loadgen run ";
/// Hexadecimal digits of the run id.
pub const RUN_ID_DIGITS: usize = 8;
/// What separates the run id from the sequence number.
const SEQ_WORD: &str = " seq ";
/// Decimal digits of the sequence number (a `u64` has at most 20).
pub const SEQ_DIGITS: usize = 20;
/// Octets of a whole tag.
pub const TAG_LEN: usize = TAG_PREFIX.len() + RUN_ID_DIGITS + SEQ_WORD.len() + SEQ_DIGITS;
/// Where the sequence number starts inside a tag.
pub const SEQ_OFFSET: usize = TAG_LEN - SEQ_DIGITS;

/// Where the run id starts inside a tag.
pub const RUN_OFFSET: usize = TAG_PREFIX.len();

/// The tag of message `seq` of run `run`, appended to `out`.
pub fn tag_into(run: u32, seq: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(TAG_PREFIX.as_bytes());
    out.extend_from_slice(&run_digits(run));
    out.extend_from_slice(SEQ_WORD.as_bytes());
    out.extend_from_slice(&seq_digits(seq));
}

/// `run` in exactly [`RUN_ID_DIGITS`] lower-case hexadecimal digits.
pub fn run_digits(run: u32) -> [u8; RUN_ID_DIGITS] {
    let mut digits = [b'0'; RUN_ID_DIGITS];
    for (i, slot) in digits.iter_mut().enumerate() {
        let nibble = (run >> (4 * (RUN_ID_DIGITS - 1 - i))) & 0xf;
        *slot = b"0123456789abcdef"[nibble as usize];
    }
    digits
}

/// `seq` in exactly [`SEQ_DIGITS`] decimal digits (zero-padded).
pub fn seq_digits(mut seq: u64) -> [u8; SEQ_DIGITS] {
    let mut digits = [b'0'; SEQ_DIGITS];
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (seq % 10) as u8;
        seq /= 10;
    }
    digits
}

/// The run id and sequence number of a subject that carries a tag (anywhere in it), or
/// `None` when it carries none (foreign mail) or a malformed one.
pub fn parse_tag(subject: &str) -> Option<(u32, u64)> {
    let at = subject.find(TAG_PREFIX)?;
    let tag = subject.get(at..at + TAG_LEN)?;
    let run = tag.get(TAG_PREFIX.len()..TAG_PREFIX.len() + RUN_ID_DIGITS)?;
    let word = tag.get(TAG_PREFIX.len() + RUN_ID_DIGITS..SEQ_OFFSET)?;
    let seq = tag.get(SEQ_OFFSET..)?;
    if word != SEQ_WORD
        || !run.bytes().all(|b| b.is_ascii_hexdigit())
        || !seq.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((u32::from_str_radix(run, 16).ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_at_a_fixed_width() {
        for (run, seq) in [
            (0, 0),
            (0xdead_beef, 42),
            (u32::MAX, u64::MAX),
            (7, 10_000_000),
        ] {
            let mut out = Vec::new();
            tag_into(run, seq, &mut out);
            assert_eq!(out.len(), TAG_LEN);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(parse_tag(&text), Some((run, seq)), "{text}");
            // Anywhere in a subject a relay may have prefixed.
            assert_eq!(parse_tag(&format!("[ext] {text} (x)")), Some((run, seq)));
        }
    }

    #[test]
    fn foreign_and_malformed_subjects_carry_no_tag() {
        for subject in [
            "",
            "Welcome, Alice",
            "smtp-loadgen test message",
            "smtp-loadgen run 0000000g seq 00000000000000000001",
            "smtp-loadgen run 00000001 seq 0000000000000000000x",
            "smtp-loadgen run 00000001 sep 00000000000000000001",
            "smtp-loadgen run 00000001 seq 0000000001",
            // Past u64::MAX.
            "smtp-loadgen run 00000001 seq 99999999999999999999",
            "smtp-loadgen run 0000é001 seq 00000000000000000001",
        ] {
            assert_eq!(parse_tag(subject), None, "{subject:?}");
        }
    }
}
