//! The delivery loop's gauges for `--metrics`: messages by queue state, the oldest
//! message's arrival, open connections per next hop. Counted from the loop's own state at
//! most every [`GAUGE_INTERVAL`] (a walk over the active set and one spool listing), and
//! published as atomics in [`DeliveryStats`](crate::relay::deliver::DeliveryStats) for the
//! metrics thread to read; the counters are kept where the loop counts, not here.

use super::{plan, Loop};
use crate::relay::admin::model::{queue_state_of, QueueState};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often the gauges are counted again.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

impl Loop {
    /// Counts and publishes the gauges when [`GAUGE_INTERVAL`] has passed (or `force`).
    pub(super) fn publish_gauges(&mut self, now: Duration, force: bool) {
        if !force && now < self.gauges_published.saturating_add(GAUGE_INTERVAL) {
            return;
        }
        self.gauges_published = now;
        let now_ms = plan::unix_ms(now);
        let (mut active, mut ready, mut deferred) = (0u64, 0u64, 0u64);
        let mut oldest = u64::MAX;
        for message in self.active.values() {
            oldest = oldest.min(message.envelope.arrival_unix_ms);
            if message.busy {
                active += 1;
                continue;
            }
            match queue_state_of(&message.states, now_ms) {
                QueueState::Deferred => deferred += 1,
                _ => ready += 1,
            }
        }
        let (live, first_held) = {
            let spool = self.queue.spool();
            let live = spool.live_count() as u64;
            // Ids grow with arrival: the lowest live id not in memory is the oldest held.
            let first_held = spool
                .live_after(None)
                .find(|listed| !self.active.contains_key(&listed.spool_ref.id))
                .map(|listed| spool.read_envelope(&listed.spool_ref));
            (live, first_held)
        };
        if let Some(Ok(envelope)) = first_held {
            oldest = oldest.min(envelope.arrival_unix_ms);
        }
        let stats = &self.stats;
        let held = live.saturating_sub(self.active.len() as u64);
        stats.queue_active.store(active, Ordering::Relaxed);
        stats.queue_ready.store(ready, Ordering::Relaxed);
        stats.queue_deferred.store(deferred, Ordering::Relaxed);
        stats.queue_held.store(held, Ordering::Relaxed);
        let oldest = if oldest == u64::MAX { 0 } else { oldest };
        stats
            .oldest_arrival_unix_ms
            .store(oldest, Ordering::Relaxed);
        let mut open = vec![0u64; stats.hop_connections.len()];
        for (_, conn) in self.conns.iter() {
            if let Some(count) = open.get_mut(conn.hop) {
                *count += 1;
            }
        }
        for (gauge, count) in stats.hop_connections.iter().zip(open) {
            gauge.store(count, Ordering::Relaxed);
        }
    }
}
