//! The bounded header scan done once per message at insert: where the first `From`, `To`,
//! `Cc`, `Subject`, `Message-ID` and `Date` fields' values are in the raw bytes.
//!
//! What it does: walk the header block (RFC 5322 §2.2) line by line, lines ending in CR LF or
//! a bare LF, field names matched ASCII case-insensitively (an obsolete space before the
//! colon is allowed, RFC 5322 §4.5), continuation lines (starting with SP or HTAB, §2.2.3)
//! belonging to the field above; keep each wanted field's value as an `(offset, len)` range
//! into the raw bytes, from the first octet after the colon and any folding white space to
//! the end of its last line (line ending excluded). It stops at the first empty line, or at
//! [`HEADER_SCAN_MAX`] octets; a field not ended within the bound is not located (a range
//! that cuts a value would lie to an exact match).
//!
//! What it does not do: copy, decode (RFC 2047 words stay encoded: decoding comes later, at
//! read time), parse MIME or addresses, or look past the bound. [`unfold`] gives a value as one
//! logical line when it is read.

use std::borrow::Cow;

/// How far into a message the scan looks, in octets: 64 KiB less one, so an offset and a
/// length each fit a `u16` (the ranges cost 24 bytes per message).
pub const HEADER_SCAN_MAX: usize = u16::MAX as usize;

/// The header fields located at insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `From:` (RFC 5322 §3.6.2).
    From,
    /// `To:` (§3.6.3).
    To,
    /// `Cc:` (§3.6.3).
    Cc,
    /// `Subject:` (§3.6.5).
    Subject,
    /// `Message-ID:` (§3.6.4).
    MessageId,
    /// `Date:` (§3.6.1).
    Date,
}

impl Field {
    /// Every located field, in the order of [`HeaderRanges`].
    pub const ALL: [Field; 6] = [
        Field::From,
        Field::To,
        Field::Cc,
        Field::Subject,
        Field::MessageId,
        Field::Date,
    ];

    /// The field's name as RFC 5322 spells it.
    pub fn name(self) -> &'static str {
        match self {
            Field::From => "From",
            Field::To => "To",
            Field::Cc => "Cc",
            Field::Subject => "Subject",
            Field::MessageId => "Message-ID",
            Field::Date => "Date",
        }
    }

    /// The located field named `name` (ASCII case-insensitive), if it is one. Told apart by
    /// length and first letter, then compared as a fixed-length run: the scan asks this of
    /// every field of every message.
    pub fn from_name(name: &[u8]) -> Option<Field> {
        // `| 0x20` lowercases an ASCII letter; only `T` and `t` (and so on) meet each pair.
        let (field, same) = match (name.len(), name.first()? | 0x20) {
            (2, b't') => (Field::To, same_name(name, b"to")),
            (2, b'c') => (Field::Cc, same_name(name, b"cc")),
            (4, b'f') => (Field::From, same_name(name, b"from")),
            (4, b'd') => (Field::Date, same_name(name, b"date")),
            (7, b's') => (Field::Subject, same_name(name, b"subject")),
            (10, b'm') => (Field::MessageId, same_name(name, b"message-id")),
            _ => return None,
        };
        same.then_some(field)
    }

    /// The field's slot in [`HeaderRanges`].
    fn index(self) -> usize {
        self as usize
    }
}

/// Whether `name` is `lower` (a field name in lowercase) with its ASCII letters in either
/// case: a fixed-length comparison the compiler unrolls (`N` and `lower` are constants at
/// every call).
#[inline(always)]
fn same_name<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    let Ok(name) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    let mut differ = 0;
    for i in 0..N {
        let octet = match lower[i].is_ascii_lowercase() {
            true => name[i] | 0x20,
            false => name[i],
        };
        differ |= octet ^ lower[i];
    }
    differ == 0
}

/// Where the located fields' values are in a message's raw bytes: `(offset, len)` pairs,
/// `(0, 0)` for a field not found (a value never starts at offset 0: a name and a colon come
/// first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderRanges {
    /// One `(offset, len)` per [`Field::ALL`] entry.
    ranges: [(u16, u16); 6],
}

impl HeaderRanges {
    /// The raw value of `field` in `raw` (the bytes these ranges were scanned from), folds
    /// and encoded words as sent; `None` if it was not located.
    pub fn value<'r>(&self, raw: &'r [u8], field: Field) -> Option<&'r [u8]> {
        let (offset, len) = self.ranges[field.index()];
        if offset == 0 {
            return None;
        }
        raw.get(usize::from(offset)..usize::from(offset) + usize::from(len))
    }

    /// The `(offset, len)` of `field`'s value, if it was located.
    pub fn range(&self, field: Field) -> Option<(usize, usize)> {
        let (offset, len) = self.ranges[field.index()];
        (offset != 0).then_some((usize::from(offset), usize::from(len)))
    }
}

/// The end of the line starting at `pos` in `block`: `(content_end, next_line_start,
/// ended)`, where `ended` says a line feed was found.
fn line_at(block: &[u8], pos: usize) -> (usize, usize, bool) {
    match memchr::memchr(b'\n', &block[pos..]) {
        Some(i) => {
            let lf = pos + i;
            let content_end = if lf > pos && block[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            (content_end, lf + 1, true)
        }
        None => (block.len(), block.len(), false),
    }
}

/// Walks the complete fields of the header block of `raw` (see the module doc) in order,
/// calling `visit(name, value_start, value_end)` for each (the name trimmed of trailing
/// white space, the value's range as [`scan_headers`] records it), until `visit` returns
/// false.
///
/// Lines are found with `memchr` (SIMD: one call per line costs less than searching a
/// line's colon and then its end in registers, measured in round 7c of
/// docs/benchmarks/2026-12-06-capture-ingest.md).
fn walk_fields(raw: &[u8], mut visit: impl FnMut(&[u8], usize, usize) -> bool) {
    let block = &raw[..raw.len().min(HEADER_SCAN_MAX)];
    // A line not ended within the block is only complete if the block is the whole message.
    let whole = block.len() == raw.len();
    let mut pos = 0;
    while pos < block.len() {
        let (content_end, next, ended) = line_at(block, pos);
        let line = &block[pos..content_end];
        if line.is_empty() {
            break; // The empty line that ends the header block (RFC 5322 §2.1).
        }
        // Take in the continuation lines of this field.
        let (mut end, mut after, mut complete) = (content_end, next, ended || whole);
        while after < block.len() && matches!(block[after], b' ' | b'\t') {
            let (c, n, e) = line_at(block, after);
            (end, after, complete) = (c, n, e || whole);
        }
        // The field's last line must be complete, and what follows must be known not to be
        // another continuation line (the bound may cut just before one).
        let known_end = complete && (after < block.len() || whole);
        if let (false, Some(colon)) = (matches!(line[0], b' ' | b'\t'), memchr::memchr(b':', line))
        {
            if known_end {
                let mut start = pos + colon + 1;
                while start < end && matches!(block[start], b' ' | b'\t' | b'\r' | b'\n') {
                    start += 1;
                }
                if !visit(line[..colon].trim_ascii_end(), start, end) {
                    return;
                }
            }
        }
        pos = after;
    }
}

/// Scans the header block of `raw` (see the module doc); stops early once every located
/// field is found (the first of each wins).
pub fn scan_headers(raw: &[u8]) -> HeaderRanges {
    let mut found = HeaderRanges::default();
    let mut missing = Field::ALL.len();
    walk_fields(raw, |name, start, end| {
        if let Some(field) = Field::from_name(name) {
            let slot = &mut found.ranges[field.index()];
            if *slot == (0, 0) {
                // Both fit: end <= HEADER_SCAN_MAX = u16::MAX.
                *slot = (start as u16, (end - start) as u16);
                missing -= 1;
            }
        }
        missing > 0
    });
    found
}

/// The raw value (folded, as sent) of the first top-level field named `name` (ASCII
/// case-insensitive) within the same bound as [`scan_headers`]; any field, not only the
/// located ones (a mailbox's header route reads it at insert, only when such a route
/// exists).
pub fn first_field<'r>(raw: &'r [u8], name: &[u8]) -> Option<&'r [u8]> {
    let mut found = None;
    walk_fields(raw, |field, start, end| {
        if field.eq_ignore_ascii_case(name) {
            found = Some((start, end));
            return false;
        }
        true
    });
    found.map(|(start, end)| &raw[start..end])
}

/// A located value as one logical line: every line break inside it (CR LF or a bare LF,
/// always followed by white space in a field) removed, the white space kept (RFC 5322 §2.2.3).
/// Borrows when the value was not folded.
pub fn unfold(value: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\n', value).is_none() {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' if value.get(i + 1) == Some(&b'\n') => i += 2,
            b'\n' => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// Whether `needle` occurs in `haystack`, ASCII letters compared case-insensitively (an empty
/// needle occurs everywhere).
pub fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(raw: &[u8]) -> Vec<(Field, String)> {
        let ranges = scan_headers(raw);
        Field::ALL
            .into_iter()
            .filter_map(|f| {
                ranges
                    .value(raw, f)
                    .map(|v| (f, String::from_utf8_lossy(v).into_owned()))
            })
            .collect()
    }

    #[test]
    fn a_plain_block_with_crlf_and_a_body() {
        let raw = b"Received: from x\r\nFrom: Ann <a@x>\r\nTO: b@y\r\ncc:c@z\r\nSubject:  Hello\r\nMessage-ID: <1@x>\r\nDate: Sun, 6 Dec 2026 10:00:00 +0000\r\n\r\nSubject: not a header\r\n";
        assert_eq!(
            located(raw),
            vec![
                (Field::From, "Ann <a@x>".into()),
                (Field::To, "b@y".into()),
                (Field::Cc, "c@z".into()),
                (Field::Subject, "Hello".into()),
                (Field::MessageId, "<1@x>".into()),
                (Field::Date, "Sun, 6 Dec 2026 10:00:00 +0000".into()),
            ]
        );
    }

    #[test]
    fn folded_values_keep_their_folds_and_unfold_on_read() {
        let raw = b"Subject: a long\r\n  subject\r\n\tline\r\nTo:\r\n b@y\r\n\r\nbody";
        let ranges = scan_headers(raw);
        let subject = ranges.value(raw, Field::Subject).unwrap();
        assert_eq!(subject, b"a long\r\n  subject\r\n\tline");
        assert_eq!(&*unfold(subject), b"a long  subject\tline");
        assert_eq!(ranges.value(raw, Field::To).unwrap(), b"b@y");
    }

    #[test]
    fn bare_lf_lines_and_no_blank_line() {
        let raw = b"From: a@x\nSubject: s\n folded\nDate: d";
        let ranges = scan_headers(raw);
        assert_eq!(ranges.value(raw, Field::From).unwrap(), b"a@x");
        assert_eq!(
            &*unfold(ranges.value(raw, Field::Subject).unwrap()),
            b"s folded"
        );
        assert_eq!(ranges.value(raw, Field::Date).unwrap(), b"d");
    }

    #[test]
    fn the_first_field_wins_and_missing_fields_are_none() {
        let raw = b"Subject: one\r\nSubject: two\r\n\r\n";
        assert_eq!(located(raw), vec![(Field::Subject, "one".into())]);
        assert_eq!(located(b""), vec![]);
        assert_eq!(located(b"\r\nSubject: body\r\n"), vec![]);
    }

    #[test]
    fn odd_lines_are_skipped() {
        let raw = b" leading continuation\r\nnot a header line\r\nX-Subject: no\r\nSubject : obs space\r\nSubjectX: no\r\nEmpty:\r\nTo:\r\n\r\n";
        assert_eq!(
            located(raw),
            vec![(Field::To, "".into()), (Field::Subject, "obs space".into())]
        );
    }

    #[test]
    fn the_bound_is_kept() {
        // A header block larger than the bound: a field past it is not located, one before
        // it is.
        let mut raw = b"From: a@x\r\n".to_vec();
        while raw.len() < HEADER_SCAN_MAX + 100 {
            raw.extend_from_slice(b"X-Pad: ........................................\r\n");
        }
        raw.extend_from_slice(b"Subject: too far\r\n\r\n");
        assert_eq!(located(&raw), vec![(Field::From, "a@x".into())]);

        // A field cut by the bound is not located.
        let mut raw = b"Subject: ".to_vec();
        raw.resize(HEADER_SCAN_MAX + 10, b's');
        assert_eq!(located(&raw), vec![]);

        // A field ending just before the bound, where the next line might continue it.
        let mut raw = b"Subject: ".to_vec();
        raw.resize(HEADER_SCAN_MAX - 2, b's');
        raw.extend_from_slice(b"\r\n more\r\n\r\n");
        assert_eq!(located(&raw), vec![]);

        // The same message, whole within the bound, is located.
        let mut raw = b"Subject: ".to_vec();
        raw.resize(HEADER_SCAN_MAX - 20, b's');
        raw.extend_from_slice(b"\r\n more\r\n\r\n");
        let ranges = scan_headers(&raw);
        assert!(ranges
            .value(&raw, Field::Subject)
            .unwrap()
            .ends_with(b"\r\n more"));
    }

    #[test]
    fn a_message_of_headers_only_ending_without_a_line_break() {
        assert_eq!(
            located(b"Subject: end"),
            vec![(Field::Subject, "end".into())]
        );
    }

    /// The scan as it was before round 7c (a line search, then a colon search, then the name
    /// compared with each field's): the one-pass scan must locate exactly what it located.
    /// (Its line search is the module's [`line_at`], unchanged by round 7c.)
    fn scan_as_before(raw: &[u8]) -> HeaderRanges {
        let mut found = HeaderRanges::default();
        let block = &raw[..raw.len().min(HEADER_SCAN_MAX)];
        let whole = block.len() == raw.len();
        let mut pos = 0;
        while pos < block.len() {
            let (content_end, next, ended) = line_at(block, pos);
            let line = &block[pos..content_end];
            if line.is_empty() {
                break;
            }
            let (mut end, mut after, mut complete) = (content_end, next, ended || whole);
            while after < block.len() && matches!(block[after], b' ' | b'\t') {
                let (c, n, e) = line_at(block, after);
                (end, after, complete) = (c, n, e || whole);
            }
            let known_end = complete && (after < block.len() || whole);
            if let (false, Some(colon)) =
                (matches!(line[0], b' ' | b'\t'), memchr::memchr(b':', line))
            {
                if known_end {
                    let mut start = pos + colon + 1;
                    while start < end && matches!(block[start], b' ' | b'\t' | b'\r' | b'\n') {
                        start += 1;
                    }
                    let name = line[..colon].trim_ascii_end();
                    let field = Field::ALL
                        .into_iter()
                        .find(|f| f.name().as_bytes().eq_ignore_ascii_case(name));
                    if let Some(field) = field {
                        let slot = &mut found.ranges[field.index()];
                        if *slot == (0, 0) {
                            *slot = (start as u16, (end - start) as u16);
                        }
                    }
                }
            }
            pos = after;
        }
        found
    }

    #[test]
    fn the_one_pass_scan_locates_what_the_line_scan_did() {
        // Header blocks made of pieces that stress the edges: folds, bare CR and LF, white
        // space before colons, names that are prefixes of located ones, empty values,
        // repeated fields, lines without a colon, a block cut short without a line end.
        let pieces: [&[u8]; 24] = [
            b"From: a@x\r\n",
            b"TO:b@y\n",
            b"cc :\r\n",
            b"Subject:\r\n folded\r\n",
            b"subject\t: s\n\tmore\n",
            b"Message-ID: <1@x>\r\n",
            b"message-id:<2@x>",
            b"Date: d\r\n",
            b"X-Subject: no\r\n",
            b"Subj: no\r\n",
            b"Fromage: no\r\n",
            b"no colon here\r\n",
            b" leading fold\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b"\rTo: cr first\r\n",
            b": empty name\r\n",
            b"To:\r\n",
            b"T\x0co: ff\r\n",
            b"To\x0c: ff after\r\n",
            b"Cc: c\r\n \r\n",
            b"Date:\r\n\r\n",
            b"\xc3\xa9: utf-8 name\r\n",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut raw = Vec::new();
            for _ in 0..next() % 9 {
                raw.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            if next() % 4 == 0 {
                let cut = (next() as usize) % (raw.len() + 1);
                raw.truncate(cut);
            }
            assert_eq!(
                scan_headers(&raw),
                scan_as_before(&raw),
                "{:?}",
                String::from_utf8_lossy(&raw)
            );
        }
        // At the bound: fields cut by it, and ending just before it.
        for tail in [
            &b"\r\n more\r\n\r\n"[..],
            b"\r\n",
            b"",
            b"\r\nTo: t\r\n\r\n",
        ] {
            for len in [
                HEADER_SCAN_MAX - 30,
                HEADER_SCAN_MAX - 2,
                HEADER_SCAN_MAX + 10,
            ] {
                let mut raw = b"From: f\r\nSubject: ".to_vec();
                raw.resize(len, b's');
                raw.extend_from_slice(tail);
                assert_eq!(scan_headers(&raw), scan_as_before(&raw), "{len}");
            }
        }
    }

    #[test]
    fn names_and_substrings() {
        assert_eq!(Field::from_name(b"message-id"), Some(Field::MessageId));
        assert_eq!(Field::from_name(b"Bcc"), None);
        assert!(contains_ignore_ascii_case(b"Your CODE is 1234", b"code"));
        assert!(!contains_ignore_ascii_case(b"abc", b"abcd"));
        assert!(contains_ignore_ascii_case(b"", b""));
    }
}
