//! A connection's TLS handshake as the worker sees it: its turn among the worker's
//! handshakes (`super::super::handshakes`), the STARTTLS upgrade once the `220` is written,
//! and the session told once the transport reports the handshake finished
//! ([`Resume::TlsStarted`]).
//!
//! What it does not do: run TLS or keep its state (the transport does), or decide about
//! STARTTLS (the session does).

use super::{Blocked, Conn, Driver, ReadSide};
use crate::proto::session::Resume;
use std::io;
use std::time::Instant;

/// A connection's TLS handshake and the worker's turns (see `super::super::handshakes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct HandshakeTurn {
    /// Waiting in the worker's queue for its turn to start.
    pub(super) queued: bool,
    /// Started and counted as in progress (until it completes or the connection closes).
    pub(super) in_progress: bool,
    /// Counted as a full handshake toward the client's rate.
    pub(super) charged: bool,
}

impl Conn {
    /// STARTTLS: the `220` is written; the transport becomes TLS, and the session waits for
    /// the handshake to finish, which must happen within its own deadline.
    pub(super) fn start_tls(&mut self, cx: &mut Driver<'_>, now: Instant) -> io::Result<()> {
        let config = cx
            .tls
            .ok_or_else(|| io::Error::other("STARTTLS without TLS"))?;
        self.transport.start_tls(config)?;
        self.carry.clear();
        self.blocked = Blocked::Handshake;
        self.deadline.start_handshake(now, cx.deadlines);
        cx.stats.security.starttls += 1;
        // Whatever is in the socket now is the client's handshake.
        self.read = ReadSide::Ready;
        Ok(())
    }

    /// Once the transport reports its handshake finished: the session learns what was
    /// negotiated (for records and trace headers; after STARTTLS it starts over, RFC 3207
    /// §4.2), the worker's handshake turn ends, and the client gets the usual idle time again.
    pub(super) fn notice_handshake(&mut self, cx: &mut Driver<'_>, now: Instant) {
        let Some(info) = self.transport.handshake_finished() else {
            return;
        };
        if std::mem::take(&mut self.handshake.in_progress) {
            cx.handshakes.end(self.client.ip());
        }
        if let Some(version) = self.transport.tls_version() {
            cx.stats.security.handshake_done(version, info.resumed);
        }
        self.resume(Resume::TlsStarted(info), cx, now);
        self.deadline.on_input(1, 0, false, now, cx.deadlines);
    }

    /// Whether a connection in its handshake may read now: once started, always; before, only
    /// when the worker granted it a turn (then it starts: counted as in progress). A readable
    /// connection without a turn joins the worker's queue (once).
    pub(super) fn handshake_may_go(&mut self, readable: bool, cx: &mut Driver<'_>) -> bool {
        if self.handshake.in_progress {
            return true;
        }
        if cx.handshakes.is_granted() {
            self.handshake.queued = false;
            self.handshake.in_progress = true;
            cx.handshakes.begin(self.client.ip());
            return true;
        }
        if readable && !self.handshake.queued {
            self.handshake.queued = true;
            cx.handshakes.wait(self.client.ip(), self.token.0, self.id);
        }
        false
    }

    /// The worker refuses this connection's handshake (its client is past the full-handshake
    /// rate): it is closed next without a byte, counted as refused rather than as a failed
    /// handshake.
    pub fn refuse_handshake(&mut self) {
        self.handshake.queued = false;
        self.transport.abandon_handshake();
    }
}
