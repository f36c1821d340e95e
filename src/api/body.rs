//! Request bodies: the one bounded reader every route that takes a body uses, and JSON read
//! strictly (a key given twice in an object is refused, not silently the last one).
//!
//! [`read`] never reads or keeps more than its bound: a `Content-Length` over it is refused
//! before a byte is read, a chunked body as soon as its count passes it ([`BodyError`]'s
//! answer is `413` with the API's error JSON). A route that must bound more than one body's
//! size (seeding counts all bodies being read together) says so for each piece through its
//! `admit` callback, which may refuse with its own answer.
//!
//! What it does not do: decide the bound (each route has its own), parse anything but JSON,
//! or read a body the handler never asked for (hyper drops it with the request).

use super::response::{error, ApiBody};
use hyper::body::{Body, Incoming};
use hyper::{Response, StatusCode};
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::pin::Pin;

/// The most a body's buffer reserves up front from its `Content-Length` (beyond, it grows as
/// the body comes; a declared length is a client's word, not yet bytes).
const RESERVE_MAX: u64 = 1 << 20;

/// Why a body was not read.
#[derive(Debug)]
pub(super) enum BodyError {
    /// It is longer than `max` (said before reading it when its length is given).
    TooLarge(u64),
    /// The client stopped sending it.
    CutShort,
    /// The route's `admit` refused a piece: its answer.
    Refused(Box<Response<ApiBody>>),
}

impl BodyError {
    /// The answer: `413` over the bound, `400` cut short, or the route's own.
    pub(super) fn answer(self) -> Response<ApiBody> {
        match self {
            BodyError::TooLarge(max) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is over {max} octets"),
            ),
            BodyError::CutShort => error(StatusCode::BAD_REQUEST, "the request body was cut short"),
            BodyError::Refused(answer) => *answer,
        }
    }
}

/// The body, at most `max` octets; `admit(read so far, next piece's length)` is asked before
/// each piece is kept (`Some(answer)`: refused with it).
pub(super) async fn read(
    mut body: Incoming,
    max: u64,
    mut admit: impl FnMut(u64, u64) -> Option<Response<ApiBody>>,
) -> Result<Vec<u8>, BodyError> {
    let declared = body.size_hint().lower();
    if declared > max {
        return Err(BodyError::TooLarge(max));
    }
    let reserve = usize::try_from(declared.min(RESERVE_MAX)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(reserve);
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| BodyError::CutShort)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let (kept, len) = (bytes.len() as u64, data.len() as u64);
        if kept + len > max {
            return Err(BodyError::TooLarge(max));
        }
        if let Some(refused) = admit(kept, len) {
            return Err(BodyError::Refused(Box::new(refused)));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// The body, at most `max` octets, nothing else asked.
pub(super) async fn read_all(body: Incoming, max: u64) -> Result<Vec<u8>, BodyError> {
    read(body, max, |_, _| None).await
}

/// `text` as JSON, refusing an object that names a key twice (at any depth): JSON leaves
/// duplicate names undefined (RFC 8259 §4), and a request that says `ttl` twice means one of
/// them by mistake. The error is the parser's, or names the key.
pub(super) fn strict_json(text: &[u8]) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = Strict::deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value.0)
}

/// A JSON value read by [`strict_json`].
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// Builds a [`Value`], each object checked for duplicate keys.
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "the key {key:?} is given twice in one object"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_json_is_json_without_a_key_given_twice() {
        assert_eq!(
            strict_json(br#" {"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}} "#).unwrap(),
            json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": {}}})
        );
        for (text, says) in [
            (r#"{"ttl": "1s", "ttl": "7d"}"#, "\"ttl\" is given twice"),
            (
                r#"{"route": {"type": "rcpt", "type": "domain"}}"#,
                "\"type\"",
            ),
            (r#"[{"a": 1, "a": 1}]"#, "\"a\""),
            (r#"{"a": 1} x"#, "trailing"),
            ("{", "EOF"),
        ] {
            let e = strict_json(text.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
