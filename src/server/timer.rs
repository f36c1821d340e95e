//! Time in the server: the per-worker timer heap, and each connection's deadline policy.
//!
//! What it does: [`Timers`] remembers when each connection must next be looked at, cheaply:
//! a min-heap whose top is the poll timeout. Deadlines mostly move *later* (every command
//! pushes the idle deadline forward), so the heap is lazy: a connection has one armed entry, a
//! later deadline is not pushed but noticed when the armed entry comes due, and entries that
//! are no longer armed are dropped as they surface. That makes the common case (a command
//! arrives) free: no heap operation at all.
//!
//! [`ConnDeadline`] is one connection's deadline and the policy that moves it: the idle /
//! per-command timeout (RFC 5321 §4.5.3.2.7), the minimum data rate during message content
//! (against a client trickling bytes, slowloris), a fault pause, and the linger of a
//! finished session.
//!
//! What it does not do: act on a deadline (the connection does), or use a thread or a
//! syscall per timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// How long a finished session may take to collect its last reply before we close anyway.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// During shutdown, how long after its last reply a session between transactions may still
/// say `QUIT` and get `221` (a client that got its last `250` says it within a round trip);
/// after that it gets `421 4.3.2`. Bounded by the shutdown grace period as well.
pub const QUIT_WINDOW: Duration = Duration::from_secs(1);

/// Time limits that the server, not the protocol, enforces.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// A command must complete within this of the previous one (RFC 5321 §4.5.3.2.7).
    pub idle_timeout: Duration,
    /// Bytes per second that DATA/BDAT content must keep up, on average (0: no check).
    pub min_data_rate: u64,
    /// Time given to messages in flight after shutdown begins.
    pub shutdown_grace: Duration,
    /// A TLS handshake must complete within this (`--tls-handshake-timeout`).
    pub tls_handshake_timeout: Duration,
}

/// One scheduled look at a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// When it is due.
    pub at: Instant,
    /// The connection's slab key.
    pub key: usize,
    /// The connection's unique id (slab keys are reused).
    pub id: u64,
}

/// The heap of entries, and the one armed entry of each connection.
#[derive(Debug, Default)]
pub struct Timers {
    /// Earliest first; holds armed and stale entries.
    heap: BinaryHeap<Reverse<Entry>>,
    /// The armed entry of each slab key, if any.
    armed: Vec<Option<Entry>>,
}

impl Timers {
    /// An empty heap with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Timers {
        Timers {
            heap: BinaryHeap::with_capacity(capacity),
            armed: Vec::with_capacity(capacity),
        }
    }

    /// Makes sure connection (`key`, `id`) is looked at by `at`. Free when an entry at or
    /// before `at` is already armed (the connection then says its later deadline when that
    /// entry comes due).
    pub fn arm(&mut self, key: usize, id: u64, at: Instant) {
        if self.armed.len() <= key {
            self.armed.resize(key + 1, None);
        }
        if let Some(entry) = self.armed[key] {
            if entry.id == id && entry.at <= at {
                return;
            }
        }
        let entry = Entry { at, key, id };
        self.armed[key] = Some(entry);
        self.heap.push(Reverse(entry));
    }

    /// The connection at `key` is gone: its entries are stale.
    pub fn disarm(&mut self, key: usize) {
        if let Some(slot) = self.armed.get_mut(key) {
            *slot = None;
        }
    }

    /// The earliest deadline in the heap, if any (it may be stale: waking for it is harmless).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.at)
    }

    /// Removes and returns the earliest armed entry if it is due at `now` (disarming it),
    /// dropping stale entries on the way.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        while let Some(Reverse(entry)) = self.heap.peek().copied() {
            if entry.at > now {
                return None;
            }
            self.heap.pop();
            if let Some(slot) = self.armed.get_mut(entry.key) {
                if *slot == Some(entry) {
                    *slot = None;
                    return Some(entry);
                }
            }
        }
        None
    }

    /// Entries in the heap (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether the heap is empty.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// What a connection's deadline means when it comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Not yet: look again at this time.
    Later(Instant),
    /// A pause is over: held output may go, input is processed again.
    PauseOver,
    /// The client ran out of time.
    Expired,
}

/// One connection's deadline.
#[derive(Debug, Clone, Copy)]
pub struct ConnDeadline {
    /// The idle / per-command / data-rate deadline.
    at: Instant,
    /// While a fault pause holds the output: when it ends.
    pause_until: Option<Instant>,
}

impl ConnDeadline {
    /// A new connection's deadline: one idle period from now.
    pub fn new(now: Instant, deadlines: &Deadlines) -> ConnDeadline {
        ConnDeadline {
            at: now + deadlines.idle_timeout,
            pause_until: None,
        }
    }

    /// When the connection must next be looked at.
    pub fn next(&self) -> Instant {
        self.pause_until.unwrap_or(self.at)
    }

    /// Whether a pause is running.
    pub fn is_paused(&self) -> bool {
        self.pause_until.is_some()
    }

    /// Moves the deadline after a round of input: `completed` commands or messages, `bytes`
    /// read, `in_content` whether message content is being received.
    pub fn on_input(
        &mut self,
        completed: u32,
        bytes: u64,
        in_content: bool,
        now: Instant,
        deadlines: &Deadlines,
    ) {
        let latest = now + deadlines.idle_timeout;
        if completed > 0 {
            // A command (or a whole message) completed: the client is making progress.
            self.at = latest;
        } else if bytes > 0 && in_content {
            // Content earns time at the minimum rate, never more than one idle period ahead,
            // so a client that trickles bytes slower than the rate runs out of time.
            self.at = if deadlines.min_data_rate == 0 {
                latest
            } else {
                let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(deadlines.min_data_rate);
                let credit = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                self.at.checked_add(credit).unwrap_or(latest).min(latest)
            };
        }
        // Bytes of an incomplete command line earn nothing: a command must complete in time.
    }

    /// A TLS handshake starts now: it must finish within the handshake timeout (or the idle
    /// timeout, if shorter). Completing it counts as progress ([`ConnDeadline::on_input`]).
    pub fn start_handshake(&mut self, now: Instant, deadlines: &Deadlines) {
        self.at = now + deadlines.tls_handshake_timeout.min(deadlines.idle_timeout);
    }

    /// A fault pause of `length` starts now (a running pause keeps its end).
    pub fn pause(&mut self, now: Instant, length: Duration) {
        self.pause_until.get_or_insert(now + length);
    }

    /// The session is over but its last replies are still going out: wait for them at most
    /// `CLOSE_LINGER` (unless a pause holds them).
    pub fn linger(&mut self, now: Instant) {
        if self.pause_until.is_none() {
            self.at = self.at.min(now + CLOSE_LINGER);
        }
    }

    /// The connection must be looked at by `at` at the latest (a pause keeps its end).
    pub fn close_by(&mut self, at: Instant) {
        self.at = self.at.min(at);
    }

    /// What the deadline means at `now`. A pause that is over ends here, and the client gets
    /// a fresh idle period.
    pub fn due(&mut self, now: Instant, deadlines: &Deadlines) -> Due {
        match self.pause_until {
            Some(until) if until <= now => {
                self.pause_until = None;
                self.at = now + deadlines.idle_timeout;
                Due::PauseOver
            }
            Some(until) => Due::Later(until),
            None if self.at > now => Due::Later(self.at),
            None => Due::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadlines(min_data_rate: u64) -> Deadlines {
        Deadlines {
            idle_timeout: Duration::from_secs(300),
            min_data_rate,
            shutdown_grace: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn pops_armed_entries_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::with_capacity(4);
        for (secs, key) in [(3, 3), (1, 1), (2, 2)] {
            timers.arm(key, 0, t0 + Duration::from_secs(secs));
        }
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(timers.pop_due(now).map(|e| e.key), Some(1));
        assert_eq!(timers.pop_due(now).map(|e| e.key), Some(2));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn later_deadlines_cost_nothing_and_stale_entries_never_surface() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.arm(0, 7, t0 + Duration::from_secs(5));
        timers.arm(0, 7, t0 + Duration::from_secs(9));
        assert_eq!(timers.len(), 1, "a later deadline pushes nothing");
        timers.arm(0, 7, t0 + Duration::from_secs(1));
        assert_eq!(timers.len(), 2, "an earlier one does");
        let late = t0 + Duration::from_secs(60);
        assert_eq!(
            timers.pop_due(late).map(|e| e.at),
            Some(t0 + Duration::from_secs(1))
        );
        assert_eq!(timers.pop_due(late), None, "the 5 s entry is stale");
        // A closed connection's key reused by another: the old entry is ignored.
        timers.arm(1, 1, t0 + Duration::from_secs(2));
        timers.disarm(1);
        timers.arm(1, 2, t0 + Duration::from_secs(3));
        assert_eq!(timers.pop_due(late).map(|e| e.id), Some(2));
        assert!(timers.pop_due(late).is_none());
    }

    #[test]
    fn content_earns_time_at_the_minimum_rate_and_commands_reset_it() {
        let t0 = Instant::now();
        let limits = deadlines(1000);
        let mut deadline = ConnDeadline::new(t0, &limits);
        let start = deadline.next();
        // 100 bytes at 1000 B/s earn 100 ms, capped at one idle period from now.
        deadline.on_input(0, 100, true, t0, &limits);
        assert_eq!(deadline.next(), start.min(t0 + limits.idle_timeout));
        let mut slow = ConnDeadline {
            at: t0 + Duration::from_secs(1),
            pause_until: None,
        };
        slow.on_input(0, 100, true, t0, &limits);
        assert_eq!(slow.next(), t0 + Duration::from_millis(1100));
        // Bytes of an incomplete command earn nothing; a completed command resets.
        slow.on_input(0, 100, false, t0, &limits);
        assert_eq!(slow.next(), t0 + Duration::from_millis(1100));
        slow.on_input(1, 0, false, t0, &limits);
        assert_eq!(slow.next(), t0 + limits.idle_timeout);
    }

    #[test]
    fn a_pause_comes_due_first_then_the_idle_deadline() {
        let t0 = Instant::now();
        let limits = deadlines(0);
        let mut deadline = ConnDeadline::new(t0, &limits);
        deadline.pause(t0, Duration::from_millis(200));
        deadline.linger(t0);
        assert_eq!(deadline.next(), t0 + Duration::from_millis(200));
        assert_eq!(
            deadline.due(t0, &limits),
            Due::Later(t0 + Duration::from_millis(200))
        );
        let later = t0 + Duration::from_millis(200);
        assert_eq!(deadline.due(later, &limits), Due::PauseOver);
        assert!(!deadline.is_paused());
        assert_eq!(deadline.next(), later + limits.idle_timeout);
        deadline.linger(later);
        assert_eq!(deadline.next(), later + CLOSE_LINGER);
        assert_eq!(deadline.due(later + CLOSE_LINGER, &limits), Due::Expired);
    }
}
