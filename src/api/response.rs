//! What the API answers with: a response body that is either whole (JSON, text, a message's
//! raw bytes shared with the store, never copied) or an event stream, and the JSON and
//! error responses every route builds.
//!
//! What it does not do: decide statuses (the routes do) or write HTTP (hyper does).

use super::events::EventStream;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body.
#[derive(Debug)]
pub enum ApiBody {
    /// All of it at once (`None` once sent): hyper writes its length in `Content-Length`.
    Whole(Option<Bytes>),
    /// Server-sent events until the client goes away or the server stops.
    Events(Box<EventStream>),
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
            ApiBody::Events(stream) => stream.poll_event(cx).map(|b| Some(Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ApiBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ApiBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ApiBody::Events(_) => SizeHint::default(),
        }
    }
}

/// A response with `status`, `content_type` and `body`.
pub fn whole(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ApiBody> {
    let mut response = Response::new(ApiBody::Whole(Some(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
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
