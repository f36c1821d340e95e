//! One HTTP/1.1 `GET` over a blocking [`TcpStream`], for the probes: the request written
//! whole with `Connection: close`, the response read to its end within a size bound and a
//! deadline, its body taken by `Content-Length`, chunked (RFC 9112 §7.1) or until close.
//!
//! What it does not do: TLS (`https://` is refused with a clear message: the probes talk to
//! a loopback or compose-network API), redirects, keep-alive, or any method but `GET`.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The largest response read: an `await` of 500 summaries is well under it.
pub const MAX_RESPONSE: usize = 16 << 20;

/// Where the API is: `http://HOST:PORT[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// The host as written (a name, an IPv4 address, or `[v6]`).
    pub host: String,
    /// The port (80 when not written).
    pub port: u16,
    /// A path prefix before `/api/v1` (empty, or starting with `/`, no trailing `/`).
    pub prefix: String,
}

impl BaseUrl {
    /// Reads `http://HOST[:PORT][/PREFIX]` (a trailing `/api/v1` is the API's own path, not
    /// part of the prefix).
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let Some(rest) = text.strip_prefix("http://") else {
            return Err(if text.starts_with("https://") {
                format!(
                    "{text}: https is not supported (the probes speak plain HTTP to a nearby API)"
                )
            } else {
                format!("{text}: not an http:// URL (e.g. http://127.0.0.1:8025)")
            });
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => {
                let port = authority[i + 1..]
                    .parse()
                    .map_err(|_| format!("{text}: bad port {:?}", &authority[i + 1..]))?;
                (&authority[..i], port)
            }
            _ => (authority, 80),
        };
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err(format!("{text}: bad host {host:?}"));
        }
        // The docs' `$API` ends in `/api/v1`: the same base, the routes are added here.
        let prefix = path.trim_end_matches('/');
        let prefix = prefix.strip_suffix("/api/v1").unwrap_or(prefix);
        Ok(BaseUrl {
            host: host.to_owned(),
            port,
            prefix: prefix.to_owned(),
        })
    }
}

/// A response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// `GET base + path` (path with its query) with `Authorization: Bearer token` if given, all
/// within `deadline`. Errors say what failed (connect, write, a malformed or oversized
/// response, the deadline).
pub fn get(
    base: &BaseUrl,
    path: &str,
    token: Option<&str>,
    deadline: Instant,
) -> io::Result<Reply> {
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    };
    let host = base.host.trim_start_matches('[').trim_end_matches(']');
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    let mut stream = None;
    for addr in (host, base.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or(last)?;
    let mut head = format!(
        "GET {}{path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nAccept: application/json\r\n",
        base.prefix, base.host, base.port
    );
    if let Some(token) = token {
        if token.contains(['\r', '\n']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the token has a line break",
            ));
        }
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.set_write_timeout(Some(left()?))?;
    stream.write_all(head.as_bytes())?;
    let mut bytes = Vec::new();
    let mut buf = [0; 16 * 1024];
    loop {
        stream.set_read_timeout(Some(left()?))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        if bytes.len() + n > MAX_RESPONSE {
            return Err(bad(format!("the response is over {MAX_RESPONSE} bytes")));
        }
        bytes.extend_from_slice(&buf[..n]);
        if let Some(reply) = complete(&bytes)? {
            return Ok(reply);
        }
    }
    complete(&bytes)?.ok_or_else(|| bad("the connection closed mid-response".into()))
}

/// An `InvalidData` error.
fn bad(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The response in `bytes` if it is all there (a body delimited by `Content-Length` or
/// chunks; else it ends at close, which the caller sees).
fn complete(bytes: &[u8]) -> io::Result<Option<Reply>> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head =
        std::str::from_utf8(&bytes[..end]).map_err(|_| bad("a response head not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| {
            l.strip_prefix("HTTP/1.1 ")
                .or_else(|| l.strip_prefix("HTTP/1.0 "))
        })
        .and_then(|l| l.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad(format!("not an HTTP response: {:?}", head.lines().next())))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| bad("bad Content-Length".into()))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &bytes[end + 4..];
    if chunked {
        return Ok(dechunk(rest)?.map(|body| Reply { status, body }));
    }
    match length {
        Some(n) if rest.len() >= n => Ok(Some(Reply {
            status,
            body: rest[..n].to_vec(),
        })),
        _ => Ok(None),
    }
}

/// A chunked body (RFC 9112 §7.1) if it is all there.
fn dechunk(mut rest: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&rest[..line_end])
            .ok()
            .map(|s| s.split(';').next().unwrap_or("").trim())
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad("bad chunk size".into()))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The time left until `deadline`, at least a millisecond (a zero timeout means "none" to
/// the socket calls).
pub fn until(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_and_https_is_refused_clearly() {
        let url = BaseUrl::parse("http://127.0.0.1:8025").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.prefix.as_str()),
            ("127.0.0.1", 8025, "")
        );
        let url = BaseUrl::parse("http://[::1]:9/mail/").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.prefix.as_str()),
            ("[::1]", 9, "/mail")
        );
        assert_eq!(BaseUrl::parse("http://api").unwrap().port, 80);
        for text in ["http://h:1/api/v1", "http://h:1/api/v1/", "http://h:1"] {
            assert_eq!(BaseUrl::parse(text).unwrap().prefix, "", "{text}");
        }
        assert_eq!(BaseUrl::parse("http://h/p/api/v1").unwrap().prefix, "/p");
        assert!(BaseUrl::parse("https://x")
            .unwrap_err()
            .contains("https is not supported"));
        assert!(BaseUrl::parse("127.0.0.1:8025").is_err());
        assert!(BaseUrl::parse("http://x:port").is_err());
        assert!(BaseUrl::parse("http://").is_err());
    }

    #[test]
    fn responses_are_complete_by_length_or_chunks() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(complete(whole).unwrap().unwrap().body, b"ok");
        assert!(complete(&whole[..whole.len() - 1]).unwrap().is_none());
        let chunked =
            b"HTTP/1.1 408 X\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
        let reply = complete(chunked).unwrap().unwrap();
        assert_eq!((reply.status, reply.body.as_slice()), (408, &b"abc"[..]));
        assert!(complete(b"SSH-2.0\r\n\r\n").is_err());
    }
}
