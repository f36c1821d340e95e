//! The stateful parts of fault rules: greylisting and per-client rate limits.
//!
//! What it does: remember, per client (its [`ClientKey`]: IPv6 clients by their /64), when a (client, sender, recipient) triplet was first
//! seen ([`Greylist`], RFC 6647) and how many commands a client may still give
//! ([`RateLimiter`]: N per period, a burst of N). Both are shared by every worker behind a lock taken only when a rule
//! that uses them is consulted, and both forget old entries past [`MAX_REMEMBERED`], so
//! memory stays bounded whatever clients do.
//!
//! What it does not do: read the clock (the time is a parameter, from the [`FaultContext`])
//! or decide what happens when a rule fires.

use super::FaultContext;
use crate::lock::lock;
use crate::peer::ClientKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most triplets or client buckets a rule remembers; beyond, entries older than
/// [`FORGET_AFTER`] (greylisting) or buckets full again (rates) are dropped, and if that is
/// not enough, all.
const MAX_REMEMBERED: usize = 100_000;
/// How long greylisting remembers a triplet.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What greylisting keys on: client key (an IPv4 address, or an IPv6 /64), sender,
/// recipient (both lowercased).
type Triplet = (ClientKey, Vec<u8>, Vec<u8>);

/// Greylisting state (RFC 6647): when each triplet was first seen.
#[derive(Debug)]
pub(super) struct Greylist {
    /// How long a new triplet is refused.
    wait: Duration,
    /// First attempt of each triplet.
    first_seen: Mutex<HashMap<Triplet, Instant>>,
}

impl Greylist {
    /// Refuses each new triplet for `wait`.
    pub fn new(wait: Duration) -> Greylist {
        Greylist {
            wait,
            first_seen: Mutex::new(HashMap::new()),
        }
    }

    /// True while this (client, sender, recipient) must still be refused: at its first
    /// attempt and until `wait` has passed since. Without a client or a time: false.
    pub fn refuses(&self, context: &FaultContext<'_>) -> bool {
        let (Some(client), Some(now)) = (context.client, context.now) else {
            return false;
        };
        let mut seen = lock(&self.first_seen);
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, first| now.saturating_duration_since(*first) < FORGET_AFTER);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        let key = (
            ClientKey::of(client),
            context.sender.to_ascii_lowercase(),
            context.recipient.to_ascii_lowercase(),
        );
        let first = *seen.entry(key).or_insert(now);
        now.saturating_duration_since(first) < self.wait
    }
}

/// A rate: `count` commands per `period`, with a burst of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rate {
    /// N: commands per period, and the burst allowed.
    pub count: u32,
    /// The period.
    pub period: Duration,
}

/// Per-client rate limits for `rate=N/PERIOD`: each client (its [`ClientKey`]: an IPv4
/// address, or an IPv6 /64) has a bucket of N tokens,
/// refilled at N per PERIOD, and a command finding it empty is over the rate. As Postfix's
/// anvil counts (`smtpd_client_message_rate_limit` per `anvil_rate_time_unit`): `100/m` lets
/// 100 commands through at once, then one every 0.6 s.
///
/// The bucket is kept as GCRA keeps it (the generic cell rate algorithm, ITU-T I.371): one
/// instant per client, when its bucket will be full again. A client whose instant is past
/// has a full bucket, so forgetting it changes nothing. Integer time, no drift.
#[derive(Debug)]
pub(super) struct RateLimiter {
    /// How long one token takes to come back: PERIOD / N.
    interval: Duration,
    /// How far in the future a client's full-again instant may lie while a token is left:
    /// N - 1 intervals.
    tolerance: Duration,
    /// Per client: when its bucket is full again.
    full_at: Mutex<HashMap<ClientKey, Instant>>,
}

impl RateLimiter {
    /// Allows `rate.count` per `rate.period` per client, in a burst or spread out. The
    /// period divided by the count must be at least a nanosecond (the rule's parser checks).
    pub fn new(rate: Rate) -> RateLimiter {
        let interval = rate.period / rate.count.max(1);
        RateLimiter {
            interval,
            tolerance: interval * (rate.count.max(1) - 1),
            full_at: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `client`'s bucket at `now`; true when there was none (the client is
    /// over the rate, so the rule applies). A command over the rate takes nothing.
    pub fn over(&self, client: IpAddr, now: Instant) -> bool {
        let client = ClientKey::of(client);
        let mut full_at = lock(&self.full_at);
        if full_at.len() >= MAX_REMEMBERED {
            // Clients whose bucket is full again are as good as new: forgetting them is exact.
            full_at.retain(|_, at| *at > now);
            if full_at.len() >= MAX_REMEMBERED {
                full_at.clear();
            }
        }
        let at = full_at
            .get(&client)
            .copied()
            .filter(|at| *at > now)
            .unwrap_or(now);
        if at - now > self.tolerance {
            return true;
        }
        full_at.insert(client, at + self.interval);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of the commands at `times` (milliseconds from a start) are over `rate`, for one
    /// client.
    fn over_at(rate: Rate, times: &[u64]) -> Vec<bool> {
        let limiter = RateLimiter::new(rate);
        let start = Instant::now();
        let client = IpAddr::from([192, 0, 2, 1]);
        times
            .iter()
            .map(|ms| limiter.over(client, start + Duration::from_millis(*ms)))
            .collect()
    }

    fn per_minute(count: u32) -> Rate {
        Rate {
            count,
            period: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_rate_per_minute_allows_a_burst_of_its_count() {
        // Issue 16: 8 commands 0.1 s apart under 100/m were 250, 450, 250, ... (a bucket of
        // one token per 0.6 s). All pass now.
        let eight: Vec<u64> = (0..8).map(|i| i * 100).collect();
        assert_eq!(over_at(per_minute(100), &eight), [false; 8]);
        // 3/m: three pass, then none until a token is back (one per 20 s).
        assert_eq!(
            over_at(per_minute(3), &[0, 0, 0, 0, 19_999, 20_000, 20_001, 60_000]),
            [false, false, false, true, true, false, true, false]
        );
        // After a full period of silence the whole burst is back.
        assert_eq!(
            over_at(per_minute(3), &[0, 0, 0, 60_000, 60_000, 60_000, 60_000]),
            [false, false, false, false, false, false, true]
        );
    }

    #[test]
    fn a_steady_client_gets_exactly_the_rate() {
        // 100/m: after the burst of 100, one command per 600 ms.
        let mut times = vec![0; 100];
        times.extend((1..=10).map(|i| i * 600));
        times.push(6_001); // one token per 0.6 s: none left here
        let over = over_at(per_minute(100), &times);
        assert!(over[..110].iter().all(|o| !o));
        assert!(over[110]);
        // 2/s as a bucket of 2: two at once, the third over, one more 500 ms later.
        let rate = Rate {
            count: 2,
            period: Duration::from_secs(1),
        };
        assert_eq!(
            over_at(rate, &[0, 0, 0, 500, 500]),
            [false, false, true, false, true]
        );
    }

    #[test]
    fn each_client_has_its_own_bucket_and_a_full_one_is_forgotten() {
        let limiter = RateLimiter::new(per_minute(1));
        let start = Instant::now();
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        assert!(!limiter.over(a, start));
        assert!(limiter.over(a, start));
        assert!(!limiter.over(b, start), "another client, another bucket");
        // Past the limit of clients remembered, the full buckets are dropped, not the others.
        let later = start + Duration::from_secs(61);
        {
            let mut full_at = limiter.full_at.lock().unwrap();
            for i in 0..MAX_REMEMBERED as u32 {
                full_at.insert(
                    ClientKey::of(IpAddr::from(((i + 1) << 8).to_be_bytes())),
                    start,
                );
            }
        }
        assert!(!limiter.over(a, later));
        assert!(limiter.full_at.lock().unwrap().len() <= 2);
        assert!(limiter.over(a, later), "the token just taken is remembered");
    }
}
