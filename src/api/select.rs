//! Pages of the messages a [`Selection`] means: the store pages by its index filter, under
//! its lock; the decoded-subject conditions are checked here on the snapshots, outside it.
//!
//! A page with such conditions examines at most [`MAX_EXAMINED`] messages per call: it may
//! hold fewer than `limit` messages and still have a `next` cursor (the client pages on, as
//! with any page). Without them a page is the store's page as it is.
//!
//! A selection naming a per-test mailbox (`mailbox=`) that is not live is answered before
//! any page: `410` (expired or deleted) or `404` ([`mailbox_refusals`]).
//!
//! What it does not do: wait (see `wait`), or hold the store's lock while decoding.

use super::query::Selection;
use super::response::{error, json, ApiBody};
use crate::capture::{Capture, Direction, MailboxGoneReason, MailboxId, MailboxLookup, Page};
use crate::store::record::rfc3339;
use hyper::{Response, StatusCode};
use serde_json::json;

/// The most messages one call examines for a selection with decoded-subject conditions.
pub const MAX_EXAMINED: usize = 10_000;

/// The store's page size while examining.
const CHUNK: usize = 256;

/// Up to `limit` messages of `selection` from `cursor` (exclusive) in `direction`; stops at
/// `stop` (exclusive) if given: a page of the messages between two cursors.
pub fn page(
    capture: &Capture,
    selection: &Selection,
    cursor: Option<u64>,
    direction: Direction,
    limit: usize,
    stop: Option<u64>,
) -> Page {
    let beyond = |seq: u64| match (stop, direction) {
        (Some(stop), Direction::Older) => seq <= stop,
        (Some(stop), Direction::Newer) => seq >= stop,
        (None, _) => false,
    };
    if !selection.has_residual() {
        let mut page = capture.page(cursor, direction, limit, &selection.filter);
        if let Some(end) = page.items.iter().position(|m| beyond(m.seq)) {
            page.items.truncate(end);
            page.next = None;
        }
        return page;
    }
    let mut items = Vec::new();
    let mut examined = 0;
    let mut cursor = cursor;
    loop {
        let chunk = capture.page(cursor, direction, CHUNK, &selection.filter);
        for message in chunk.items {
            if beyond(message.seq) {
                return Page { items, next: None };
            }
            examined += 1;
            cursor = Some(message.seq);
            if selection.admits(&message) {
                items.push(message);
            }
            if items.len() == limit || examined == MAX_EXAMINED {
                return Page {
                    items,
                    next: cursor,
                };
            }
        }
        if chunk.next.is_none() {
            return Page { items, next: None };
        }
    }
}

/// How many kept messages `selection` means (counted in the store, not through a page).
pub fn count(capture: &Capture, selection: &Selection) -> usize {
    if !selection.has_residual() {
        return capture.count(&selection.filter);
    }
    let mut total = 0;
    let mut cursor = None;
    loop {
        let chunk = capture.page(cursor, Direction::Newer, CHUNK, &selection.filter);
        total += chunk.items.iter().filter(|m| selection.admits(m)).count();
        cursor = chunk.items.last().map(|m| m.seq);
        if chunk.next.is_none() || cursor.is_none() {
            return total;
        }
    }
}

/// `None` if mailbox `id` is live; else its `410` (with `expired_at` or `deleted_at`) or
/// `404`. Every route that takes `mailbox=` asks this first.
pub fn mailbox_refusal(capture: &Capture, id: &MailboxId) -> Option<Response<ApiBody>> {
    match capture.mailbox(id) {
        MailboxLookup::Found(_) => None,
        MailboxLookup::Gone(gone) => {
            let (word, key) = match gone.reason {
                MailboxGoneReason::Expired => ("expired", "expired_at"),
                MailboxGoneReason::Deleted => ("deleted", "deleted_at"),
            };
            let mut body = json!({
                "error": {"status": 410, "message": format!("mailbox {id} {word}")},
                "mailbox": id.as_str(),
            });
            body[key] = json!(rfc3339(gone.at));
            Some(json(StatusCode::GONE, &body))
        }
        MailboxLookup::Unknown => Some(error(
            StatusCode::NOT_FOUND,
            &format!("no such mailbox: {id}"),
        )),
    }
}

/// `None` if every `mailbox=` value names a live mailbox; else the first one's `404`/`410`.
pub fn mailbox_refusals<'a>(
    capture: &Capture,
    ids: impl IntoIterator<Item = &'a str>,
) -> Option<Response<ApiBody>> {
    ids.into_iter()
        .find_map(|text| match MailboxId::parse(text.as_bytes()) {
            Some(id) => mailbox_refusal(capture, &id),
            None => Some(error(
                StatusCode::NOT_FOUND,
                &format!("no such mailbox: {text:?}"),
            )),
        })
}
