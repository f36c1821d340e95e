//! A connection's output: the reply buffer lent by the worker while replies are pending,
//! written as far as the transport takes it and no further than a pause allows.
//!
//! What it does not do: build replies (the session does) or decide when to write (the
//! connection's entry points do).

use super::{Conn, MAX_DRAIN_READS, OUT_HIGH_WATER, OUT_KEEP_CAPACITY};
use mio::Interest;
use std::io;

impl Conn {
    /// The end of the output budget, as an offset in `out`. Replies already written are
    /// dropped from the front first (only after a short write), so the buffer's capacity
    /// stays near the budget.
    pub(super) fn output_budget(&mut self) -> usize {
        if self.out_pos > 0 && self.held_from.is_none() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        self.out_pos + OUT_HIGH_WATER
    }

    /// Lends the worker's output buffer (`spare`) to this connection while it has nothing
    /// pending, so replies are built in one warm buffer and an idle connection owns none.
    pub(super) fn borrow_out(&mut self, spare: &mut Vec<u8>) {
        if self.out.is_empty() && self.out.capacity() == 0 {
            std::mem::swap(&mut self.out, spare);
        }
    }

    /// After a flush: once everything is written, the buffer goes back to the worker (or, if
    /// the worker has one already, is freed). Bytes still pending stay with the connection.
    pub(super) fn return_out(&mut self, spare: &mut Vec<u8>) {
        if !self.out.is_empty() {
            return;
        }
        if spare.capacity() == 0 {
            std::mem::swap(&mut self.out, spare);
        } else if self.out.capacity() > 0 {
            self.out = Vec::new();
        }
    }

    /// Reply bytes waiting to be written.
    pub(super) fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// The end of what may be written now: everything, or up to a pause.
    pub(super) fn write_limit(&self) -> usize {
        self.held_from
            .map_or(self.out.len(), |from| from.min(self.out.len()))
    }

    /// What to ask the poller for: always readable (to notice data and hang-ups), writable
    /// only while a write came back short (or the transport has bytes of its own to send).
    pub(super) fn wanted_interest(&self) -> Interest {
        if self.write_limit() > self.out_pos || self.transport.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Writes pending replies until done, a pause, or the transport is full. `Ok(true)` when
    /// all is written.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        let limit = self.write_limit();
        while self.out_pos < limit {
            match self.transport.try_write(&self.out[self.out_pos..limit]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.transport.flush_buffered()? || limit < self.out.len() {
            return Ok(false);
        }
        // Everything before the pause point (if any) is written. A pause that began at the end
        // of the buffer still holds what comes next: its point moves to the new start.
        if let Some(from) = &mut self.held_from {
            *from = from.saturating_sub(self.out.len());
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > OUT_KEEP_CAPACITY {
            self.out.shrink_to(OUT_KEEP_CAPACITY);
        }
        Ok(true)
    }

    /// Reads and drops what the client still sent, so that closing does not reset the
    /// connection (and destroy the final reply in flight).
    pub(super) fn drain_input(&mut self, scratch: &mut [u8]) {
        for _ in 0..MAX_DRAIN_READS {
            match self.transport.try_read(scratch) {
                Ok(n) if n == scratch.len() => {}
                _ => return,
            }
        }
    }
}
