//! A cache of parsed views, keyed by the message's sequence number, bounded in bytes.
//!
//! Each view is charged [`super::MessageView::charge`] (its struct and the capacity of every
//! string and list it owns) plus [`SLOT_OVERHEAD`] (its slot in the map and the ring, and the
//! `Arc`'s counts). The raw bytes are not charged: the view keeps none (the capture store
//! charges them). A view larger than the whole budget is returned but not kept.
//! `tests/view_memory.rs` measures the heap with a counting allocator: 20 000 views of 1 KiB
//! multipart messages allocate 2 599 octets each and are charged 2 580 (the rest: the slack
//! of the map and the ring, which grow by doubling).
//!
//! Eviction is CLOCK (second chance): views sit in a ring in insertion order with a
//! "referenced" bit set by each hit; to make room the hand takes the oldest, and if its bit
//! is set clears it and puts it back, else drops it. So a view read again survives one more
//! turn, at the cost of a bit per hit (no list reordering under the lock).
//!
//! Locking: one `Mutex`, held only to look up, insert or evict; parsing happens outside it
//! ([`ViewCache::get_or_parse`]), so two readers of one uncached message may both parse it
//! (the second insert keeps the first view). Sequence numbers are never reused, so a view
//! never goes stale: a deleted message's view ages out.
//!
//! What it does not do: know the capture store (the caller passes the raw bytes), or share
//! the capture store's budget (its bound is its own: the process holds at most both).

use super::MessageView;
use crate::lock::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A budget for the cache when the caller has no better figure: 32 MiB holds the views of
/// about 15 000 messages of 1 KiB (a view of one is charged ~2.2 KB), an eighth of the
/// capture store's default budget of 256 MiB beside it.
pub const VIEW_CACHE_DEFAULT: usize = 32 << 20;

/// What a cached view costs beyond [`MessageView::charge`]: a map slot (seq, pointer, charge,
/// bit: ~40 octets at the table's load), a ring slot (8) and the `Arc`'s two counts (16).
pub const SLOT_OVERHEAD: usize = 64;

/// One cached view.
struct Slot {
    /// The view.
    view: Arc<MessageView>,
    /// What it is charged.
    charge: usize,
    /// Read since the hand last passed it.
    referenced: bool,
}

/// The cache's state, under its lock.
#[derive(Default)]
struct Inner {
    /// The views by seq.
    slots: HashMap<u64, Slot>,
    /// The seqs in the order the hand visits them (each cached seq once).
    ring: VecDeque<u64>,
    /// The sum of the charges.
    bytes: usize,
    /// Lookups that found a view.
    hits: u64,
    /// Lookups that did not.
    misses: u64,
}

/// The cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Views cached now.
    pub views: usize,
    /// Octets charged now.
    pub bytes: usize,
    /// The budget.
    pub max_bytes: usize,
    /// Lookups that found a view.
    pub hits: u64,
    /// Lookups that parsed.
    pub misses: u64,
}

/// Parsed views by seq, at most `max_bytes` charged (see the module doc).
pub struct ViewCache {
    /// The state.
    inner: Mutex<Inner>,
    /// The budget.
    max_bytes: usize,
}

impl std::fmt::Debug for ViewCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ViewCache {
    /// An empty cache charging at most `max_bytes`.
    pub fn new(max_bytes: usize) -> ViewCache {
        ViewCache {
            inner: Mutex::new(Inner::default()),
            max_bytes,
        }
    }

    /// The view of message `seq`, cached or parsed from `raw` (outside the lock) and kept.
    pub fn get_or_parse(&self, seq: u64, raw: &[u8]) -> Arc<MessageView> {
        if let Some(view) = self.get(seq) {
            return view;
        }
        let view = Arc::new(MessageView::parse(raw));
        self.insert(seq, view)
    }

    /// The cached view of `seq`, marked as read.
    pub fn get(&self, seq: u64) -> Option<Arc<MessageView>> {
        let mut inner = lock(&self.inner);
        match inner.slots.get_mut(&seq) {
            Some(slot) => {
                slot.referenced = true;
                let view = slot.view.clone();
                inner.hits += 1;
                Some(view)
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    /// Keeps `view` as `seq`'s (unless one is cached already: that one is returned), evicting
    /// as needed; returns the cached view.
    pub fn insert(&self, seq: u64, view: Arc<MessageView>) -> Arc<MessageView> {
        let charge = view.charge() + SLOT_OVERHEAD;
        if charge > self.max_bytes {
            return view;
        }
        let mut inner = lock(&self.inner);
        if let Some(slot) = inner.slots.get(&seq) {
            return slot.view.clone();
        }
        // Each turn either drops a view or clears a bit, so this ends within two passes.
        while inner.bytes + charge > self.max_bytes {
            let Some(oldest) = inner.ring.pop_front() else {
                break;
            };
            let Some(slot) = inner.slots.get_mut(&oldest) else {
                continue;
            };
            if slot.referenced {
                slot.referenced = false;
                inner.ring.push_back(oldest);
            } else if let Some(slot) = inner.slots.remove(&oldest) {
                inner.bytes -= slot.charge;
            }
        }
        inner.bytes += charge;
        inner.ring.push_back(seq);
        inner.slots.insert(
            seq,
            Slot {
                view: view.clone(),
                charge,
                referenced: false,
            },
        );
        view
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let inner = lock(&self.inner);
        CacheStats {
            views: inner.slots.len(),
            bytes: inner.bytes,
            max_bytes: self.max_bytes,
            hits: inner.hits,
            misses: inner.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(n: usize) -> Vec<u8> {
        format!("Subject: m{n}\r\n\r\n{}\r\n", "x".repeat(100)).into_bytes()
    }

    fn charge_of(n: usize) -> usize {
        MessageView::parse(&raw(n)).charge() + SLOT_OVERHEAD
    }

    #[test]
    fn the_budget_holds_and_a_read_view_gets_a_second_chance() {
        let one = charge_of(1);
        let cache = ViewCache::new(one * 3 + one / 2);
        for n in 1..=3 {
            cache.get_or_parse(n, &raw(n as usize));
        }
        assert_eq!(cache.stats().views, 3);
        // Read 1: when 4 comes, 2 (the oldest unread) goes, not 1.
        assert!(cache.get(1).is_some());
        cache.get_or_parse(4, &raw(4));
        let stats = cache.stats();
        assert!(stats.bytes <= stats.max_bytes, "{stats:?}");
        assert_eq!(stats.views, 3);
        assert!(cache.get(1).is_some() && cache.get(2).is_none());
        assert!(cache.get(3).is_some() && cache.get(4).is_some());
        for n in 5..100 {
            cache.get_or_parse(n, &raw(n as usize));
            let stats = cache.stats();
            assert!(stats.bytes <= stats.max_bytes, "{stats:?}");
        }
    }

    #[test]
    fn a_view_larger_than_the_budget_is_returned_not_kept() {
        let cache = ViewCache::new(100);
        let view = cache.get_or_parse(1, &raw(1));
        assert_eq!(view.subject.as_deref(), Some("m1"));
        assert_eq!(cache.stats().views, 0);
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn a_second_insert_keeps_the_first_view() {
        let cache = ViewCache::new(1 << 20);
        let first = cache.get_or_parse(7, &raw(7));
        let second = cache.insert(7, Arc::new(MessageView::parse(&raw(8))));
        assert!(Arc::ptr_eq(&first, &second));
        let stats = cache.stats();
        assert_eq!((stats.views, stats.hits, stats.misses), (1, 0, 1));
    }
}
