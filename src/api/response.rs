//! What the API answers with: a response body that is either whole (JSON, text, a message's
//! raw bytes shared with the store, never copied) or an event stream, and the JSON and
//! error responses every route builds.
//!
//! What it does not do: decide statuses (the routes do) or write HTTP (hyper does).

use super::events::EventStream;
use crate::control::Conn;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use hyper::{Response, StatusCode};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// A response body.
#[derive(Debug)]
pub enum ApiBody {
    /// All of it at once (`None` once sent): hyper writes its length in `Content-Length`.
    Whole(Option<Bytes>),
    /// Server-sent events until the client goes away, the server stops, or the mailbox a
    /// stream follows ends.
    Events(Box<EventStream>),
    /// A large body sent a slice at a time (see [`Sending`]).
    Sending(Box<Sending>),
    /// A message's file, read and sent a slice at a time (see [`FileSending`]).
    File(Box<FileSending>),
}

/// Bodies larger than this go out in slices of this size ([`ApiBody::Sending`]).
pub const SLICE: usize = 64 << 10;

/// A large body on its way out, a slice at a time: each slice hyper asks for extends the
/// connection's deadline ([`Conn::hold`]), so a body is cut off only when the client stops
/// reading for the request timeout, never because it is large; and its octets stay
/// counted in the API's bytes in flight until it is sent or dropped.
#[derive(Debug)]
pub struct Sending {
    /// The whole body (slices of it are shared, not copied).
    bytes: Bytes,
    /// Octets sent so far.
    sent: usize,
    /// The connection, to extend its deadline.
    conn: Conn,
    /// The octets counted in flight (0 for a store's own bytes) and the counter.
    charge: (usize, Arc<AtomicUsize>),
}

impl Sending {
    /// `bytes` to send over `conn`, `charged` octets of them counted in `in_flight`
    /// (already added by the caller).
    pub fn new(bytes: Bytes, conn: Conn, charged: usize, in_flight: Arc<AtomicUsize>) -> Sending {
        Sending {
            bytes,
            sent: 0,
            conn,
            charge: (charged, in_flight),
        }
    }

    /// The next slice, if any.
    fn next(&mut self) -> Option<Bytes> {
        if self.sent >= self.bytes.len() {
            return None;
        }
        let end = (self.sent + SLICE).min(self.bytes.len());
        let slice = self.bytes.slice(self.sent..end);
        self.sent = end;
        self.conn.hold(std::time::Duration::ZERO);
        Some(slice)
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.charge.1.fetch_sub(self.charge.0, Ordering::Relaxed);
    }
}

/// A message's file (`--store eml:DIR`) on its way out: each slice of at most [`SLICE`]
/// octets is read on a blocking thread (never on this runtime's thread, never the whole
/// file in memory) when hyper asks for it, so a slow client holds one slice, and each slice
/// extends the connection's deadline as [`Sending`]'s do. A file that ends early (cut behind
/// the server's back after it was opened) or fails to read ends the body short: hyper then
/// closes the connection, and the client sees less than the `Content-Length` it was told.
#[derive(Debug)]
pub struct FileSending {
    /// The file, while no read is on its way.
    file: Option<std::fs::File>,
    /// Octets still to send.
    left: u64,
    /// The read on its way: the file back, and what it read.
    reading: Option<tokio::task::JoinHandle<(std::fs::File, std::io::Result<Vec<u8>>)>>,
    /// The connection, to extend its deadline.
    conn: Conn,
}

impl FileSending {
    /// The first `len` octets of `file` (opened, its length checked: `crate::view::body`),
    /// to send over `conn`.
    pub fn new(file: std::fs::File, len: u64, conn: Conn) -> FileSending {
        FileSending {
            file: Some(file),
            left: len,
            reading: None,
            conn,
        }
    }

    /// Reads up to `want` octets from `file` (fewer only at its end).
    fn read(file: &mut std::fs::File, want: usize) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(want);
        file.take(want as u64).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The next slice: `Ready(None)` at the end (or on a short or failed read).
    fn poll_slice(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        use std::future::Future;
        loop {
            if let Some(reading) = &mut self.reading {
                let read = match Pin::new(reading).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(read) => read,
                };
                self.reading = None;
                return match read {
                    Ok((file, Ok(bytes))) if !bytes.is_empty() => {
                        self.left = self.left.saturating_sub(bytes.len() as u64);
                        self.file = Some(file);
                        self.conn.hold(std::time::Duration::ZERO);
                        Poll::Ready(Some(Bytes::from(bytes)))
                    }
                    _ => {
                        self.left = 0;
                        Poll::Ready(None)
                    }
                };
            }
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let Some(mut file) = self.file.take() else {
                return Poll::Ready(None);
            };
            let want = usize::try_from(self.left).map_or(SLICE, |left| left.min(SLICE));
            self.reading = Some(tokio::task::spawn_blocking(move || {
                let read = FileSending::read(&mut file, want);
                (file, read)
            }));
        }
    }
}

impl Body for ApiBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ApiBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ApiBody::Events(stream) => stream.poll_event(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
            ApiBody::Sending(sending) => Poll::Ready(sending.next().map(|b| Ok(Frame::data(b)))),
            ApiBody::File(file) => file.poll_slice(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ApiBody::Whole(bytes) => bytes.is_none(),
            ApiBody::Events(_) => false,
            ApiBody::Sending(sending) => sending.sent >= sending.bytes.len(),
            ApiBody::File(file) => file.left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ApiBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ApiBody::Events(_) => SizeHint::default(),
            ApiBody::Sending(sending) => {
                SizeHint::with_exact((sending.bytes.len() - sending.sent) as u64)
            }
            ApiBody::File(file) => SizeHint::with_exact(file.left),
        }
    }
}

/// A response with `status`, `content_type` and `body`, and `X-Content-Type-Options:
/// nosniff` (an error's JSON or text can echo what a request carried: a browser must never
/// guess it is HTML).
pub fn whole(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ApiBody> {
    let mut response = Response::new(ApiBody::Whole(Some(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A response with `status`, a content type made at run time (a part's) and `body`, and the
/// headers that keep a browser from treating content a message carried as part of this
/// origin: `Content-Security-Policy: sandbox; default-src 'none'` (no script, nothing
/// loaded, an opaque origin) and `X-Content-Type-Options: nosniff`.
pub fn whole_with(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response<ApiBody> {
    let mut response = Response::new(ApiBody::Whole(Some(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    confine(headers);
    response
}

/// Adds the headers of [`whole_with`] that confine content a message carried.
pub fn confine(headers: &mut hyper::HeaderMap) {
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ApiBody> {
    let mut text = serde_json::to_vec(value).unwrap_or_default();
    text.push(b'\n');
    whole(status, "application/json", Bytes::from(text))
}

/// An error: `{"error": {"status": N, "message": "..."}}`.
pub fn error(status: StatusCode, message: &str) -> Response<ApiBody> {
    json(
        status,
        &serde_json::json!({"error": {"status": status.as_u16(), "message": message}}),
    )
}
