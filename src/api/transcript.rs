//! `GET /api/v1/messages/{id}/transcript`: the SMTP dialogue that delivered a message, as
//! the connection recorded it (`crate::capture::transcript`): `text/plain`, one line each
//! `C: ` (client), `S: ` (server) or `*: ` (a note); with `?format=json`,
//! `[{"dir": "C"|"S"|"*", "at_ms", "line"}]`, `at_ms` counted from the connection's opening.
//!
//! A message seeded over HTTP has no transcript (`404` saying so); so has one whose
//! transcript found no room in the store. The transcript is kept just after the message
//! itself, before its `250` is written: a reader woken by the message's arrival may come
//! first, so a missing transcript of a message received in the last second is waited for a
//! little ([`FRESH_WAIT`]).
//!
//! What it does not do: record anything (the server's connection does), or show content or
//! AUTH secrets (never recorded).

use super::query::{pairs, BadRequest};
use super::response::{error, json, whole, ApiBody};
use crate::capture::transcript::{lines, Dir};
use crate::capture::{Capture, Snapshot};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// How long a missing transcript of a message received within the last second is waited
/// for, in steps of 1 ms.
pub const FRESH_WAIT: Duration = Duration::from_millis(100);

/// The format asked for: `Ok(true)` for JSON.
pub fn format(query: Option<&str>) -> Result<bool, BadRequest> {
    let mut json = None;
    for (key, value) in pairs(query)? {
        match (key.as_str(), value.as_str()) {
            ("format", _) if json.is_some() => {
                return Err(BadRequest("format= given twice".into()));
            }
            ("format", "json") => json = Some(true),
            ("format", "text") => json = Some(false),
            ("format", other) => {
                return Err(BadRequest(format!("format={other:?}: text or json")));
            }
            (other, _) => return Err(BadRequest(format!("unknown parameter {other:?}"))),
        }
    }
    Ok(json.unwrap_or(false))
}

/// The transcript of `message` as asked (`json`), or the `404` saying why there is none.
pub async fn transcript(capture: &Capture, message: &Snapshot, json: bool) -> Response<ApiBody> {
    let id = message.id();
    let mut kept = capture.transcript(&id);
    let smtp = message.envelope().client.is_some();
    let fresh = SystemTime::now()
        .duration_since(message.received_at)
        .is_ok_and(|age| age < Duration::from_secs(1));
    let mut waited = Duration::ZERO;
    while kept.is_none() && smtp && fresh && waited < FRESH_WAIT {
        tokio::time::sleep(Duration::from_millis(1)).await;
        waited += Duration::from_millis(1);
        kept = capture.transcript(&id);
    }
    let Some(kept) = kept else {
        let why = if smtp {
            "no transcript was kept for this message (the capture store had no room for it)"
        } else {
            "this message was seeded over HTTP (POST /api/v1/messages): it has no SMTP transcript"
        };
        return error(StatusCode::NOT_FOUND, why);
    };
    if json {
        return render_json(&kept);
    }
    let mut text = Vec::with_capacity(kept.len() + kept.len() / 8);
    for line in lines(&kept) {
        text.push(line.dir.letter());
        text.extend_from_slice(b": ");
        // The body says charset=utf-8: invalid octets a client sent become U+FFFD here, as
        // in the JSON form.
        text.extend_from_slice(String::from_utf8_lossy(line.text).as_bytes());
        text.push(b'\n');
    }
    whole(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        Bytes::from(text),
    )
}

/// The lines as JSON.
fn render_json(kept: &[u8]) -> Response<ApiBody> {
    let lines: Vec<Value> = lines(kept)
        .map(|line| {
            let dir = match line.dir {
                Dir::Client => "C",
                Dir::Server => "S",
                Dir::Note => "*",
            };
            json!({
                "dir": dir,
                "at_ms": line.at_ms,
                "line": String::from_utf8_lossy(line.text),
            })
        })
        .collect();
    json(StatusCode::OK, &Value::Array(lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_text_or_json() {
        assert_eq!(format(None), Ok(false));
        assert_eq!(format(Some("format=json")), Ok(true));
        assert_eq!(format(Some("format=text")), Ok(false));
        assert!(format(Some("format=xml")).is_err());
        assert!(format(Some("format=json&format=json")).is_err());
        assert!(format(Some("x=1")).is_err());
    }
}
