//! Counters: plain per-worker numbers on the hot path, published for reports.
//!
//! What it does: each worker counts in a plain [`Stats`] (no atomics, no locks while serving)
//! and copies it into its [`SharedStats`] once per event-loop turn; a reporter reads and sums
//! the shared copies.
//!
//! What it does not do: histograms or latency (that is the load generator's job).

use crate::lock::lock;
use crate::proto::reply::ErrorReplies;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A TLS version the server negotiates (rustls with TLS 1.2 and 1.3; RFC 8996 deprecates
/// the ones before): the index of [`SecurityStats::handshakes`]. Typed here, beside the
/// counters, so the metrics and the transport (above) share it without a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    /// Every version, in counter order.
    pub const ALL: [TlsVersion; 2] = [TlsVersion::Tls12, TlsVersion::Tls13];

    /// The name records, trace headers and metrics use (rustls's): `TLSv1.2`, `TLSv1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

/// Why a TLS handshake failed: the index of [`SecurityStats::handshake_failures`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// Not complete within `--tls-handshake-timeout`.
    Timeout,
    /// The client closed the connection during the handshake.
    Closed,
    /// The client sent a fatal alert (it did not like our certificate, say; RFC 8446 §6.2).
    Alert,
    /// No version, suite or extension in common.
    Incompatible,
    /// Bytes that are not TLS (plaintext on an implicit-TLS port, injected bytes).
    Garbage,
}

impl HandshakeFailure {
    /// Every reason, in counter order.
    pub const ALL: [HandshakeFailure; 5] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Closed,
        HandshakeFailure::Alert,
        HandshakeFailure::Incompatible,
        HandshakeFailure::Garbage,
    ];

    /// The name the metrics use (the `reason` label).
    pub fn name(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Alert => "alert",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::Garbage => "garbage",
        }
    }
}

/// Counters about TLS and AUTH, kept apart: they change once per connection, not per
/// message, so they are published under a lock only when they changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SecurityStats {
    /// Handshakes completed, by version ([`TlsVersion`] order) and `[full, resumed]`.
    pub handshakes: [[u64; 2]; TlsVersion::ALL.len()],
    /// Handshakes failed, by reason ([`HandshakeFailure`] order).
    pub handshake_failures: [u64; HandshakeFailure::ALL.len()],
    /// `STARTTLS` commands answered `220`.
    pub starttls: u64,
    /// `STARTTLS` lines with plaintext behind them in the same read, which was discarded
    /// (RFC 3207 §4.2; the CVE-2011-0411 class of injection, or a client that pipelined it).
    pub starttls_discarded: u64,
    /// AUTH attempts accepted (`235`).
    pub auth_successes: u64,
    /// AUTH attempts refused (`535`).
    pub auth_failures: u64,
    /// AUTH attempts not checked because the checkers' queue was full for the client or in
    /// all (`454`).
    pub auth_busy: u64,
    /// AUTH attempts not checked because the client failed too often within the window
    /// (`454`).
    pub auth_limited: u64,
    /// AUTH attempts whose connection closed before the verdict (a client that hung up).
    pub auth_abandoned: u64,
    /// TLS handshakes refused (the connection closed without a byte) because the client
    /// started too many full handshakes within a second.
    pub handshakes_refused: u64,
}

impl SecurityStats {
    /// Counts a completed handshake.
    pub fn handshake_done(&mut self, version: TlsVersion, resumed: bool) {
        self.handshakes[version as usize][usize::from(resumed)] += 1;
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&mut self, why: HandshakeFailure) {
        self.handshake_failures[why as usize] += 1;
    }

    /// Handshakes completed with `version`, `[full, resumed]`.
    pub fn handshakes_of(&self, version: TlsVersion) -> [u64; 2] {
        self.handshakes[version as usize]
    }

    /// Handshakes failed for `why`.
    pub fn failures_of(&self, why: HandshakeFailure) -> u64 {
        self.handshake_failures[why as usize]
    }

    /// Every counter added up (they only grow: a change shows in the sum).
    fn sum(&self) -> u64 {
        let handshakes: u64 = self.handshakes.iter().flatten().sum();
        let failures: u64 = self.handshake_failures.iter().sum();
        handshakes
            + failures
            + self.starttls
            + self.starttls_discarded
            + self.auth_successes
            + self.auth_failures
            + self.auth_busy
            + self.auth_limited
            + self.auth_abandoned
            + self.handshakes_refused
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &SecurityStats) {
        for (mine, theirs) in self.handshakes.iter_mut().zip(&other.handshakes) {
            mine[0] += theirs[0];
            mine[1] += theirs[1];
        }
        for (mine, theirs) in self
            .handshake_failures
            .iter_mut()
            .zip(&other.handshake_failures)
        {
            *mine += theirs;
        }
        self.starttls += other.starttls;
        self.starttls_discarded += other.starttls_discarded;
        self.auth_successes += other.auth_successes;
        self.auth_failures += other.auth_failures;
        self.auth_busy += other.auth_busy;
        self.auth_limited += other.auth_limited;
        self.auth_abandoned += other.auth_abandoned;
        self.handshakes_refused += other.handshakes_refused;
    }
}

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
    /// Every 4xx/5xx reply sessions sent (to commands, at the end of a message, when closing
    /// with `421`), whoever made it: the total of [`Stats::error_replies`]. Connections
    /// refused at accept are [`Stats::refused_connections`] instead.
    pub errors: u64,
    /// The same replies by class and by whether a fault rule made them.
    pub error_replies: ErrorReplies,
    /// Sessions closed by a timeout.
    pub timeouts: u64,
    /// TLS and AUTH.
    pub security: SecurityStats,
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
        self.error_replies.merge(&other.error_replies);
        self.timeouts += other.timeouts;
        self.security.merge(&other.security);
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
    /// [`ErrorReplies::protocol`] then [`ErrorReplies::fault`].
    errors: [AtomicU64; 4],
    timeouts: AtomicU64,
    security: Mutex<SecurityStats>,
    /// The sum of every security counter last published: they only grow, so a different sum
    /// means something changed, and the lock is taken only then.
    security_sum: AtomicU64,
}

impl SharedStats {
    /// Publishes a worker's counters (relaxed stores: each value is independent).
    pub fn publish(&self, stats: &Stats) {
        self.connections.store(stats.connections, Ordering::Relaxed);
        self.refused_connections
            .store(stats.refused_connections, Ordering::Relaxed);
        self.messages.store(stats.messages, Ordering::Relaxed);
        self.bytes.store(stats.bytes, Ordering::Relaxed);
        let errors = stats
            .error_replies
            .protocol
            .iter()
            .chain(&stats.error_replies.fault);
        for (shared, count) in self.errors.iter().zip(errors) {
            shared.store(*count, Ordering::Relaxed);
        }
        self.timeouts.store(stats.timeouts, Ordering::Relaxed);
        let sum = stats.security.sum();
        if sum != self.security_sum.load(Ordering::Relaxed) {
            *lock(&self.security) = stats.security;
            self.security_sum.store(sum, Ordering::Relaxed);
        }
        // Last, with Release: a reader that sees a connection closed (Acquire, loaded first)
        // also sees the counts that closing it produced.
        self.open_connections
            .store(stats.open_connections, Ordering::Release);
    }

    /// The last published counters.
    pub fn snapshot(&self) -> Stats {
        let [p4, p5, f4, f5] = self.errors.each_ref().map(|e| e.load(Ordering::Relaxed));
        let error_replies = ErrorReplies {
            protocol: [p4, p5],
            fault: [f4, f5],
        };
        Stats {
            connections: self.connections.load(Ordering::Relaxed),
            open_connections: self.open_connections.load(Ordering::Acquire),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: error_replies.total(),
            error_replies,
            timeouts: self.timeouts.load(Ordering::Relaxed),
            security: *lock(&self.security),
        }
    }
}
