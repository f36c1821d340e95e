//! TLS handshakes under load: who may start one, and how much handshake work one loop turn
//! does.
//!
//! A full handshake costs the server a signature (about 5 ms of CPU for an RSA-4096 key,
//! 1 ms for RSA-2048, 0.2 ms for ECDSA P-256; see `docs/benchmarks/2026-12-06-auth-attacks.md`)
//! and a key exchange, all on the event loop, while the client spends nothing if it replays a
//! recorded ClientHello. Done as the events came, one client replaying ClientHellos on its
//! connections held every other connection of the worker for hundreds of milliseconds per
//! loop turn. So:
//! * a connection starts its handshake (processes the client's first flight) only when the
//!   worker grants it a turn: connections waiting to start queue per client key
//!   (`crate::peer::FairQueue`), served round-robin, so a new client's handshake waits for at
//!   most one handshake of each other client, not for all of one client's;
//! * one loop turn grants handshakes until [`HANDSHAKE_WORK_PER_TURN`] of handshake work is
//!   spent (at least one), then serves everything else (established sessions' commands,
//!   accepts, timers) before the next: a session's reply waits for at most about one turn's
//!   handshake work;
//! * at most `--tls-max-handshakes-per-ip` handshakes per client are in progress (started,
//!   not finished) on a worker; its further connections wait their turn (within the
//!   handshake deadline) instead of being refused, so a pool opening at once is only queued;
//! * at most `--tls-handshake-rate-per-ip` full handshakes per client and second over all
//!   workers (a resumed handshake has no signature and does not count): a connection whose
//!   turn comes while its client is past that is closed without a byte (the client has only
//!   sent its ClientHello: no TLS alert is owed, and no plaintext reply can be read by it),
//!   and counted (`fastsmtpd_tls_handshakes_refused_total`).
//!
//! What it does not do: read sockets or run rustls (the connection does, when granted), or
//! judge a handshake (rustls does).

use crate::peer::{ClientKey, FairQueue, RateBook, RateLimit};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Handshake work one loop turn does before it serves the rest (at least one handshake is
/// granted per turn, however long it takes). Small against a session's latency, large
/// enough for several ECDSA handshakes in a turn.
pub const HANDSHAKE_WORK_PER_TURN: Duration = Duration::from_millis(2);
/// Clients whose recent full handshakes are remembered at most.
const MAX_REMEMBERED: usize = 65_536;

/// Full handshakes per client and second, over all workers.
#[derive(Debug)]
pub struct HandshakeRates {
    /// Recent full handshakes per client key.
    book: Mutex<RateBook>,
}

impl HandshakeRates {
    /// At most `per_second` full handshakes per client and second (0: no limit).
    pub fn new(per_second: u32) -> HandshakeRates {
        let limit = RateLimit {
            events: per_second,
            window: Duration::from_secs(1),
        };
        HandshakeRates {
            book: Mutex::new(RateBook::new(limit, MAX_REMEMBERED)),
        }
    }

    /// Whether one more full handshake of `client` now would go past the limit.
    fn is_over(&self, client: ClientKey, now: Instant) -> bool {
        self.lock().is_over(client, now)
    }

    /// Counts a full handshake of `client`.
    fn record(&self, client: ClientKey, now: Instant) {
        self.lock().record(client, now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RateBook> {
        crate::lock::lock(&self.book)
    }
}

/// What the worker decided for the connection whose turn it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Drive connection `key` (with id `id`): it may start its handshake.
    Start {
        /// The slab key.
        key: usize,
        /// The connection id.
        id: u64,
    },
    /// Close connection `key` without a byte: its client is past the full-handshake rate.
    Refuse {
        /// The slab key.
        key: usize,
        /// The connection id.
        id: u64,
    },
}

/// A worker's handshake turns (see the module docs).
#[derive(Debug)]
pub struct HandshakeTurns {
    /// Connections waiting to start their handshake, per client key: slab key, with the
    /// connection id as the queue's id.
    waiting: FairQueue<usize>,
    /// Handshakes started and not finished on this worker, per client key.
    in_progress: HashMap<ClientKey, u32>,
    /// Most handshakes in progress per client on this worker.
    max_in_progress: u32,
    /// The full-handshake rates, shared with the other workers.
    rates: std::sync::Arc<HandshakeRates>,
    /// The connection being driven now may start its handshake (set around one drive).
    granted: bool,
    /// Handshake work done this turn.
    spent: Duration,
}

impl HandshakeTurns {
    /// Turns for a worker: `max_in_progress` per client, full handshakes counted in `rates`.
    pub fn new(max_in_progress: u32, rates: std::sync::Arc<HandshakeRates>) -> HandshakeTurns {
        HandshakeTurns {
            waiting: FairQueue::new(),
            in_progress: HashMap::new(),
            max_in_progress: max_in_progress.max(1),
            rates,
            granted: false,
            spent: Duration::ZERO,
        }
    }

    /// Connection `key` (id `id`) of `client` has a handshake to start: it waits its turn.
    pub fn wait(&mut self, client: IpAddr, key: usize, id: u64) {
        self.waiting.push(ClientKey::of(client), id, key);
    }

    /// Connection `id` of `client` no longer waits (it closed).
    pub fn cancel(&mut self, client: IpAddr, id: u64) {
        self.waiting.remove(ClientKey::of(client), id);
    }

    /// Whether the connection being driven may start its handshake now.
    pub fn is_granted(&self) -> bool {
        self.granted
    }

    /// A handshake of `client` started (its first flight is being processed).
    pub fn begin(&mut self, client: IpAddr) {
        *self.in_progress.entry(ClientKey::of(client)).or_insert(0) += 1;
    }

    /// A handshake of `client` that had started finished (completed, failed or closed).
    pub fn end(&mut self, client: IpAddr) {
        let client = ClientKey::of(client);
        if let Some(count) = self.in_progress.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                self.in_progress.remove(&client);
            }
        }
    }

    /// The handshake of `client` turned out to be a full one (not resumed): it counts
    /// toward the client's rate.
    pub fn charge_full(&mut self, client: IpAddr, now: Instant) {
        self.rates.record(ClientKey::of(client), now);
    }

    /// A new loop turn: no handshake work done in it yet.
    pub fn new_turn(&mut self) {
        self.spent = Duration::ZERO;
    }

    /// The next connection whose turn it is, unless this turn's handshake work is spent
    /// (after at least one) or no client may start one now. Clients at their in-progress
    /// limit are passed over (their connections keep their place).
    pub fn next(&mut self, now: Instant) -> Option<Turn> {
        if self.spent >= HANDSHAKE_WORK_PER_TURN {
            return None;
        }
        let (in_progress, max) = (&self.in_progress, self.max_in_progress);
        let (client, id, key) = self
            .waiting
            .pop(|client| (in_progress.get(&client).copied().unwrap_or(0) < max).then_some(0))?;
        self.waiting.finish(client);
        if self.rates.is_over(client, now) {
            return Some(Turn::Refuse { key, id });
        }
        Some(Turn::Start { key, id })
    }

    /// Marks the drive of a granted connection: `granted` around it, its time counted.
    pub fn grant(&mut self, granted: bool, took: Duration) {
        self.granted = granted;
        self.spent += took;
    }

    /// Whether a connection waits that could start now, were this turn's budget not spent:
    /// the worker then polls without waiting.
    pub fn has_backlog(&self) -> bool {
        let (in_progress, max) = (&self.in_progress, self.max_in_progress);
        self.waiting
            .waiting_clients()
            .any(|client| in_progress.get(&client).copied().unwrap_or(0) < max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    fn starts(turn: Option<Turn>) -> Option<usize> {
        match turn {
            Some(Turn::Start { key, .. }) => Some(key),
            other => panic!("expected a start, got {other:?}"),
        }
    }

    #[test]
    fn clients_take_turns_and_one_turn_stops_after_its_budget() {
        let mut turns = HandshakeTurns::new(100, Arc::new(HandshakeRates::new(0)));
        // A flood of 50 connections from one client, then one from another.
        for key in 0..50 {
            turns.wait(ip(1), key, key as u64);
        }
        turns.wait(ip(2), 99, 99);
        let now = Instant::now();
        turns.new_turn();
        assert_eq!(starts(turns.next(now)), Some(0));
        turns.grant(false, Duration::from_micros(100));
        assert_eq!(
            starts(turns.next(now)),
            Some(99),
            "the other client's turn comes second, not 51st"
        );
        // A handshake that took 5 ms spends the turn's budget.
        turns.grant(false, Duration::from_millis(5));
        assert_eq!(turns.next(now), None);
        assert!(turns.has_backlog());
        turns.new_turn();
        assert_eq!(starts(turns.next(now)), Some(1));
    }

    #[test]
    fn a_client_at_its_in_progress_limit_waits_and_goes_on_when_one_ends() {
        let mut turns = HandshakeTurns::new(2, Arc::new(HandshakeRates::new(0)));
        for key in 0..4 {
            turns.wait(ip(1), key, key as u64);
        }
        let now = Instant::now();
        for want in 0..2 {
            assert_eq!(starts(turns.next(now)), Some(want));
            turns.begin(ip(1));
        }
        assert_eq!(turns.next(now), None, "two in progress: the others wait");
        assert!(!turns.has_backlog());
        turns.wait(ip(2), 10, 10);
        assert_eq!(
            starts(turns.next(now)),
            Some(10),
            "another client is not held up"
        );
        turns.end(ip(1));
        assert_eq!(starts(turns.next(now)), Some(2));
    }

    #[test]
    fn past_the_rate_a_connection_is_refused_and_resumed_handshakes_are_free() {
        let rates = Arc::new(HandshakeRates::new(3));
        let mut turns = HandshakeTurns::new(100, Arc::clone(&rates));
        let now = Instant::now();
        for key in 0..5 {
            turns.wait(ip(1), key, key as u64);
        }
        for want in 0..3 {
            assert_eq!(starts(turns.next(now)), Some(want));
            turns.charge_full(ip(1), now);
        }
        assert_eq!(turns.next(now), Some(Turn::Refuse { key: 3, id: 3 }));
        // A second later the client has room again (a burst of 3 per second).
        let later = now + Duration::from_secs(1);
        assert_eq!(starts(turns.next(later)), Some(4));
        // Another worker's turns share the rate.
        let mut other = HandshakeTurns::new(100, rates);
        other.wait(ip(1), 7, 7);
        assert_eq!(other.next(now), Some(Turn::Refuse { key: 7, id: 7 }));
    }

    #[test]
    fn a_closed_connection_leaves_the_queue() {
        let mut turns = HandshakeTurns::new(8, Arc::new(HandshakeRates::new(0)));
        turns.wait(ip(1), 1, 11);
        turns.wait(ip(1), 2, 12);
        turns.cancel(ip(1), 11);
        assert_eq!(starts(turns.next(Instant::now())), Some(2));
        assert_eq!(turns.next(Instant::now()), None);
        assert!(!turns.has_backlog());
    }
}
