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
//! A layer changes this module and the code that constructs a transport, never `proto` or
//! the worker's loop; the connection sees the same four calls.
//!
//! * **TLS (rustls).** Hold a `rustls::ServerConnection` beside the socket. In `try_read`:
//!   `read_tls` from the socket until it would block (or a bounded number of records),
//!   `process_new_packets` (an error: the handshake or record failed, return an
//!   `io::Error` and the connection closes), then copy plaintext out of `reader()` into
//!   the caller's buffer; return `WouldBlock` when no plaintext is ready yet (a handshake in
//!   progress). In `try_write`: put the plaintext into `writer()`, then `write_tls` to the
//!   socket until it would block; report the plaintext as accepted (rustls buffers it).
//!   `wants_write` returns `ServerConnection::wants_write()`, so the connection asks the
//!   poller for WRITABLE while TLS records are queued even when it has no reply pending.
//!   Implicit TLS (RFC 8314) starts in TLS; STARTTLS (RFC 3207) starts plain and is upgraded
//!   in place once the `220` is flushed, after the connection drops every byte that arrived
//!   behind the `STARTTLS` line (RFC 3207 §4.2, CVE-2011-0411).
//! * **PROXY protocol (HAProxy v1/v2).** Before anything else, read the header from the
//!   socket in `try_read` (it may arrive in pieces; keep the few bytes in the transport),
//!   record the client address it names, and only then return payload bytes.
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

    /// Whether the transport has bytes of its own to write (none for plain TCP).
    pub fn wants_write(&self) -> bool {
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
