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
//! TLS (RFC 3207): when the session says `STARTTLS` got its `220`, [`Conn::start_tls`] puts a
//! rustls `ClientConnection` between the socket and the session; from then on the reads go
//! socket → rustls → session and the writes session → rustls → socket, and the handshake
//! runs inside the same reads and writes (its deadline is the session's
//! [`Wait::Handshake`]). When it completes the session is told
//! ([`ClientSession::on_tls_established`]: `EHLO` again, RFC 3207 §4.2). A handshake or
//! record that fails (a certificate that does not verify, an alert, garbage) ends the session
//! as a lost connection, with the TLS reason kept in [`Conn::failure`] for the loop. The plain
//! path is what it was: one `Option` test per read and per write, no copy.

use crate::relay::client::session::{ClientSession, Wait};
use crate::relay::deliver::tls::describe_error;
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
    /// The session took at least one reply from the next hop (its greeting, say): a reason
    /// the session ends with is then kept with the hop's name (`Remote-MTA`).
    pub replied: bool,
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
    /// TLS after `STARTTLS`: every octet goes through it. `None`: plain TCP.
    pub tls: Option<Box<rustls::ClientConnection>>,
    /// The TLS handshake is under way: the session is told when it completes.
    pub handshaking: bool,
    /// Why the session ended before it was ready, as a recipient's last reply (`4.7.5 ...`
    /// for TLS, the session's reason otherwise); the loop defers with it.
    pub failure: Option<Vec<u8>>,
    /// Transactions whose outcome the session reported on this connection: a connection
    /// that ends in error before any is reported failed as a connection, not a message.
    pub reported: usize,
    /// Transactions started on this connection (bounded by
    /// `DeliveryConfig::messages_per_connection`).
    pub carried: usize,
    /// The session is ready and nothing waits for it: kept open for a message that becomes
    /// ready soon (the loop's connection cache), until its deadline, then `QUIT`.
    pub idle: bool,
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
            replied: false,
            greeted: false,
            batch,
            current: None,
            out: Vec::new(),
            written: 0,
            input: Vec::new(),
            deadline,
            done: false,
            write_failed: false,
            tls: None,
            handshaking: false,
            failure: None,
            reported: 0,
            carried: 0,
            idle: false,
        }
    }

    /// `220` to `STARTTLS` came: from now on the bytes go through `tls`, starting with its
    /// handshake (written by the next [`Conn::flush`]).
    pub fn start_tls(&mut self, tls: rustls::ClientConnection) {
        self.tls = Some(Box::new(tls));
        self.handshaking = true;
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
        if self.tls.is_some() {
            return self.read_tls_into_session(scratch);
        }
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

    /// [`Conn::read_into_session`] through TLS: records from the socket into rustls, the
    /// plaintext into the session; the end of the handshake is told to the session first
    /// (its `EHLO` goes out with the next flush). A TLS error ends the session, its reason
    /// kept in [`Conn::failure`].
    fn read_tls_into_session(&mut self, scratch: &mut [u8]) -> bool {
        let Some(tls) = self.tls.as_mut() else {
            return false;
        };
        let mut progressed = false;
        let mut total = 0;
        let mut closed = false;
        while total < MAX_READ_PER_TURN_BYTES {
            match tls.read_tls(&mut self.stream) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    total += n;
                    progressed = true;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
            if let Err(error) = tls.process_new_packets() {
                let phase = if self.handshaking {
                    "handshake"
                } else {
                    "session"
                };
                self.failure = Some(
                    format!(
                        "4.7.5 TLS {phase} with the next hop failed: {}",
                        describe_error(&error)
                    )
                    .into_bytes(),
                );
                // The alert rustls queued for the next hop, if the socket takes it now.
                let _ = tls.write_tls(&mut self.stream);
                self.session.on_disconnect();
                return true;
            }
            loop {
                match tls.reader().read(scratch) {
                    Ok(0) => {
                        // close_notify: the next hop ended the TLS session.
                        closed = true;
                        break;
                    }
                    Ok(n) => self.input.extend_from_slice(&scratch[..n]),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                break;
            }
        }
        if self.handshaking && !tls.is_handshaking() {
            self.handshaking = false;
            // Ignored when the session ended meanwhile (it then asks for nothing more).
            let _ = self.session.on_tls_established();
            progressed = true;
        }
        self.feed();
        if closed {
            self.session.on_disconnect();
            return true;
        }
        progressed
    }

    /// Gives the session the octets read; keeps a partial reply for later.
    fn feed(&mut self) {
        if self.input.is_empty() {
            return;
        }
        let used = self.session.on_input(&self.input);
        self.replied |= used > 0;
        self.input.drain(..used.min(self.input.len()));
    }

    /// Takes the session's commands and writes what can be written now. Returns whether
    /// anything was written; a failed write tells the session the connection is gone.
    pub fn flush(&mut self) -> bool {
        self.session.commands_into(&mut self.out);
        if self.tls.is_some() {
            return self.flush_tls();
        }
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

    /// [`Conn::flush`] through TLS: the plaintext into rustls (as much as its buffer takes),
    /// its records to the socket, until both are drained or the socket is full.
    fn flush_tls(&mut self) -> bool {
        let Some(tls) = self.tls.as_mut() else {
            return false;
        };
        let mut progressed = false;
        while !self.write_failed {
            while self.written < self.out.len() {
                match tls.writer().write(&self.out[self.written..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.written += n,
                }
            }
            if !tls.wants_write() {
                break;
            }
            match tls.write_tls(&mut self.stream) {
                Ok(0) => {
                    self.write_failed = true;
                    self.session.on_disconnect();
                }
                Ok(_) => progressed = true,
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
