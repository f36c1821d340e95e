//! The load generator's own SMTP reply parser.
//!
//! Deliberately independent of the server's code: a framing bug shared by server and load
//! generator would hide from every load test. It frames replies (RFC 5321 §4.2: one or more
//! lines `ddd-text` ... `ddd text`, each ending in CR LF, all with the same code), checks
//! them strictly, and reads the enhanced status code (RFC 3463) of the last line if present.
//!
//! What it does not do: decide whether a reply is the one expected (the client does).

use memchr::memchr;

/// Longest reply line we accept, CR LF included (RFC 5321 §4.5.3.1.5 says 512).
pub const MAX_REPLY_LINE: usize = 2048;
/// Most lines in one reply (an EHLO reply is the longest we expect).
pub const MAX_REPLY_LINES: usize = 128;

/// One complete reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code `class.subject.detail` of the last line, if it has one.
    pub enhanced: Option<(u8, u16, u16)>,
    /// How many lines the reply had.
    pub lines: usize,
}

/// Why bytes from the server are not a valid reply: the session is out of sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// A line does not start with three digits followed by space, hyphen or CR LF.
    BadLine,
    /// Lines of one reply carry different codes.
    CodeChanged,
    /// A line or the whole reply is too long.
    TooLong,
}

impl std::fmt::Display for ReplyError {
    /// Words for the output's error details (RFC 5321 §4.2: a reply line is a three-digit
    /// code, then a space, a hyphen or the line end; every line of a reply has the same code).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplyError::BadLine => "a line without a three-digit code and space or hyphen",
            ReplyError::CodeChanged => "the lines of one reply carry different codes",
            ReplyError::TooLong => "a reply line or reply too long",
        })
    }
}

/// Parses one reply at the start of `buf`. `Ok(None)` means incomplete: read more.
/// On success returns the reply and the bytes it took.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = 0;
    loop {
        let rest = &buf[pos..];
        let Some(lf) = memchr(b'\n', &rest[..rest.len().min(MAX_REPLY_LINE)]) else {
            return if rest.len() >= MAX_REPLY_LINE {
                Err(ReplyError::TooLong)
            } else {
                Ok(None)
            };
        };
        if lf == 0 || rest[lf - 1] != b'\r' {
            return Err(ReplyError::BadLine);
        }
        let line = &rest[..lf - 1];
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(ReplyError::BadLine);
        }
        let this_code = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        if !(200..=599).contains(&this_code) && !(100..200).contains(&this_code) {
            return Err(ReplyError::BadLine);
        }
        if *code.get_or_insert(this_code) != this_code {
            return Err(ReplyError::CodeChanged);
        }
        lines += 1;
        pos += lf + 1;
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(ReplyError::BadLine),
        };
        if last {
            let text = line.get(4..).unwrap_or(b"");
            return Ok(Some((
                Reply {
                    code: this_code,
                    enhanced: parse_enhanced(text, this_code),
                    lines,
                },
                pos,
            )));
        }
        if lines >= MAX_REPLY_LINES {
            return Err(ReplyError::TooLong);
        }
    }
}

/// Reads `c.s.d` at the start of the reply text if its class matches the reply code.
fn parse_enhanced(text: &[u8], code: u16) -> Option<(u8, u16, u16)> {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let mut parts = text[..end].split(|&b| b == b'.');
    let mut number = |max_digits: usize| -> Option<u16> {
        let part = parts.next()?;
        if part.is_empty() || part.len() > max_digits || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // At most three ASCII digits: the value fits, and needs no parser.
        Some(
            part.iter()
                .fold(0u16, |n, &digit| n * 10 + u16::from(digit - b'0')),
        )
    };
    let class = number(1)?;
    let subject = number(3)?;
    let detail = number(3)?;
    if parts.next().is_some() || u16::from(class as u8) * 100 > code || code >= (class + 1) * 100 {
        return None;
    }
    Some((class as u8, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
        parse_reply(buf)
    }

    #[test]
    fn single_and_multi_line() {
        assert_eq!(
            one(b"250 2.1.0 Ok\r\n"),
            Ok(Some((
                Reply {
                    code: 250,
                    enhanced: Some((2, 1, 0)),
                    lines: 1
                },
                14
            )))
        );
        let ehlo = b"250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
        assert_eq!(
            one(ehlo),
            Ok(Some((
                Reply {
                    code: 250,
                    enhanced: None,
                    lines: 3
                },
                ehlo.len()
            )))
        );
        assert_eq!(one(b"354 go ahead\r\n").unwrap().unwrap().0.enhanced, None);
        assert_eq!(one(b"221\r\n").unwrap().unwrap().0.code, 221);
        // Two replies back to back: only the first is taken.
        assert_eq!(one(b"250 Ok\r\n221 Bye\r\n").unwrap().unwrap().1, 8);
        // A class that does not match the code is not an enhanced code.
        assert_eq!(one(b"250 5.1.0 odd\r\n").unwrap().unwrap().0.enhanced, None);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let reply = b"250-mx.example\r\n250-SIZE 1000\r\n250 OK\r\n";
        for end in 0..reply.len() {
            assert_eq!(one(&reply[..end]), Ok(None), "prefix {end}");
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(one(b"25 x\r\n"), Err(ReplyError::BadLine));
        assert_eq!(one(b"2500 x\r\n"), Err(ReplyError::BadLine));
        assert_eq!(one(b"abc x\r\n"), Err(ReplyError::BadLine));
        assert_eq!(one(b"250 x\n"), Err(ReplyError::BadLine));
        assert_eq!(one(b"250-a\r\n251 b\r\n"), Err(ReplyError::CodeChanged));
        assert_eq!(one(b"099 x\r\n"), Err(ReplyError::BadLine));
        assert_eq!(one(&[b'2'; 5000]), Err(ReplyError::TooLong));
    }

    #[test]
    fn enhanced_codes() {
        type Enhanced = Option<(u8, u16, u16)>;
        let cases: &[(&[u8], Enhanced)] = &[
            (b"250 2.1.0 Ok\r\n", Some((2, 1, 0))),
            (b"550 5.7.1\r\n", Some((5, 7, 1))),
            (b"451 4.123.456 busy\r\n", Some((4, 123, 456))),
            (
                b"250-first 2.0.0\r\n250 2.1.5 last line counts\r\n",
                Some((2, 1, 5)),
            ),
            (b"250-2.0.0 first\r\n250 last\r\n", None),
            (b"250 2.1 Ok\r\n", None),
            (b"250 2.1.0.0 Ok\r\n", None),
            (b"250 2.1000.0 Ok\r\n", None),
            (b"250 22.1.0 Ok\r\n", None),
            (b"250 2..0 Ok\r\n", None),
            (b"250 2.x.0 Ok\r\n", None),
            (b"550 4.1.1 wrong class\r\n", None),
            (b"250\r\n", None),
        ];
        for (text, enhanced) in cases {
            let (reply, used) = one(text).unwrap().unwrap();
            assert_eq!(
                reply.enhanced,
                *enhanced,
                "{:?}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(used, text.len());
        }
    }

    #[test]
    fn limits() {
        // A line of exactly MAX_REPLY_LINE bytes (CR LF included) is taken; one more is not.
        let mut line = b"250 ".to_vec();
        line.resize(MAX_REPLY_LINE - 2, b'x');
        line.extend_from_slice(b"\r\n");
        assert_eq!(one(&line).unwrap().unwrap().1, MAX_REPLY_LINE);
        line.insert(5, b'x');
        assert_eq!(one(&line), Err(ReplyError::TooLong));
        // MAX_REPLY_LINES lines are taken; one more is not.
        let mut many = b"250-x\r\n".repeat(MAX_REPLY_LINES - 1);
        many.extend_from_slice(b"250 x\r\n");
        assert_eq!(one(&many).unwrap().unwrap().0.lines, MAX_REPLY_LINES);
        let mut too_many = b"250-x\r\n".repeat(MAX_REPLY_LINES);
        too_many.extend_from_slice(b"250 x\r\n");
        assert_eq!(one(&too_many), Err(ReplyError::TooLong));
        // Codes: 1yz to 5yz only.
        assert_eq!(one(b"100 x\r\n").unwrap().unwrap().0.code, 100);
        assert_eq!(one(b"599 x\r\n").unwrap().unwrap().0.code, 599);
        assert_eq!(one(b"600 x\r\n"), Err(ReplyError::BadLine));
        assert_eq!(one(b"\r\n"), Err(ReplyError::BadLine));
        assert_eq!(one(b"\n"), Err(ReplyError::BadLine));
        assert_eq!(one(b"250_x\r\n"), Err(ReplyError::BadLine));
        assert_eq!(one(b"250-\r\n250 \r\n").unwrap().unwrap().0.lines, 2);
    }

    /// Reads every reply of `stream` delivered in `chunks` as a connection would: buffer,
    /// take complete replies, keep the rest.
    fn read_all(chunks: &[&[u8]]) -> (Vec<Reply>, Option<ReplyError>) {
        let mut buffer = Vec::new();
        let mut replies = Vec::new();
        for chunk in chunks {
            buffer.extend_from_slice(chunk);
            loop {
                match parse_reply(&buffer) {
                    Ok(Some((reply, used))) => {
                        replies.push(reply);
                        buffer.drain(..used);
                    }
                    Ok(None) => break,
                    Err(e) => return (replies, Some(e)),
                }
            }
        }
        (replies, None)
    }

    #[test]
    fn every_split_point_gives_the_same_replies() {
        let stream: &[u8] = b"220-mx.test ESMTP\r\n220 ready\r\n250-mx.test\r\n\
            250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n250 2.1.0 Ok\r\n\
            550 5.1.1 No such user\r\n250 2.1.5 Ok\r\n354 go\r\n250 2.0.0 queued\r\n221\r\n";
        let (whole, error) = read_all(&[stream]);
        assert_eq!(error, None);
        let codes: Vec<u16> = whole.iter().map(|r| r.code).collect();
        assert_eq!(codes, [220, 250, 250, 550, 250, 354, 250, 221]);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(read_all(&[a, b]), (whole.clone(), None), "cut at {cut}");
            for second in cut..=stream.len().min(cut + 40) {
                let (b, c) = b.split_at(second - cut);
                assert_eq!(
                    read_all(&[a, b, c]),
                    (whole.clone(), None),
                    "cuts {cut} {second}"
                );
            }
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read_all(&bytes), (whole, None));
    }

    /// The grammar again, as a plain byte loop: `(code, lines, bytes)` of the first reply,
    /// `None` if incomplete, or the error.
    fn naive(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, ReplyError> {
        let mut code: Option<u16> = None;
        let mut lines = 0;
        let mut start = 0;
        let mut i = 0;
        while i < buf.len() {
            if i - start >= MAX_REPLY_LINE {
                return Err(ReplyError::TooLong);
            }
            if buf[i] != b'\n' {
                i += 1;
                continue;
            }
            let line = &buf[start..i];
            if line.last() != Some(&b'\r') {
                return Err(ReplyError::BadLine);
            }
            let line = &line[..line.len() - 1];
            if line.len() < 3 || !line[..3].iter().all(|b| b.is_ascii_digit()) {
                return Err(ReplyError::BadLine);
            }
            let this: u16 = std::str::from_utf8(&line[..3]).unwrap().parse().unwrap();
            if !(100..600).contains(&this) {
                return Err(ReplyError::BadLine);
            }
            if code.is_some_and(|c| c != this) {
                return Err(ReplyError::CodeChanged);
            }
            code = Some(this);
            lines += 1;
            match line.get(3) {
                None | Some(b' ') => return Ok(Some((this, lines, i + 1))),
                Some(b'-') if lines < MAX_REPLY_LINES => {}
                Some(b'-') => return Err(ReplyError::TooLong),
                Some(_) => return Err(ReplyError::BadLine),
            }
            i += 1;
            start = i;
        }
        if buf.len() - start >= MAX_REPLY_LINE {
            return Err(ReplyError::TooLong);
        }
        Ok(None)
    }

    #[test]
    fn agrees_with_a_naive_reference() {
        let pieces: &[&[u8]] = &[
            b"250", b"251", b"354", b"099", b"600", b"25", b"2500", b"-", b" ", b"ok", b"2.1.0",
            b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"x", b"", b"\xff",
        ];
        let mut rng = crate::drive::workload::Rng::new(7);
        for round in 0..50_000 {
            let mut buf = Vec::new();
            for _ in 0..rng.next_u64() % 12 {
                buf.extend_from_slice(pieces[rng.next_u64() as usize % pieces.len()]);
            }
            let ours =
                parse_reply(&buf).map(|r| r.map(|(reply, used)| (reply.code, reply.lines, used)));
            assert_eq!(
                ours,
                naive(&buf),
                "round {round}: {:?}",
                String::from_utf8_lossy(&buf)
            );
        }
        // Long input: the limits agree too.
        for len in [
            MAX_REPLY_LINE - 3,
            MAX_REPLY_LINE - 2,
            MAX_REPLY_LINE - 1,
            MAX_REPLY_LINE,
        ] {
            let mut buf = b"250 ".to_vec();
            buf.resize(len, b'y');
            for tail in [&b""[..], b"\r\n", b"\n"] {
                let buf = [&buf[..], tail].concat();
                let ours = parse_reply(&buf)
                    .map(|r| r.map(|(reply, used)| (reply.code, reply.lines, used)));
                assert_eq!(ours, naive(&buf), "len {} tail {tail:?}", buf.len());
            }
        }
    }
}
