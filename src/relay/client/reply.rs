//! Framing the next hop's replies: one complete SMTP reply from the front of a buffer.
//!
//! What it does: [`next_reply`] finds where the first reply in the buffer ends (RFC 5321 §4.2:
//! zero or more `NNN-text` lines, then one `NNN text` or `NNN` line, every line ending in CR LF,
//! every line carrying the same code), checks it strictly, and hands back a [`Reply`] that
//! borrows the buffer: its code, its enhanced status code (RFC 3463, when the text starts with
//! one), its raw bytes and its lines' texts. It allocates nothing. Bytes after the reply are
//! left alone: with PIPELINING (RFC 2920 §3.1) the next reply may already be there, and the
//! caller asks again from the octets [`next_reply`] says it used.
//!
//! What it does not do: decide what a reply means for a command (the client's state machine
//! will), or look inside the text beyond the enhanced code: the text is the next hop's free
//! form (possibly UTF-8 from an SMTPUTF8 server, RFC 6531 §3.7.4.2), so whoever shows it to a
//! person (a notification's `Diagnostic-Code`, a log) must make it printable first.
//!
//! An incomplete reply is `Ok(None)`, never an error, at every split point; an error means the
//! next hop is not speaking SMTP as we understand it, so the connection is out of sync and must
//! be closed (the message is deferred, never guessed at). Errors are judged on complete lines
//! only, except a line that is already longer than the limit.

use memchr::memchr;

/// A reasonable longest reply line, CR LF included, for callers with no reason to choose
/// another. RFC 5321 §4.5.3.1.5 says 512 octets, but real servers send longer rejection texts;
/// four times that keeps memory bounded and refuses nobody real.
pub const MAX_REPLY_LINE_LEN: usize = 2048;

/// A reasonable largest number of lines in one reply: an EHLO reply (RFC 5321 §4.1.1.1) is the
/// longest a next hop sends, and a few dozen extensions is already a lot.
pub const MAX_REPLY_LINES: usize = 128;

/// Why the bytes at the front of the buffer are not an SMTP reply. Any of them means the
/// client is out of sync with the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// A line is longer than the limit (CR LF included), or already longer without its end.
    LineTooLong,
    /// The reply has more lines than the limit.
    TooManyLines,
    /// A line does not start with a three-digit code whose first digit is 2 to 5, second 0 to
    /// 5 and third 0 to 9 (RFC 5321 §4.2 `Reply-code`, §4.2.1).
    BadCode,
    /// The code is followed by something other than `-`, a space or the line's end.
    BadSeparator,
    /// A continuation line carries a code other than the first line's (RFC 5321 §4.2.1: every
    /// line of a multi-line reply has the same code).
    CodeChanged,
    /// A line feed without a carriage return before it (RFC 5321 §2.3.8: lines end in CR LF).
    BareLf,
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplyError::LineTooLong => "a reply line longer than the limit",
            ReplyError::TooManyLines => "a reply with more lines than the limit",
            ReplyError::BadCode => "a reply line without a three-digit code from 200 to 559",
            ReplyError::BadSeparator => "a reply code followed by neither '-', a space nor CR LF",
            ReplyError::CodeChanged => "the lines of one reply carry different codes",
            ReplyError::BareLf => "a reply line ending in a bare LF",
        })
    }
}

impl std::error::Error for ReplyError {}

/// An enhanced status code `class.subject.detail` (RFC 3463 §2; RFC 2034 puts it at the start
/// of a reply's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject, 0 to 999 (1 addressing, 2 mailbox, 3 mail system, ..., 7 security).
    pub subject: u16,
    /// The detail within the subject, 0 to 999.
    pub detail: u16,
}

impl std::fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One complete reply, borrowed from the buffer it was framed in. Only [`next_reply`] makes
/// one, so its raw bytes are always a well-formed reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The three-digit code every line carries.
    code: u16,
    /// The enhanced status code at the start of the first line's text, when it has one.
    enhanced: Option<EnhancedStatus>,
    /// Every line of the reply, each with its code and CR LF.
    raw: &'a [u8],
    /// How many lines `raw` holds (at least one).
    line_count: usize,
}

impl<'a> Reply<'a> {
    /// The reply code, 200 to 559.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code at the start of the first line's text, if it has one whose
    /// class is the code's first digit (RFC 2034 §4: the two classes agree; one that does not
    /// is not trusted to say more than the code).
    pub fn enhanced(&self) -> Option<EnhancedStatus> {
        self.enhanced
    }

    /// The reply as it came, every line with its code and CR LF.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// How many lines the reply has (at least one).
    pub fn line_count(&self) -> usize {
        self.line_count
    }

    /// The text of each line, in order: what follows the code and its `-` or space, without
    /// the CR LF (empty for a bare `NNN` line). The enhanced code, if any, is left in it.
    pub fn lines(&self) -> Lines<'a> {
        Lines { rest: self.raw }
    }

    /// 2yz: the command was accepted (RFC 5321 §4.2.1).
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// 3yz: the command was accepted and more is expected (`354` after `DATA`, `334` in AUTH).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// 4yz: refused for now; the same command may succeed later (RFC 5321 §4.2.1).
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// 5yz: refused for good (RFC 5321 §4.2.1).
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }
}

/// The texts of a [`Reply`]'s lines (see [`Reply::lines`]).
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    /// The lines not yet yielded, each still ending in CR LF.
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        // `rest` is the tail of a framed reply: every line is `NNN`, then optionally a
        // separator and text, then CR LF, and its first LF is its end.
        let lf = memchr(b'\n', self.rest)?;
        let line = &self.rest[..lf - 1];
        self.rest = &self.rest[lf + 1..];
        Some(line.get(4..).unwrap_or_default())
    }
}

/// Frames the first reply in `buf`: the reply and how many octets it used, `Ok(None)` when
/// `buf` holds only the start of one (read more and ask again), or why it is not a reply.
///
/// `max_line` bounds a line, CR LF included; `max_lines` bounds the lines of one reply. Both
/// are checked as soon as they are exceeded, so a next hop that sends an endless line or an
/// endless reply costs at most `max_line` buffered octets per line.
///
/// A bare LF is an error, not a line end. RFC 5321 §2.3.8 says lines end in CR LF; a next hop
/// that ends them otherwise is broken, and guessing where its lines end would risk pairing a
/// reply with the wrong command (a recipient counted as accepted that was refused). Closing
/// and deferring costs only a retry; that guess could lose a message. (Postfix's client is
/// more lenient here; we choose the stricter failure, which is visible and recoverable.)
pub fn next_reply(
    buf: &[u8],
    max_line: usize,
    max_lines: usize,
) -> Result<Option<(Reply<'_>, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = 0;
    let mut enhanced = None;
    let mut line_count = 0;
    loop {
        let rest = &buf[pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        let Some(lf) = memchr(b'\n', &rest[..rest.len().min(max_line)]) else {
            return if rest.len() >= max_line {
                Err(ReplyError::LineTooLong)
            } else {
                Ok(None)
            };
        };
        if lf == 0 || rest[lf - 1] != b'\r' {
            return Err(ReplyError::BareLf);
        }
        let line = &rest[..lf - 1];
        let (line_code, last) = parse_line_head(line)?;
        if line_count == 0 {
            code = line_code;
            enhanced = line
                .get(4..)
                .and_then(|text| parse_enhanced(text, (code / 100) as u8));
        } else if line_code != code {
            return Err(ReplyError::CodeChanged);
        }
        line_count += 1;
        pos += lf + 1;
        if line_count > max_lines {
            return Err(ReplyError::TooManyLines);
        }
        if last {
            let reply = Reply {
                code,
                enhanced,
                raw: &buf[..pos],
                line_count,
            };
            return Ok(Some((reply, pos)));
        }
        if line_count == max_lines {
            // A continuation line at the limit: the reply needs at least one more line.
            return Err(ReplyError::TooManyLines);
        }
    }
}

/// A complete line's code and whether it is the reply's last line (`NNN` alone or `NNN SP
/// text`; `NNN-text` continues). RFC 5321 §4.2: `Reply-code = %x32-35 %x30-35 %x30-39`.
fn parse_line_head(line: &[u8]) -> Result<(u16, bool), ReplyError> {
    let [first @ b'2'..=b'5', second @ b'0'..=b'5', third @ b'0'..=b'9', rest @ ..] = line else {
        return Err(ReplyError::BadCode);
    };
    let code =
        u16::from(first - b'0') * 100 + u16::from(second - b'0') * 10 + u16::from(third - b'0');
    match rest.first() {
        None | Some(b' ') => Ok((code, true)),
        Some(b'-') => Ok((code, false)),
        Some(_) => Err(ReplyError::BadSeparator),
    }
}

/// The enhanced status code at the start of `text`, if there is one of class `class` followed
/// by a space or the end (RFC 3463 §2: `class "." subject "." detail`, class 2, 4 or 5,
/// subject and detail one to three digits).
fn parse_enhanced(text: &[u8], class: u8) -> Option<EnhancedStatus> {
    let [digit @ (b'2' | b'4' | b'5'), b'.', rest @ ..] = text else {
        return None;
    };
    if digit - b'0' != class {
        return None;
    }
    let (subject, rest) = parse_number(rest)?;
    let rest = rest.strip_prefix(b".")?;
    let (detail, rest) = parse_number(rest)?;
    if !matches!(rest.first(), None | Some(b' ')) {
        return None;
    }
    Some(EnhancedStatus {
        class,
        subject,
        detail,
    })
}

/// One to three digits at the start of `text`, and what follows them.
fn parse_number(text: &[u8]) -> Option<(u16, &[u8])> {
    let digits = text
        .iter()
        .take(4)
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) {
        return None;
    }
    let value = text[..digits]
        .iter()
        .fold(0, |value, digit| value * 10 + u16::from(digit - b'0'));
    Some((value, &text[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generous limits, for cases about something else.
    fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ReplyError> {
        next_reply(buf, MAX_REPLY_LINE_LEN, MAX_REPLY_LINES)
    }

    fn texts<'a>(reply: &Reply<'a>) -> Vec<&'a [u8]> {
        reply.lines().collect()
    }

    fn status(class: u8, subject: u16, detail: u16) -> Option<EnhancedStatus> {
        Some(EnhancedStatus {
            class,
            subject,
            detail,
        })
    }

    /// Well-formed replies: the code, the enhanced code, the lines' texts.
    #[test]
    fn complete_replies_are_framed_with_their_code_status_and_texts() {
        type Case = (
            &'static [u8],
            u16,
            Option<EnhancedStatus>,
            &'static [&'static [u8]],
        );
        let cases: &[Case] = &[
            (b"250 2.1.0 Ok\r\n", 250, status(2, 1, 0), &[b"2.1.0 Ok"]),
            (b"250\r\n", 250, None, &[b""]),
            (b"250 \r\n", 250, None, &[b""]),
            (
                b"354 End data with <CR><LF>.<CR><LF>\r\n",
                354,
                None,
                &[b"End data with <CR><LF>.<CR><LF>"],
            ),
            (
                b"550 5.1.1 <a@b>: unknown\r\n",
                550,
                status(5, 1, 1),
                &[b"5.1.1 <a@b>: unknown"],
            ),
            (b"451 4.3.0\r\n", 451, status(4, 3, 0), &[b"4.3.0"]),
            (b"552 5.3.4 x\r\n", 552, status(5, 3, 4), &[b"5.3.4 x"]),
            (
                b"554 5.999.123 x\r\n",
                554,
                status(5, 999, 123),
                &[b"5.999.123 x"],
            ),
            // The class must agree with the code's (RFC 2034 §4); a code-like text that does
            // not end at a space is text.
            (b"250 5.1.1 odd\r\n", 250, None, &[b"5.1.1 odd"]),
            (b"250 2.1.0Ok\r\n", 250, None, &[b"2.1.0Ok"]),
            (b"250 2.1000.0 x\r\n", 250, None, &[b"2.1000.0 x"]),
            (b"250 2..0 x\r\n", 250, None, &[b"2..0 x"]),
            (
                b"220 mx.example ESMTP\r\n",
                220,
                None,
                &[b"mx.example ESMTP"],
            ),
            (
                b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n",
                250,
                None,
                &[b"mx.example", b"PIPELINING", b"SIZE 1000"],
            ),
            (
                b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n",
                550,
                status(5, 7, 1),
                &[b"5.7.1 first", b"5.7.1 second", b"5.7.1 third"],
            ),
            (b"250-\r\n250\r\n", 250, None, &[b"", b""]),
            // Text is not inspected beyond the enhanced code: UTF-8 and tabs pass through.
            (
                b"250 2.0.0 d\xc3\xa9j\xc3\xa0\tvu\r\n",
                250,
                status(2, 0, 0),
                &[b"2.0.0 d\xc3\xa9j\xc3\xa0\tvu"],
            ),
        ];
        for &(input, code, enhanced, lines) in cases {
            let (reply, used) = parse(input)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(input)))
                .unwrap_or_else(|| panic!("{:?} is partial", String::from_utf8_lossy(input)));
            let shown = String::from_utf8_lossy(input);
            assert_eq!(used, input.len(), "{shown:?}");
            assert_eq!(reply.code(), code, "{shown:?}");
            assert_eq!(reply.enhanced(), enhanced, "{shown:?}");
            assert_eq!(reply.raw(), input, "{shown:?}");
            assert_eq!(texts(&reply), lines, "{shown:?}");
            assert_eq!(reply.line_count(), lines.len(), "{shown:?}");
        }
    }

    /// Not replies: each with the error it gets.
    #[test]
    fn malformed_replies_are_errors() {
        let cases: &[(&[u8], ReplyError)] = &[
            (b"25\r\n", ReplyError::BadCode),
            (b"\r\n", ReplyError::BadCode),
            (b"abc ok\r\n", ReplyError::BadCode),
            (b"150 ok\r\n", ReplyError::BadCode),
            (b"650 ok\r\n", ReplyError::BadCode),
            (b"260 ok\r\n", ReplyError::BadCode),
            (b"2x0 ok\r\n", ReplyError::BadCode),
            (b" 250 ok\r\n", ReplyError::BadCode),
            (b"250-ok\r\nxyz\r\n", ReplyError::BadCode),
            (b"2500 ok\r\n", ReplyError::BadSeparator),
            (b"250_ok\r\n", ReplyError::BadSeparator),
            (b"250\tok\r\n", ReplyError::BadSeparator),
            (b"250-a\r\n251 b\r\n", ReplyError::CodeChanged),
            (b"250-a\r\n550-b\r\n550 c\r\n", ReplyError::CodeChanged),
            (b"250 ok\n", ReplyError::BareLf),
            (b"\n", ReplyError::BareLf),
            (b"250-a\r\n250 b\n", ReplyError::BareLf),
            // The first LF ends the line; a bare one in the middle is not skipped over.
            (b"250 a\nb\r\n", ReplyError::BareLf),
        ];
        for &(input, error) in cases {
            assert_eq!(
                parse(input).map(|r| r.map(|(_, used)| used)),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// A line exactly at the limit (CR LF included) is fine; one octet more is not, and that
    /// is known before its end arrives.
    #[test]
    fn line_limit_counts_the_crlf_and_fires_before_the_line_ends() {
        let line = b"250 abcdef\r\n";
        let exact = line.len();
        assert!(matches!(next_reply(line, exact, 1), Ok(Some((_, n))) if n == exact));
        assert_eq!(
            next_reply(line, exact - 1, 1).map(|r| r.is_some()),
            Err(ReplyError::LineTooLong)
        );
        // No end of line yet, but already as long as the limit: it cannot fit.
        assert_eq!(
            next_reply(b"250 abcdef", 10, 1).map(|r| r.is_some()),
            Err(ReplyError::LineTooLong)
        );
        assert!(matches!(next_reply(b"250 abcde", 10, 1), Ok(None)));
        // The second line over the limit, the first within it.
        assert_eq!(
            next_reply(b"250-ab\r\n250 abcdefgh\r\n", 10, 5).map(|r| r.is_some()),
            Err(ReplyError::LineTooLong)
        );
    }

    /// `max_lines` lines are fine; a continuation line at the limit is already an error.
    #[test]
    fn line_count_limit() {
        let three = b"250-a\r\n250-b\r\n250 c\r\n";
        assert!(matches!(next_reply(three, 64, 3), Ok(Some((r, _))) if r.line_count() == 3));
        assert_eq!(
            next_reply(three, 64, 2).map(|r| r.is_some()),
            Err(ReplyError::TooManyLines)
        );
        // Known before the rest arrives: two continuation lines with a limit of two.
        assert_eq!(
            next_reply(b"250-a\r\n250-b\r\n", 64, 2).map(|r| r.is_some()),
            Err(ReplyError::TooManyLines)
        );
        assert_eq!(
            next_reply(b"250 a\r\n", 64, 0).map(|r| r.is_some()),
            Err(ReplyError::TooManyLines)
        );
    }

    /// Every proper prefix of a reply is `Ok(None)`; the whole is the reply, whatever follows.
    #[test]
    fn every_split_point_of_a_multi_line_reply_is_partial_until_the_last_crlf() {
        let replies: &[&[u8]] = &[
            b"250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 CHUNKING\r\n",
            b"550-5.7.1 one\r\n550-5.7.1 two\r\n550 5.7.1 three\r\n",
            b"250-\r\n250-x\r\n250\r\n",
            b"221 2.0.0 Bye\r\n",
        ];
        for &whole in replies {
            for cut in 0..whole.len() {
                assert!(
                    matches!(parse(&whole[..cut]), Ok(None)),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(whole)
                );
            }
            let (reply, used) = parse(whole).unwrap().unwrap();
            assert_eq!((reply.raw(), used), (whole, whole.len()));
            // Whatever follows (the start of the next reply, or garbage) does not change it.
            let mut longer = whole.to_vec();
            longer.extend_from_slice(b"35");
            let (again, used) = parse(&longer).unwrap().unwrap();
            assert_eq!((again, used), (reply, whole.len()));
        }
    }

    /// Pipelined replies in one read (RFC 2920 §3.1): each framed in turn from where the last
    /// ended, then a partial third.
    #[test]
    fn pipelined_replies_in_one_buffer_are_framed_one_after_the_other() {
        let buf = b"250 2.1.0 Ok\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n354 go\r";
        let (first, used) = parse(buf).unwrap().unwrap();
        assert_eq!((first.code(), used), (250, 14));
        let (second, more) = parse(&buf[used..]).unwrap().unwrap();
        assert_eq!(second.code(), 550);
        assert_eq!(second.enhanced(), status(5, 1, 1));
        assert_eq!(texts(&second), [&b"5.1.1 no"[..], b"5.1.1 such user"]);
        assert!(matches!(parse(&buf[used + more..]), Ok(None)));
    }

    #[test]
    fn reply_classes() {
        let class = |input: &[u8]| {
            let (r, _) = parse(input).unwrap().unwrap();
            (
                r.is_positive(),
                r.is_intermediate(),
                r.is_transient(),
                r.is_permanent(),
            )
        };
        assert_eq!(class(b"250 ok\r\n"), (true, false, false, false));
        assert_eq!(class(b"354 go\r\n"), (false, true, false, false));
        assert_eq!(class(b"421 bye\r\n"), (false, false, true, false));
        assert_eq!(class(b"554 no\r\n"), (false, false, false, true));
        assert_eq!(
            EnhancedStatus {
                class: 5,
                subject: 7,
                detail: 1
            }
            .to_string(),
            "5.7.1"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A reply built from a code and lines of text (no CR or LF in them).
        fn build(code: u16, lines: &[Vec<u8>]) -> Vec<u8> {
            let mut out = Vec::new();
            for (index, text) in lines.iter().enumerate() {
                out.extend_from_slice(code.to_string().as_bytes());
                out.push(if index + 1 == lines.len() { b' ' } else { b'-' });
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            out
        }

        fn code() -> impl Strategy<Value = u16> {
            (2u16..=5, 0u16..=5, 0u16..=9).prop_map(|(a, b, c)| a * 100 + b * 10 + c)
        }

        fn text() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
                0..40,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// A reply built from random lines comes back whole: its code, every line's text,
            /// the octets it used; every proper prefix is partial; what follows is left alone.
            #[test]
            fn a_built_reply_round_trips(
                code in code(),
                lines in proptest::collection::vec(text(), 1..8),
                cut in any::<prop::sample::Index>(),
                tail in proptest::collection::vec(any::<u8>(), 0..8),
            ) {
                let wire = build(code, &lines);
                let cut = cut.index(wire.len());
                prop_assert!(matches!(parse(&wire[..cut]), Ok(None)));
                let mut buf = wire.clone();
                buf.extend_from_slice(&tail);
                let (reply, used) = parse(&buf).unwrap().unwrap();
                prop_assert_eq!(used, wire.len());
                prop_assert_eq!(reply.code(), code);
                prop_assert_eq!(reply.raw(), &wire[..]);
                prop_assert_eq!(reply.line_count(), lines.len());
                let got: Vec<Vec<u8>> = reply.lines().map(<[u8]>::to_vec).collect();
                prop_assert_eq!(got, lines);
            }

            /// Whatever the bytes, no panic, and a reply found is a prefix that frames again to
            /// itself.
            #[test]
            fn any_bytes_frame_or_fail_without_panicking(
                buf in proptest::collection::vec(
                    prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'-'), Just(b' '), b'0'..=b'9', any::<u8>()],
                    0..64,
                ),
                max_line in 0usize..20,
                max_lines in 0usize..5,
            ) {
                if let Ok(Some((reply, used))) = next_reply(&buf, max_line, max_lines) {
                    prop_assert!(used <= buf.len());
                    prop_assert_eq!(reply.raw(), &buf[..used]);
                    let (again, again_used) = next_reply(reply.raw(), max_line, max_lines).unwrap().unwrap();
                    prop_assert_eq!((again, again_used), (reply, used));
                    prop_assert_eq!(reply.lines().count(), reply.line_count());
                }
            }
        }
    }
}
