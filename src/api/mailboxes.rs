//! `/api/v1/mailboxes`: per-test mailboxes over HTTP (the store's [`crate::capture::mailbox`]).
//!
//! | route | method | answer |
//! |---|---|---|
//! | `/api/v1/mailboxes` | `POST` | body (optional JSON, at most [`MAX_BODY`] octets) `{"ttl", "route", "label"}` → `201` the mailbox |
//! | `/api/v1/mailboxes` | `GET`, `HEAD` | `{"mailboxes": [..], "next", "total"}`: a page of the live ones, newest first, with counts |
//! | `/api/v1/mailboxes` | `DELETE` | `{"deleted": n, "mailboxes": m}`: every live mailbox (or those `label=` names) and their mail (as one delete each) |
//! | `/api/v1/mailboxes/{id}` | `GET`, `HEAD` | the mailbox; `410` expired or deleted; `404` unknown |
//! | `/api/v1/mailboxes/{id}` | `DELETE` | `{"deleted": n}`: the messages removed (those in no other mailbox) |
//! | `/api/v1/mailboxes/{id}/faults` | `GET`, `HEAD`, `PUT`, `DELETE` | `{"rules": [..]}`: the mailbox's fault plan ([`super::mailbox_faults`]) |
//!
//! A mailbox's JSON: `id`, `address` (a recipient that routes to it: `test+ID@HOSTNAME` for a
//! plus-tag route, the address of a `rcpt` route, `test@DOMAIN` for a `domain` route, `null`
//! for `auth_user` and `header` routes), `route` (as given, `{"type": ..}`), `label`,
//! `created_at`, `expires_at`, `count`, `links` (`messages`, `await`, `self`).
//!
//! The list is paged like `/api/v1/messages`: `limit` (default [`query::DEFAULT_LIMIT`], at
//! most [`query::MAX_LIMIT`]), newest first by creation, `before=` the `next` of the page
//! before (a creation number: a page never shifts when mailboxes are created), `total` the
//! count of those matching; filters `label=` (the label exactly) and `q=` (the label, id or
//! route text contains it, ASCII case-insensitively). There is no unpaged list: 10 000
//! mailboxes are 20 pages of 500. `DELETE` takes `label=` only, and refuses a foreign
//! `Origin` (`403`).
//!
//! Bad input is a `400` naming the field: a body that is not a JSON object, an unknown field,
//! a `ttl` outside [`MIN_TTL`]..[`MAX_TTL`] (a duration as `crate::units` reads it: `"120s"`,
//! `"1.5h"`; a bare number is seconds), a route of an unknown type or with a missing, empty,
//! over-long or malformed value, a label over [`LABEL_MAX`] octets. Past the store's bound of
//! live mailboxes: `429`. When the capture budget has no room for the mailbox's record and
//! the store keeps mail rather than evicting it (`--on-full tempfail`): `507`. A body over
//! [`MAX_BODY`]: `413`.
//!
//! What it does not do: route mail (the store does, at insert), or keep fault plans (the
//! fault engine does; `mailbox_faults` hands it a mailbox's, and deleting a mailbox clears it).

use super::body::{read_all, strict_json};
use super::mailbox_faults;
use super::query::{self, BadRequest};
use super::response::{error, json, ApiBody};
use super::routes::{allow, guarded, State};
use super::select::mailbox_refusal;
use crate::capture::mailbox::{LABEL_MAX, ROUTE_TEXT_MAX};
use crate::capture::{
    MailboxFilter, MailboxId, MailboxInfo, MailboxLookup, Route, TooManyMailboxes,
};
use crate::control::Conn;
use crate::proto::command::{parse_command, Command};
use crate::store::record::rfc3339;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The path of the collection.
pub const PREFIX: &str = "/api/v1/mailboxes";

/// The largest request body, in octets.
pub const MAX_BODY: usize = 16 << 10;

/// The shortest time to live.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest time to live (7 days).
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The time to live of a mailbox created without one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Whether `path` is one of these routes (the collection or a member).
pub fn owns(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

/// Answers a request for [`PREFIX`] or below (timed under the metrics label `mailboxes`,
/// after the checks every API route makes: loopback `Host`, the token, expiry).
pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    conn: Conn,
) -> Response<ApiBody> {
    guarded(
        state,
        request,
        conn,
        "mailboxes",
        |state, request| async move { answer(&state, request).await },
    )
    .await
}

/// The answer, once the host and the token are checked (see [`handle`]).
async fn answer(state: &State, request: Request<Incoming>) -> Response<ApiBody> {
    state.capture.expire(SystemTime::now());
    mailbox_faults::sweep(state);
    let rest = request.uri().path()[PREFIX.len()..].to_owned();
    if !rest.is_empty() && request.uri().query().is_some_and(|q| !q.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "this route takes no query parameters",
        );
    }
    let method = request.method().clone();
    // `HEAD` is answered as `GET` (hyper sends the head only, RFC 9110 §9.3.2).
    let get = method == Method::GET || method == Method::HEAD;
    match rest.as_str() {
        "" => {
            let methods = &[Method::GET, Method::HEAD, Method::POST, Method::DELETE];
            if let Some(refused) = allow(&method, methods, state) {
                return refused;
            }
            let query = request.uri().query();
            if get {
                return list(state, query);
            }
            if method == Method::DELETE {
                if let Some(refused) = super::routes::foreign_origin(state, &request) {
                    return refused;
                }
                return delete_all(state, query);
            }
            if query.is_some_and(|q| !q.is_empty()) {
                return bad("POST takes no query parameters");
            }
            // A form or text/plain POST needs no preflight: refuse other origins here.
            if let Some(refused) = super::routes::foreign_origin(state, &request) {
                return refused;
            }
            let body = match read_all(request.into_body(), MAX_BODY as u64).await {
                Ok(body) => body,
                Err(refused) => return refused.answer(),
            };
            create(state, &body)
        }
        _ if rest.ends_with(mailbox_faults::SEGMENT) => {
            let id = &rest[1..rest.len() - mailbox_faults::SEGMENT.len()];
            mailbox_faults::answer(state, id, request).await
        }
        _ => {
            let id = &rest[1..];
            let methods = &[Method::GET, Method::HEAD, Method::DELETE];
            if let Some(refused) = allow(&method, methods, state) {
                return refused;
            }
            let Some(id) = MailboxId::parse(id.as_bytes()) else {
                return error(StatusCode::NOT_FOUND, "no such mailbox");
            };
            if let Some(refused) = mailbox_refusal(&state.capture, &id) {
                return refused;
            }
            if method == Method::DELETE {
                // The plan goes with the mailbox, even if it ended meanwhile.
                mailbox_faults::clear(state, &id);
                return match state.capture.delete_mailbox(&id) {
                    Some(removed) => json(StatusCode::OK, &json!({"deleted": removed.seqs.len()})),
                    // Expired between the look and the delete.
                    None => mailbox_refusal(&state.capture, &id)
                        .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no such mailbox")),
                };
            }
            match state.capture.mailbox(&id) {
                MailboxLookup::Found(info) => json(StatusCode::OK, &render(state, &info)),
                _ => mailbox_refusal(&state.capture, &id)
                    .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no such mailbox")),
            }
        }
    }
}

/// What a list or a bulk delete was asked: the filter, and (listing only) the page.
fn list_query(
    query: Option<&str>,
    paged: bool,
) -> Result<(MailboxFilter, usize, Option<u64>), BadRequest> {
    let mut filter = MailboxFilter::default();
    let (mut limit, mut before) = (query::DEFAULT_LIMIT, None);
    let mut seen = Vec::new();
    for (key, value) in query::pairs(query)? {
        query::once(&mut seen, &key)?;
        match key.as_str() {
            "label" => filter.label = Some(value.trim().to_owned()),
            "q" if paged => filter.contains = Some(value.trim().to_owned()),
            "limit" if paged => {
                limit = query::number(&key, &value, 1, query::MAX_LIMIT as u64)? as usize;
            }
            "before" if paged => before = Some(query::cursor(&key, &value)?),
            _ => return Err(query::unknown(&key)),
        }
    }
    Ok((filter, limit, before))
}

/// `GET /api/v1/mailboxes`: a page (see the module doc).
fn list(state: &State, query: Option<&str>) -> Response<ApiBody> {
    let (filter, limit, before) = match list_query(query, true) {
        Ok(asked) => asked,
        Err(e) => return bad(&e.0),
    };
    let page = state.capture.mailbox_page(before, limit, &filter);
    let items: Vec<Value> = page.items.iter().map(|m| render(state, m)).collect();
    json(
        StatusCode::OK,
        &json!({
            "mailboxes": items,
            "next": page.next.map(|n| n.to_string()),
            "total": page.total,
        }),
    )
}

/// `DELETE /api/v1/mailboxes`: every live mailbox, or those `label=` names, with their mail
/// (as `DELETE /api/v1/mailboxes/{id}` each) and their fault plans.
fn delete_all(state: &State, query: Option<&str>) -> Response<ApiBody> {
    let filter = match list_query(query, false) {
        Ok((filter, _, _)) => filter,
        Err(e) => return bad(&e.0),
    };
    let (ids, removed) = state.capture.delete_mailboxes(&filter);
    for id in &ids {
        mailbox_faults::clear(state, id);
    }
    json(
        StatusCode::OK,
        &json!({"deleted": removed.seqs.len(), "mailboxes": ids.len()}),
    )
}

/// A mailbox as JSON (see the module doc).
fn render(state: &State, mailbox: &MailboxInfo) -> Value {
    let id = mailbox.id.as_str();
    let (route, address) = match &mailbox.route {
        Route::PlusTag(_) => (
            json!({"type": "plus_tag"}),
            json!(format!("test+{id}@{}", state.hostname)),
        ),
        Route::Recipient(a) => {
            let a = String::from_utf8_lossy(a);
            (json!({"type": "rcpt", "address": a}), json!(a))
        }
        Route::Domain(d) => {
            let d = String::from_utf8_lossy(d);
            (
                json!({"type": "domain", "domain": d}),
                json!(format!("test@{d}")),
            )
        }
        Route::AuthUser(u) => (
            json!({"type": "auth_user", "user": String::from_utf8_lossy(u)}),
            Value::Null,
        ),
        Route::Header { name, value } => (
            json!({"type": "header", "name": String::from_utf8_lossy(name),
                   "value": String::from_utf8_lossy(value)}),
            Value::Null,
        ),
    };
    json!({
        "id": id,
        "address": address,
        "route": route,
        "label": mailbox.label,
        "created_at": rfc3339(mailbox.created_at),
        "expires_at": rfc3339(mailbox.expires_at),
        "count": mailbox.count,
        "links": {
            "self": format!("{PREFIX}/{id}"),
            "messages": format!("/api/v1/messages?mailbox={id}"),
            "await": format!("/api/v1/await?mailbox={id}"),
        },
    })
}

/// A `400` naming what is wrong.
fn bad(message: &str) -> Response<ApiBody> {
    error(StatusCode::BAD_REQUEST, message)
}

/// `POST /api/v1/mailboxes`.
fn create(state: &State, body: &[u8]) -> Response<ApiBody> {
    let request = match parse_request(body) {
        Ok(request) => request,
        Err(message) => return bad(&message),
    };
    match state
        .capture
        .create_mailbox(request.route, request.ttl, request.label)
    {
        Ok(info) => json(StatusCode::CREATED, &render(state, &info)),
        Err(refused @ TooManyMailboxes::Full(_)) => {
            error(StatusCode::INSUFFICIENT_STORAGE, &refused.to_string())
        }
        Err(refused) => error(StatusCode::TOO_MANY_REQUESTS, &refused.to_string()),
    }
}

/// What a creation asked for.
#[derive(Debug)]
struct NewMailbox {
    /// The route (`None`: plus-tag).
    route: Option<Route>,
    /// The time to live.
    ttl: Duration,
    /// The label.
    label: String,
}

/// Reads a creation's body (see the module doc); the error names the field.
fn parse_request(body: &[u8]) -> Result<NewMailbox, String> {
    let mut request = NewMailbox {
        route: None,
        ttl: DEFAULT_TTL,
        label: String::new(),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(request);
    }
    let value = strict_json(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("the body must be a JSON object: {\"ttl\", \"route\", \"label\"}".into());
    };
    for (key, value) in &fields {
        match key.as_str() {
            "ttl" => request.ttl = ttl(value)?,
            "route" => request.route = route(value)?,
            "label" => {
                let label = value.as_str().ok_or("label: a string")?.trim().to_owned();
                if label.len() > LABEL_MAX || label.chars().any(char::is_control) {
                    return Err(format!(
                        "label: at most {LABEL_MAX} octets, no control characters"
                    ));
                }
                request.label = label;
            }
            other => {
                return Err(format!(
                    "unknown field {other:?} (the fields are ttl, route, label)"
                ))
            }
        }
    }
    Ok(request)
}

/// The `ttl` field.
fn ttl(value: &Value) -> Result<Duration, String> {
    let ttl = match value {
        Value::String(text) => {
            crate::units::parse_duration(text).map_err(|e| format!("ttl: {e}"))?
        }
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= MAX_TTL.as_secs_f64())
            .map(Duration::from_secs_f64)
            .ok_or("ttl: a number of seconds or a duration (\"120s\")")?,
        _ => return Err("ttl: a duration (\"120s\", \"1h\") or a number of seconds".into()),
    };
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(format!(
            "ttl: from {}s to {}s (7d)",
            MIN_TTL.as_secs(),
            MAX_TTL.as_secs()
        ));
    }
    Ok(ttl)
}

/// A route's text field: present, a string, not empty, at most [`ROUTE_TEXT_MAX`] octets,
/// no white space or control characters unless `spaces`.
fn text_field(
    route: &Map<String, Value>,
    kind: &str,
    key: &str,
    spaces: bool,
) -> Result<Vec<u8>, String> {
    let value = route
        .get(key)
        .ok_or_else(|| format!("route.{key}: required for a {kind} route"))?
        .as_str()
        .ok_or_else(|| format!("route.{key}: a string"))?
        .trim();
    let bad_char = |c: char| c.is_control() || (!spaces && c.is_whitespace());
    if value.is_empty() && !spaces {
        return Err(format!("route.{key}: empty"));
    }
    if value.len() > ROUTE_TEXT_MAX || value.chars().any(bad_char) {
        return Err(format!(
            "route.{key}: at most {ROUTE_TEXT_MAX} octets, no control characters{}",
            if spaces { "" } else { " or spaces" }
        ));
    }
    Ok(value.as_bytes().to_vec())
}

/// The `route` field.
fn route(value: &Value) -> Result<Option<Route>, String> {
    let Value::Object(route) = value else {
        return Err("route: an object {\"type\": \"plus_tag\" | \"rcpt\" | \"domain\" | \"auth_user\" | \"header\", ..}".into());
    };
    let kind = route
        .get("type")
        .and_then(Value::as_str)
        .ok_or("route.type: required, one of plus_tag, rcpt, domain, auth_user, header")?;
    let allowed: &[&str] = match kind {
        "plus_tag" => &[],
        "rcpt" => &["address"],
        "domain" => &["domain"],
        "auth_user" => &["user"],
        "header" => &["name", "value"],
        other => {
            return Err(format!(
                "route.type: {other:?} is not one of plus_tag, rcpt, domain, auth_user, header"
            ))
        }
    };
    if let Some(extra) = route
        .keys()
        .find(|k| *k != "type" && !allowed.contains(&k.as_str()))
    {
        return Err(format!("route.{extra}: not a field of a {kind} route"));
    }
    Ok(Some(match kind {
        "plus_tag" => return Ok(None),
        "rcpt" => {
            let address = text_field(route, kind, "address", false)?;
            let address = address
                .strip_prefix(b"<")
                .and_then(|a| a.strip_suffix(b">"))
                .map_or(address.clone(), <[u8]>::to_vec);
            match memchr::memrchr(b'@', &address) {
                Some(at) if at > 0 && at + 1 < address.len() => Route::Recipient(address),
                _ => return Err("route.address: an address local@domain".into()),
            }
        }
        "domain" => {
            let domain = text_field(route, kind, "domain", false)?;
            if domain.contains(&b'@') {
                return Err("route.domain: a domain, without @".into());
            }
            // A domain the SMTP side takes in `RCPT TO:<user@DOMAIN>` (RFC 5321 §4.1.2, its
            // parser): a route matches one domain exactly, so `*` or `.x` would match nothing.
            let line = [&b"RCPT TO:<test@"[..], &domain, b">"].concat();
            match parse_command(&line) {
                Ok(Command::Rcpt { path, .. }) if path.len() == "test@".len() + domain.len() => {
                    Route::Domain(domain)
                }
                _ => {
                    return Err("route.domain: a domain as RCPT TO takes it (example.com, \
                                [192.0.2.1]; no wildcard: it matches that domain exactly)"
                        .into())
                }
            }
        }
        "auth_user" => Route::AuthUser(text_field(route, kind, "user", false)?),
        _ => {
            let name = text_field(route, kind, "name", false)?;
            // RFC 5322 §3.6.8: a field name is printable ASCII other than the colon.
            if !name.iter().all(|&b| b.is_ascii_graphic() && b != b':') {
                return Err("route.name: a header field name (printable ASCII, no colon)".into());
            }
            let value = text_field(route, kind, "value", true)?;
            Route::Header { name, value }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_bodies_are_read_or_refused_naming_the_field() {
        let ok = parse_request(b"").unwrap();
        assert_eq!((ok.route, ok.ttl), (None, DEFAULT_TTL));
        let ok = parse_request(
            br#"{"ttl": "120s", "route": {"type": "rcpt", "address": "<A@x>"}, "label": "t1"}"#,
        )
        .unwrap();
        assert_eq!(ok.route, Some(Route::Recipient(b"A@x".to_vec())));
        assert_eq!(
            (ok.ttl, ok.label.as_str()),
            (Duration::from_secs(120), "t1")
        );
        assert_eq!(
            parse_request(br#"{"ttl": 5}"#).unwrap().ttl,
            Duration::from_secs(5)
        );
        for domain in ["tenant.test", "[192.0.2.1]", "bücher.example"] {
            let body = format!(r#"{{"route": {{"type": "domain", "domain": "{domain}"}}}}"#);
            let route = parse_request(body.as_bytes()).unwrap().route;
            assert_eq!(route, Some(Route::Domain(domain.as_bytes().to_vec())));
        }
        let header =
            parse_request(br#"{"route": {"type": "header", "name": "X-Run", "value": " a b "}}"#)
                .unwrap();
        assert_eq!(
            header.route,
            Some(Route::Header {
                name: b"X-Run".to_vec(),
                value: b"a b".to_vec()
            })
        );
        for (body, field) in [
            ("[1]", "JSON object"),
            ("{", "not JSON"),
            (r#"{"tll": "1s"}"#, "tll"),
            (r#"{"ttl": "0s"}"#, "ttl"),
            (r#"{"ttl": "8d"}"#, "ttl"),
            (r#"{"ttl": true}"#, "ttl"),
            (r#"{"route": "plus_tag"}"#, "route"),
            (r#"{"route": {"type": "nope"}}"#, "route.type"),
            (r#"{"route": {}}"#, "route.type"),
            (r#"{"route": {"type": "rcpt"}}"#, "route.address"),
            (
                r#"{"route": {"type": "rcpt", "address": "no-at"}}"#,
                "route.address",
            ),
            (
                r#"{"route": {"type": "rcpt", "address": "a b@x"}}"#,
                "route.address",
            ),
            (
                r#"{"route": {"type": "domain", "domain": "a@x"}}"#,
                "route.domain",
            ),
            (
                r#"{"route": {"type": "domain", "domain": ""}}"#,
                "route.domain",
            ),
            (
                r#"{"route": {"type": "domain", "domain": "*"}}"#,
                "route.domain",
            ),
            (
                r#"{"route": {"type": "domain", "domain": "*.example.com"}}"#,
                "route.domain",
            ),
            (
                r#"{"route": {"type": "domain", "domain": "a..b"}}"#,
                "route.domain",
            ),
            (r#"{"ttl": "1s", "ttl": "7d"}"#, "\"ttl\" is given twice"),
            (
                r#"{"route": {"type": "rcpt", "type": "domain", "domain": "x"}}"#,
                "given twice",
            ),
            (
                r#"{"route": {"type": "auth_user", "user": 3}}"#,
                "route.user",
            ),
            (
                r#"{"route": {"type": "header", "name": "X:Y", "value": "v"}}"#,
                "route.name",
            ),
            (
                r#"{"route": {"type": "plus_tag", "tag": "x"}}"#,
                "route.tag",
            ),
            (r#"{"label": 1}"#, "label"),
        ] {
            let e = parse_request(body.as_bytes()).unwrap_err();
            assert!(e.contains(field), "{body}: {e}");
        }
        let long = format!(r#"{{"label": "{}"}}"#, "x".repeat(LABEL_MAX + 1));
        assert!(parse_request(long.as_bytes())
            .unwrap_err()
            .contains("label"));
    }

    #[test]
    fn only_the_collection_and_its_members_are_owned() {
        assert!(owns("/api/v1/mailboxes") && owns("/api/v1/mailboxes/abc"));
        assert!(!owns("/api/v1/mailboxesx") && !owns("/api/v1/mailbox"));
    }
}
