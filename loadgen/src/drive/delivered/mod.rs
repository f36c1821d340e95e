//! The end-to-end mode (`--delivered-via`): watch the far side of the server under test and
//! time each message from its intended send time to its arrival there.
//!
//! A relay (fastsmtpd's, Postfix, Exim, anything) is measured by how fast mail gets through
//! it, not only by how fast it says `250`. In this mode every generated message carries a
//! tag in its subject ([`tag`](crate::drive::tag): the run's id and the message's number); before any message
//! is sent the watcher subscribes to the event stream of a fastsmtpd sink's capture API at
//! the far end (`GET /api/v1/events`, from the cursor it read first, so nothing that
//! arrives after the subscription is missed); each `event: message` whose summary's subject
//! carries a tag of this run is an arrival. The stage `delivered` is the time from the
//! message's clock origin to its arrival event being read, in an HdrHistogram like every
//! stage. The origin is the one the message's corrected latency uses: its intended send time
//! in an open loop (coordinated-omission safe: a server that stalls delays the arrivals of
//! everything scheduled meanwhile), its first command's time in a closed loop.
//!
//! Arrivals are counted per recipient: an arrival event names the envelope recipients of
//! the transaction that brought the message (its summary's `rcpt_to`), and a relay may
//! deliver one message's recipients in several transactions (a recipient deferred by the
//! next hop goes on a later attempt alone). So a message is `delivered` when its last
//! accepted recipient arrived (the time until the whole message is through), and a
//! duplicate is a recipient that arrived again, never a message whose recipients came in
//! two transactions (the [`tracker`] says how; past [`tracker::IDENTIFIED_RCPTS_MAX`]
//! recipients per message they are counted, not told apart).
//!
//! After the send phase the watcher waits at most the drain time (`--delivered-drain`) for
//! the messages still awaited, then reports `never delivered` (tagged, got a `250`, not one
//! of its recipients arrived), `partly delivered` (some arrived, not all), the recipients
//! never delivered, and `duplicates` (recipients that arrived more than once). Foreign mail
//! (no tag, another run's, or naming none of the message's recipients, such as a delivery
//! status notification to the sender that quotes the tag) is counted apart and otherwise
//! ignored.
//!
//! # Layout
//! * [`http`]: the HTTP/1.1 framing (request, response head, chunked body), sans I/O.
//! * [`sse`]: the event stream's format, sans I/O.
//! * [`tracker`]: the awaited messages, bounded, sans clock.
//! * [`DeliveryLink`] (here): what the engine threads and the watcher share.
//!
//! Two neighbouring rooms belong to the mode: [`tag`](crate::drive::tag) (the tag, written
//! into each message by the workload and parsed from summaries) and
//! [`watch`](crate::drive::watch) (the watcher thread: a small blocking HTTP client, no async
//! runtime: one connection, read as events come, resuming with `Last-Event-ID` after a
//! dropped connection, reporting one-second intervals like an engine thread).
//!
//! What it does not do: send mail (the engine), or merge and print figures (`report`):
//! `delivered` is a [`Stage`](crate::drive::client::Stage) and its counts are
//! [`DeliveryFigures`](crate::drive::record::DeliveryFigures), so every output shows them.

pub mod http;
pub mod sse;
pub mod tracker;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tracker::Tracker;

/// What the engine threads and the watcher share in one run: the clock's epoch, the
/// awaited messages, and how many engine threads are still sending.
#[derive(Debug)]
pub struct DeliveryLink {
    /// Every time the tracker sees is nanoseconds from here.
    epoch: Instant,
    /// The awaited messages.
    tracker: Mutex<Tracker>,
    /// Engine threads not finished yet.
    senders_left: AtomicUsize,
    /// When the last engine thread finished (the end of the send phase).
    senders_done_at: Mutex<Option<Instant>>,
}

impl DeliveryLink {
    /// A link for a run of `senders` engine threads sending messages of `rcpts` recipients.
    pub fn new(senders: usize, rcpts: usize) -> DeliveryLink {
        DeliveryLink {
            epoch: Instant::now(),
            tracker: Mutex::new(Tracker::new(tracker::MAX_OUTSTANDING, rcpts)),
            senders_left: AtomicUsize::new(senders),
            senders_done_at: Mutex::new(None),
        }
    }

    /// `at` in nanoseconds from the epoch.
    pub fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// The tracker, locked (a panic elsewhere left counts that are still counts).
    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Message `seq` got its `250`; `origin` is its clock origin; `counts`: the `250` came
    /// after the warm-up; `rcpts_ok` recipients were accepted at `RCPT`, bit `r` of
    /// `refused` set for each one refused. Its `delivered` latency in nanoseconds if all its
    /// accepted recipients had arrived already.
    pub fn on_accepted(
        &self,
        seq: u64,
        origin: Instant,
        counts: bool,
        rcpts_ok: u16,
        refused: u64,
    ) -> Option<u64> {
        let origin = self.nanos(origin);
        self.tracker()
            .on_accepted(seq, origin, counts, u64::from(rcpts_ok), refused)
    }

    /// Message `seq` ended without a `250`.
    pub fn on_refused(&self, seq: u64) {
        self.tracker().on_refused(seq);
    }

    /// An engine thread finished sending (and reading replies).
    pub fn sender_done(&self) {
        if self.senders_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .senders_done_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }

    /// When the send phase ended (`None`: some engine thread is still sending).
    pub fn senders_done_at(&self) -> Option<Instant> {
        *self
            .senders_done_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
