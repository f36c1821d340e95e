//! Removals as a stream: every message the store stops keeping (evicted, expired, deleted)
//! is numbered in the order it was removed (1, 2, ...; a sequence of its own, beside the
//! messages' `seq`), so a reader that keeps a number can ask "what was removed since" — the
//! event stream's `gone` events.
//!
//! It costs nothing beyond the tombstones: the removals are read from the tombstone ring,
//! oldest first, so they are remembered as long as the tombstones are (the last
//! [`super::Limits::max_tombstones`] removals). A reader that falls further behind is told
//! which numbers it missed ([`RemovalPage::missed`]), never skipped in silence.
//!
//! What it does not do: wake anyone (the store wakes its waiters for any message after a
//! removal by a client), or keep removed messages' ids (a tombstone keeps its `seq`, time and
//! reason).

use super::Gone;

/// Removals after a reader's number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovalPage {
    /// The removals (their number, the tombstone), oldest first.
    pub items: Vec<(u64, Gone)>,
    /// Removals after the reader's number that the ring no longer holds: `(first, last)`,
    /// both included.
    pub missed: Option<(u64, u64)>,
    /// The number of the newest removal (0: none yet).
    pub head: u64,
}

#[cfg(test)]
mod tests {
    use super::super::{
        Arrival, Capture, EnvelopeParts, GoneReason, Limits, OnFull, QueueId, WaitKey,
    };
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::time::SystemTime;

    fn keep(capture: &Capture, n: u64) {
        let arrival = Arrival::new(
            QueueId::new(format!("m{n}").as_bytes()).unwrap(),
            SystemTime::now(),
            Bytes::from_static(b"Subject: x\r\n\r\nx\r\n"),
            &EnvelopeParts::default(),
            [&b"r@test"[..]],
        );
        capture.insert(arrival).unwrap();
    }

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn removals_are_numbered_in_order_and_a_reader_too_far_behind_is_told() {
        let limits = Limits {
            max_messages: 2,
            max_tombstones: 3,
            ..Limits::default()
        };
        let capture = Capture::new(limits, OnFull::EvictOldest);
        assert_eq!(capture.removal_head(), 0);
        for n in 1..=4 {
            keep(&capture, n); // 1 and 2 are evicted by 3 and 4
        }
        let page = capture.removals_after(0, 10);
        assert_eq!(page.head, 2);
        assert_eq!(page.missed, None);
        let seqs: Vec<(u64, u64)> = page.items.iter().map(|(n, g)| (*n, g.seq)).collect();
        assert_eq!(seqs, [(1, 1), (2, 2)]);
        assert_eq!(page.items[0].1.reason, GoneReason::EvictedCount);
        // A client's delete wakes the waiters for any message.
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waiter = capture.register(WaitKey::Any, Waker::from(Arc::clone(&woken)));
        capture.delete(&QueueId::new(b"m3").unwrap());
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        capture.cancel(waiter);
        let page = capture.removals_after(2, 10);
        assert_eq!(page.items[0].1.reason, GoneReason::Deleted);
        // m4 alone is kept; m6 and m7 evict m4 and m5: the ring (3) forgets removals 1, 2.
        for n in 5..=7 {
            keep(&capture, n);
        }
        let page = capture.removals_after(0, 10);
        assert_eq!(page.head, 5);
        assert_eq!(page.missed, Some((1, 2)));
        assert_eq!(
            page.items.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(capture.removals_after(4, 1).items.len(), 1);
        assert!(capture.removals_after(5, 10).items.is_empty());
        assert!(capture.removals_after(u64::MAX, 10).items.is_empty());
    }
}
