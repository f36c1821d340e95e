//! Per-worker deadlines: a min-heap of (deadline, connection) whose top is the poll timeout.
//!
//! What it does: remember when each connection must next be looked at, cheaply. Deadlines
//! mostly move *later* (every command pushes the idle deadline forward), so the heap is lazy:
//! a connection keeps one authoritative entry, a later deadline is not pushed but noticed when
//! the old entry comes due, and stale entries are dropped as they surface. That makes the
//! common case (a command arrives) free: no heap operation at all.
//!
//! What it does not do: decide what a deadline means (the worker does), or use a thread or a
//! syscall per timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

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

/// The heap of entries.
#[derive(Debug, Default)]
pub struct Timers {
    /// Earliest first.
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// An empty heap with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Timers {
        Timers {
            heap: BinaryHeap::with_capacity(capacity),
        }
    }

    /// Adds an entry.
    pub fn schedule(&mut self, entry: Entry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        match self.heap.peek() {
            Some(Reverse(entry)) if entry.at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::with_capacity(4);
        for (secs, key) in [(3, 3), (1, 1), (2, 2)] {
            timers.schedule(Entry {
                at: t0 + Duration::from_secs(secs),
                key,
                id: 0,
            });
        }
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(timers.pop_due(now).map(|e| e.key), Some(1));
        assert_eq!(timers.pop_due(now).map(|e| e.key), Some(2));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.len(), 1);
    }
}
