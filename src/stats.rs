//! Counters: plain per-worker numbers on the hot path, published for reports.
//!
//! What it does: each worker counts in a plain [`Stats`] (no atomics, no locks while serving)
//! and copies it into its [`SharedStats`] once per event-loop turn; a reporter reads and sums
//! the shared copies.
//!
//! What it does not do: histograms or latency (that is the load generator's job).

use std::sync::atomic::{AtomicU64, Ordering};

/// A worker's counters, or the sum over workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted and served.
    pub connections: u64,
    /// Connections open right now.
    pub open_connections: u64,
    /// Connections refused with `421` because the connection limit was reached.
    pub refused_connections: u64,
    /// Messages accepted with `250`.
    pub messages: u64,
    /// Content octets of accepted messages.
    pub bytes: u64,
    /// Failed commands (4xx/5xx replies to commands) in closed sessions.
    pub errors: u64,
    /// Sessions closed by a timeout.
    pub timeouts: u64,
}

impl Stats {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.connections += other.connections;
        self.open_connections += other.open_connections;
        self.refused_connections += other.refused_connections;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
    }

    /// Sums a set of worker counters.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Stats>) -> Stats {
        let mut total = Stats::default();
        for stats in all {
            total.merge(stats);
        }
        total
    }
}

/// A worker's published counters, readable from other threads.
#[derive(Debug, Default)]
pub struct SharedStats {
    connections: AtomicU64,
    open_connections: AtomicU64,
    refused_connections: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
}

impl SharedStats {
    /// Publishes a worker's counters (relaxed stores: each value is independent).
    pub fn publish(&self, stats: &Stats) {
        self.connections.store(stats.connections, Ordering::Relaxed);
        self.refused_connections
            .store(stats.refused_connections, Ordering::Relaxed);
        self.messages.store(stats.messages, Ordering::Relaxed);
        self.bytes.store(stats.bytes, Ordering::Relaxed);
        self.errors.store(stats.errors, Ordering::Relaxed);
        self.timeouts.store(stats.timeouts, Ordering::Relaxed);
        // Last, with Release: a reader that sees a connection closed (Acquire, loaded first)
        // also sees the counts that closing it produced.
        self.open_connections
            .store(stats.open_connections, Ordering::Release);
    }

    /// The last published counters.
    pub fn snapshot(&self) -> Stats {
        Stats {
            connections: self.connections.load(Ordering::Relaxed),
            open_connections: self.open_connections.load(Ordering::Acquire),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}
