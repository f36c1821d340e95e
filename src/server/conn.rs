//! One client connection: its socket, its session, and the bytes in flight either way.
//!
//! What it does: read from the socket into the worker's scratch buffer (after the few bytes of
//! an incomplete command line carried over from the last read), hand the bytes to the
//! [`Session`], and write the replies it produced, all of them at once.
//!
//! What it does not do: decide protocol matters (the session does) or keep time (the worker
//! does). Bytes pass straight from socket to session here; TLS or a PROXY-protocol header
//! would wrap `stream` in this module and nowhere else.
//!
//! Memory: a connection owns only `carry` (an incomplete command line, bounded by the line
//! limit; or, while a message is being stored, the rest of one read: at most the scratch
//! buffer) and `out` (borrowed from the worker while replies are built and written, so an
//! idle connection owns no output buffer; kept only while bytes are pending) (replies not yet written, bounded by [`OUT_HIGH_WATER`] plus one read's
//! worth). Both keep their capacity between messages, so the steady state allocates nothing.

use crate::metrics::ReplyCounts;
use crate::proto::session::{Session, SessionConfig};
use crate::store::StoreSink;
use mio::net::TcpStream;
use mio::Interest;
use std::io::{self, Read, Write};
use std::time::Instant;

/// Stop reading while this many reply bytes wait to be written: the client is not reading
/// its replies, so let TCP flow control push back on it instead of buffering more here.
pub const OUT_HIGH_WATER: usize = 64 * 1024;
/// An output buffer that grew past this (a client pipelining far ahead) is shrunk back once
/// drained, so an idle connection does not keep a large allocation.
const OUT_KEEP_CAPACITY: usize = 16 * 1024;

/// What one round of reading produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// The socket has no more data for now.
    Drained,
    /// The per-turn read budget ran out, or replies piled up: more may be waiting.
    MoreLater,
    /// The client closed its side (or the connection failed).
    Closed,
    /// The session waits for a message to be stored; reading resumes when it is.
    Paused,
}

/// A client connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Unique per worker, so stale timer entries for a reused slab key are recognised.
    pub id: u64,
    /// The protocol state.
    pub session: Session,
    /// Where this connection's messages go (one sink per connection).
    pub sink: StoreSink,
    /// An incomplete command line kept from the previous read.
    carry: Vec<u8>,
    /// Replies not yet written.
    out: Vec<u8>,
    /// How much of `out` is already written.
    out_pos: usize,
    /// The interest registered with the poller.
    pub registered: Interest,
    /// Whether the socket may have unread data (set by readable events, cleared when a read
    /// finds nothing more).
    pub read_ready: bool,
    /// The poller said the peer closed its side: read until end of file, do not stop early.
    pub read_closed_hint: bool,
    /// The peer's side is closed (read returned 0) or the connection failed.
    pub eof: bool,
    /// When the worker must next act on this connection (idle timeout or data rate).
    pub deadline: Instant,
    /// The deadline of this connection's authoritative timer entry.
    pub timer_at: Instant,
    /// `session.commands_processed()` when the deadline was last set.
    pub commands_seen: u64,
    /// When a fault delay holding this session's output ends.
    pub held_until: Option<Instant>,
}

impl Conn {
    /// A new connection whose session has already queued its greeting.
    pub fn new(
        stream: TcpStream,
        id: u64,
        config: &SessionConfig,
        deadline: Instant,
        sink: StoreSink,
    ) -> Conn {
        let session = Session::new();
        let mut out = Vec::new();
        session.greeting_into(config, &mut out);
        Conn {
            stream,
            id,
            session,
            sink,
            carry: Vec::new(),
            out,
            out_pos: 0,
            registered: Interest::READABLE,
            read_ready: true,
            read_closed_hint: false,
            eof: false,
            deadline,
            timer_at: deadline,
            commands_seen: 0,
            held_until: None,
        }
    }

    /// A fault rule refuses the connection: `reply` instead of the greeting, then close.
    pub fn refuse_greeting(&mut self, reply: &'static [u8]) {
        self.out.clear();
        self.session
            .on_timeout(reply, &mut self.out, &mut self.sink);
    }

    /// A fault delay is over: held output may go, and kept input is processed.
    pub fn release_hold(&mut self, config: &SessionConfig) {
        self.session.release_hold();
        self.resume(config);
    }

    /// Lends the worker's output buffer (`spare`) to this connection while it has nothing
    /// pending, so replies are built in one warm buffer and an idle connection owns none.
    pub fn borrow_out(&mut self, spare: &mut Vec<u8>) {
        if self.out.is_empty() && self.out.capacity() == 0 {
            std::mem::swap(&mut self.out, spare);
        }
    }

    /// After a flush: once everything is written, the buffer goes back to the worker (or, if
    /// the worker has one already, is freed). Bytes still pending stay with the connection.
    pub fn return_out(&mut self, spare: &mut Vec<u8>) {
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
    pub fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// What to ask the poller for: always readable (to notice data and hang-ups), writable
    /// only while a write came back short (not while a fault delay holds the output).
    pub fn wanted_interest(&self) -> Interest {
        if self.pending_out() > 0 && self.session.held().is_none() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        }
    }

    /// Reads and processes input until the socket is drained, `max_reads` reads were made, or
    /// replies pile up. Returns the status and the number of bytes read.
    pub fn read_and_process(
        &mut self,
        config: &SessionConfig,
        scratch: &mut [u8],
        max_reads: usize,
    ) -> (ReadStatus, u64) {
        let mut total = 0u64;
        for _ in 0..max_reads {
            if self.session.is_awaiting_store() || self.session.held().is_some() {
                // Input behind a message being stored stays in the socket (and in `carry`)
                // until its reply can go out: replies must stay in order (RFC 2920 §3.1).
                return (ReadStatus::Paused, total);
            }
            if self.pending_out() >= OUT_HIGH_WATER {
                return (ReadStatus::MoreLater, total);
            }
            let carried = self.carry.len();
            scratch[..carried].copy_from_slice(&self.carry);
            let room = scratch.len() - carried;
            let n = match self.stream.read(&mut scratch[carried..]) {
                Ok(0) => {
                    self.eof = true;
                    return (ReadStatus::Closed, total);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_ready = false;
                    return (ReadStatus::Drained, total);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.eof = true;
                    return (ReadStatus::Closed, total);
                }
            };
            total += n as u64;
            let input = &scratch[..carried + n];
            let consumed = self
                .session
                .on_input(config, input, &mut self.out, &mut self.sink);
            self.carry.clear();
            self.carry.extend_from_slice(&input[consumed..]);
            if n < room && !self.read_closed_hint {
                // A short read took everything the socket had. With edge-triggered epoll any
                // later arrival raises a new event, so the extra read that would only return
                // WouldBlock is skipped: one read per pipelined batch.
                self.read_ready = false;
                return (ReadStatus::Drained, total);
            }
        }
        (ReadStatus::MoreLater, total)
    }

    /// The storage thread reported on the message this session waits for: its reply goes
    /// out, then the input kept behind it is processed (which may stop at the next stored
    /// message). Reading resumes afterwards.
    pub fn on_store_complete(&mut self, stored: bool, config: &SessionConfig) {
        self.session
            .on_store_complete(stored, &mut self.out, &mut self.sink);
        self.resume(config);
    }

    /// Processes the input kept while the session was paused; reading resumes afterwards.
    fn resume(&mut self, config: &SessionConfig) {
        let kept = std::mem::take(&mut self.carry);
        let consumed = self
            .session
            .on_input(config, &kept, &mut self.out, &mut self.sink);
        self.carry = kept;
        self.carry.drain(..consumed);
        self.read_ready = true;
    }

    /// Writes pending replies until done or the socket is full. `Ok(true)` when all is written.
    /// With `replies`, counts what was sent (for `--metrics`).
    pub fn flush(&mut self, replies: Option<&ReplyCounts>) -> io::Result<bool> {
        // Output a fault delay holds stays until the hold is released.
        let limit = self
            .session
            .held()
            .map_or(self.out.len(), |(from, _)| from.min(self.out.len()));
        while self.out_pos < limit {
            match self.stream.write(&self.out[self.out_pos..limit]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if limit < self.out.len() {
            return Ok(false);
        }
        if let Some(counts) = replies {
            // Everything in `out` is now sent, and `out` is cleared next: each reply is
            // counted exactly once.
            counts.count(&self.out);
        }
        self.out.clear();
        self.out_pos = 0;
        if self.out.capacity() > OUT_KEEP_CAPACITY {
            self.out.shrink_to(OUT_KEEP_CAPACITY);
        }
        Ok(true)
    }

    /// A deadline passed: the session says `reply` (a `421`) and ends.
    pub fn on_timeout(&mut self, reply: &'static [u8]) {
        self.session
            .on_timeout(reply, &mut self.out, &mut self.sink);
    }

    /// The server is shutting down (see [`Session::on_shutdown`]).
    pub fn on_shutdown(&mut self) {
        self.session.on_shutdown(&mut self.out, &mut self.sink);
    }

    /// The connection is being dropped: abandon any message in progress.
    pub fn on_disconnect(&mut self) {
        self.session.on_disconnect(&mut self.sink);
    }
}
