//! A search over the capture store with a parsed [`Query`]: the index part paged in the store
//! under its lock, the residual part (decoded subject, body, other headers) evaluated here on
//! parsed views, never under the store's lock.
//!
//! Bounded per call: at most [`SEARCH_EXAMINE_MAX`] candidates (messages the index part
//! matched) are examined by the residual part, and no more once [`SEARCH_EXAMINE_BYTES_MAX`]
//! raw octets have been; the page may then hold fewer than `limit` items with a `next`
//! cursor to go on from. A query with no residual part is one store page (the store's own
//! scan, under its lock, with no decoding).
//!
//! What it does not do: parse the query ([`crate::capture::query`]), or hold views beyond the
//! cache's budget.

use super::cache::ViewCache;
use super::MessageView;
use crate::capture::headers::unfold;
use crate::capture::query::{Query, Residual};
use crate::capture::{Capture, Direction, Field, Match, Snapshot};
use crate::store::rfc2047::decode_unstructured;
use std::borrow::Cow;
use std::sync::Arc;

/// The most candidates one call examines with the residual part.
pub const SEARCH_EXAMINE_MAX: usize = 1000;

/// The raw octets after which one call stops examining (the candidate that crosses it is
/// examined whole).
pub const SEARCH_EXAMINE_BYTES_MAX: u64 = 64 << 20;

/// How many candidates one store page fetches at a time.
const CHUNK: usize = 64;

/// A page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// The matching messages, in the page's direction.
    pub items: Vec<Snapshot>,
    /// The cursor to go on from in the same direction; `None` when no candidate is left. It
    /// may be `Some` with fewer than `limit` items (the bound was reached), or with items
    /// that turn out to be the last (a next call then returns none).
    pub next: Option<u64>,
    /// The candidates examined (for an index-only query, the items).
    pub scanned: usize,
}

/// Up to `limit` (at least 1) messages matching `query`, from `cursor` (exclusive) in
/// `direction`, views parsed through `cache` (see the module doc for the bounds).
pub fn search(
    capture: &Capture,
    query: &Query,
    cursor: Option<u64>,
    direction: Direction,
    limit: usize,
    cache: &ViewCache,
) -> SearchPage {
    let limit = limit.max(1);
    if query.index_only() {
        let page = capture.page(cursor, direction, limit, &query.index);
        let scanned = page.items.len();
        return SearchPage {
            items: page.items,
            next: page.next,
            scanned,
        };
    }
    let mut items = Vec::new();
    let mut scanned = 0;
    let mut bytes = 0u64;
    let mut at = cursor;
    loop {
        let want = CHUNK.min(SEARCH_EXAMINE_MAX - scanned);
        let page = capture.page(at, direction, want, &query.index);
        let count = page.items.len();
        for (i, snapshot) in page.items.into_iter().enumerate() {
            scanned += 1;
            bytes += snapshot.body.len();
            at = Some(snapshot.seq);
            if residual_matches(&query.residual, &snapshot, cache) {
                items.push(snapshot);
            }
            let more = i + 1 < count || page.next.is_some();
            if items.len() == limit
                || scanned >= SEARCH_EXAMINE_MAX
                || bytes >= SEARCH_EXAMINE_BYTES_MAX
            {
                return SearchPage {
                    items,
                    next: if more { at } else { None },
                    scanned,
                };
            }
        }
        if page.next.is_none() {
            return SearchPage {
                items,
                next: None,
                scanned,
            };
        }
    }
}

/// Deletes every kept message `query` matches; returns how many. An index-only query is
/// one store call; otherwise the matches are found a page at a time (as [`search`] bounds a
/// call, with the views parsed through `cache`) and deleted by id.
pub fn delete_matching(capture: &Capture, query: &Query, cache: &ViewCache) -> usize {
    if query.index_only() {
        return capture.delete_matching(&query.index).seqs.len();
    }
    let mut deleted = 0;
    let mut cursor = None;
    loop {
        let page = search(capture, query, cursor, Direction::Newer, DELETE_PAGE, cache);
        for message in &page.items {
            deleted += capture.delete(&message.id()).seqs.len();
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return deleted,
        }
    }
}

/// The matches [`delete_matching`] finds per call of [`search`].
const DELETE_PAGE: usize = 500;

/// Whether every residual term holds for `snapshot` (the subject decoded from the located
/// field; a view parsed only if a term needs one).
pub fn residual_matches(residual: &[Residual], snapshot: &Snapshot, cache: &ViewCache) -> bool {
    let mut subject: Option<Cow<'_, str>> = None;
    // Parsed once, when a term first needs it; a message whose file cannot be read
    // (removed or changed behind the server's back, `super::body`) matches no such term.
    let mut view: Option<Option<Arc<MessageView>>> = None;
    let parsed = |view: &mut Option<Option<Arc<MessageView>>>| {
        view.get_or_insert_with(|| super::body::view(cache, snapshot).ok())
            .clone()
    };
    let decode = || decoded_subject(snapshot).unwrap_or_default();
    residual.iter().all(|term| match term {
        Residual::Subject { text, how } => {
            subject_holds(subject.get_or_insert_with(decode), text, *how)
        }
        Residual::Body(text) => match parsed(&mut view) {
            Some(view) => contains_lowercase(view.body_text(), text),
            None => false,
        },
        Residual::Text(text) => {
            if contains_lowercase(subject.get_or_insert_with(decode), text) {
                return true;
            }
            parsed(&mut view).is_some_and(|view| contains_lowercase(view.body_text(), text))
        }
        Residual::Header { name, value, how } => {
            let Some(view) = parsed(&mut view) else {
                return false;
            };
            view.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .any(|h| {
                    let raw = unfold(h.raw.as_bytes());
                    match how {
                        Match::Exact => raw.trim_ascii() == value.as_bytes(),
                        Match::Contains => memchr::memmem::find(
                            &raw.to_ascii_lowercase(),
                            &value.as_bytes().to_ascii_lowercase(),
                        )
                        .is_some(),
                    }
                })
        }
    })
}

/// Whether `haystack` contains `needle`, both in Unicode lower case (a linear-time search:
/// a body and a needle chosen together cannot make it quadratic).
/// The message's subject as every reader shows it: decoded (RFC 2047, as the JSON record
/// decodes it) and trimmed; `None` without a `Subject:` field. Borrowed from the message
/// when there is nothing to decode (most subjects: no fold, no `=?`, valid UTF-8), so the
/// event stream's summary of each message allocates nothing for it.
pub fn decoded_subject(snapshot: &Snapshot) -> Option<Cow<'_, str>> {
    let raw = snapshot.header(Field::Subject)?;
    // No fold (a line break) and no encoded-word (`=?`): one `memchr2` for most subjects.
    let plain = memchr::memchr2_iter(b'\n', b'=', raw)
        .all(|at| raw[at] == b'=' && raw.get(at + 1) != Some(&b'?'));
    if plain {
        // What `decode_unstructured` gives such a value (unfolding changes nothing, no
        // encoded-word), without its copies.
        if let Ok(text) = std::str::from_utf8(raw.trim_ascii()) {
            return Some(Cow::Borrowed(text.trim()));
        }
    }
    Some(Cow::Owned(decode_unstructured(raw).trim().to_owned()))
}

/// Whether a decoded subject ([`decoded_subject`]) is `text` (trimmed) or contains it
/// (case-insensitive): the one rule for `subject:` in a search and `subject=`/`subject~=` in
/// the API's filter parameters.
pub fn subject_holds(subject: &str, text: &str, how: Match) -> bool {
    match how {
        Match::Exact => subject == text.trim(),
        Match::Contains => contains_lowercase(subject, text),
    }
}

fn contains_lowercase(haystack: &str, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    let haystack = if haystack.is_ascii() {
        haystack.to_ascii_lowercase()
    } else {
        haystack.to_lowercase()
    };
    memchr::memmem::find(haystack.as_bytes(), needle.as_bytes()).is_some()
}
