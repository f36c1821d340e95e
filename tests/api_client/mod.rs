//! What the API tests share: a capture store filled with `Arrival::new`, an `ApiServer` on
//! loopback port 0 over it, and a small HTTP/1.1 client over `TcpStream` that sends bytes
//! exactly as written (path tricks, oversized heads) and reads a response whole, or an event
//! stream event by event.
//!
//! Every read has a bound (`WAIT`) so a broken server fails a test instead of hanging it;
//! no assertion is about time.
#![allow(dead_code)] // each test file uses a part

use bytes::Bytes;
use fastsmtpd::api::{ApiOptions, ApiServer};
use fastsmtpd::capture::{Arrival, Capture, EnvelopeParts, Inserted, Limits, OnFull};
use fastsmtpd::proto::sink::QueueId;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The bound on any one read.
pub const WAIT: Duration = Duration::from_secs(60);

/// A store with default limits and an API over it.
pub fn serve(options: ApiOptions) -> (Arc<Capture>, ApiServer) {
    serve_with(Limits::default(), options)
}

/// A store with `limits` (evicting the oldest) and an API over it.
pub fn serve_with(limits: Limits, options: ApiOptions) -> (Arc<Capture>, ApiServer) {
    let capture = Arc::new(Capture::new(limits, OnFull::EvictOldest));
    let server = ApiServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::clone(&capture),
        options,
    )
    .unwrap();
    (capture, server)
}

/// Keeps a message named `id` from `sender` to `recipients` with `raw` content.
pub fn insert(
    capture: &Capture,
    id: &str,
    sender: &str,
    recipients: &[&str],
    raw: &[u8],
) -> Inserted {
    let arrival = Arrival::new(
        QueueId::new(id.as_bytes()).unwrap(),
        SystemTime::now(),
        Bytes::copy_from_slice(raw),
        &EnvelopeParts {
            sender: sender.as_bytes(),
            params: b"SIZE=100",
            helo: b"client.test",
            client: Some("127.0.0.1:2525".parse().unwrap()),
            tls: None,
            auth_user: None,
        },
        recipients.iter().map(|r| r.as_bytes()),
    );
    capture.insert(arrival).unwrap()
}

/// A message with this subject.
pub fn mail(subject: &str) -> Vec<u8> {
    format!("From: a@test\r\nTo: b@test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nbody\r\n")
        .into_bytes()
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `method path` with `headers` (each `Name: value`) and `Connection: close`, reads the
/// response to its end.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> Response {
    request_with_body(addr, method, path, headers, b"")
}

/// [`request`] with `body` and its `Content-Length` (when it is not empty, or for a `POST` or
/// `PUT` whose headers give none: an empty body said as such).
pub fn request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    let given = headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-length:"));
    if !body.is_empty() || (matches!(method, "POST" | "PUT") && !given) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (a 413) and close before it read the whole body.
    let _ = stream.write_all(body);
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    parse(&bytes, method == "HEAD")
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[])
}

/// A whole response from its bytes.
pub fn parse(bytes: &[u8], head_only: bool) -> Response {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &bytes[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if head_only {
        rest.to_vec()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// A chunked body's content.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
        rest = &rest[line_end + 2 + size + 2..];
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `id:`.
    pub id: String,
    /// `event:`.
    pub event: String,
    /// `data:`.
    pub data: String,
}

/// An open event stream.
pub struct Events {
    /// The connection, read through.
    reader: BufReader<TcpStream>,
    /// Text received and not yet split into events.
    text: String,
    /// The response's status.
    pub status: u16,
}

impl Events {
    /// Opens `path` with `headers`.
    pub fn open(addr: SocketAddr, path: &str, headers: &[&str]) -> Events {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        for header in headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if status == 0 {
                status = line[9..12].parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        Events {
            reader,
            text: String::new(),
            status,
        }
    }

    /// The next event (comments skipped).
    pub fn next(&mut self) -> Event {
        self.next_or_end()
            .unwrap_or_else(|| panic!("the event stream ended"))
    }

    /// The next event, or `None` when the stream ends (its last chunk).
    pub fn next_or_end(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let mut event = Event {
                    id: String::new(),
                    event: String::new(),
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        event.id = v.into();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.into();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data = v.into();
                    }
                }
                if !event.event.is_empty() {
                    return Some(event);
                }
            }
            if !self.read_chunk() {
                return None;
            }
        }
    }

    /// Reads one chunk of the body into `text`; false at the last chunk.
    fn read_chunk(&mut self) -> bool {
        let mut size = String::new();
        self.reader.read_line(&mut size).unwrap();
        let size = usize::from_str_radix(size.trim(), 16)
            .unwrap_or_else(|_| panic!("chunk size {size:?}"));
        if size == 0 {
            return false;
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).unwrap();
        self.text
            .push_str(std::str::from_utf8(&chunk[..size]).unwrap());
        true
    }
}

/// Waits (bounded by `WAIT`) until `done` holds.
#[track_caller]
pub fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
