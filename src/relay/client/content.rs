//! Message content on its way out: dot-stuffing for `DATA` (RFC 5321 §4.5.2) and `BDAT` framing
//! for CHUNKING (RFC 3030 §2), both over chunks of any size, written into the caller's buffer.
//!
//! What it does: [`DotStuffer`] doubles a `.` at the start of every line, also when the line
//! starts in the next chunk (a small carried state remembers whether the last chunk ended a
//! line), and writes the end of data (`CRLF.CRLF`), with the CR LF first only when the body
//! does not already end in one. [`bdat_into`] writes one `BDAT n [LAST]` command and its
//! octets, untouched (RFC 3030 §2: BDAT content is counted, never stuffed or scanned).
//!
//! What it does not do: read the spool, decide between `DATA` and `BDAT` (the session does, from
//! what the next hop offers), or change line ends. A line starts after CR LF, as RFC 5321
//! §2.3.8 defines a line; a bare LF does not start one, so a `.` after it is sent as it is (the
//! server refuses bare LF in what it accepts by default, so the spool holds none; a next hop
//! that ended lines at bare LF would see that `.` as content either way, since only
//! `CR LF . CR LF` ends the data and we write that only at the end).
//!
//! Memory: nothing is allocated here beyond what `out` grows by; the stuffer is two booleans.

use memchr::memchr;

/// The end of DATA content (RFC 5321 §4.1.1.4): a line holding one `.`.
const END_OF_DATA: &[u8] = b".\r\n";

/// Dot-stuffing over chunks (RFC 5321 §4.5.2): "before sending a line of mail text, the SMTP
/// client checks the first character of the line. If it is a period, one additional period
/// is inserted at the beginning of the line."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DotStuffer {
    /// The next octet starts a line: nothing was written yet, or the last two octets were
    /// CR LF.
    line_start: bool,
    /// The last octet written was a CR (its LF may start the next chunk).
    after_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

impl DotStuffer {
    /// A stuffer at the start of a body (which is the start of a line).
    pub fn new() -> DotStuffer {
        DotStuffer {
            line_start: true,
            after_cr: false,
        }
    }

    /// Appends `chunk` to `out`, a `.` doubled wherever it starts a line. Chunks may be split
    /// anywhere, even between a CR and its LF: the result is the same as for the whole body.
    pub fn chunk_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        while let Some(&first) = rest.first() {
            if self.line_start && first == b'.' {
                out.push(b'.');
            }
            match memchr(b'\n', rest) {
                Some(lf) => {
                    let crlf = match lf.checked_sub(1) {
                        Some(before) => rest[before] == b'\r',
                        None => self.after_cr,
                    };
                    out.extend_from_slice(&rest[..=lf]);
                    self.line_start = crlf;
                    self.after_cr = false;
                    rest = &rest[lf + 1..];
                }
                None => {
                    out.extend_from_slice(rest);
                    self.line_start = false;
                    self.after_cr = rest.last() == Some(&b'\r');
                    rest = &[];
                }
            }
        }
    }

    /// Appends the end of data: `CR LF` if the body so far does not end in one (RFC 5321
    /// §4.1.1.4: the end is a line of its own), then `.` `CR LF`. An empty body ends with the
    /// `.` line alone (the `CR LF` before it is the one that ended the `DATA` command's reply
    /// exchange, as every client sends it). The stuffer is then ready for another body.
    pub fn end_into(&mut self, out: &mut Vec<u8>) {
        if !self.line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(END_OF_DATA);
        *self = DotStuffer::new();
    }
}

/// Appends one `BDAT` command and its octets (RFC 3030 §2: `BDAT chunk-size [LAST]`, then
/// exactly `chunk-size` octets, no stuffing). `BDAT 0 LAST` ends a message whose last octets
/// went in an earlier chunk.
pub fn bdat_into(chunk: &[u8], last: bool, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"BDAT ");
    out.extend_from_slice(digits.format(chunk.len()).as_bytes());
    if last {
        out.extend_from_slice(b" LAST");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(chunk);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The naive reference: the whole body at once, line by line as RFC 5321 §4.5.2 says it
    /// (a line is what ends in CR LF; the last one may not end), then the end of data.
    fn stuffed_reference(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < body.len() {
            if i == start && body[i] == b'.' {
                out.push(b'.');
            }
            out.push(body[i]);
            if body[i] == b'\n' && i > 0 && body[i - 1] == b'\r' {
                start = i + 1;
            }
            i += 1;
        }
        if !(body.is_empty() || body.ends_with(b"\r\n")) {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    fn stuffed_in_chunks(body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut stuffer = DotStuffer::new();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts {
            stuffer.chunk_into(&body[from..cut], &mut out);
            from = cut;
        }
        stuffer.chunk_into(&body[from..], &mut out);
        stuffer.end_into(&mut out);
        out
    }

    /// Bodies with dots where they matter, whole.
    #[test]
    fn dots_at_line_starts_are_doubled_and_the_end_is_added() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b"..x\r\n", b"...x\r\n.\r\n"),
            (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a.\r\n.b", b"a.\r\n..b\r\n.\r\n"),
            // A bare LF starts no line (RFC 5321 §2.3.8), a bare CR neither.
            (b"a\n.b\r\n", b"a\n.b\r\n.\r\n"),
            (b"a\r.b\r\n", b"a\r.b\r\n.\r\n"),
            // A body ending in CR alone still gets its own CR LF before the end.
            (b"a\r", b"a\r\r\n.\r\n"),
            (b"\r\n\r\n.", b"\r\n\r\n..\r\n.\r\n"),
        ];
        for &(body, expected) in cases {
            assert_eq!(
                stuffed_in_chunks(body, &[]),
                expected,
                "{:?}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(stuffed_reference(body), expected);
        }
    }

    /// Every single split point, and byte by byte, of bodies that put a dot, a CR or an LF at
    /// every chunk edge.
    #[test]
    fn every_split_point_gives_the_same_stuffing() {
        let bodies: &[&[u8]] = &[
            b".\r\n.\r\n..\r\n",
            b"a\r\n.\r\n.b\r\n\r\n.",
            b"\r\n.\r\r\n.\n.\r\n",
        ];
        for body in bodies {
            let whole = stuffed_reference(body);
            for cut in 0..=body.len() {
                assert_eq!(stuffed_in_chunks(body, &[cut]), whole, "cut at {cut}");
            }
            let every: Vec<usize> = (1..body.len()).collect();
            assert_eq!(stuffed_in_chunks(body, &every), whole);
        }
    }

    /// A stuffer is reusable after the end: the next body starts at a line start.
    #[test]
    fn a_stuffer_starts_over_after_the_end() {
        let mut stuffer = DotStuffer::new();
        let mut out = Vec::new();
        stuffer.chunk_into(b"a", &mut out);
        stuffer.end_into(&mut out);
        stuffer.chunk_into(b".b\r\n", &mut out);
        stuffer.end_into(&mut out);
        assert_eq!(out, b"a\r\n.\r\n..b\r\n.\r\n");
    }

    /// BDAT commands carry the exact octet count and the octets untouched.
    #[test]
    fn bdat_frames_count_the_octets_and_leave_them_alone() {
        let mut out = Vec::new();
        bdat_into(b".\r\n", false, &mut out);
        bdat_into(b"", true, &mut out);
        assert_eq!(out, b"BDAT 3\r\n.\r\nBDAT 0 LAST\r\n");
        out.clear();
        bdat_into(b"hello", true, &mut out);
        assert_eq!(out, b"BDAT 5 LAST\r\nhello");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn body() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')],
                0..48,
            )
        }

        /// Parses BDAT frames back: the chunks' octets, and whether the last frame said LAST.
        fn unframe(mut wire: &[u8]) -> (Vec<u8>, usize, bool) {
            let mut body = Vec::new();
            let mut frames = 0;
            let mut last = false;
            while !wire.is_empty() {
                assert!(!last, "a frame after LAST");
                let lf = memchr(b'\n', wire).unwrap();
                let line = std::str::from_utf8(&wire[..lf - 1]).unwrap();
                let mut words = line.split(' ');
                assert_eq!(words.next(), Some("BDAT"));
                let size: usize = words.next().unwrap().parse().unwrap();
                last = words.next() == Some("LAST");
                body.extend_from_slice(&wire[lf + 1..lf + 1 + size]);
                wire = &wire[lf + 1 + size..];
                frames += 1;
            }
            (body, frames, last)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Any body, cut anywhere into any number of chunks, is stuffed as the naive
            /// reference stuffs it whole (`tests/relay_client.rs` checks the other way: the
            /// server's unstuffing gives the body back).
            #[test]
            fn chunked_stuffing_matches_the_reference(
                body in body(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(body.len() + 1)).collect();
                cuts.sort_unstable();
                let stuffed = stuffed_in_chunks(&body, &cuts);
                prop_assert_eq!(&stuffed, &stuffed_reference(&body));
                // The end of data appears once, at the end: no line of the body can end it.
                let end = memchr::memmem::find(&stuffed, b"\r\n.\r\n");
                if stuffed != b".\r\n" {
                    prop_assert_eq!(end.map(|end| end + 5), Some(stuffed.len()));
                }
            }

            /// BDAT frames of any chunking add up to the body, the last one says LAST.
            #[test]
            fn bdat_frames_add_up_to_the_body(
                body in body(),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(body.len() + 1)).collect();
                cuts.sort_unstable();
                cuts.dedup();
                let mut out = Vec::new();
                let mut from = 0;
                for &cut in &cuts {
                    bdat_into(&body[from..cut], false, &mut out);
                    from = cut;
                }
                bdat_into(&body[from..], true, &mut out);
                let (unframed, frames, last) = unframe(&out);
                prop_assert_eq!(unframed, body);
                prop_assert_eq!(frames, cuts.len() + 1);
                prop_assert!(last);
            }
        }
    }
}
