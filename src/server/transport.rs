//! The transport: the one place every byte of a connection passes through between the
//! socket and the connection's buffers. Plain TCP today.
//!
//! What it does: non-blocking reads and writes ([`Transport::try_read`],
//! [`Transport::try_write`]) with the socket's own `WouldBlock` semantics, registration with
//! the worker's poller, and what a layer may need from the poller ([`Transport::wants_write`]).
//!
//! What it does not do: buffer replies or input (the connection does), interpret a byte of
//! SMTP (`crate::proto` does), or know about time.
//!
//! # Adding a layer (the guide for TLS and the PROXY protocol)
//!
//! The connection ([`super::conn::Conn`]) talks to its transport through five calls:
//! [`Transport::try_read`], [`Transport::try_write`], [`Transport::flush_buffered`] (bytes
//! the layer itself must send, called on every flush, also when no reply is pending),
//! [`Transport::wants_write`] (keep WRITABLE registered for those), and
//! [`Transport::has_buffered_input`] (input the layer read from the socket but has not
//! handed over yet, so a short read does not mean the socket is drained). Plain TCP answers
//! the last three trivially. A layer changes this module and the code that constructs a
//! transport (`worker/accept.rs`), never the worker's loop.
//!
//! * **Implicit TLS (RFC 8314), rustls.** Hold a `rustls::ServerConnection` beside the socket
//!   (boxed: plaintext connections stay small). `try_read`: `read_tls` from the socket until
//!   it would block or a few records are in, `process_new_packets` (an error ends the
//!   connection: return it as an `io::Error`), then copy plaintext out of `reader()`; return
//!   `WouldBlock` while no plaintext is ready (a handshake in progress). `try_write`: write
//!   the plaintext into `writer()` (rustls buffers it) and report it accepted. `flush_buffered`:
//!   `write_tls` to the socket until `wants_write()` is false (`Ok(true)`) or the socket would
//!   block (`Ok(false)`): this is what sends the handshake, tickets and `close_notify`.
//!   `wants_write`: `ServerConnection::wants_write()`. `has_buffered_input`: true when rustls
//!   holds plaintext or the last `read_tls` stopped before `WouldBlock`. The handshake's
//!   deadline is the connection's idle deadline until the session greets.
//! * **STARTTLS (RFC 3207)** starts plain and upgrades in place, so it is not transport-only:
//!   `proto` gains the command, the EHLO keyword and the reset to the state after the
//!   greeting (RFC 3207 §4.2), and the session says "upgrade after this reply" in its
//!   `Progress`; the connection then drops every byte that arrived behind the `STARTTLS` line
//!   (CVE-2011-0411), flushes the `220`, and swaps its transport for the TLS one. The loop
//!   still does not change.
//! * **PROXY protocol (HAProxy v1/v2).** The header comes before any SMTP byte: `try_read`
//!   parses it first (it may arrive in pieces; keep those few bytes here), records the
//!   client address it names, and only then returns payload. The per-client parts
//!   (`FaultGate`, the store's and the log's client address, the per-address count) are built
//!   from the socket's peer address in `worker/accept.rs` today; with PROXY they must be
//!   built from the header's address, so the connection greets (`Session::on_connect`) only
//!   once the transport reports the header read.
//!
//! Per-connection memory: rustls keeps its own buffers per connection; keep the plain path
//! free of them (a `Box` behind an enum variant), so plaintext connections stay small.

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};

/// A connection's byte stream.
#[derive(Debug)]
pub struct Transport {
    /// The socket.
    socket: TcpStream,
}

impl Transport {
    /// A plain TCP transport over an accepted socket. Nagle is turned off: replies are
    /// already batched one write per turn, so Nagle would only add delay.
    pub fn plain(socket: TcpStream) -> Transport {
        let _ = socket.set_nodelay(true);
        Transport { socket }
    }

    /// Reads what is available into `buf`: `Ok(0)` at end of stream, `WouldBlock` when
    /// nothing is available now.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read(buf)
    }

    /// Writes as much of `buf` as the socket takes now; `WouldBlock` when it takes nothing.
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.write(buf)
    }

    /// Sends bytes the transport itself has queued (a TLS layer's records): `Ok(true)` when
    /// none are left. Plain TCP queues nothing.
    pub fn flush_buffered(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    /// Whether the transport has bytes of its own to write (none for plain TCP).
    pub fn wants_write(&self) -> bool {
        false
    }

    /// Whether input was read from the socket but not yet handed over, so a short read does
    /// not mean the socket is drained (never for plain TCP).
    pub fn has_buffered_input(&self) -> bool {
        false
    }

    /// Registers with the worker's poller.
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.register(&mut self.socket, token, interest)
    }

    /// Changes the registered interest.
    pub fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        registry.reregister(&mut self.socket, token, interest)
    }
}
