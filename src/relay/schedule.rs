//! The queue's order, without a clock: when a relayed message is tried again, when it is
//! given up, which next hop is tried, and how many connections go to it (RFC 5321 §4.5.4.1).
//!
//! What it does:
//! - [`RetryPolicy`]: the delays between consecutive attempts (`--retry 1s,2s,4s`, or the
//!   Postfix-like default: 300 s, doubling, at most 4 000 s), the queue lifetime
//!   (`--queue-lifetime`, default 5 days) and the jitter (at most ±10 %).
//!   [`RetryPolicy::after_failure`] says, for a recipient whose attempt just failed
//!   temporarily, when to try again or that its time is up ([`Next`]).
//! - [`DueQueue`]: the due-time heap: keys ordered by when they are due, ties in the order
//!   they were pushed; [`DueQueue::pop_due`] hands out what is due now.
//! - [`Hops`]: the next hops in the order given, each with its own back-off after failed
//!   connections ([`HopHealth`]) and its own connection limit: [`Hops::pick`] names the hop a
//!   new connection goes to now (the first healthy one with room, or spread over them), or
//!   says when one will be healthy again.
//! - [`ReadyQueue`]: messages due now, waiting for a connection; a connection takes up to a
//!   bound of them ([`ReadyQueue::take_batch`], several messages per connection).
//!
//! What it does not do: read a clock, open a socket, or keep anything on disk. Every instant
//! is a [`Duration`] since an epoch the caller chooses (the spool uses the Unix epoch, so a
//! message's schedule survives a restart); randomness (the jitter) is a `u64` sample the
//! caller draws. So the schedule is tested exactly, without sleeping. Which messages are in
//! memory at all (the active set, bounded as Postfix's qmgr bounds it:
//! [`ACTIVE_MAX_DEFAULT`]) is the caller's to enforce: the spool keeps the rest on disk.
//!
//! Why these rules:
//! - RFC 5321 §4.5.4.1: retry at least 30 minutes apart in general (we follow Postfix's
//!   shorter first back-off, which real senders use), give up after 4–5 days. The last delay
//!   of a `--retry` list repeats (issue 19's decision). The attempt after which the lifetime
//!   is over is moved to the lifetime's end, so a message is given up when its lifetime ends
//!   (within a delay's jitter), not up to a whole delay later: the last attempt happens at
//!   the deadline, and its failure is final.
//! - Jitter (±[`JITTER_PERCENT`] %): messages that failed together (a next hop that was down)
//!   do not all come back in the same millisecond.
//! - A next hop that refused a connection is backed off as a whole (Postfix's "dead
//!   destination", KumoMTA's ready queue suspension): its messages wait without using an
//!   attempt, instead of each one rediscovering the failure.

use crate::units::parse_duration;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// The default first delay (Postfix's `minimal_backoff_time`).
pub const POSTFIX_FIRST_DELAY: Duration = Duration::from_secs(300);
/// The default longest delay (Postfix's `maximal_backoff_time`).
pub const POSTFIX_MAX_DELAY: Duration = Duration::from_secs(4_000);
/// The default queue lifetime: 5 days (RFC 5321 §4.5.4.1: "at least 4-5 days"; Postfix's
/// `maximal_queue_lifetime`).
pub const DEFAULT_QUEUE_LIFETIME: Duration = Duration::from_secs(5 * 86_400);
/// The jitter: a delay is moved by at most this percentage either way.
pub const JITTER_PERCENT: u32 = 10;
/// The most delays a `--retry` list may give.
pub const RETRY_LIST_MAX: usize = 64;
/// The default bound of messages in memory (Postfix's `qmgr_message_active_limit`).
pub const ACTIVE_MAX_DEFAULT: usize = 20_000;
/// The default bound of their recipients in memory (Postfix's `qmgr_message_recipient_limit`
/// bounds the same, at 20 000): a queue of many-recipient messages (a thousand recipients
/// each) would otherwise hold 20 000 of them, tens of millions of addresses. One message is
/// always let in, however many recipients it has.
pub const ACTIVE_RECIPIENTS_MAX_DEFAULT: usize = 100_000;

/// How the delay between attempts grows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backoff {
    /// The first delay, doubled after each further failure, never above `max`.
    Doubling {
        /// The delay after the first failed attempt.
        first: Duration,
        /// The longest delay.
        max: Duration,
    },
    /// The delays in order (never empty); the last one repeats.
    List(Vec<Duration>),
}

/// When to try again after a temporary failure, and when to give up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delays between attempts.
    backoff: Backoff,
    /// How long after its arrival a message may still be tried.
    lifetime: Duration,
}

/// What comes after a temporarily failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this instant (the caller's epoch).
    RetryAt(Duration),
    /// The queue lifetime is over: the recipient has failed (a notification with `Action:
    /// failed` and the last attempt's reply, RFC 3464 §2.3.3).
    GiveUp,
}

/// Why a retry setting was refused (said as the CLI's error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// `--retry` gave no delay.
    EmptyList,
    /// `--retry` gave more than [`RETRY_LIST_MAX`] delays.
    TooManyDelays(usize),
    /// A delay of zero (an attempt loop with no pause).
    ZeroDelay,
    /// A delay that is not a duration (the units grammar's message).
    BadDelay(String),
    /// A queue lifetime of zero (every temporary failure would be final at once).
    ZeroLifetime,
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::EmptyList => {
                f.write_str("--retry needs at least one delay (e.g. 1s,2s,4s)")
            }
            ScheduleError::TooManyDelays(n) => write!(
                f,
                "--retry gives {n} delays; at most {RETRY_LIST_MAX} (the last one repeats)"
            ),
            ScheduleError::ZeroDelay => f.write_str("--retry: a delay must be more than 0s"),
            ScheduleError::BadDelay(why) => write!(f, "--retry: {why}"),
            ScheduleError::ZeroLifetime => f.write_str("--queue-lifetime must be more than 0s"),
        }
    }
}

impl std::error::Error for ScheduleError {}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy::postfix_like()
    }
}

impl RetryPolicy {
    /// Postfix's defaults: 300 s, doubling, at most 4 000 s; a lifetime of 5 days.
    pub fn postfix_like() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::Doubling {
                first: POSTFIX_FIRST_DELAY,
                max: POSTFIX_MAX_DELAY,
            },
            lifetime: DEFAULT_QUEUE_LIFETIME,
        }
    }

    /// A policy from its parts, checked: no zero delay or lifetime, a list neither empty
    /// nor longer than [`RETRY_LIST_MAX`], a doubling whose `max` is at least its `first`.
    pub fn new(backoff: Backoff, lifetime: Duration) -> Result<RetryPolicy, ScheduleError> {
        match &backoff {
            Backoff::List(delays) => {
                if delays.is_empty() {
                    return Err(ScheduleError::EmptyList);
                }
                if delays.len() > RETRY_LIST_MAX {
                    return Err(ScheduleError::TooManyDelays(delays.len()));
                }
                if delays.iter().any(Duration::is_zero) {
                    return Err(ScheduleError::ZeroDelay);
                }
            }
            Backoff::Doubling { first, max } => {
                if first.is_zero() || max < first {
                    return Err(ScheduleError::ZeroDelay);
                }
            }
        }
        if lifetime.is_zero() {
            return Err(ScheduleError::ZeroLifetime);
        }
        Ok(RetryPolicy { backoff, lifetime })
    }

    /// Reads a `--retry` list: durations separated by commas (`1s,2s,4s`; spaces around them
    /// are allowed), in the grammar of every duration flag ([`crate::units`]).
    pub fn parse_list(text: &str) -> Result<Backoff, ScheduleError> {
        let mut delays = Vec::new();
        for item in text.split(',') {
            if item.trim().is_empty() {
                return Err(if text.trim().is_empty() {
                    ScheduleError::EmptyList
                } else {
                    ScheduleError::BadDelay(format!("{text:?} has an empty item"))
                });
            }
            if delays.len() == RETRY_LIST_MAX {
                return Err(ScheduleError::TooManyDelays(text.split(',').count()));
            }
            delays.push(parse_duration(item).map_err(ScheduleError::BadDelay)?);
        }
        Ok(Backoff::List(delays))
    }

    /// The queue lifetime.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The delay, before jitter, between failed attempt `failed` (1 = the first attempt)
    /// and the next one.
    pub fn delay(&self, failed: u32) -> Duration {
        let index = failed.max(1) - 1;
        match &self.backoff {
            Backoff::List(delays) => {
                let last = delays.len() - 1;
                delays[(index as usize).min(last)]
            }
            Backoff::Doubling { first, max } => {
                // 2^index, saturating long before a u32 shift could overflow.
                let factor = 1u32.checked_shl(index.min(31)).unwrap_or(u32::MAX);
                first.checked_mul(factor).map_or(*max, |d| d.min(*max))
            }
        }
    }

    /// `delay` moved by at most ±[`JITTER_PERCENT`] %, by a uniform `sample` (any `u64`).
    pub fn jittered(delay: Duration, sample: u64) -> Duration {
        let nanos = delay.as_nanos();
        let span = nanos * u128::from(JITTER_PERCENT) / 100;
        // A point in [0, 2 * span]: (sample * width) / 2^64, in two halves so that no
        // product overflows (width can pass 2^64 for delays of centuries).
        let width = 2 * span + 1;
        let sample = u128::from(sample);
        let point = sample * (width >> 64) + ((sample * (width & u128::from(u64::MAX))) >> 64);
        let moved = nanos - span + point;
        match u64::try_from(moved / 1_000_000_000) {
            Ok(secs) => Duration::new(secs, (moved % 1_000_000_000) as u32),
            Err(_) => Duration::MAX,
        }
    }

    /// What comes after attempt number `failed` (1 = the first) of a message that arrived at
    /// `arrived` failed temporarily at `failed_at`: [`Next::GiveUp`] once the lifetime is
    /// over at `failed_at`; else the jittered delay later, but never later than the
    /// lifetime's end (module doc: the last attempt is at the deadline).
    pub fn after_failure(
        &self,
        arrived: Duration,
        failed_at: Duration,
        failed: u32,
        sample: u64,
    ) -> Next {
        let expires = arrived.saturating_add(self.lifetime);
        if failed_at >= expires {
            return Next::GiveUp;
        }
        let at = failed_at.saturating_add(RetryPolicy::jittered(self.delay(failed), sample));
        Next::RetryAt(at.min(expires))
    }
}

/// Keys ordered by the instant they are due; ties come out in the order they were pushed.
///
/// Removing a key early (a message delivered by another route, `queue delete`) is left to
/// the owner: it keeps the authoritative state and skips a popped key that is no longer due
/// (a stale entry), as timer wheels do; [`DueQueue::len`] counts stale entries too, so the
/// owner bounds them by bounding what it pushes.
#[derive(Debug, Clone)]
pub struct DueQueue<K: Ord> {
    /// (due, push order, key), smallest first.
    heap: BinaryHeap<Reverse<(Duration, u64, K)>>,
    /// The next push order.
    pushed: u64,
}

impl<K: Ord> Default for DueQueue<K> {
    fn default() -> DueQueue<K> {
        DueQueue {
            heap: BinaryHeap::new(),
            pushed: 0,
        }
    }
}

impl<K: Ord> DueQueue<K> {
    /// An empty queue.
    pub fn new() -> DueQueue<K> {
        DueQueue::default()
    }

    /// `key` is due at `due`.
    pub fn push(&mut self, due: Duration, key: K) {
        self.heap.push(Reverse((due, self.pushed, key)));
        self.pushed += 1;
    }

    /// The earliest due instant, if any (the driver's poll timeout).
    pub fn next_due(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// The next key due at or before `now`, with its due instant.
    pub fn pop_due(&mut self, now: Duration) -> Option<(Duration, K)> {
        if self.next_due()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse((due, _, key))| (due, key))
    }

    /// Entries held (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// One next hop's health: consecutive failed connections and when it may be tried again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HopHealth {
    /// Connections that failed in a row (refused, timed out, greeted with `421`/`554`).
    failures: u32,
    /// Not tried before this instant (the caller's epoch).
    not_before: Duration,
}

impl HopHealth {
    /// Whether a connection may be tried at `now`.
    pub fn is_open(&self, now: Duration) -> bool {
        now >= self.not_before
    }

    /// Failed connections in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the hop may be tried again.
    pub fn not_before(&self) -> Duration {
        self.not_before
    }

    /// A connection failed at `now`: back off by the policy's delay for this many failures
    /// in a row (jittered by `sample`).
    pub fn on_connect_failed(&mut self, now: Duration, policy: &RetryPolicy, sample: u64) {
        self.failures = self.failures.saturating_add(1);
        let delay = RetryPolicy::jittered(policy.delay(self.failures), sample);
        self.not_before = now.saturating_add(delay);
    }

    /// A session got as far as a positive greeting and EHLO: the hop is healthy again.
    pub fn on_connected(&mut self) {
        *self = HopHealth::default();
    }
}

/// How connections are spread over the next hops (`--relay-to A,B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopOrder {
    /// The first healthy hop with room takes every new connection; later hops are fallbacks.
    InOrder,
    /// New connections go round the healthy hops with room in turn.
    Spread,
}

/// Where a new connection should go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// To the hop at this index (in the order given).
    Hop(usize),
    /// Every healthy hop is at its connection limit: wait for a connection to end.
    Busy,
    /// Every hop is backed off: none before this instant.
    BackedOffUntil(Duration),
}

/// The next hops, their health and their open connections.
#[derive(Debug, Clone)]
pub struct Hops {
    /// Health per hop, in the order given.
    health: Vec<HopHealth>,
    /// Open connections per hop.
    open: Vec<usize>,
    /// The most connections per hop.
    limit: usize,
    /// In order or spread.
    order: HopOrder,
    /// Where the next spread pick starts.
    turn: usize,
}

impl Hops {
    /// `count` next hops (at least one), at most `limit` connections each (at least one).
    pub fn new(count: usize, limit: usize, order: HopOrder) -> Hops {
        let count = count.max(1);
        Hops {
            health: vec![HopHealth::default(); count],
            open: vec![0; count],
            limit: limit.max(1),
            order,
            turn: 0,
        }
    }

    /// The hop a new connection should go to at `now` (see [`Pick`]).
    pub fn pick(&mut self, now: Duration) -> Pick {
        let count = self.health.len();
        let start = match self.order {
            HopOrder::InOrder => 0,
            HopOrder::Spread => self.turn % count,
        };
        let mut busy = false;
        for step in 0..count {
            let hop = (start + step) % count;
            if !self.health[hop].is_open(now) {
                continue;
            }
            if self.open[hop] >= self.limit {
                busy = true;
                continue;
            }
            self.turn = hop + 1;
            return Pick::Hop(hop);
        }
        if busy {
            return Pick::Busy;
        }
        let until = self
            .health
            .iter()
            .map(HopHealth::not_before)
            .min()
            .unwrap_or(now);
        Pick::BackedOffUntil(until)
    }

    /// A connection to `hop` is being opened (counts toward its limit until
    /// [`Hops::on_closed`]).
    pub fn on_opened(&mut self, hop: usize) {
        if let Some(open) = self.open.get_mut(hop) {
            *open += 1;
        }
    }

    /// A connection to `hop` ended (however it ended).
    pub fn on_closed(&mut self, hop: usize) {
        if let Some(open) = self.open.get_mut(hop) {
            *open = open.saturating_sub(1);
        }
    }

    /// The health of `hop`, to report a connection's outcome to.
    pub fn health_mut(&mut self, hop: usize) -> Option<&mut HopHealth> {
        self.health.get_mut(hop)
    }

    /// The health of every hop, in order (for metrics and `queue shape`).
    pub fn health(&self) -> &[HopHealth] {
        &self.health
    }

    /// Open connections to `hop`.
    pub fn open(&self, hop: usize) -> usize {
        self.open.get(hop).copied().unwrap_or(0)
    }
}

/// Messages due now, waiting for a connection, oldest first.
#[derive(Debug, Clone)]
pub struct ReadyQueue<K> {
    /// Keys in the order they became ready.
    keys: VecDeque<K>,
}

impl<K> Default for ReadyQueue<K> {
    fn default() -> ReadyQueue<K> {
        ReadyQueue {
            keys: VecDeque::new(),
        }
    }
}

impl<K> ReadyQueue<K> {
    /// An empty queue.
    pub fn new() -> ReadyQueue<K> {
        ReadyQueue::default()
    }

    /// `key` is ready (behind those already waiting).
    pub fn push(&mut self, key: K) {
        self.keys.push_back(key);
    }

    /// `key` goes back to the front (a connection ended before it was tried: it keeps its
    /// place and uses no attempt).
    pub fn push_front(&mut self, key: K) {
        self.keys.push_front(key);
    }

    /// Up to `max` keys, oldest first, for one connection (several messages per
    /// connection).
    pub fn take_batch(&mut self, max: usize) -> Vec<K> {
        let n = max.min(self.keys.len());
        self.keys.drain(..n).collect()
    }

    /// Keys waiting.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests;
