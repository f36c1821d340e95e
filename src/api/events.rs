//! `GET /api/v1/events`: server-sent events (the WHATWG HTML standard, §9.2) read from the
//! store's index itself.
//!
//! Each subscriber keeps only a cursor (a sequence number) and reads the kept messages after
//! it, a page at a time, when the store wakes it: no per-subscriber queue of copies, so its
//! memory is bounded whatever it reads, and a slow reader only falls behind. Each message is
//! one event: `id:` its `seq`, `event: message`, `data:` its summary (JSON, one line).
//!
//! When messages after the cursor are no longer kept (evicted, expired or deleted before the
//! subscriber read them), it gets `event: lagged` with `{"from": A, "to": B}` (the sequence
//! numbers it missed, both included; `id:` is B) and goes on: never a silent gap, never a
//! disconnect. A comment line (`: heartbeat`) every [`HEARTBEAT`] keeps proxies and the
//! connection's deadline from closing an idle stream.
//!
//! The cursor starts at `Last-Event-ID` (a reconnecting `EventSource` sends it), else
//! `?after=`, else the store's head (only what arrives from now).
//!
//! A message the subscriber was sent (or passed in a `lagged` range) and that the store then
//! stops keeping is `event: gone` with `{"seq", "at", "reason"}` (`evicted`, `expired`,
//! `deleted`), read from the store's numbered removals ([`crate::capture::removals`]) after
//! the subscriber's own removal number. A `gone` event has no `id:` line (the last event id
//! stays the last message's), and removals are live only: a resumed stream starts at the
//! removals of its resumption. If the store's ring forgot removals before the subscriber read
//! them: `event: gone-lagged` `{"from", "to"}` (removal numbers), then on.
//!
//! A client that resumes from a cursor ahead of the newest message (the server restarted
//! and numbers messages from 1 again) gets `event: reset` with `{"from": CURSOR, "head": H}`
//! first, then every kept message from the oldest: it should drop what it had and start
//! over.
//!
//! `?mailbox=ID` narrows the `message` events to a per-test mailbox's mail (read from its own
//! index). Such a stream cannot tell which of the messages removed before it read them were
//! the mailbox's: when messages after its cursor are gone unread, it says `lagged` for them
//! all (some may have been other mail), and its `gone` events name every removal up to its
//! cursor (sequence numbers only: a client ignores those it was never sent). When the
//! mailbox ends (deleted, or its `expires_at` passes: the stream sleeps until then and runs
//! the store's expiry), the stream sends what is left to send, then one last event,
//! `event: mailbox-ended` with `{"id", "reason", "at"}` (`reason`: `deleted` or `expired`;
//! no `id:` line), and ends: a client must not reconnect to it (it would get `410`).
//!
//! What it does not do: filter otherwise, or buffer more than one page.

use super::counters::ApiCounters;
use super::render;
use crate::capture::{
    Capture, Direction, Filter, MailboxGoneReason, MailboxId, MailboxLookup, WaitKey, WaiterId,
};
use crate::control::Conn;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::time::{Instant, Sleep};

/// After a write of events, how long a stream rests before it reads again, with its
/// waiter out of the store: what arrives meanwhile goes out in the next write, in one. At
/// 10 000 messages a second that is one write and one wake-up per ~10 messages instead of
/// one each, on the API's thread and, for the wake-ups, on the SMTP workers'; an event is
/// at most this much later than its message (an `await` is not: it has its own waiter).
pub const BATCH: Duration = Duration::from_millis(1);
/// How often an idle stream gets a comment line.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The most subscribers at once; past it a new one gets `503`.
pub const MAX_SUBSCRIBERS: usize = 64;
/// The most messages (or removals) read from the store at once.
const PAGE: usize = 64;
/// The most pages of removals read for one write when none is this subscriber's.
const REMOVAL_PAGES: usize = 16;
/// Room reserved per message read: its `id:`, `event:` and `data:` lines with a summary of
/// a typical message (~300 octets; a longer one grows the batch).
const EVENT_ROOM: usize = 384;
/// Room reserved per removal read (a `gone` event is ~90 octets).
const GONE_ROOM: usize = 96;

/// One subscriber's stream: a response body.
#[derive(Debug)]
pub struct EventStream {
    /// The store.
    capture: Arc<Capture>,
    /// The last sequence number sent (or skipped as lagged).
    cursor: u64,
    /// The number of the last removal read.
    removals: u64,
    /// Its waiter in the store, once polled.
    waiter: Option<WaiterId>,
    /// The next heartbeat.
    heartbeat: Pin<Box<Sleep>>,
    /// Its connection, whose deadline each write extends.
    conn: Conn,
    /// Where it is counted.
    counters: ApiCounters,
    /// Whether the opening comment was sent.
    opened: bool,
    /// Whether removals are left to read (the last read stopped at its bound).
    more: bool,
    /// The cursor the client resumed from when it was ahead of this server's head (the
    /// server restarted and numbers from 1 again): said first, as `event: reset`.
    reset: Option<u64>,
    /// Resting after a write (see [`BATCH`]): the waiter is out of the store until it ends.
    rest: Option<Pin<Box<Sleep>>>,
    /// Which messages it carries (`?mailbox=`; all without).
    filter: Filter,
    /// The mailbox it follows (`?mailbox=`): the stream ends when it does.
    mailbox: Option<MailboxId>,
    /// Wakes the stream when that mailbox's time runs out.
    expiry: Option<Pin<Box<Sleep>>>,
    /// The last event (`mailbox-ended`) was sent: the stream is over.
    over: bool,
    /// The text of the last second its summaries named.
    times: render::Times,
}

impl EventStream {
    /// A stream of what arrives after `cursor`.
    pub fn new(capture: Arc<Capture>, cursor: u64, conn: Conn, counters: ApiCounters) -> Self {
        counters.subscribers.inc();
        conn.hold(HEARTBEAT);
        EventStream {
            removals: capture.removal_head(),
            capture,
            cursor,
            waiter: None,
            heartbeat: Box::pin(tokio::time::sleep(HEARTBEAT)),
            conn,
            counters,
            opened: false,
            more: false,
            reset: None,
            rest: None,
            filter: Filter::all(),
            mailbox: None,
            expiry: None,
            over: false,
            times: render::Times::default(),
        }
    }

    /// The same stream carrying only the messages `filter` selects, and ending with the
    /// first mailbox it names (see the module doc).
    pub fn filtered(mut self, filter: Filter) -> Self {
        self.mailbox = filter.mailboxes().next().copied();
        self.filter = filter;
        self
    }

    /// A stream for a client that resumed from `cursor`, ahead of this server's head (see
    /// the module doc): it starts with `event: reset` `{"from": cursor, "head": H}` and then
    /// sends every kept message from the oldest, so the client can start over.
    pub fn reset(capture: Arc<Capture>, cursor: u64, conn: Conn, counters: ApiCounters) -> Self {
        let mut stream = EventStream::new(capture, 0, conn, counters);
        stream.reset = Some(cursor);
        stream
    }

    /// The next bytes to send; pending until there are some; `None` once the mailbox it
    /// follows ended (else it never ends by itself).
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.over {
            return Poll::Ready(None);
        }
        if let Some(rest) = &mut self.rest {
            if rest.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.rest = None;
        }
        // Register (or refresh) the waker before reading, so an insert after the read wakes
        // this task.
        match self.waiter {
            None => {
                self.waiter = Some(self.capture.register(WaitKey::Any, cx.waker().clone()));
            }
            Some(id) => {
                self.capture.update(id, cx.waker());
            }
        }
        if !self.opened {
            self.opened = true;
            let mut text = b": fastsmtpd events\n\n".to_vec();
            if let Some(from) = self.reset {
                let head = self.capture.head();
                text.extend_from_slice(
                    format!("event: reset\ndata: {{\"from\":{from},\"head\":{head}}}\n\n")
                        .as_bytes(),
                );
            }
            return self.write(text);
        }
        if let Some(last) = self.mailbox_ended(cx) {
            let mut text = self.read();
            text.extend_from_slice(&last);
            self.over = true;
            return self.write(text);
        }
        let text = self.read();
        if !text.is_empty() {
            // Rest before reading again (see `BATCH`), out of the store's waiters meanwhile:
            // registering again (then reading) when the rest ends misses nothing.
            if let Some(id) = self.waiter.take() {
                self.capture.cancel(id);
            }
            self.rest = Some(Box::pin(tokio::time::sleep(BATCH)));
            return self.write(text);
        }
        if self.heartbeat.as_mut().poll(cx).is_ready() {
            return self.write(b": heartbeat\n\n".to_vec());
        }
        if self.more {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Sends `text`, and moves the heartbeat and the connection's deadline on.
    fn write(&mut self, text: Vec<u8>) -> Poll<Option<Bytes>> {
        self.heartbeat.as_mut().reset(Instant::now() + HEARTBEAT);
        self.conn.hold(HEARTBEAT);
        Poll::Ready(Some(Bytes::from(text)))
    }

    /// Whether the stream is over: the last event (`mailbox-ended`) when the mailbox it
    /// follows is no longer live; else `None`, with a timer set for its expiry.
    fn mailbox_ended(&mut self, cx: &mut Context<'_>) -> Option<Vec<u8>> {
        let id = self.mailbox?;
        loop {
            let (reason, at) = match self.capture.mailbox(&id) {
                MailboxLookup::Found(info) => {
                    let expiry = self.expiry.get_or_insert_with(|| {
                        // A millisecond past it: the store ends a mailbox once the clock
                        // has reached its `expires_at`.
                        let left = info
                            .expires_at
                            .duration_since(SystemTime::now())
                            .unwrap_or_default();
                        Box::pin(tokio::time::sleep(left + Duration::from_millis(1)))
                    });
                    if expiry.as_mut().poll(cx).is_pending() {
                        return None;
                    }
                    self.expiry = None;
                    self.capture.expire(SystemTime::now());
                    continue;
                }
                MailboxLookup::Gone(gone) => (
                    match gone.reason {
                        MailboxGoneReason::Expired => "expired",
                        MailboxGoneReason::Deleted => "deleted",
                    },
                    gone.at,
                ),
                // Past the ring of mailbox tombstones: gone, how is no longer known.
                MailboxLookup::Unknown => ("gone", SystemTime::now()),
            };
            let data = serde_json::json!({
                "id": id.as_str(),
                "reason": reason,
                "at": crate::store::record::rfc3339(at),
            });
            return Some(format!("event: mailbox-ended\ndata: {data}\n\n").into_bytes());
        }
    }

    /// The events after the cursors, one page of each at most, as text; moves the cursors.
    fn read(&mut self) -> Vec<u8> {
        // Reserved for what was read (see `EVENT_ROOM`), once for the messages: nothing for
        // a read that finds nothing, no growing by doubling for a batch.
        let mut text = Vec::new();
        // Removals first: those of messages up to the cursor are this subscriber's to hear
        // of; later ones show as gaps (`lagged`) when the messages are read below.
        // Bounded per write: past it, the task wakes itself to read on.
        self.more = false;
        for _ in 0..REMOVAL_PAGES {
            let removals = self.capture.removals_after(self.removals, PAGE);
            if let Some((from, to)) = removals.missed {
                text.extend_from_slice(
                    format!("event: gone-lagged\ndata: {{\"from\":{from},\"to\":{to}}}\n\n")
                        .as_bytes(),
                );
                self.counters.lagged.inc();
                self.removals = to;
            }
            text.reserve(removals.items.len() * GONE_ROOM);
            for (number, gone) in &removals.items {
                self.removals = *number;
                if gone.seq <= self.cursor {
                    text.extend_from_slice(b"event: gone\ndata: ");
                    render::write_removal(gone, &mut self.times, &mut text);
                    text.extend_from_slice(b"\n\n");
                }
            }
            self.more = removals.items.len() == PAGE;
            if !self.more || !text.is_empty() {
                break;
            }
        }
        // Every sequence number up to the head read now was given before the page below.
        let head = self.capture.head();
        let everything = self.filter.is_all();
        if !everything {
            // Messages after the cursor removed unread: perhaps the mailbox's.
            let oldest = self.capture.oldest().unwrap_or(head + 1);
            if oldest > self.cursor + 1 && head > self.cursor {
                self.lagged(&mut text, (oldest - 1).min(head));
            }
        }
        let page = self
            .capture
            .page(Some(self.cursor), Direction::Newer, PAGE, &self.filter);
        text.reserve(page.items.len() * EVENT_ROOM);
        for message in &page.items {
            if everything && message.seq > self.cursor + 1 {
                self.lagged(&mut text, message.seq - 1);
            }
            // Written straight into the batch (no `format!`, no JSON value: round 4 of
            // docs/benchmarks/2026-12-06-capture-ingest.md).
            text.extend_from_slice(b"id: ");
            text.extend_from_slice(itoa::Buffer::new().format(message.seq).as_bytes());
            text.extend_from_slice(b"\nevent: message\ndata: ");
            render::write_summary(message, &mut self.times, &mut text);
            text.extend_from_slice(b"\n\n");
            self.cursor = message.seq;
        }
        if !everything {
            if page.next.is_none() {
                // Nothing more up to the head is the mailbox's.
                self.cursor = self.cursor.max(head);
            }
        } else if page.items.is_empty() && head > self.cursor {
            // Nothing after the cursor is kept, yet messages up to the head were given.
            self.lagged(&mut text, head);
        }
        text
    }

    /// Writes a `lagged` event for the messages after the cursor up to `to`, and skips them.
    fn lagged(&mut self, text: &mut Vec<u8>, to: u64) {
        let from = self.cursor + 1;
        text.extend_from_slice(
            format!("id: {to}\nevent: lagged\ndata: {{\"from\":{from},\"to\":{to}}}\n\n")
                .as_bytes(),
        );
        self.cursor = to;
        self.counters.lagged.inc();
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(id) = self.waiter.take() {
            self.capture.cancel(id);
        }
        self.counters.subscribers.dec();
    }
}
