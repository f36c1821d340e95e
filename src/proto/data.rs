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
//!
//! [`reference`](mod@reference) holds the naive definition of these rules and the list of
//! SMTP smuggling vectors that the tests and fuzz targets check the scanner against; the
//! server never uses it.

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

/// A naive reference for the end of `DATA` and dot-unstuffing, and the list of SMTP
/// smuggling vectors: the yardstick [`DataScanner`] is tested against.
///
/// What it is for: the unit tests in this module, the integration tests (`tests/data_end.rs`
/// and the helpers in `tests/util`), and the fuzz targets (`tests/fuzz`) all check the
/// scanner, and the session around it, against this one definition and this one list, so
/// the rules are written down once. It is public only so those crates can reach it.
///
/// What it is not: fast, or used by the server. It goes byte by byte, allocates, and
/// rescans; nothing on the hot path calls it. It shares no code with [`DataScanner`], so a
/// mistake in the scanner's state machine cannot hide by being repeated here.
///
/// The rules it applies (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8):
/// * Data ends at the first `CR LF . CR LF`, and the `CR LF` that ended the `DATA` command
///   line counts as the first `CR LF` of it (so `.\r\n` right away is an empty message).
/// * Content lines are split at `CR LF` only; a line starting with `.` loses that dot.
/// * A bare CR (not followed by LF) or bare LF (not preceded by CR) is noted.
pub mod reference {
    /// What the reference makes of `DATA` input.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Outcome {
        /// The unstuffed content: with a terminator, every line before the terminating `.`
        /// line (each with its `CR LF`); without one, everything that cannot still become
        /// part of a terminator (a last unfinished line that is exactly `.` or `.\r` is held
        /// back, as a resumable scanner must).
        pub content: Vec<u8>,
        /// Input bytes up to and including the terminating `CR LF . CR LF`, or `None` when
        /// the input holds no terminator.
        pub end: Option<usize>,
        /// Whether a bare CR or bare LF occurs among the bytes up to `end` (the whole input
        /// without a terminator). A CR as the very last byte is undecided and does not count.
        pub saw_bare_cr_or_lf: bool,
    }

    /// Scans `input`, the bytes that follow the `CR LF` of the `DATA` command line.
    pub fn scan(input: &[u8]) -> Outcome {
        let end = end_of_data(input);
        // Everything before the terminator's `.` line: whole lines, or nothing.
        let body = &input[..end.map_or(input.len(), |e| e - 3)];
        let mut content = Vec::new();
        let mut rest = body;
        while let Some(at) =
            (0..rest.len().saturating_sub(1)).find(|&i| rest[i] == b'\r' && rest[i + 1] == b'\n')
        {
            let line = &rest[..at];
            content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            content.extend_from_slice(b"\r\n");
            rest = &rest[at + 2..];
        }
        if end.is_none() && rest != b".\r" {
            content.extend_from_slice(rest.strip_prefix(b".").unwrap_or(rest));
        }
        let seen = &input[..end.unwrap_or(input.len())];
        let saw_bare_cr_or_lf = (0..seen.len()).any(|i| match seen[i] {
            b'\n' => i == 0 || seen[i - 1] != b'\r',
            b'\r' => i + 1 < seen.len() && seen[i + 1] != b'\n',
            _ => false,
        });
        Outcome {
            content,
            end,
            saw_bare_cr_or_lf,
        }
    }

    /// Where data ends: the input offset just past the first `CR LF . CR LF`, counting the
    /// `CR LF` of the `DATA` line before `input`; `None` if there is none. One byte at a time,
    /// looking at the last five bytes seen.
    pub fn end_of_data(input: &[u8]) -> Option<usize> {
        let mut last5 = *b"\0\0\0\r\n";
        for (i, &byte) in input.iter().enumerate() {
            last5.rotate_left(1);
            last5[4] = byte;
            if &last5 == b"\r\n.\r\n" {
                return Some(i + 1);
            }
        }
        None
    }

    /// A byte sequence some receiver has taken for the end of data, named.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SmugglingVector {
        /// A short name for messages (`LF . LF` for `\n.\n`).
        pub name: &'static str,
        /// The bytes, to be placed right after some line text, where the real
        /// `CR LF . CR LF` would go.
        pub bytes: &'static [u8],
    }

    /// The SMTP smuggling vectors: fake ends of data that a receiver must treat as content
    /// (RFC 5321 §2.3.8: lines end only at `CR LF`; §4.1.1.4: data ends only at
    /// `CR LF . CR LF`). A sender that passes one of these through unchanged lets the text
    /// after it be read as new commands by a receiver that accepts it as the end, which is
    /// how a second, forged message gets smuggled inside the first.
    ///
    /// None of them contains `CR LF . CR LF`, and placed after a line's text none ends data
    /// (the unit tests check both). The two NUL variants hold no bare CR or LF, so they also
    /// pass the bare CR/LF policy as ordinary content.
    pub const SMUGGLING_VECTORS: &[SmugglingVector] = &[
        SmugglingVector {
            name: "LF . LF",
            bytes: b"\n.\n",
        },
        SmugglingVector {
            name: "LF . CR LF",
            bytes: b"\n.\r\n",
        },
        SmugglingVector {
            name: "CR . CR LF",
            bytes: b"\r.\r\n",
        },
        SmugglingVector {
            name: "CR . LF",
            bytes: b"\r.\n",
        },
        SmugglingVector {
            name: "LF . CR",
            bytes: b"\n.\r",
        },
        SmugglingVector {
            name: "CR . CR",
            bytes: b"\r.\r",
        },
        SmugglingVector {
            name: "CR LF . LF",
            bytes: b"\r\n.\n",
        },
        SmugglingVector {
            name: "CR LF . CR",
            bytes: b"\r\n.\r",
        },
        SmugglingVector {
            name: "CR LF NUL . CR LF",
            bytes: b"\r\n\0.\r\n",
        },
        SmugglingVector {
            name: "CR LF . NUL CR LF",
            bytes: b"\r\n.\0\r\n",
        },
    ];
}

#[cfg(test)]
mod tests {
    use super::reference::{self, Outcome, SMUGGLING_VECTORS};
    use super::*;
    use proptest::prelude::*;

    /// Runs the scanner over `input` cut at the given points; the result is comparable with
    /// [`reference::scan`].
    fn scan_split(input: &[u8], cuts: &[usize]) -> Outcome {
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
                return Outcome {
                    content,
                    end: Some(start + scan.consumed),
                    saw_bare_cr_or_lf: scanner.saw_bare_cr_or_lf(),
                };
            }
            assert_eq!(scan.consumed, end - start);
            start = end;
        }
        Outcome {
            content,
            end: None,
            saw_bare_cr_or_lf: scanner.saw_bare_cr_or_lf(),
        }
    }

    /// One scan call over all of `input`: (content, end).
    fn whole(input: &[u8]) -> (Vec<u8>, Option<usize>) {
        let Outcome { content, end, .. } = scan_split(input, &[]);
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
        // Each smuggling vector (RFC 5321 §2.3.8, §4.1.1.4), placed after a real line; none
        // may end data, and the real terminator that follows must.
        for vector in SMUGGLING_VECTORS {
            let name = vector.name;
            let mut input = b"line".to_vec();
            input.extend_from_slice(vector.bytes);
            input.extend_from_slice(b"MAIL FROM:<evil@example>\r\n");
            let (_, end) = whole(&input);
            assert_eq!(end, None, "vector {name} ended data");
            assert_eq!(reference::end_of_data(&input), None, "reference: {name}");
            input.extend_from_slice(b"\r\n.\r\n");
            let (_, end) = whole(&input);
            assert_eq!(end, Some(input.len()), "vector {name}");
            // And at every split point too.
            for cut in 0..input.len() {
                assert_eq!(
                    scan_split(&input, &[cut]).end,
                    Some(input.len()),
                    "{name} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn bare_cr_and_lf_are_noticed() {
        assert!(!scan_split(b"a\r\nb\r\n.\r\n", &[]).saw_bare_cr_or_lf);
        assert!(scan_split(b"a\nb\r\n.\r\n", &[]).saw_bare_cr_or_lf);
        assert!(scan_split(b"a\rb\r\n.\r\n", &[]).saw_bare_cr_or_lf);
        assert!(scan_split(b"a\r\rb\r\n.\r\n", &[]).saw_bare_cr_or_lf);
        assert!(scan_split(b".\rb\r\n.\r\n", &[]).saw_bare_cr_or_lf);
        for cut in 0..8 {
            assert!(
                scan_split(b"ab\r\rb\r\n.\r\n", &[cut]).saw_bare_cr_or_lf,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_split_point_of_a_realistic_message() {
        let input = b"From: a@b\r\nSubject: dots\r\n\r\n.leading\r\n..\r\nend.\r\n.\r\nNOOP\r\n";
        let want = reference::scan(input);
        for cut in 0..=input.len() {
            assert_eq!(scan_split(input, &[cut]), want, "cut {cut}");
        }
        // One byte at a time.
        let every: Vec<usize> = (0..=input.len()).collect();
        assert_eq!(scan_split(input, &every), want);
    }

    #[test]
    fn reference_agrees_on_basics() {
        let outcome = |content: &[u8], end, saw_bare_cr_or_lf| Outcome {
            content: content.to_vec(),
            end,
            saw_bare_cr_or_lf,
        };
        assert_eq!(reference::scan(b".\r\n"), outcome(b"", Some(3), false));
        assert_eq!(
            reference::scan(b"..\r\n.\r\n"),
            outcome(b".\r\n", Some(7), false)
        );
        // Held back: what may still become the terminator; a trailing CR is undecided.
        assert_eq!(reference::scan(b"a\r\n.\r"), outcome(b"a\r\n", None, false));
        assert_eq!(reference::scan(b"a\r"), outcome(b"a\r", None, false));
        // Not at a line start (no CR LF before it), the dot is plain content.
        assert_eq!(reference::scan(b"\n.\n"), outcome(b"\n.\n", None, true));
    }

    #[test]
    fn smuggling_vectors_hold_no_terminator() {
        for vector in SMUGGLING_VECTORS {
            assert!(
                !vector.bytes.windows(5).any(|w| w == b"\r\n.\r\n"),
                "{}",
                vector.name
            );
            // Each is ASCII-named after its bytes: "CR", "LF", "NUL" and ".".
            let spelled: Vec<u8> = vector
                .name
                .split(' ')
                .flat_map(|token| match token {
                    "CR" => vec![b'\r'],
                    "LF" => vec![b'\n'],
                    "NUL" => vec![0],
                    "." => vec![b'.'],
                    other => panic!("unexpected token {other:?} in {}", vector.name),
                })
                .collect();
            assert_eq!(spelled, vector.bytes, "{}", vector.name);
        }
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
            // Content, end and the bare CR/LF flag all agree, also without a terminator.
            prop_assert_eq!(scan_split(&input, &cuts), reference::scan(&input));
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
