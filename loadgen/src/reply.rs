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
        std::str::from_utf8(part).ok()?.parse().ok()
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
}
