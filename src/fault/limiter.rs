//! The stateful parts of fault rules: greylisting and per-client rate limits.
//!
//! What it does: remember, per client, when a (client, sender, recipient) triplet was first
//! seen ([`Greylist`], RFC 6647) and how many tokens a client's bucket holds
//! ([`RateLimiter`]). Both are shared by every worker behind a lock taken only when a rule
//! that uses them is consulted, and both forget old entries past [`MAX_REMEMBERED`], so
//! memory stays bounded whatever clients do.
//!
//! What it does not do: read the clock (the time comes in the [`FaultContext`]) or decide
//! what happens when a rule fires.

use super::FaultContext;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most triplets or client buckets a rule remembers; beyond, entries older than
/// [`FORGET_AFTER`] (greylisting) or a minute (rates) are dropped, and if that is not
/// enough, all.
const MAX_REMEMBERED: usize = 100_000;
/// How long greylisting remembers a triplet.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What greylisting keys on: client address, sender, recipient (both lowercased).
type Triplet = (IpAddr, Vec<u8>, Vec<u8>);

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
        let mut seen = self.first_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, first| now.saturating_duration_since(*first) < FORGET_AFTER);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        let key = (
            client,
            context.sender.to_ascii_lowercase(),
            context.recipient.to_ascii_lowercase(),
        );
        let first = *seen.entry(key).or_insert(now);
        now.saturating_duration_since(first) < self.wait
    }
}

/// Per-client token buckets for `rate=N/s`.
#[derive(Debug)]
pub(super) struct RateLimiter {
    /// Tokens per second.
    rate: f64,
    /// Per client: (tokens, last refill).
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// Allows `rate` per second per client.
    pub fn new(rate: f64) -> RateLimiter {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from the client's bucket; true when there was none (the client is over
    /// the rate, so the rule applies). Without a client or a time: false.
    pub fn over(&self, context: &FaultContext<'_>) -> bool {
        let (Some(client), Some(now)) = (context.client, context.now) else {
            return false;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_REMEMBERED {
            buckets.retain(|_, (_, last)| {
                now.saturating_duration_since(*last) < Duration::from_secs(60)
            });
        }
        // A bucket holds one second's worth (at least one token), refilled continuously.
        let capacity = self.rate.max(1.0);
        let (tokens, last) = buckets.entry(client).or_insert((capacity, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate)
            .min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            false
        } else {
            true
        }
    }
}
