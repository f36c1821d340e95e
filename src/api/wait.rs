//! `await`: wait until `count` kept messages after a cursor match a selection, or a timeout.
//!
//! The order that loses nothing (the store's module doc): register a waiter FIRST, then scan
//! the kept mail after the cursor, then sleep until a matching insert wakes the waiter and
//! scan again from the last message examined. The waiter is keyed by the selection's first
//! recipient (only inserts for that address wake it) or by any message. Its waker sets a
//! permit in a [`Notify`], so a wake between a scan and the sleep is never lost.
//!
//! The waiter is cancelled when the wait ends, and when its future is dropped: the client
//! went away and hyper dropped the request, or the server stopped.
//!
//! A wait on a per-test mailbox ends when the mailbox does ([`Found::ended`]; the route
//! answers `410`): a delete wakes the mailbox's waiters, and the sleep never runs past the
//! mailbox's `expires_at`: then the store's expiry is run and the mailbox looked at again.
//!
//! A message after the cursor that the store's limits evicted before a scan examined it is
//! reported ([`Found::evicted_unexamined`]): with `expect=none` the route answers `410`
//! rather than a `200` that could be false.
//!
//! What it does not do: format the answer (the routes do), or examine a message twice (each
//! scan starts after the last message the previous one examined, or after the store's head
//! when the scan read all of it).

use super::counters::ApiCounters;
use super::query::AwaitQuery;
use super::select;
use crate::capture::{Capture, Direction, MailboxLookup, Snapshot, WaiterId};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a wait found.
#[derive(Debug)]
pub struct Found {
    /// The matching messages, oldest first (at most `count`).
    pub messages: Vec<Snapshot>,
    /// The cursor after the last message examined: where a next `await` can start.
    pub cursor: u64,
    /// Whether `count` matched before the timeout.
    pub complete: bool,
    /// Whether it stopped because a mailbox it selects ended (deleted or expired) first.
    pub ended: bool,
    /// Whether the store's limits removed a message after the cursor before this wait could
    /// examine it (so "none matched" cannot be told from "one was evicted").
    pub evicted_unexamined: bool,
}

/// A waker that leaves a permit in its [`Notify`].
#[derive(Debug, Default)]
struct Permit(Notify);

impl Wake for Permit {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify_one();
    }
}

/// A registered waiter, cancelled on drop.
struct Registered<'a> {
    /// The store it waits on.
    capture: &'a Capture,
    /// Its id there.
    id: WaiterId,
    /// The gauge it counts in.
    counters: &'a ApiCounters,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.capture.cancel(self.id);
        self.counters.waiters.dec();
    }
}

/// Waits as `query` asks (see the module doc).
pub async fn wait(capture: &Capture, query: &AwaitQuery, counters: &ApiCounters) -> Found {
    let deadline = Instant::now() + query.timeout;
    let wanted = if query.expect_none { 1 } else { query.count };
    let permit = Arc::new(Permit::default());
    let _registered = Registered {
        id: capture.register(query.selection.wait_key(), Waker::from(Arc::clone(&permit))),
        capture,
        counters,
    };
    counters.waiters.inc();
    let mut found = Found {
        messages: Vec::new(),
        cursor: query.after,
        complete: false,
        ended: false,
        evicted_unexamined: false,
    };
    let mut waited = false;
    loop {
        scan(capture, query, wanted, &mut found);
        if found.messages.len() >= wanted {
            found.complete = true;
            if waited {
                if let Some(last) = found.messages.last() {
                    let since = SystemTime::now()
                        .duration_since(last.received_at)
                        .unwrap_or_default();
                    counters.await_return.observe(since.as_secs_f64());
                }
            }
            return found;
        }
        let Some(expiry) = mailboxes_expiry(capture, query) else {
            found.ended = true;
            return found;
        };
        let mut woken = pin!(permit.0.notified());
        let mut sleep = pin!(tokio::time::sleep_until(deadline.min(expiry)));
        let slept = poll_fn(|cx| {
            if woken.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            sleep.as_mut().poll(cx).map(|()| true)
        })
        .await;
        if slept {
            if Instant::now() >= deadline {
                return found;
            }
            // A mailbox's time ran out: end it now (nothing else may ask the store soon).
            capture.expire(SystemTime::now());
        }
        waited = true;
    }
}

/// When the first mailbox the selection names expires (far ahead without one); `None` if
/// one is no longer live.
fn mailboxes_expiry(capture: &Capture, query: &AwaitQuery) -> Option<Instant> {
    let far = Instant::now() + query.timeout;
    let mut first = far;
    for id in query.selection.filter.mailboxes() {
        let MailboxLookup::Found(info) = capture.mailbox(id) else {
            return None;
        };
        // A millisecond past it: the store ends a mailbox once the clock has reached it.
        let left = info
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        first = first.min(Instant::now() + left + Duration::from_millis(1));
    }
    Some(first)
}

/// Adds the matching messages after `found.cursor` (up to `wanted`) and moves the cursor.
fn scan(capture: &Capture, query: &AwaitQuery, wanted: usize, found: &mut Found) {
    // Every sequence number up to the head read now was given before the pages below run.
    let head = capture.head();
    // Read before the pages: a message evicted after this is examined by them or was
    // examined before (eviction takes the oldest first), so only what was already evicted
    // beyond the cursor is lost unseen.
    if capture.last_evicted() > found.cursor {
        found.evicted_unexamined = true;
    }
    loop {
        let room = wanted - found.messages.len();
        let page = select::page(
            capture,
            &query.selection,
            Some(found.cursor),
            Direction::Newer,
            room,
            None,
        );
        let examined_to = page.next;
        for message in page.items {
            found.cursor = found.cursor.max(message.seq);
            found.messages.push(message);
        }
        if found.messages.len() >= wanted {
            return;
        }
        match examined_to {
            // More to examine (a selection with decoded-subject conditions pages in chunks).
            Some(next) if next > found.cursor => found.cursor = next,
            _ => {
                // Read to the end: nothing up to `head` is left to match.
                found.cursor = found.cursor.max(head);
                return;
            }
        }
    }
}
