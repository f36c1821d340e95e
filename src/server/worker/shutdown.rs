//! Stopping: graceful shutdown on request, and the `--exit-after-*` conditions that request it.
//!
//! What it does: [`ShutdownSignal`] sets a flag and wakes every worker. A woken worker stops
//! listening and tells each session ([`crate::proto::session::Resume::Shutdown`]): one in a
//! transaction may finish it within the grace period; between transactions a session takes
//! only `QUIT` (`221`) for a moment after its last reply (`QUIT_WINDOW`, so the client of
//! `--exit-after-messages` that got its last `250` is told goodbye), then gets `421 4.3.2`;
//! any other command gets the `421` at once. When every connection is gone, or the grace
//! period is over (the rest get the `421` then), the worker's loop ends. [`ExitAfter`] counts accepted messages and ended
//! sessions over all workers and requests shutdown when a limit is reached.
//!
//! The stores keep to the same grace period: when it ends, a write to a stream store whose
//! reader takes nothing gives up ([`StoreHub::give_up_streams_at`]), and a session still
//! waiting for its message's verdict then gets it (`451 4.3.0` for a line not written) before
//! its `421`; the worker waits for those verdicts at most [`VERDICT_WAIT`] past the grace.
//!
//! What it does not do: handle signals (the caller of [`crate::server::run`] does) or wait
//! for the storage threads (the server handle does, after the workers).

use super::{driver, Worker};
use crate::proto::reply;
use crate::store::StoreHub;
use mio::Waker;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After the grace period, how long a worker still waits for the stores' verdict on a
/// message (the stores give up their stalled writes at the end of the grace period, so the
/// verdict follows at once; this only bounds a store stuck elsewhere, e.g. in a disk sync).
pub const VERDICT_WAIT: Duration = Duration::from_secs(1);

/// Asks every worker to shut down.
#[derive(Debug)]
pub struct ShutdownSignal {
    /// Set once shutdown is requested.
    requested: AtomicBool,
    /// One waker per worker.
    wakers: Vec<Arc<Waker>>,
    /// The stores, told when the grace period ends (their stalled stream writes give up).
    stores: Option<Arc<StoreHub>>,
    /// `--shutdown-grace`.
    grace: Duration,
}

impl ShutdownSignal {
    /// A signal over these workers' wakers; `stores` learn when the `grace` period ends.
    pub fn new(
        wakers: Vec<Arc<Waker>>,
        stores: Option<Arc<StoreHub>>,
        grace: Duration,
    ) -> ShutdownSignal {
        ShutdownSignal {
            requested: AtomicBool::new(false),
            wakers,
            stores,
            grace,
        }
    }

    /// Requests shutdown and wakes every worker.
    pub fn trigger(&self) {
        let first = !self.requested.swap(true, Ordering::AcqRel);
        if let (true, Some(stores)) = (first, &self.stores) {
            stores.give_up_streams_at(Instant::now() + self.grace);
        }
        for waker in &self.wakers {
            // A failed wake means the worker is gone already.
            let _ = waker.wake();
        }
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

/// `--exit-after-messages` / `--exit-after-sessions`: counts over all workers; the worker
/// whose count reaches a limit asks for a graceful shutdown.
#[derive(Debug)]
pub struct ExitAfter {
    /// Accepted messages to exit after.
    messages_limit: Option<u64>,
    /// Ended sessions to exit after.
    sessions_limit: Option<u64>,
    /// Accepted messages so far.
    messages: AtomicU64,
    /// Ended sessions so far.
    sessions: AtomicU64,
}

impl ExitAfter {
    /// Limits (`None`: no limit of that kind).
    pub fn new(messages_limit: Option<u64>, sessions_limit: Option<u64>) -> ExitAfter {
        ExitAfter {
            messages_limit,
            sessions_limit,
            messages: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
        }
    }

    /// Counts accepted messages; true when the limit is reached.
    pub(super) fn add_messages(&self, n: u64) -> bool {
        let total = self.messages.fetch_add(n, Ordering::Relaxed) + n;
        self.messages_limit.is_some_and(|limit| total >= limit)
    }

    /// Counts an ended session; true when the limit is reached.
    pub(super) fn add_session(&self) -> bool {
        let total = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        self.sessions_limit.is_some_and(|limit| total >= limit)
    }
}

impl Worker {
    /// If shutdown was requested and has not begun here: stop listening and tell every
    /// session.
    pub(super) fn on_shutdown_request(&mut self, now: Instant) {
        if !self.shutdown.is_requested() || self.draining_since.is_some() {
            return;
        }
        self.draining_since = Some(now);
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_paused_until = None;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                let id = conn.id();
                let outcome = conn.on_shutdown(&mut driver!(self), now);
                self.apply(key, id, outcome);
            }
        }
    }

    /// Whether the loop should end: during shutdown, once every connection is gone, or when
    /// the grace period is over (the remaining sessions get `421 4.3.2` and are closed; one
    /// waiting for its message's verdict gets the verdict first, if it comes within
    /// [`VERDICT_WAIT`]).
    pub(super) fn shutdown_finished(&mut self, now: Instant) -> bool {
        let Some(since) = self.draining_since else {
            return false;
        };
        if self.conns.is_empty() {
            return true;
        }
        let grace_end = since + self.links.deadlines.shutdown_grace;
        if now < grace_end {
            return false;
        }
        let wait_for_verdicts = now < grace_end + VERDICT_WAIT;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                if wait_for_verdicts && conn.is_awaiting_store() {
                    continue;
                }
                conn.end_with(reply::SHUTTING_DOWN, &mut driver!(self));
            }
            self.close(key);
        }
        self.conns.is_empty()
    }
}
