//! `/compat/mailpit/`: a read subset of Mailpit's API v1 (as of Mailpit v1.30.5), so a test
//! suite written against Mailpit (the npm clients `mailpit-api`, `cypress-mailpit`) runs
//! against fastsmtpd by changing its base URL to `http://HOST:PORT/compat/mailpit`.
//!
//! | route (under `/compat/mailpit`) | methods | answer |
//! |---|---|---|
//! | `/api/v1/messages?start=&limit=` | `GET` | `MessagesSummary`, newest first |
//! | `/api/v1/messages` | `DELETE` | body `{"IDs": [..]}`: those; none, empty or not JSON: all. `ok` |
//! | `/api/v1/messages` | `PUT` | read status: checked, accepted, not kept (`ok`) |
//! | `/api/v1/message/{ID}` | `GET` | `Message` (`ID` may be `latest`, with `?query=`) |
//! | `/api/v1/message/{ID}/raw` | `GET` | the raw bytes as received, `text/plain` (`?dl=1`: a download) |
//! | `/api/v1/message/{ID}/headers` | `GET` | `{"Canonical-Name": [values]}`, keys sorted |
//! | `/api/v1/search?query=&start=&limit=` | `GET`, `DELETE` | `MessagesSummary` of the matches / `ok` |
//! | `/view/{ID}.html`, `/view/{ID}.txt` | `GET` | the HTML body (`404` without one) / the text body |
//!
//! Statuses and content types are Mailpit's: every success is `200` (a `DELETE` too: the
//! clients throw on anything else); a bad request is `400` `text/plain` with the reason; an
//! unknown path or message `404` `text/plain` `404 page not found` (`latest` with nothing to
//! show: `Message not found`); a known path with another method `405` with `Allow`. `GET`
//! routes answer `HEAD` too. Empty path segments are skipped (cypress-mailpit asks for
//! `BASE//view/ID.html`; Mailpit redirects it, this serves it).
//!
//! Mailpit's search grammar is translated into [`crate::capture::query`]'s where it maps (see
//! [`filters::translate`]); a term that does not map (`-`/`!` negation, `is:`, `tag:`, `has:`, `bcc:`,
//! `addressed:`) is a `400` naming it, never a silent mismatch.
//!
//! What it keeps from Mailpit's JSON and what it cannot fill: `Read` is always `false` and
//! `unread` equals `total` (fastsmtpd keeps no read state: `GET message` does not mark a
//! message read, `PUT messages` changes nothing); `Tags` are always `[]`; attachment
//! checksums carry `SHA256` only (`MD5` and `SHA1` are `""`); `PartID` is the part's number
//! in fastsmtpd's view (`1`, `2`, ..., MIME tree order), not Mailpit's dotted path. Mailpit adds
//! a `Bcc:` header for envelope recipients the headers do not name; fastsmtpd never alters
//! the raw bytes, but lists those recipients in the JSON `Bcc` as Mailpit's does.
//! `ReturnPath` is the `Return-Path` field, else the envelope sender (what Mailpit writes into
//! that field on arrival), else `From`. Object keys come out sorted (JSON objects are
//! unordered; the clients index them by name).
//!
//! Here: the routes, their parameters and errors, the searches and deletions; `models` fills
//! Mailpit's JSON models, `filters` translates its search filters.
//!
//! Authentication: with `--api-token`, `Authorization: Bearer TOKEN` or Basic auth with the
//! token as password (the Mailpit clients send Basic auth), else `401`.
//!
//! What it does not do: tags, read state, sending, releasing, HTML or link checks,
//! SpamAssassin, websockets, parts by `PartID` (fastsmtpd's own API serves parts), gzip.

mod filters;
mod models;

pub use filters::translate;

use models::{attachment, field, heads, list_unsubscribe, lossy, split_parts, subject, summary};

use super::body::{read_all, BodyError};
use super::query::pairs;
use super::response::{confine, whole, ApiBody};
use super::routes::{blocking, failed, finish, foreign_host, queue_id, same_secret, State};
use crate::capture::query as grammar;
use crate::capture::{Capture, Direction, Filter, Lookup, Snapshot};
use crate::control::Conn;
use crate::store::record::rfc3339;
use crate::view::{body, search, MessageView};
use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_DISPOSITION, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::SystemTime;

/// The path prefix of these routes.
pub const PREFIX: &str = "/compat/mailpit/";

/// The largest request body read (`DELETE`/`PUT /api/v1/messages`); a larger one is `413`
/// before any message is touched. A list of 10 000 ids of 63 octets fits.
pub const MAX_BODY: usize = 1 << 20;

/// Mailpit's default page size.
const DEFAULT_LIMIT: usize = 50;
/// The most summaries one compat page holds (`limit=0`, Mailpit's "every message", and any
/// larger `limit` give this many): each summary parses its message for the `Snippet`, so an
/// unbounded page held a parse per kept message in one response (a review's `limit=0` over
/// 120 000 messages took the process past 1.5 GB and never answered). Clients page on with
/// `start`.
const PAGE_MAX: usize = 500;

/// The store's page size while paging through messages here.
const CHUNK: usize = 256;

/// Answers a request under [`PREFIX`] (timed under the metrics label `mailpit`, paced and
/// given the CORS header as every API answer is).
pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    conn: Conn,
) -> Response<ApiBody> {
    let started = std::time::Instant::now();
    let response = answer(&state, request).await;
    finish(&state, "mailpit", started, response, conn)
}

/// The answer to a request under [`PREFIX`]: the checks every API route makes (a loopback
/// API serves loopback hosts only, the token, `--capture-max-age` at every read), the body
/// read if the method takes one, then the route on a blocking thread (it parses messages:
/// see [`State::readers`]).
async fn answer(state: &Arc<State>, request: Request<Incoming>) -> Response<ApiBody> {
    if state.loopback {
        if let Some(refused) = foreign_host(&request) {
            return refused;
        }
    }
    if let Some(refused) = authorize(state, &request) {
        return refused;
    }
    state.capture.expire(SystemTime::now());
    let segments: Vec<String> = request.uri().path()[PREFIX.len()..]
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let params = match pairs(request.uri().query()) {
        Ok(params) => params,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.0),
    };
    let method = request.method().clone();
    let body = if method == Method::DELETE || method == Method::PUT {
        match body(request).await {
            Ok(body) => body,
            Err(refused) => return refused,
        }
    } else {
        Vec::new()
    };
    let shared = Arc::clone(state);
    blocking(state, move || {
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        route(&shared, &method, &segments, &params, &body)
    })
    .await
    .unwrap_or_else(failed)
}

/// The route a path and method name, answered.
fn route(
    state: &State,
    method: &Method,
    segments: &[&str],
    params: &[(String, String)],
    body: &[u8],
) -> Response<ApiBody> {
    let get = &[Method::GET, Method::HEAD][..];
    match segments {
        ["api", "v1", "messages"] => {
            let allowed_here = [Method::GET, Method::HEAD, Method::DELETE, Method::PUT];
            match allowed(method, &allowed_here) {
                Some(refused) => refused,
                None if method == Method::DELETE => delete_messages(&state.capture, body),
                None if method == Method::PUT => read_status(body),
                None => list(state, params),
            }
        }
        ["api", "v1", "message", id] => allowed(method, get)
            .unwrap_or_else(|| find(state, id, params).map_or_else(|r| *r, |m| message(state, &m))),
        ["api", "v1", "message", id, "raw"] => allowed(method, get)
            .unwrap_or_else(|| find(state, id, params).map_or_else(|r| *r, |m| raw(&m, params))),
        ["api", "v1", "message", id, "headers"] => allowed(method, get)
            .unwrap_or_else(|| find(state, id, params).map_or_else(|r| *r, |m| headers(state, &m))),
        ["api", "v1", "search"] => {
            match allowed(method, &[Method::GET, Method::HEAD, Method::DELETE]) {
                Some(refused) => refused,
                None if method == Method::DELETE => delete_search(state, params),
                None => search_route(state, params),
            }
        }
        ["view", file] => allowed(method, get).unwrap_or_else(|| view_route(state, file, params)),
        _ => not_found(),
    }
}

/// A `text/plain` response (Mailpit's errors and `ok`).
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ApiBody> {
    whole(status, "text/plain", body.into())
}

/// Mailpit's `404`.
fn not_found() -> Response<ApiBody> {
    text(StatusCode::NOT_FOUND, "404 page not found")
}

/// A JSON `200`.
fn json_ok(value: &Value) -> Response<ApiBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    whole(StatusCode::OK, "application/json", Bytes::from(body))
}

/// `None` if `method` is one of `allowed`; else the `405` with `Allow` (Go's `ServeMux`).
fn allowed(method: &Method, allowed: &[Method]) -> Option<Response<ApiBody>> {
    if allowed.contains(method) {
        return None;
    }
    let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    let mut response = whole(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        Bytes::from_static(b"Method Not Allowed\n"),
    );
    if let Ok(list) = HeaderValue::from_str(&list.join(", ")) {
        response.headers_mut().insert(ALLOW, list);
    }
    Some(response)
}

/// `None` without `--api-token` or when the request carries it (as a bearer token, or as the
/// password of Basic auth, RFC 7617 §2); else Mailpit's `401`.
fn authorize(state: &State, request: &Request<Incoming>) -> Option<Response<ApiBody>> {
    let token = state.token.as_ref()?;
    let value = request
        .headers()
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let given = match value {
        Some(v) if v.starts_with(b"Bearer ") => Some(v[7..].to_vec()),
        Some(v) if v.starts_with(b"Basic ") => base64::engine::general_purpose::STANDARD
            .decode(&v[6..])
            .ok()
            .and_then(|pair| {
                let colon = pair.iter().position(|&b| b == b':')?;
                Some(pair[colon + 1..].to_vec())
            }),
        _ => None,
    };
    if given.is_some_and(|given| same_secret(&given, token.as_bytes())) {
        return None;
    }
    let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized.\n");
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Login\""),
    );
    Some(response)
}

/// The request body, at most [`MAX_BODY`] octets (else `413`).
async fn body(request: Request<Incoming>) -> Result<Vec<u8>, Response<ApiBody>> {
    read_all(request.into_body(), MAX_BODY as u64)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} octets"),
            ),
            BodyError::CutShort | BodyError::Refused(_) => {
                text(StatusCode::BAD_REQUEST, "request body cut short")
            }
        })
}

/// A query parameter's value (the first).
fn param<'p>(params: &'p [(String, String)], key: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `start` and `limit` as Mailpit's `getStartLimit` reads them: `start` an integer above 0
/// or else 0; `limit` an integer of 0 or more or else 50; then `limit` at most [`PAGE_MAX`].
fn start_limit(params: &[(String, String)]) -> (usize, usize) {
    let start = param(params, "start")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|&n| n > 0)
        .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let limit = param(params, "limit")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|&n| n >= 0)
        .map_or(DEFAULT_LIMIT, |n| usize::try_from(n).unwrap_or(usize::MAX))
        .min(PAGE_MAX);
    (start, limit)
}

/// Messages `start..start + limit` of those `filter` selects, newest first.
fn skip_take(capture: &Capture, filter: &Filter, start: usize, limit: usize) -> Vec<Snapshot> {
    let mut items = Vec::new();
    let mut skipped = 0;
    let mut cursor = None;
    while items.len() < limit {
        let page = capture.page(cursor, Direction::Older, CHUNK, filter);
        for message in page.items {
            cursor = Some(message.seq);
            if skipped < start {
                skipped += 1;
            } else if items.len() < limit {
                items.push(message);
            }
        }
        if page.next.is_none() {
            break;
        }
    }
    items
}

/// The whole mailbox's count (`total`; `unread` too, as nothing is ever read).
fn total(capture: &Capture) -> usize {
    capture.count(&Filter::default())
}

/// A `MessagesSummary`.
fn summary_page(
    state: &State,
    total: usize,
    matched: usize,
    start: usize,
    items: &[Snapshot],
) -> Value {
    json!({
        "total": total,
        "unread": total,
        "count": items.len(),
        "messages_count": matched,
        "messages_unread": matched,
        "start": start,
        "tags": [],
        "messages": items.iter().map(|m| summary(&state.views, m)).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/messages`: `limit=0` is every message in Mailpit's list (not its search);
/// here, as any `limit`, at most [`PAGE_MAX`].
fn list(state: &State, params: &[(String, String)]) -> Response<ApiBody> {
    let (start, limit) = start_limit(params);
    let limit = if limit == 0 { PAGE_MAX } else { limit };
    let total = total(&state.capture);
    let items = skip_take(&state.capture, &Filter::default(), start, limit);
    json_ok(&summary_page(state, total, total, start, &items))
}

/// The message an `{ID}` names: `latest` (the newest, or the newest matching `?query=`) or
/// an id; a removed message is unknown here (Mailpit has no `410`).
fn find(
    state: &State,
    id: &str,
    params: &[(String, String)],
) -> Result<Snapshot, Box<Response<ApiBody>>> {
    if id == "latest" {
        let newest = match param(params, "query")
            .map(str::trim)
            .filter(|q| !q.is_empty())
        {
            Some(query) => newest_match(state, &parse(query)?),
            None => skip_take(&state.capture, &Filter::default(), 0, 1)
                .into_iter()
                .next(),
        };
        return newest.ok_or_else(|| Box::new(text(StatusCode::NOT_FOUND, "Message not found")));
    }
    let Some(id) = queue_id(id) else {
        return Err(Box::new(not_found()));
    };
    match state.capture.get(&id) {
        Lookup::Found(message) => Ok(message),
        Lookup::Gone(_) | Lookup::Unknown => Err(Box::new(not_found())),
    }
}

/// The view of `message`, or the `410` when its file cannot be read (`crate::view::body`).
fn parsed(state: &State, message: &Snapshot) -> Result<Arc<MessageView>, Box<Response<ApiBody>>> {
    body::view(&state.views, message).map_err(|e| Box::new(gone_file(&e)))
}

/// A kept message whose file cannot be read (removed or changed behind the server's back):
/// `410`, the reason as text.
fn gone_file(e: &body::Unreadable) -> Response<ApiBody> {
    text(StatusCode::GONE, format!("{}: {e}", e.reason()))
}

/// `GET /api/v1/message/{ID}`: Mailpit's `Message`.
fn message(state: &State, message: &Snapshot) -> Response<ApiBody> {
    let view = match parsed(state, message) {
        Ok(view) => view,
        Err(refused) => return *refused,
    };
    let heads = heads(message);
    let (attachments, inline) = split_parts(&view);
    let envelope = message.envelope();
    let return_path = field(&view, "Return-Path")
        .map(|v| v.trim_start_matches('<').trim_end_matches('>').to_owned())
        .filter(|v| !v.is_empty())
        .or_else(|| Some(lossy(envelope.sender)).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| heads.from["Address"].as_str().unwrap_or("").to_owned());
    let created = rfc3339(message.received_at);
    json_ok(&json!({
        "ID": message.id().as_str(),
        "MessageID": heads.message_id,
        "From": heads.from,
        "To": heads.to,
        "Cc": heads.cc,
        "Bcc": heads.bcc,
        "ReplyTo": heads.reply_to,
        "ReturnPath": return_path,
        "Subject": subject(&view),
        "ListUnsubscribe": list_unsubscribe(&view),
        "Date": heads.date.unwrap_or(created),
        "Tags": [],
        "Username": envelope.auth_user.map(lossy).unwrap_or_default(),
        "Text": view.text.clone().unwrap_or_default(),
        "HTML": view.html.clone().unwrap_or_default(),
        "Size": message.body.len(),
        "Inline": inline.iter().map(|p| attachment(message, p)).collect::<Vec<_>>(),
        "Attachments": attachments.iter().map(|p| attachment(message, p)).collect::<Vec<_>>(),
    }))
}

/// `GET /api/v1/message/{ID}/raw`: the bytes as received, shared with the store; `dl=1`
/// makes it a download named `{ID}.eml`.
fn raw(message: &Snapshot, params: &[(String, String)]) -> Response<ApiBody> {
    // A message in a file is read whole here (this runs on a blocking thread).
    let raw = match body::content(message) {
        Ok(raw) => raw,
        Err(e) => return gone_file(&e),
    };
    let mut response = whole(StatusCode::OK, "text/plain; charset=utf-8", raw);
    confine(response.headers_mut());
    if param(params, "dl") == Some("1") {
        let name = format!("attachment; filename=\"{}.eml\"", message.id().as_str());
        if let Ok(value) = HeaderValue::from_str(&name) {
            response.headers_mut().insert(CONTENT_DISPOSITION, value);
        }
    }
    response
}

/// A field name as Go's `textproto.CanonicalMIMEHeaderKey` writes it (`Message-Id`,
/// `Mime-Version`); a name with a character outside a token is left as sent.
fn canonical(name: &str) -> String {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.bytes().all(token) {
        return name.to_owned();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let c = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            c
        })
        .collect()
}

/// `GET /api/v1/message/{ID}/headers`: every top-level field, canonical names sorted, values
/// unfolded, encoded words left as sent (as Go's `net/mail.Header`).
fn headers(state: &State, message: &Snapshot) -> Response<ApiBody> {
    let view = match parsed(state, message) {
        Ok(view) => view,
        Err(refused) => return *refused,
    };
    let mut map = Map::new();
    for header in &view.headers {
        let value = lossy(crate::capture::headers::unfold(header.raw.as_bytes()).trim_ascii());
        let entry = map
            .entry(canonical(&header.name))
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(value));
        }
    }
    json_ok(&Value::Object(map))
}

/// A Mailpit search parsed into fastsmtpd's [`grammar::Query`], or the `400`.
fn parse(query: &str) -> Result<grammar::Query, Box<Response<ApiBody>>> {
    let translated = translate(query).map_err(|e| Box::new(text(StatusCode::BAD_REQUEST, e)))?;
    grammar::parse(&translated, SystemTime::now()).map_err(|e| {
        Box::new(text(
            StatusCode::BAD_REQUEST,
            format!(
                "search {query:?} (as {translated:?}): {} at {:?}",
                e.message, e.term
            ),
        ))
    })
}

/// The `query` parameter, trimmed and parsed; blank is Mailpit's `400`.
fn search_param(params: &[(String, String)]) -> Result<grammar::Query, Box<Response<ApiBody>>> {
    match param(params, "query")
        .map(str::trim)
        .filter(|q| !q.is_empty())
    {
        Some(query) => parse(query),
        None => Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "Error: no search query",
        ))),
    }
}

/// The newest message matching `query` (pages on past pages a per-call bound left empty).
fn newest_match(state: &State, query: &grammar::Query) -> Option<Snapshot> {
    let mut cursor = None;
    loop {
        let page = search(
            &state.capture,
            query,
            cursor,
            Direction::Older,
            1,
            &state.views,
        );
        match (page.items.into_iter().next(), page.next) {
            (Some(found), _) => return Some(found),
            (None, Some(next)) => cursor = Some(next),
            (None, None) => return None,
        }
    }
}

/// How many messages match `query`, and matches `start..start + limit`, newest first.
fn matches(
    state: &State,
    query: &grammar::Query,
    start: usize,
    limit: usize,
) -> (usize, Vec<Snapshot>) {
    let mut items = Vec::new();
    let mut seen = 0;
    let mut cursor = None;
    loop {
        if query.index_only() && seen >= start.saturating_add(limit) {
            return (state.capture.count(&query.index), items);
        }
        let page = search(
            &state.capture,
            query,
            cursor,
            Direction::Older,
            CHUNK,
            &state.views,
        );
        for message in page.items {
            if seen >= start && items.len() < limit {
                items.push(message);
            }
            seen += 1;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (seen, items),
        }
    }
}

/// `GET /api/v1/search`: `messages_count` counts every match; `limit=0` is an empty page (as
/// Mailpit's search slices `start..start + limit`).
fn search_route(state: &State, params: &[(String, String)]) -> Response<ApiBody> {
    let query = match search_param(params) {
        Ok(query) => query,
        Err(refused) => return *refused,
    };
    let (start, limit) = start_limit(params);
    let (matched, items) = matches(state, &query, start, limit);
    json_ok(&summary_page(
        state,
        total(&state.capture),
        matched,
        start,
        &items,
    ))
}

/// `DELETE /api/v1/search`: deletes every match; `ok`.
fn delete_search(state: &State, params: &[(String, String)]) -> Response<ApiBody> {
    let query = match search_param(params) {
        Ok(query) => query,
        Err(refused) => return *refused,
    };
    crate::view::search::delete_matching(&state.capture, &query, &state.views);
    text(StatusCode::OK, "ok")
}

/// `DELETE /api/v1/messages`: the `IDs` of a JSON body (unknown ones ignored); with no body,
/// no `IDs`, an empty list or a body that is not JSON, every message (Mailpit's rule, which
/// both clients rely on: their "delete all" sends no body).
fn delete_messages(capture: &Capture, body: &[u8]) -> Response<ApiBody> {
    let ids: Vec<String> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            let object = v.as_object()?;
            let ids = object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("ids"))?
                .1
                .as_array()?;
            Some(
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .unwrap_or_default();
    if ids.is_empty() {
        capture.delete_all();
    } else {
        for id in ids.iter().filter_map(|id| queue_id(id)) {
            capture.delete(&id);
        }
    }
    text(StatusCode::OK, "ok")
}

/// `PUT /api/v1/messages`: the body checked as Mailpit checks it (JSON; not both `IDs` and
/// `Search`), then `ok`; fastsmtpd keeps no read state, so nothing changes.
fn read_status(body: &[u8]) -> Response<ApiBody> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return text(StatusCode::BAD_REQUEST, "a JSON object is needed");
    };
    let get = |key: &str| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    };
    let ids = get("IDs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let search = get("Search")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if ids && search {
        return text(
            StatusCode::BAD_REQUEST,
            "You may specify either IDs or a search query, not both",
        );
    }
    text(StatusCode::OK, "ok")
}

/// `GET /view/{ID}.html` and `/view/{ID}.txt`: the HTML body (`404` without one), under the
/// API's sandbox policy (no script runs, nothing loads), or the text body.
fn view_route(state: &State, file: &str, params: &[(String, String)]) -> Response<ApiBody> {
    let (id, html) = if let Some(id) = file.strip_suffix(".html") {
        (id, true)
    } else if let Some(id) = file.strip_suffix(".txt") {
        (id, false)
    } else {
        return not_found();
    };
    let message = match find(state, id, params) {
        Ok(message) => message,
        Err(refused) => return *refused,
    };
    let view: Arc<MessageView> = match parsed(state, &message) {
        Ok(view) => view,
        Err(refused) => return *refused,
    };
    let mut response = if html {
        match &view.html {
            Some(html) => whole(
                StatusCode::OK,
                "text/html; charset=utf-8",
                Bytes::from(html.clone()),
            ),
            None => return not_found(),
        }
    } else {
        whole(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from(view.text.clone().unwrap_or_default()),
        )
    };
    confine(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_limit_read_as_mailpit_reads_them() {
        let p = |q: &str| start_limit(&pairs(Some(q)).unwrap());
        assert_eq!(p(""), (0, 50));
        assert_eq!(p("start=2&limit=3"), (2, 3));
        assert_eq!(p("start=-1&limit=-5"), (0, 50));
        assert_eq!(p("start=x&limit=y"), (0, 50));
        assert_eq!(p("limit=0"), (0, 0));
        assert_eq!(p("limit=100000"), (0, PAGE_MAX));
    }

    #[test]
    fn header_names_are_canonical_as_go_writes_them() {
        assert_eq!(canonical("MESSAGE-ID"), "Message-Id");
        assert_eq!(canonical("mime-version"), "Mime-Version");
        assert_eq!(canonical("x-mailer"), "X-Mailer");
        assert_eq!(canonical("odd name"), "odd name");
    }
}
