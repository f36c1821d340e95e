//! The `DATA` content scanner: finds the end of data and undoes dot-stuffing, resumably.
//!
//! What it does: consume message content in pieces of any size (one byte at a time works),
//! hand the unstuffed content to a callback in as few slices as possible, say when the
//! terminating `CR LF . CR LF` has been consumed, and note any bare CR or bare LF seen.
//!
//! What it does not do: enforce a size limit or apply the bare CR/LF policy (the session does),
//! or copy: content is passed on as slices of the input.
//!
//! The rules (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8):
//! * Data ends only at the exact octets `CR LF . CR LF`. The `CR LF` that ended the `DATA`
//!   command counts, so the scanner starts in the "at line start" state and `.\r\n` right away
//!   is an empty message. `\n.\n`, `\r.\r\n`, `\r\n.\n` and friends are content: accepting
//!   any of them is the SMTP smuggling hole (a second message hidden inside the first).
//! * A line that starts with `.` and is longer than `.` loses that first dot.
//! * The final `CR LF` before the terminating dot belongs to the content.
//!
//! The fast path jumps with `memchr2` to the next CR or LF, so typical text costs one search
//! per line; a run of content without stuffed dots goes out as one slice.

use memchr::memchr2;

/// Where the scanner is relative to line structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after `CR LF` (or at the very start): a `.` here is special.
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, just after a `CR` (already passed on as content).
    Cr,
    /// A line began with `.`; the dot is held back.
    Dot,
    /// A line began with `. CR`; both are held back.
    DotCr,
}

/// Result of one [`DataScanner::scan`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the input consumed. Less than the input only when `done`.
    pub consumed: usize,
    /// Whether the terminating `CR LF . CR LF` has been consumed.
    pub done: bool,
}

/// A resumable end-of-data detector and dot-unstuffer.
#[derive(Debug, Clone, Copy)]
pub struct DataScanner {
    /// Position relative to the line structure, carried across calls.
    state: State,
    /// Whether a bare CR or bare LF has been seen so far.
    saw_bare_cr_or_lf: bool,
}

impl Default for DataScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl DataScanner {
    /// A scanner positioned right after the `CR LF` of the `DATA` command line.
    pub const fn new() -> DataScanner {
        DataScanner {
            state: State::LineStart,
            saw_bare_cr_or_lf: false,
        }
    }

    /// Whether a CR not followed by LF, or an LF not preceded by CR, was seen so far.
    pub fn saw_bare_cr_or_lf(&self) -> bool {
        self.saw_bare_cr_or_lf
    }

    /// Scans `input`, passing unstuffed content to `emit`. Stops right after the terminating
    /// `CR LF . CR LF` (the caller processes what follows as commands). Once `done`, the
    /// scanner has served its message: use a new one for the next.
    pub fn scan(&mut self, input: &[u8], mut emit: impl FnMut(&[u8])) -> Scan {
        let mut pos = 0;
        // Start of the content not yet passed to `emit`.
        let mut pending = 0;
        while pos < input.len() {
            match self.state {
                State::Text => match memchr2(b'\r', b'\n', &input[pos..]) {
                    None => pos = input.len(),
                    Some(offset) => {
                        let at = pos + offset;
                        pos = at + 1;
                        if input[at] == b'\n' {
                            self.saw_bare_cr_or_lf = true;
                        } else if input.get(pos) == Some(&b'\n') {
                            pos += 1;
                            self.state = State::LineStart;
                        } else {
                            self.state = State::Cr;
                        }
                    }
                },
                State::Cr => {
                    if input[pos] == b'\n' {
                        pos += 1;
                        self.state = State::LineStart;
                    } else {
                        // The CR before was bare; this byte is looked at again as text.
                        self.saw_bare_cr_or_lf = true;
                        self.state = State::Text;
                    }
                }
                State::LineStart => {
                    if input[pos] == b'.' {
                        if pending < pos {
                            emit(&input[pending..pos]);
                        }
                        pos += 1;
                        pending = pos;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Dot => {
                    if input[pos] == b'\r' {
                        pos += 1;
                        pending = pos;
                        self.state = State::DotCr;
                    } else {
                        // RFC 5321 §4.5.2: a stuffed dot is dropped; the rest is text.
                        self.state = State::Text;
                    }
                }
                State::DotCr => {
                    if input[pos] == b'\n' {
                        return Scan {
                            consumed: pos + 1,
                            done: true,
                        };
                    }
                    // `.CR` then something else: the dot was stuffing, the CR is content
                    // (a bare one unless an LF follows, which the Cr state decides).
                    emit(b"\r");
                    self.state = State::Cr;
                }
            }
        }
        if pending < input.len() {
            emit(&input[pending..]);
        }
        Scan {
            consumed: input.len(),
            done: false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious byte-at-a-time definition, written independently of the scanner: returns
    /// (content, bytes consumed including the terminator, bare CR/LF seen) or `None` when the
    /// input holds no terminator.
    pub(crate) fn reference(input: &[u8]) -> (Vec<u8>, Option<usize>, bool) {
        let mut content = Vec::new();
        let mut bare = false;
        // Split into lines ending in CRLF; the first line starts right after the DATA line.
        let mut line_start = 0;
        let mut i = 0;
        loop {
            if i + 1 < input.len() && input[i] == b'\r' && input[i + 1] == b'\n' {
                let line = &input[line_start..i];
                if line == b"." {
                    return (content, Some(i + 2), bare);
                }
                let line = if line.first() == Some(&b'.') {
                    &line[1..]
                } else {
                    line
                };
                content.extend_from_slice(line);
                content.extend_from_slice(b"\r\n");
                i += 2;
                line_start = i;
                continue;
            }
            if i >= input.len() {
                let line = &input[line_start..];
                // An incomplete last line: a lone "." may still become the terminator, so
                // the reference holds it back exactly as the scanner does.
                let line = if line.first() == Some(&b'.') {
                    &line[1..]
                } else {
                    line
                };
                let line = if input[line_start..].starts_with(b".\r") && line.len() == 1 {
                    &line[..0]
                } else {
                    line
                };
                content.extend_from_slice(line);
                return (content, None, bare);
            }
            if input[i] == b'\n' || (input[i] == b'\r' && i + 1 < input.len()) {
                bare = true;
            }
            i += 1;
        }
    }

    /// Runs the scanner over `input` cut at the given points.
    fn scan_split(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<usize>, bool) {
        let mut scanner = DataScanner::new();
        let mut content = Vec::new();
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c <= input.len()).collect();
        bounds.sort_unstable();
        bounds.push(input.len());
        for end in bounds {
            if end < start {
                continue;
            }
            let scan = scanner.scan(&input[start..end], |piece| content.extend_from_slice(piece));
            if scan.done {
                return (
                    content,
                    Some(start + scan.consumed),
                    scanner.saw_bare_cr_or_lf(),
                );
            }
            assert_eq!(scan.consumed, end - start);
            start = end;
        }
        (content, None, scanner.saw_bare_cr_or_lf())
    }

    fn whole(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let (content, end, _) = scan_split(input, &[]);
        (content, end)
    }

    #[test]
    fn empty_message() {
        assert_eq!(whole(b".\r\n"), (vec![], Some(3)));
        assert_eq!(whole(b".\r\nQUIT\r\n"), (vec![], Some(3)));
    }

    #[test]
    fn simple_message_and_what_follows_is_left() {
        let input = b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b>\r\n";
        assert_eq!(
            whole(input),
            (b"Subject: x\r\n\r\nbody\r\n".to_vec(), Some(23))
        );
    }

    #[test]
    fn dot_unstuffing() {
        assert_eq!(whole(b"..\r\n.\r\n"), (b".\r\n".to_vec(), Some(7)));
        assert_eq!(whole(b"...x\r\n.\r\n").0, b"..x\r\n");
        assert_eq!(whole(b"a\r\n.b\r\n..\r\n.\r\n").0, b"a\r\nb\r\n.\r\n");
        // A dot not at line start stays.
        assert_eq!(whole(b"a.b\r\n.\r\n").0, b"a.b\r\n");
        // ".CR x" is a stuffed line with a bare CR in it.
        assert_eq!(whole(b".\rx\r\n.\r\n").0, b"\rx\r\n");
    }

    #[test]
    fn smuggling_vectors_do_not_end_data() {
        // Each vector from PROTOCOL.md, placed after a real line; none may end data, and the
        // real terminator that follows must.
        let vectors: &[&[u8]] = &[
            b"\n.\n",
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r.\n",
            b"\n.\r",
            b"\r.\r",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\r\n\0.\r\n",
            b"\r\n.\0\r\n",
        ];
        for vector in vectors {
            let mut input = b"line".to_vec();
            input.extend_from_slice(vector);
            input.extend_from_slice(b"MAIL FROM:<evil@example>\r\n");
            let (_, end) = whole(&input);
            assert_eq!(end, None, "vector {vector:?} ended data");
            input.extend_from_slice(b"\r\n.\r\n");
            let (_, end) = whole(&input);
            assert_eq!(end, Some(input.len()), "vector {vector:?}");
            // And at every split point too.
            for cut in 0..input.len() {
                assert_eq!(
                    scan_split(&input, &[cut]).1,
                    Some(input.len()),
                    "{vector:?} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn bare_cr_and_lf_are_noticed() {
        assert!(!scan_split(b"a\r\nb\r\n.\r\n", &[]).2);
        assert!(scan_split(b"a\nb\r\n.\r\n", &[]).2);
        assert!(scan_split(b"a\rb\r\n.\r\n", &[]).2);
        assert!(scan_split(b"a\r\rb\r\n.\r\n", &[]).2);
        assert!(scan_split(b".\rb\r\n.\r\n", &[]).2);
        for cut in 0..8 {
            assert!(scan_split(b"ab\r\rb\r\n.\r\n", &[cut]).2, "cut {cut}");
        }
    }

    #[test]
    fn every_split_point_of_a_realistic_message() {
        let input = b"From: a@b\r\nSubject: dots\r\n\r\n.leading\r\n..\r\nend.\r\n.\r\nNOOP\r\n";
        let want = reference(input);
        for cut in 0..=input.len() {
            assert_eq!(scan_split(input, &[cut]), want, "cut {cut}");
        }
        // One byte at a time.
        let every: Vec<usize> = (0..=input.len()).collect();
        assert_eq!(scan_split(input, &every), want);
    }

    #[test]
    fn reference_agrees_on_basics() {
        assert_eq!(reference(b".\r\n"), (vec![], Some(3), false));
        assert_eq!(
            reference(b"..\r\n.\r\n"),
            (b".\r\n".to_vec(), Some(7), false)
        );
    }

    fn data_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a'), Just(0u8)],
            0..64,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn matches_reference_at_any_split(
            input in data_bytes(),
            cuts in prop::collection::vec(0usize..64, 0..6),
        ) {
            let want = reference(&input);
            let got = scan_split(&input, &cuts);
            prop_assert_eq!(&got.0, &want.0);
            prop_assert_eq!(got.1, want.1);
            if want.1.is_some() {
                prop_assert_eq!(got.2, want.2);
            }
        }

        #[test]
        fn ends_exactly_at_first_crlf_dot_crlf(input in data_bytes()) {
            // Prefixing CRLF makes the whole input a continuation of a line.
            let mut framed = b"x\r\n".to_vec();
            framed.extend_from_slice(&input);
            let (_, end) = whole(&framed);
            let first = framed.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 5);
            prop_assert_eq!(end, first);
        }
    }
}
