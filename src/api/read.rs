//! The routes that read a message for people and search in the query language: the parsed
//! view (text, HTML, every header, parts), one part's bytes, links and one-time codes,
//! `GET`/`DELETE /api/v1/search?q=`, and `GET /api/v1/stats` for the UI's status strip.
//!
//! A message is parsed (MIME, charsets, transfer encodings: [`crate::view`]) at its first
//! read, on this thread, never on an SMTP loop, and the view is kept in one bounded cache
//! ([`ViewCache`]) shared by every route; later reads and `body:` searches reuse it.
//!
//! Safety of what a message carries: a part is served with `Content-Security-Policy:
//! sandbox; default-src 'none'` (a browser opening it runs no script and loads nothing, in an
//! opaque origin), `X-Content-Type-Options: nosniff`, and as a download
//! (`Content-Disposition: attachment`) when it is HTML, SVG or XML, the types a browser would
//! otherwise render as a document. Links are extracted, never fetched.
//!
//! What it does not do: decide which message (the routes' `lookup` does), or parse the
//! grammar ([`crate::capture::query`]).

use super::query::{self, BadRequest};
use super::render;
use super::response::{error, json, whole_with};
use crate::capture::query as grammar;
use crate::capture::Capture;
use crate::capture::{Direction, Snapshot};
use crate::view::body::{self, Unreadable};
use crate::view::ViewCache;
use crate::view::{search, CodeSource, MessageView};
use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_DISPOSITION};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::SystemTime;

use super::response::ApiBody;

/// The view of `message`, parsed now or taken from the cache; the `410` when its file
/// cannot be read.
fn view(views: &ViewCache, message: &Snapshot) -> Result<Arc<MessageView>, Box<Response<ApiBody>>> {
    body::view(views, message).map_err(|e| Box::new(unreadable(&e)))
}

/// The answer for a kept message whose file cannot be read (removed or changed behind the
/// server's back, `--store eml:DIR`): `410 Gone`, `{"error": {"status": 410, "message"},
/// "reason": "file_missing" | "file_changed" | "file_unreadable"}`. The message stays in the
/// index until deleted or evicted (its envelope and summary still answer).
pub fn unreadable(e: &Unreadable) -> Response<ApiBody> {
    json(
        StatusCode::GONE,
        &json!({
            "error": {"status": 410, "message": e.to_string()},
            "reason": e.reason(),
        }),
    )
}

/// `GET /api/v1/messages/{id}`: the record ([`render::message`]) and what the view adds:
/// `text`, `html` (`null` when absent), `header_fields` (every top-level field in order, raw
/// and decoded), `parts` (numbered from 1 in MIME tree order), `parts_omitted`.
pub fn message(views: &ViewCache, message: &Snapshot) -> Response<ApiBody> {
    let view = match view(views, message) {
        Ok(view) => view,
        Err(refused) => return *refused,
    };
    let mut body = render::message(message);
    body["text"] = view.text.as_deref().map_or(Value::Null, Value::from);
    body["html"] = view.html.as_deref().map_or(Value::Null, Value::from);
    body["header_fields"] = view
        .headers
        .iter()
        .map(|h| json!({"name": h.name, "value": h.decoded, "raw": h.raw}))
        .collect();
    body["parts"] = view
        .parts
        .iter()
        .map(|p| {
            json!({
                "number": p.number,
                "content_type": p.content_type,
                "charset": p.charset,
                "filename": p.filename,
                "disposition": p.disposition,
                "content_id": p.content_id,
                "size": p.size,
            })
        })
        .collect();
    body["parts_omitted"] = view.parts_omitted.into();
    body["unparsed"] = view.unparsed.into();
    json(StatusCode::OK, &body)
}

/// `GET /api/v1/messages/{id}/links`: `{"links": [..], "codes": [{"code", "source"}]}`.
pub fn links(views: &ViewCache, message: &Snapshot) -> Response<ApiBody> {
    let view = match view(views, message) {
        Ok(view) => view,
        Err(refused) => return *refused,
    };
    let codes: Vec<Value> = view
        .codes
        .iter()
        .map(|c| {
            let source = match c.source {
                CodeSource::Text => "text",
                CodeSource::Link => "link",
            };
            json!({"code": c.code, "source": source})
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({"links": view.links, "codes": codes}),
    )
}

/// `GET /api/v1/messages/{id}/parts/{n}`: the part's decoded bytes (see the module doc for
/// the headers that keep a browser safe).
pub fn part(message: &Snapshot, number: &str) -> Response<ApiBody> {
    let canonical = !number.is_empty()
        && number.len() <= 6
        && number.bytes().all(|b| b.is_ascii_digit())
        && !number.starts_with('0');
    let Some(number) = number.parse::<usize>().ok().filter(|_| canonical) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "part {number:?}: parts are numbered 1, 2, 3... (a decimal number, no leading zero)"
            ),
        );
    };
    let raw = match body::content(message) {
        Ok(raw) => raw,
        Err(e) => return unreadable(&e),
    };
    let Some(part) = MessageView::part(&raw, number) else {
        return error(StatusCode::NOT_FOUND, "no such part");
    };
    let content_type = HeaderValue::from_str(&part.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = whole_with(StatusCode::OK, content_type, Bytes::from(part.bytes));
    let kind = part.content_type.to_ascii_lowercase();
    let document = kind.starts_with("text/html")
        || kind.contains("svg")
        || kind.contains("xml")
        || kind.starts_with("application/xhtml");
    if document || part.filename.is_some() {
        let name: String = part
            .filename
            .as_deref()
            .unwrap_or("part")
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' {
                    c
                } else {
                    '_'
                }
            })
            .take(200)
            .collect();
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            response.headers_mut().insert(CONTENT_DISPOSITION, value);
        }
    }
    response
}

/// What `GET`/`DELETE /api/v1/search` was asked.
struct SearchQuery {
    /// The parsed `q`.
    query: grammar::Query,
    /// Page size.
    limit: usize,
    /// Only messages older than this cursor.
    before: Option<u64>,
}

/// Reads `q=`, `limit=`, `before=` (the last two only when `paged`).
fn search_query(text: Option<&str>, paged: bool) -> Result<SearchQuery, BadRequest> {
    let mut q = None;
    let mut limit = query::DEFAULT_LIMIT;
    let mut before = None;
    let mut seen = Vec::new();
    for (key, value) in query::pairs(text)? {
        query::once(&mut seen, &key)?;
        match key.as_str() {
            "q" if value.trim().is_empty() => {
                // An empty query matches everything: a `DELETE` of it would empty the store.
                return Err(BadRequest(
                    "q: empty (to list or delete everything, use /api/v1/messages)".into(),
                ));
            }
            "q" => {
                let parsed = grammar::parse(&value, SystemTime::now()).map_err(|e| {
                    BadRequest(format!(
                        "q: {} (at octet {}, {:?})",
                        e.message, e.position, e.term
                    ))
                })?;
                q = Some(parsed);
            }
            "limit" if paged => {
                limit = query::number(&key, &value, 1, query::MAX_LIMIT as u64)? as usize;
            }
            "before" if paged => before = Some(query::cursor(&key, &value)?),
            _ => return Err(query::unknown(&key)),
        }
    }
    let query =
        q.ok_or_else(|| BadRequest("q: missing (the search, e.g. q=rcpt:a@example.com)".into()))?;
    Ok(SearchQuery {
        query,
        limit,
        before,
    })
}

/// `GET /api/v1/search?q=`: summaries of matching messages, newest first. `next` continues
/// (a page may be short when the per-call bound of examined messages was reached, see
/// [`crate::view::search()`]); `total` is given when the query is answered from the index
/// alone, else `null` (counting would decode every candidate).
pub fn search_route(capture: &Capture, views: &ViewCache, text: Option<&str>) -> Response<ApiBody> {
    let q = match search_query(text, true) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.0),
    };
    if let Some(refused) = refuse_mailboxes(capture, &q.query) {
        return refused;
    }
    let page = search(
        capture,
        &q.query,
        q.before,
        Direction::Older,
        q.limit,
        views,
    );
    let total = if q.query.index_only() {
        Value::from(capture.count(&q.query.index))
    } else {
        Value::Null
    };
    json(
        StatusCode::OK,
        &json!({
            "messages": page.items.iter().map(render::summary).collect::<Vec<_>>(),
            "next": page.next.map(|n| n.to_string()),
            "total": total,
            "scanned": page.scanned,
        }),
    )
}

/// `DELETE /api/v1/search?q=`: deletes every matching message; `{"deleted": n}`.
pub fn delete_search(
    capture: &Capture,
    views: &ViewCache,
    text: Option<&str>,
) -> Response<ApiBody> {
    let q = match search_query(text, false) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.0),
    };
    if let Some(refused) = refuse_mailboxes(capture, &q.query) {
        return refused;
    }
    let deleted = crate::view::search::delete_matching(capture, &q.query, views);
    json(StatusCode::OK, &json!({"deleted": deleted}))
}

/// A `404`/`410` for a query naming a mailbox that is not live (`mailbox:ID`).
fn refuse_mailboxes(capture: &Capture, query: &crate::capture::Query) -> Option<Response<ApiBody>> {
    query
        .index
        .mailboxes()
        .find_map(|id| super::select::mailbox_refusal(capture, id))
}

/// `GET /api/v1/stats`: the store's figures for the UI's status strip and for scripts:
/// `messages`, `bytes` (charged) and `budget_bytes` (the store's share of `--capture-memory`),
/// `view_cache_bytes` and `view_cache_budget_bytes` (the parsed views' share),
/// `accepted_total` (inserted since start), `evicted`, `expired`, `deleted`, `refused`,
/// `waiters` (awaits waiting), `subscribers` (event streams), `head`.
pub fn stats(
    capture: &Capture,
    views: &ViewCache,
    waiters: i64,
    subscribers: i64,
) -> Response<ApiBody> {
    let s = capture.stats();
    let v = views.stats();
    json(
        StatusCode::OK,
        &json!({
            "messages": s.messages,
            "bytes": s.bytes,
            "budget_bytes": s.max_bytes,
            "view_cache_bytes": v.bytes,
            "view_cache_budget_bytes": v.max_bytes,
            "accepted_total": s.inserted,
            "evicted": s.evicted_bytes + s.evicted_count,
            "expired": s.expired,
            "deleted": s.deleted,
            "refused": s.refused_full + s.refused_too_large + s.refused_duplicate,
            "waiters": waiters,
            "subscribers": subscribers,
            "head": s.head.to_string(),
            "mailboxes": s.mailboxes,
            "mailbox_bytes": s.mailbox_bytes,
        }),
    )
}
