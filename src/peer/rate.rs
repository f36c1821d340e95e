//! [`RateBook`]: events per client against a limit of N per window, with a burst of N.
//!
//! What it does: for each client key, keep one instant, the time by which its counted events
//! will have drained at the limit's pace (`window / N` each; the "generic cell rate
//! algorithm", a token bucket of N tokens written as one timestamp). A client may have N
//! events at once, then one more every `window / N`: over any long stretch at most N per
//! window, which is what Postfix's anvil bounds with its per-client rates (there in fixed
//! windows, which allow 2N around a window's edge; this does not). A client whose events have
//! all drained holds no entry, so the book holds only clients with a recent event, and at most
//! a fixed number of them (the least recent are forgotten first).
//!
//! What it does not do: decide what happens past the limit, lock, or read the clock.

use super::ClientKey;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// At most `events` per `window` (a burst of `events`); `events == 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events allowed per window (and at once); 0: unlimited.
    pub events: u32,
    /// The window.
    pub window: Duration,
}

impl RateLimit {
    /// The time one event takes to drain: `window / events`.
    fn interval(&self) -> Duration {
        self.window / self.events.max(1)
    }
}

/// Recent events per client key (see the module docs).
#[derive(Debug)]
pub struct RateBook {
    /// The limit.
    limit: RateLimit,
    /// Per client with events not yet drained: when they will have.
    drained_at: HashMap<ClientKey, Instant>,
    /// Clients remembered at most.
    max_clients: usize,
}

impl RateBook {
    /// An empty book for `limit`, remembering at most `max_clients` clients.
    pub fn new(limit: RateLimit, max_clients: usize) -> RateBook {
        RateBook {
            limit,
            drained_at: HashMap::new(),
            max_clients: max_clients.max(1),
        }
    }

    /// The limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Whether one more event of `client` now would go past the limit.
    pub fn is_over(&self, client: ClientKey, now: Instant) -> bool {
        if self.limit.events == 0 {
            return false;
        }
        self.drained_at.get(&client).is_some_and(|at| {
            at.saturating_duration_since(now) + self.limit.interval() > self.limit.window
        })
    }

    /// Whether `client` has no event counted now (never had one, or all have drained).
    pub fn is_clear(&self, client: ClientKey, now: Instant) -> bool {
        self.drained_at.get(&client).is_none_or(|at| *at <= now)
    }

    /// Whether `client` had no event within about the last window (its events drain
    /// `window / N` each; this waits for the window after its last one, or longer after a
    /// burst): stricter than [`RateBook::is_clear`], so a client pacing its events just
    /// slower than they drain is still seen.
    pub fn is_quiet(&self, client: ClientKey, now: Instant) -> bool {
        let linger = self.limit.window.saturating_sub(self.limit.interval());
        self.drained_at
            .get(&client)
            .is_none_or(|at| *at + linger <= now)
    }

    /// Counts an event of `client` now. Nothing is counted without a limit.
    pub fn record(&mut self, client: ClientKey, now: Instant) {
        if self.limit.events == 0 {
            return;
        }
        if self.drained_at.len() >= self.max_clients && !self.drained_at.contains_key(&client) {
            self.forget(now);
        }
        let at = self.drained_at.entry(client).or_insert(now);
        *at = (*at).max(now) + self.limit.interval();
    }

    /// Makes room: forgets the clients whose events have drained, and if that is not
    /// enough, the half that would drain first.
    fn forget(&mut self, now: Instant) {
        self.drained_at.retain(|_, at| *at > now);
        if self.drained_at.len() >= self.max_clients {
            let mut times: Vec<Instant> = self.drained_at.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() / 2];
            self.drained_at.retain(|_, at| *at > cut);
        }
    }

    /// Clients remembered now (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.drained_at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> ClientKey {
        ClientKey::of(std::net::IpAddr::from([198, 51, 100, last]))
    }

    #[test]
    fn a_burst_of_n_then_one_per_interval() {
        let limit = RateLimit {
            events: 10,
            window: Duration::from_secs(60),
        };
        let mut book = RateBook::new(limit, 100);
        let t0 = Instant::now();
        assert!(book.is_clear(ip(1), t0));
        for i in 0..10 {
            assert!(!book.is_over(ip(1), t0), "event {i} is within the burst");
            book.record(ip(1), t0);
        }
        assert!(
            book.is_over(ip(1), t0),
            "the 11th at once is past the limit"
        );
        assert!(!book.is_over(ip(2), t0), "another client is not");
        assert!(!book.is_quiet(ip(1), t0) && book.is_quiet(ip(2), t0));
        assert!(!book.is_clear(ip(1), t0));
        // One interval (6 s) later there is room for exactly one more.
        let t6 = t0 + Duration::from_secs(6);
        assert!(book.is_over(ip(1), t6 - Duration::from_millis(1)));
        assert!(!book.is_over(ip(1), t6));
        book.record(ip(1), t6);
        assert!(book.is_over(ip(1), t6));
        // Over a long run: at most 10 per minute.
        let mut allowed = 0;
        for second in 6..=606u64 {
            let now = t0 + Duration::from_secs(second);
            if !book.is_over(ip(1), now) {
                book.record(ip(1), now);
                allowed += 1;
            }
        }
        assert_eq!(allowed, 100, "ten minutes at 10 a minute");
        assert!(book.is_clear(ip(1), t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn one_event_is_drained_after_its_interval_but_remembered_for_the_window() {
        let limit = RateLimit {
            events: 10,
            window: Duration::from_secs(60),
        };
        let mut book = RateBook::new(limit, 100);
        let t0 = Instant::now();
        book.record(ip(1), t0);
        let later = |s| t0 + Duration::from_secs(s);
        assert!(!book.is_clear(ip(1), later(5)) && book.is_clear(ip(1), later(6)));
        assert!(!book.is_quiet(ip(1), later(59)) && book.is_quiet(ip(1), later(60)));
    }

    #[test]
    fn no_limit_counts_nothing() {
        let mut book = RateBook::new(
            RateLimit {
                events: 0,
                window: Duration::from_secs(1),
            },
            10,
        );
        let now = Instant::now();
        for _ in 0..1000 {
            book.record(ip(1), now);
        }
        assert!(!book.is_over(ip(1), now));
        assert!(book.is_clear(ip(1), now));
    }

    #[test]
    fn the_book_stays_bounded_forgetting_drained_clients_first() {
        let limit = RateLimit {
            events: 2,
            window: Duration::from_secs(10),
        };
        let mut book = RateBook::new(limit, 4);
        let t0 = Instant::now();
        book.record(ip(1), t0); // drains at t0 + 5 s
        for (i, client) in (2..=4).enumerate() {
            book.record(ip(client), t0 + Duration::from_secs(4 + i as u64));
        }
        assert_eq!(book.len(), 4);
        // At t0 + 7 s client 1 has drained: it is the one forgotten.
        let t7 = t0 + Duration::from_secs(7);
        book.record(ip(5), t7);
        assert_eq!(book.len(), 4);
        assert!(book.is_clear(ip(1), t7));
        assert!(!book.is_clear(ip(4), t7));
        // Nobody has drained: half the book (those draining first) goes.
        for client in 10..40 {
            book.record(ip(client), t7);
            assert!(book.len() <= 4);
        }
    }
}
