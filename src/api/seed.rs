//! `POST /api/v1/messages`: a message seeded over HTTP, without SMTP, kept by the same insert
//! as a message the SMTP side accepted (waiters, events, the budget and `--on-full` apply).
//!
//! The request: the body is the message (`Content-Type: message/rfc822` or
//! `application/octet-stream`, else `415`), kept byte for byte as sent (bare LF included:
//! nothing is rewritten, as `/raw` serves what it keeps); the envelope is in the query string:
//! `from=` (the reverse path, required, empty or `<>` for the null path), `rcpt=` (at least
//! one, repeatable), `helo=` (optional). Each address must be one the SMTP side would take in
//! `MAIL FROM:<..>` / `RCPT TO:<..>` (the same parser, RFC 5321 §4.1.2), else `400` naming it.
//!
//! Bounds: a body larger than the SMTP side's message size limit (the `SIZE` its `EHLO`
//! advertises, RFC 1870) is `413`, from `Content-Length` before a byte is read, or as soon as
//! a chunked body's count passes it. Bodies being read count against [`SeedLimits`]' octets in
//! flight (all requests together at most the capture's byte budget, as SMTP connections are
//! bounded): past it `503` with `Retry-After`. Each piece read extends the connection's
//! deadline ([`Conn::hold`]), so a large body is cut only when its sender stalls.
//!
//! The answer: `201 {"id", "seq", "links": {"self", "raw"}}` with `Location`; the id comes
//! from the generator the SMTP side names its messages with
//! ([`crate::store::record::next_queue_id`]), so ids are never reused. A full store under
//! `--on-full tempfail` is `507` (Insufficient Storage, RFC 4918 §11.5: the SMTP side's
//! `452 4.3.1`) with `Retry-After`; a message larger than the whole capture budget `413`.
//!
//! What it does not do: write the message to the file stores (a seeded message lives in the
//! capture store only), record a transcript (there was no SMTP session: its `/transcript` is
//! `404`), or add any header (no `Received:`: the envelope says it was seeded by having no
//! client).

use super::body::{self, BodyError};
use super::query::{pairs, BadRequest};
use super::response::{error, json, ApiBody};
use crate::capture::{Arrival, Capture, EnvelopeParts, Refused};
use crate::control::Conn;
use crate::proto::command::{has_control, parse_command, Command};
use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The bounds of seeded bodies.
#[derive(Debug)]
pub struct SeedLimits {
    /// The largest message (the SMTP side's `SIZE`).
    pub max_message_size: u64,
    /// The longest `helo=` name: what fits the SMTP side's command line
    /// ([`helo_bound`]).
    pub max_helo: usize,
    /// Octets of bodies being read now, over every request.
    in_flight: AtomicU64,
}

impl SeedLimits {
    /// Messages up to `max_message_size` octets, sent by a client whose `HELO` fits a
    /// command line of `max_line_len` octets.
    pub fn new(max_message_size: u64, max_line_len: usize) -> SeedLimits {
        SeedLimits {
            max_message_size,
            max_helo: helo_bound(max_line_len),
            in_flight: AtomicU64::new(0),
        }
    }
}

/// Octets taken in [`SeedLimits`]' count, given back on drop.
struct Taken<'a> {
    /// The count.
    limits: &'a SeedLimits,
    /// Octets taken.
    octets: u64,
}

impl Taken<'_> {
    /// Takes `len` more octets if all bodies together stay within `max`.
    fn take(&mut self, len: u64, max: u64) -> bool {
        let before = self.limits.in_flight.fetch_add(len, Ordering::Relaxed);
        if before + len > max {
            self.limits.in_flight.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        self.octets += len;
        true
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.limits
            .in_flight
            .fetch_sub(self.octets, Ordering::Relaxed);
    }
}

/// The longest `HELO` name the SMTP side takes with command lines of `max_line_len` octets:
/// the line less `HELO ` and its `CR LF` (RFC 5321 §4.5.3.1.4 counts both in the line).
pub fn helo_bound(max_line_len: usize) -> usize {
    max_line_len.saturating_sub("HELO \r\n".len())
}

/// The envelope of a seeded message, from the query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedEnvelope {
    /// The reverse path without brackets; empty for `<>`.
    pub sender: String,
    /// The recipients, in the order given.
    pub recipients: Vec<String>,
    /// The `helo=` name (empty if none).
    pub helo: String,
}

impl SeedEnvelope {
    /// Reads `from=`, `rcpt=` (repeatable) and `helo=` (at most `max_helo` octets, as
    /// [`SeedLimits::max_helo`]); anything else, a missing `from=` or `rcpt=`, or an address
    /// or name the SMTP side would refuse is a [`BadRequest`] naming it.
    pub fn parse(query: Option<&str>, max_helo: usize) -> Result<SeedEnvelope, BadRequest> {
        let mut sender = None;
        let mut recipients = Vec::new();
        let mut helo = None;
        for (key, value) in pairs(query)? {
            match key.as_str() {
                "from" if sender.is_some() => {
                    return Err(BadRequest("from= given twice".into()));
                }
                "from" => sender = Some(path(&key, &value)?),
                "rcpt" => recipients.push(path(&key, &value)?),
                "helo" if helo.is_some() => {
                    return Err(BadRequest("helo= given twice".into()));
                }
                "helo" => {
                    if value.is_empty() || value.contains(' ') || has_control(value.as_bytes()) {
                        return Err(BadRequest(format!(
                            "helo={value:?}: a client name is one word without control \
                             characters (RFC 5321 §4.1.1.1)"
                        )));
                    }
                    if value.len() > max_helo {
                        return Err(BadRequest(format!(
                            "helo=: {} octets, longer than the {max_helo} a HELO name may \
                             have here (the SMTP side's command line, --max-line-len)",
                            value.len()
                        )));
                    }
                    helo = Some(value);
                }
                _ => {
                    return Err(BadRequest(format!(
                        "unknown parameter {key:?} (the envelope is from=, rcpt=, helo=)"
                    )));
                }
            }
        }
        let Some(sender) = sender else {
            return Err(BadRequest(
                "from= is required: the reverse path (from= or from=<> for the null path)".into(),
            ));
        };
        if recipients.is_empty() {
            return Err(BadRequest(
                "rcpt= is required: at least one recipient (rcpt= may be repeated)".into(),
            ));
        }
        Ok(SeedEnvelope {
            sender,
            recipients,
            helo: helo.unwrap_or_default(),
        })
    }
}

/// `value` of `from=` or `rcpt=` as the path `MAIL FROM:<..>` or `RCPT TO:<..>` would take,
/// checked by the SMTP side's parser; brackets around it are optional.
fn path(key: &str, value: &str) -> Result<String, BadRequest> {
    if value.contains(' ') && !value.contains('"') {
        return Err(BadRequest(format!(
            "{key}={value:?}: an address has no space here; a + in a query string reads as a \
             space (HTML form encoding): write + as %2B (user%2Btag@example.com)"
        )));
    }
    let bare = value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value);
    let sender = key == "from";
    let line = if sender {
        format!("MAIL FROM:<{bare}>{}", utf8_parameter(bare))
    } else {
        format!("RCPT TO:<{bare}>")
    };
    match parse_command(line.as_bytes()) {
        // Exactly the address given: no source route, nothing after the `>`.
        Ok(Command::Mail { path, .. }) | Ok(Command::Rcpt { path, .. })
            if path == bare.as_bytes() && (sender || !path.is_empty()) =>
        {
            Ok(bare.to_owned())
        }
        _ => Err(BadRequest(format!(
            "{key}={value:?} is not an address the SMTP side would take in {} (RFC 5321 \
             §4.1.2: local@domain, at most 64 octets before the @ and 255 after)",
            if sender {
                "MAIL FROM:<..>"
            } else {
                "RCPT TO:<..>"
            }
        ))),
    }
}

/// ` SMTPUTF8` for an address with octets beyond ASCII (RFC 6531 §3.4: the parameter that
/// lets a reverse path hold UTF-8).
fn utf8_parameter(address: &str) -> &'static str {
    if address.is_ascii() {
        ""
    } else {
        " SMTPUTF8"
    }
}

/// Whether `headers` name a message: `message/rfc822` or `application/octet-stream`, any
/// parameters, any case.
fn is_message(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = value.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("message/rfc822")
        || media.eq_ignore_ascii_case("application/octet-stream")
}

/// A `413` for a message over `max` octets.
fn too_large(max: u64) -> Response<ApiBody> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "the message is larger than this server's message size limit ({max} octets, \
             the SIZE its EHLO advertises)"
        ),
    )
}

/// A `413` for a message larger than the whole capture budget.
fn over_budget() -> Response<ApiBody> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the message is larger than the whole capture budget (--capture-memory)",
    )
}

/// `response` with `Retry-After: seconds`.
fn retry_after(mut response: Response<ApiBody>, seconds: &'static str) -> Response<ApiBody> {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static(seconds));
    response
}

/// `POST /api/v1/messages` (see the module doc).
pub async fn seed(
    capture: &Capture,
    limits: &SeedLimits,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
    conn: Conn,
) -> Response<ApiBody> {
    let envelope = match SeedEnvelope::parse(query, limits.max_helo) {
        Ok(envelope) => envelope,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.0),
    };
    if !is_message(headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body is the message: send it as Content-Type: message/rfc822 (or \
             application/octet-stream)",
        );
    }
    let max = limits.max_message_size;
    let declared = body.size_hint().exact();
    if declared.is_some_and(|len| len > max) {
        return too_large(max);
    }
    // All bodies being read together stay within the capture's budget (module doc); one
    // larger than the whole budget could never be kept.
    let room = capture.stats().max_bytes;
    if declared.is_some_and(|len| len > room) {
        return over_budget();
    }
    let mut taken = Taken { limits, octets: 0 };
    let started = std::time::Instant::now();
    let admit = |kept: u64, len: u64| {
        // A body still coming keeps its connection open while it comes at the SMTP side's
        // minimum data rate on average (Postfix's `smtpd_min_data_rate`); a slower one, a
        // byte now and then, meets the request deadline and is closed.
        let due = crate::config::DEFAULT_MIN_DATA_RATE.saturating_mul(started.elapsed().as_secs());
        if kept + len >= due {
            conn.hold(std::time::Duration::ZERO);
        }
        if kept + len > room {
            return Some(over_budget());
        }
        (!taken.take(len, room)).then(|| {
            retry_after(
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many messages are being seeded at once (their bodies together \
                     would pass the capture's budget): try again",
                ),
                "1",
            )
        })
    };
    let mut content = match body::read(body, max, admit).await {
        Ok(content) => content,
        Err(BodyError::TooLarge(_)) => return too_large(max),
        Err(refused) => return refused.answer(),
    };
    if content.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "the body is empty: it is the message to keep (curl --data-binary @file.eml)",
        );
    }
    // The budget charges the length: let the heap hold no more.
    content.shrink_to_fit();
    let now = SystemTime::now();
    let id = crate::store::record::next_queue_id(now);
    let parts = EnvelopeParts {
        sender: envelope.sender.as_bytes(),
        params: b"",
        helo: envelope.helo.as_bytes(),
        client: None,
        tls: None,
        auth_user: None,
    };
    let arrival = Arrival::new(
        id,
        now,
        Bytes::from(content),
        &parts,
        envelope.recipients.iter().map(String::as_bytes),
    );
    let inserted = capture.insert(arrival);
    drop(taken);
    match inserted {
        Ok(inserted) => {
            let at = format!("/api/v1/messages/{}", inserted.id.as_str());
            let mut response = json(
                StatusCode::CREATED,
                &json!({
                    "id": inserted.id.as_str(),
                    "seq": inserted.seq,
                    "links": {"self": at, "raw": format!("{at}/raw")},
                }),
            );
            if let Ok(location) = HeaderValue::from_str(&at) {
                response.headers_mut().insert(LOCATION, location);
            }
            response
        }
        Err(Refused::Full) => retry_after(
            error(
                StatusCode::INSUFFICIENT_STORAGE,
                "the capture store is full (--on-full tempfail; SMTP would answer 452 4.3.1): \
                 delete messages or try again later",
            ),
            "1",
        ),
        Err(Refused::TooLarge) => over_budget(),
        Err(Refused::DuplicateId) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the new message's id was used already (a bug)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_read_from_the_query() {
        let e = SeedEnvelope::parse(Some("from=a%40x&rcpt=b@y&rcpt=%3Cc@z%3E&helo=h.test"), 100)
            .unwrap();
        assert_eq!(e.sender, "a@x");
        assert_eq!(e.recipients, ["b@y", "c@z"]);
        assert_eq!(e.helo, "h.test");
        for null in ["from=&rcpt=b@y", "from=%3C%3E&rcpt=b@y"] {
            assert_eq!(SeedEnvelope::parse(Some(null), 100).unwrap().sender, "");
        }
        let utf8 = SeedEnvelope::parse(Some("from=j%C3%B6rg@x&rcpt=%C3%BC@y"), 100).unwrap();
        assert_eq!(utf8.sender, "jörg@x");
        assert_eq!(utf8.recipients, ["ü@y"]);
    }

    #[test]
    fn a_bad_envelope_is_named() {
        for (query, says) in [
            (None, "from= is required"),
            (Some("rcpt=b@y"), "from= is required"),
            (Some("from=a@x"), "rcpt= is required"),
            (Some("from=a@x&rcpt="), "\"\" is not an address"),
            (Some("from=a@x&rcpt=b@y&rcpt=no%20pe@y"), "%2B"),
            (
                Some("from=a@x&rcpt=b@y&rcpt=c@y%3E"),
                "rcpt=\"c@y>\" is not an address",
            ),
            (
                Some("from=a@@x&rcpt=b@y"),
                "from=\"a@@x\" is not an address",
            ),
            (Some("from=a@x&from=b@x&rcpt=b@y"), "given twice"),
            (Some("from=a@x&rcpt=b@y&helo=a%0Db"), "helo="),
            (Some("from=a@x&rcpt=b@y&to=c@y"), "unknown parameter \"to\""),
        ] {
            let e = SeedEnvelope::parse(query, 100).unwrap_err();
            assert!(e.0.contains(says), "{query:?}: {}", e.0);
        }
        let long = format!("from=a@x&rcpt={}@y", "l".repeat(65));
        assert!(SeedEnvelope::parse(Some(&long), 100).is_err());
        // helo= as long as the command line allows, and one octet more.
        let max = helo_bound(512);
        assert_eq!(max, 505);
        let helo = |n: usize| format!("from=a@x&rcpt=b@y&helo={}", "h".repeat(n));
        assert!(SeedEnvelope::parse(Some(&helo(max)), max).is_ok());
        let e = SeedEnvelope::parse(Some(&helo(max + 1)), max).unwrap_err();
        assert!(e.0.contains("longer than the 505"), "{}", e.0);
    }
}
