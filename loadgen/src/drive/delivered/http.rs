//! The HTTP/1.1 framing the event stream arrives in, sans I/O: the response head and the
//! chunked body.
//!
//! What it does: write the one kind of request the watcher sends ([`request_into`]), parse a
//! response head ([`parse_head`], with `httparse`: a small, well-kept parser hyper itself
//! uses, so status line and header rules are not hand-written again here), and undo the
//! chunked transfer coding (RFC 9112 §7.1) a byte at a time across any split of the input
//! ([`Chunked`]). An event stream has no length, so a server sends it chunked (HTTP/1.1) or
//! until it closes.
//!
//! What it does not do: sockets or time (the watcher), or the event stream's own format
//! (`sse`).

/// Longest response head accepted, in octets.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 32;
/// Most hexadecimal digits in a chunk size: 15 keep it inside a `u64`.
const MAX_SIZE_DIGITS: usize = 15;

/// A `GET` for `path` to `host` (the `Host` field: the API answers only a loopback name on a
/// loopback address), with `Authorization: Bearer` when a token is given and
/// `Last-Event-ID` when resuming, appended to `out`.
pub fn request_into(
    host: &str,
    path: &str,
    token: Option<&str>,
    last_event_id: Option<u64>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
    out.extend_from_slice(b"Accept: text/event-stream, application/json\r\n");
    out.extend_from_slice(b"User-Agent: smtp-loadgen\r\n");
    if let Some(token) = token {
        out.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    }
    if let Some(id) = last_event_id {
        // WHATWG HTML §9.2 (server-sent events): a reconnecting client names the last id.
        out.extend_from_slice(format!("Last-Event-ID: {id}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: N`.
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// How the body is framed.
    pub framing: Framing,
}

/// The head at the start of `buf` and the octets it takes, `Ok(None)` while incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(format!(
                "a response head longer than {MAX_HEAD_BYTES} octets"
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not an HTTP response: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let mut framing = Framing::Close;
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        if header.name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if header.name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked
        {
            let length = value.trim().parse().map_err(|_| "a bad Content-Length")?;
            framing = Framing::Length(length);
        }
    }
    Ok(Some((Head { status, framing }, used)))
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line: its value so far, its digits, and whether an extension
    /// (`;name=value`, ignored) has started.
    Size {
        /// The size so far.
        value: u64,
        /// Hexadecimal digits read.
        digits: usize,
        /// Whether the rest of the line is a chunk extension.
        extension: bool,
    },
    /// The CR of the size line was read; its LF is next.
    SizeLf(u64),
    /// Inside a chunk: this many octets are left.
    Data(u64),
    /// The CR after a chunk's data is next.
    DataCr,
    /// The LF after a chunk's data is next.
    DataLf,
    /// The last (zero-size) chunk was read: the body has ended.
    Done,
}

/// The chunked transfer coding undone, fed any split of the input.
#[derive(Debug, Clone)]
pub struct Chunked {
    /// Where it is.
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked::new()
    }
}

/// The first state of a size line.
const SIZE: State = State::Size {
    value: 0,
    digits: 0,
    extension: false,
};

impl Chunked {
    /// A decoder at the start of a body.
    pub fn new() -> Chunked {
        Chunked { state: SIZE }
    }

    /// Whether the last chunk has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes all of `input`, appending the body's octets to `out`. Octets after the last
    /// chunk (trailer fields) are ignored.
    pub fn decode_into(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while let Some((&byte, rest)) = input.split_first() {
            if let State::Data(left) = self.state {
                let n = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[..n]);
                input = &input[n..];
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            input = rest;
            self.state = match (self.state, byte) {
                (State::Done, _) => return Ok(()),
                (State::Size { digits: 0, .. }, b'\r' | b'\n') => {
                    return Err("an empty chunk size".into())
                }
                (State::Size { value, .. }, b'\r') => State::SizeLf(value),
                (State::Size { value, .. } | State::SizeLf(value), b'\n') => {
                    if value == 0 {
                        State::Done
                    } else {
                        State::Data(value)
                    }
                }
                (
                    State::Size {
                        value,
                        digits,
                        extension: false,
                    },
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F',
                ) => {
                    if digits == MAX_SIZE_DIGITS {
                        return Err("a chunk size past 15 hexadecimal digits".into());
                    }
                    let digit = (byte as char).to_digit(16).unwrap_or(0);
                    State::Size {
                        value: value * 16 + u64::from(digit),
                        digits: digits + 1,
                        extension: false,
                    }
                }
                (State::Size { value, digits, .. }, b';' | b' ' | b'\t') if digits > 0 => {
                    State::Size {
                        value,
                        digits,
                        extension: true,
                    }
                }
                (
                    state @ State::Size {
                        extension: true, ..
                    },
                    _,
                ) => state,
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataCr | State::DataLf, b'\n') => SIZE,
                (state, byte) => {
                    return Err(format!(
                        "bad chunked framing: octet {byte:#04x} in state {state:?}"
                    ))
                }
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` chunked as a server might: chunks of `sizes`, an extension, a trailer.
    fn chunked(body: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        let mut n = 1;
        while !rest.is_empty() {
            let take = n.min(rest.len());
            wire.extend_from_slice(format!("{take:X}").as_bytes());
            if n == 3 {
                wire.extend_from_slice(b";ext=1");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&rest[..take]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[take..];
            n = n * 2 + 1;
        }
        wire.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
        wire
    }

    #[test]
    fn chunked_bodies_decode_at_every_split_point() {
        let body = b"id: 1\nevent: message\ndata: {\"subject\":\"x\"}\n\nmore text here";
        let wire = chunked(body);
        for split in 0..=wire.len() {
            let mut d = Chunked::new();
            let mut out = Vec::new();
            d.decode_into(&wire[..split], &mut out).unwrap();
            d.decode_into(&wire[split..], &mut out).unwrap();
            assert_eq!(out, body, "split at {split}");
            assert!(d.is_done());
        }
        // One octet at a time.
        let mut d = Chunked::new();
        let mut out = Vec::new();
        for byte in &wire {
            d.decode_into(std::slice::from_ref(byte), &mut out).unwrap();
        }
        assert_eq!(out, body);
    }

    #[test]
    fn bad_chunked_framing_is_an_error_not_a_panic() {
        for wire in [
            &b"\r\n"[..],
            b"zz\r\n",
            b"1\r\nab\r\n",
            b"1\r\naXY",
            b"ffffffffffffffff\r\n",
        ] {
            let mut out = Vec::new();
            assert!(
                Chunked::new().decode_into(wire, &mut out).is_err(),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn heads_say_status_and_framing() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\nrest";
        for split in 0..head.len() - 4 {
            assert_eq!(parse_head(&head[..split]), Ok(None), "{split}");
        }
        let (parsed, used) = parse_head(head).unwrap().unwrap();
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.framing, Framing::Chunked);
        assert_eq!(&head[used..], b"rest");
        let (parsed, _) = parse_head(b"HTTP/1.1 503 No\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((parsed.status, parsed.framing), (503, Framing::Length(12)));
        let (parsed, _) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(parsed.framing, Framing::Close);
        assert!(parse_head(b"SMTP 220 hello\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; MAX_HEAD_BYTES + 1]).is_err());
    }

    #[test]
    fn requests_name_host_token_and_resume_point() {
        let mut out = Vec::new();
        request_into(
            "127.0.0.1:8025",
            "/api/v1/events",
            Some("t"),
            Some(17),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:8025\r\n"));
        assert!(text.contains("Authorization: Bearer t\r\n"));
        assert!(text.contains("Last-Event-ID: 17\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
