//! One outgoing connection of the delivery loop: a non-blocking socket to a next hop, the
//! [`ClientSession`] it drives, the batch of messages it carries, and its deadline.
//!
//! What it does: moves bytes between the socket and the session (reads until `WouldBlock`
//! into [`ClientSession::on_input`], writes what the session and the content leave in its
//! output), notices a non-blocking connect's completion or failure (on the first event: a
//! connect's error is the socket's `SO_ERROR`), and keeps the deadline of what the session
//! waits for. What it does not do: decide anything about messages (the loop, `super::run`,
//! acts on the session's events), or touch the spool.
//!
//! The socket is registered for both readiness kinds once and never re-registered: with
//! edge-triggered events a `WRITABLE` that comes while nothing waits to be written costs one
//! wake-up and no system call, cheaper than a `reregister` per short write (a connection
//! writes whole pipelined groups and bodies, often short on a loopback buffer).
//!
//! Plain TCP only in this increment: the session is configured with `TlsPolicy::Off`, so it
//! never asks for STARTTLS (`--relay-tls` comes later).

use crate::relay::client::session::{ClientSession, Wait};
use crate::relay::spool::SpoolId;
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::Duration;

/// The most octets read from one connection in one turn, for fairness between connections.
pub const MAX_READ_PER_TURN_BYTES: usize = 256 * 1024;

/// The message a connection's session is carrying now.
#[derive(Debug)]
pub struct InFlight {
    /// Its spool id.
    pub id: SpoolId,
    /// The indexes (in its envelope) of the recipients sent, in the order sent: the report's
    /// outcomes come back in this order.
    pub recipients: Vec<usize>,
    /// Its body, read from the spool for this transaction (dropped when it ends).
    pub body: Vec<u8>,
}

/// One connection to a next hop.
#[derive(Debug)]
pub struct Conn {
    /// The next hop's index in the configuration.
    pub hop: usize,
    /// The socket.
    pub stream: TcpStream,
    /// The SMTP client session.
    pub session: ClientSession,
    /// The non-blocking connect completed.
    pub connected: bool,
    /// The session got as far as its first `Ready` (a positive greeting and EHLO): the hop
    /// is healthy, and a failure from here on is the messages', not the hop's.
    pub greeted: bool,
    /// Messages taken for this connection and not started yet.
    pub batch: VecDeque<SpoolId>,
    /// The message being carried.
    pub current: Option<InFlight>,
    /// Octets to write.
    pub out: Vec<u8>,
    /// How much of `out` is written.
    pub written: usize,
    /// Octets read and not yet taken by the session (a partial reply).
    pub input: Vec<u8>,
    /// When the current wait runs out (since the Unix epoch).
    pub deadline: Duration,
    /// The session is over (or the socket failed): reap it.
    pub done: bool,
    /// A write failed (the session was told the connection is gone); nothing more is
    /// written.
    pub write_failed: bool,
}

impl Conn {
    /// A connection being opened to `hop`, with a deadline for the connect.
    pub fn new(
        hop: usize,
        stream: TcpStream,
        session: ClientSession,
        batch: VecDeque<SpoolId>,
        deadline: Duration,
    ) -> Conn {
        Conn {
            hop,
            stream,
            session,
            connected: false,
            greeted: false,
            batch,
            current: None,
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            deadline,
            done: false,
            write_failed: false,
        }
    }

    /// Checks a pending connect after an event: `Ok(true)` once connected, `Ok(false)` still
    /// connecting (a spurious event), `Err` when it failed.
    pub fn check_connected(&mut self) -> io::Result<bool> {
        if self.connected {
            return Ok(true);
        }
        if let Some(error) = self.stream.take_error()? {
            return Err(error);
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.connected = true;
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Reads what the socket has (up to [`MAX_READ_PER_TURN_BYTES`]) and hands it to the
    /// session. Returns whether anything was read; end of file or an error tells the session
    /// the connection is gone.
    pub fn read_into_session(&mut self, scratch: &mut [u8]) -> bool {
        let mut progressed = false;
        let mut total = 0;
        while total < MAX_READ_PER_TURN_BYTES {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.feed();
                    self.session.on_disconnect();
                    return true;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&scratch[..n]);
                    total += n;
                    progressed = true;
                    if n < scratch.len() {
                        // A short read took all the socket had: Linux raises a new
                        // edge-triggered event for every later arrival, so asking again
                        // would only earn `WouldBlock` (one `recvfrom` per reply saved; the
                        // server's plain transport reads the same way, `server::transport`).
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.session.on_disconnect();
                    return true;
                }
            }
        }
        self.feed();
        progressed
    }

    /// Gives the session the octets read; keeps a partial reply for later.
    fn feed(&mut self) {
        if self.input.is_empty() {
            return;
        }
        let used = self.session.on_input(&self.input);
        self.input.drain(..used.min(self.input.len()));
    }

    /// Takes the session's commands and writes what can be written now. Returns whether
    /// anything was written; a failed write tells the session the connection is gone.
    pub fn flush(&mut self) -> bool {
        self.session.commands_into(&mut self.out);
        let mut progressed = false;
        while self.written < self.out.len() && !self.write_failed {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => {
                    self.write_failed = true;
                    self.session.on_disconnect();
                }
                Ok(n) => {
                    self.written += n;
                    progressed = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.write_failed = true;
                    self.session.on_disconnect();
                }
            }
        }
        if self.written == self.out.len() || self.write_failed {
            self.out.clear();
            self.written = 0;
        }
        progressed
    }

    /// Sets the deadline of what the session waits for now, from `now`: the session's RFC
    /// 5321 §4.5.3.2 limit, or `override_limit` for every wait when given (tests).
    pub fn arm(&mut self, now: Duration, override_limit: Option<Duration>) {
        let limit = match self.session.waiting_for() {
            Some(wait) => override_limit.unwrap_or_else(|| wait.limit()),
            // Idle: the loop always gives a ready session a transaction or QUIT; this only
            // bounds a session that says nothing more.
            None => override_limit.unwrap_or_else(|| Wait::Command.limit()),
        };
        self.deadline = now.saturating_add(limit);
    }
}
