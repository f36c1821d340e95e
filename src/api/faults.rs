//! `/api/v1/faults`: the server-wide runtime fault rules, shown, replaced and cleared while
//! the server runs (`GET`, `PUT`, `DELETE`).
//!
//! A `PUT` body is JSON, `{"rules": ["rcpt to=*@bad.example reply=550 5.1.1 No", ...]}`
//! (`Content-Type: application/json`), or text, one rule per line, blank lines and lines
//! starting with `#` left out (`Content-Type: text/plain`); at most [`MAX_BODY`] octets. It
//! replaces the whole runtime set (the counters and limiters of the old one go with it); a
//! rule that does not parse is a `400` naming the rule and the reason, and nothing changed.
//! Every answer but an error is the state after it: `{"startup": [...], "runtime": [...]}`.
//!
//! The checks every API route makes come first (a loopback API serves loopback hosts only,
//! the bearer token), then the method, then the body.
//!
//! What it does not do: parse a rule ([`crate::fault::Plans`] does, with the `--fault`
//! grammar) or hold scoped plans' routes (a mailbox's faults are the mailboxes' routes).

use super::body::{read_all, strict_json};
use super::response::{error, json, ApiBody};
use super::routes::{allow, guarded, no_parameters, State};
use crate::control::Conn;
use crate::fault::Plans;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

/// The path of these routes.
pub const PATH: &str = "/api/v1/faults";

/// The largest `PUT` body: 64 KiB, dozens of rules (a rule is at most 1 KiB).
pub const MAX_BODY: usize = 64 << 10;

/// Answers a request for [`PATH`] (timed under the metrics label `faults`, paced and given
/// the CORS header as every API answer is).
pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    conn: Conn,
) -> Response<ApiBody> {
    guarded(
        state,
        request,
        conn,
        "faults",
        |state, request| async move { answer(&state, request).await },
    )
    .await
}

/// The answer, once the host and the token are checked: the method, the query, the body.
async fn answer(state: &State, request: Request<Incoming>) -> Response<ApiBody> {
    let methods = &[Method::GET, Method::PUT, Method::DELETE];
    if let Some(refused) =
        allow(request.method(), methods, state).or_else(|| no_parameters(request.uri().query()))
    {
        return refused;
    }
    let plans = &state.faults;
    match *request.method() {
        Method::GET => rules(plans),
        Method::DELETE => {
            plans.clear_runtime();
            rules(plans)
        }
        _ => {
            let texts = match texts(request).await {
                Ok(texts) => texts,
                Err(refused) => return *refused,
            };
            match plans.set_runtime(&texts) {
                Ok(()) => rules(plans),
                Err(refused) => error(StatusCode::BAD_REQUEST, &refused.to_string()),
            }
        }
    }
}

/// `{"startup": [...], "runtime": [...]}`.
fn rules(plans: &Plans) -> Response<ApiBody> {
    json(
        StatusCode::OK,
        &json!({"startup": plans.startup().texts(), "runtime": plans.runtime()}),
    )
}

/// The rules a `PUT` body gives, by its content type (a `415`, `413` or `400` if it gives
/// none).
pub(super) async fn texts(
    request: Request<Incoming>,
) -> Result<Vec<String>, Box<Response<ApiBody>>> {
    let media = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let text = match media.as_deref() {
        Some("application/json") => false,
        Some("text/plain") => true,
        _ => {
            return Err(Box::new(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the rules as Content-Type: application/json ({\"rules\": [...]}) or \
                 text/plain (one rule per line)",
            )))
        }
    };
    // At most `MAX_BODY` octets (else `413`, before anything changed).
    let body = read_all(request.into_body(), MAX_BODY as u64)
        .await
        .map_err(|e| Box::new(e.answer()))?;
    let bad = |message: &str| Box::new(error(StatusCode::BAD_REQUEST, message));
    let Ok(body) = String::from_utf8(body) else {
        return Err(bad("the body is not UTF-8"));
    };
    if text {
        return Ok(lines(&body));
    }
    let mut object = match strict_json(body.as_bytes()) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(bad(
                "the body is not a JSON object: {\"rules\": [\"...\", ...]}",
            ))
        }
        Err(e) => return Err(bad(&format!("the body is not JSON: {e}"))),
    };
    if let Some(key) = object.keys().find(|k| *k != "rules") {
        return Err(bad(&format!(
            "unknown key {key:?}: the body is {{\"rules\": [...]}}"
        )));
    }
    let Some(Value::Array(rules)) = object.remove("rules") else {
        return Err(bad("\"rules\" is missing or not a list of strings"));
    };
    rules
        .into_iter()
        .map(|rule| match rule {
            Value::String(rule) => Ok(rule),
            _ => Err(bad("\"rules\" is a list of strings")),
        })
        .collect()
}

/// The rules of a text body: one a line, blank lines and `#` comments left out.
fn lines(body: &str) -> Vec<String> {
    body.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_body_is_one_rule_a_line_without_comments() {
        let body = "# faults for the signup test\r\n\r\nrcpt to=*@bad.example reply=550 5.1.1 No\r\n  eod p=0.5 reply=451 4.3.0 Later  \n#end";
        assert_eq!(
            lines(body),
            [
                "rcpt to=*@bad.example reply=550 5.1.1 No",
                "eod p=0.5 reply=451 4.3.0 Later"
            ]
        );
    }
}
