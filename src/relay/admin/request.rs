//! The control socket's requests: one line of ASCII words, parsed without I/O.
//!
//! ```text
//! list | show ID | retry ID | retry all | bounce ID | delete ID | delete all
//! ```
//!
//! `ID` is a spool id as the tools print it (16 hexadecimal digits; fewer, and either case,
//! are accepted). A request ends at `\n` (a `\r` before it is ignored) and is at most
//! [`MAX_REQUEST_BYTES`] long; one request per connection.
//!
//! What it does: [`next_request`] frames the line out of what was read so far,
//! [`parse_request`] reads it, [`request_into`] writes one (the tool's side). What it does
//! not do: act on a request or read a socket.

use crate::relay::spool::SpoolId;
use std::fmt;

/// The longest request line, `\n` included, in bytes (the longest real one is 24).
pub const MAX_REQUEST_BYTES: usize = 256;

/// Which messages an action is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One message.
    One(SpoolId),
    /// Every live message (`all`).
    All,
}

/// A request to the relay's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Every live message, in id order.
    List,
    /// One message.
    Show(SpoolId),
    /// Try the deferred recipients now (postsuper `-r`, postqueue `-i`).
    Retry(Target),
    /// Fail every recipient not final with [`BOUNCE_REPLY`]; the failure notification
    /// follows the normal rules.
    Bounce(SpoolId),
    /// Remove from the queue, with no notification (postsuper `-d`).
    Delete(Target),
}

/// The reply kept for the recipients a `bounce` fails (a local reason: no reply code, RFC
/// 3463's `5.0.0`, "other undefined status").
pub const BOUNCE_REPLY: &[u8] = b"5.0.0 bounced by the administrator";

/// Why a request line is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST_BYTES`] without a `\n`.
    TooLong,
    /// Not valid ASCII words.
    NotText,
    /// An unknown verb.
    UnknownVerb,
    /// A missing, extra or unreadable argument.
    BadArgument,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::TooLong => "request line too long",
            RequestError::NotText => "request is not ASCII text",
            RequestError::UnknownVerb => "unknown request (list, show, retry, bounce or delete)",
            RequestError::BadArgument => "bad argument (a spool id, or all for retry/delete)",
        })
    }
}

/// The request line at the start of `buf`, without its `\n` (and `\r`), once it is whole;
/// `Ok(None)` while more may come; [`RequestError::TooLong`] once `buf` holds
/// [`MAX_REQUEST_BYTES`] without a `\n`.
pub fn next_request(buf: &[u8]) -> Result<Option<&[u8]>, RequestError> {
    let window = &buf[..buf.len().min(MAX_REQUEST_BYTES)];
    match memchr::memchr(b'\n', window) {
        Some(end) => {
            let line = &buf[..end];
            Ok(Some(line.strip_suffix(b"\r").unwrap_or(line)))
        }
        None if buf.len() >= MAX_REQUEST_BYTES => Err(RequestError::TooLong),
        None => Ok(None),
    }
}

/// Reads a spool id: 1 to 16 hexadecimal digits, either case.
pub fn parse_id(text: &[u8]) -> Option<SpoolId> {
    if text.is_empty() || text.len() > 16 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    u64::from_str_radix(text, 16).ok().map(SpoolId)
}

/// Reads one request line (without its `\n`).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if !line.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err(RequestError::NotText);
    }
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let verb = words.next().ok_or(RequestError::UnknownVerb)?;
    let argument = words.next();
    if words.next().is_some() {
        return Err(RequestError::BadArgument);
    }
    let id = || argument.and_then(parse_id).ok_or(RequestError::BadArgument);
    let target = || match argument {
        Some(word) if word.eq_ignore_ascii_case(b"all") => Ok(Target::All),
        _ => id().map(Target::One),
    };
    let verb = verb.to_ascii_lowercase();
    match verb.as_slice() {
        b"list" if argument.is_none() => Ok(Request::List),
        b"list" => Err(RequestError::BadArgument),
        b"show" => id().map(Request::Show),
        b"retry" => target().map(Request::Retry),
        b"bounce" => id().map(Request::Bounce),
        b"delete" => target().map(Request::Delete),
        _ => Err(RequestError::UnknownVerb),
    }
}

/// Writes `request` as its line, `\n` included.
pub fn request_into(request: &Request, out: &mut Vec<u8>) {
    let target = |target: &Target| match target {
        Target::One(id) => id.to_string(),
        Target::All => "all".to_owned(),
    };
    let line = match request {
        Request::List => "list".to_owned(),
        Request::Show(id) => format!("show {id}"),
        Request::Retry(t) => format!("retry {}", target(t)),
        Request::Bounce(id) => format!("bounce {id}"),
        Request::Delete(t) => format!("delete {}", target(t)),
    };
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_the_table_says() {
        let one = SpoolId(0x2a);
        let cases: &[(&[u8], Result<Request, RequestError>)] = &[
            (b"list", Ok(Request::List)),
            (b"LIST", Ok(Request::List)),
            (b"  list  ", Ok(Request::List)),
            (b"show 000000000000002A", Ok(Request::Show(one))),
            (b"show 2a", Ok(Request::Show(one))),
            (b"retry 2A", Ok(Request::Retry(Target::One(one)))),
            (b"retry all", Ok(Request::Retry(Target::All))),
            (b"retry ALL", Ok(Request::Retry(Target::All))),
            (b"delete 2a", Ok(Request::Delete(Target::One(one)))),
            (b"delete all", Ok(Request::Delete(Target::All))),
            (b"bounce 2a", Ok(Request::Bounce(one))),
            (b"bounce all", Err(RequestError::BadArgument)),
            (b"show all", Err(RequestError::BadArgument)),
            (b"show", Err(RequestError::BadArgument)),
            (b"show 2a 2b", Err(RequestError::BadArgument)),
            (b"show 0x2a", Err(RequestError::BadArgument)),
            (b"show 00000000000000002A", Err(RequestError::BadArgument)),
            (b"show -1", Err(RequestError::BadArgument)),
            (b"list 2a", Err(RequestError::BadArgument)),
            (b"", Err(RequestError::UnknownVerb)),
            (b"hold 2a", Err(RequestError::UnknownVerb)),
            (b"list\0", Err(RequestError::NotText)),
            (b"show \xff", Err(RequestError::NotText)),
            (b"show\t2a", Err(RequestError::NotText)),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_request(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn every_request_reads_back_as_written() {
        let id = SpoolId(u64::MAX);
        for request in [
            Request::List,
            Request::Show(id),
            Request::Retry(Target::One(id)),
            Request::Retry(Target::All),
            Request::Bounce(SpoolId(1)),
            Request::Delete(Target::One(SpoolId(0))),
            Request::Delete(Target::All),
        ] {
            let mut line = Vec::new();
            request_into(&request, &mut line);
            assert!(line.len() <= MAX_REQUEST_BYTES);
            let framed = next_request(&line).unwrap().unwrap();
            assert_eq!(parse_request(framed), Ok(request));
        }
    }

    #[test]
    fn framing_waits_for_the_newline_at_every_split() {
        let input = b"show 000000000000002A\r\nlist\n";
        let first = input.iter().position(|&b| b == b'\n').unwrap();
        for end in 0..=input.len() {
            let got = next_request(&input[..end]).unwrap();
            if end <= first {
                assert_eq!(got, None, "prefix of {end} bytes");
            } else {
                assert_eq!(got, Some(&b"show 000000000000002A"[..]));
            }
        }
    }

    #[test]
    fn a_line_without_newline_is_refused_at_the_bound() {
        let long = vec![b'a'; MAX_REQUEST_BYTES - 1];
        assert_eq!(next_request(&long), Ok(None));
        let long = vec![b'a'; MAX_REQUEST_BYTES];
        assert_eq!(next_request(&long), Err(RequestError::TooLong));
        let mut late = vec![b'a'; MAX_REQUEST_BYTES];
        late.push(b'\n');
        assert_eq!(next_request(&late), Err(RequestError::TooLong));
    }
}
