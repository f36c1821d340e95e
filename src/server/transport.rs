//! The transport: the one place every byte of a connection passes through between the
//! socket and the connection's buffers: plain TCP, or TLS (rustls) for implicit-TLS listeners.
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
//! the last three trivially. TLS (implicit, RFC 8314) is built this way already: see
//! [`Transport::tls`]. A layer changes this module and the code that constructs a
//! transport (`worker/accept.rs`), never the worker's loop.
//!
//! * **Implicit TLS (RFC 8314), rustls** (built, as follows). Hold a `rustls::ServerConnection` beside the socket
//!   (boxed: plaintext connections stay small). `try_read`: `read_tls` from the socket until
//!   it would block or a few records are in, `process_new_packets` (an error ends the
//!   connection: return it as an `io::Error`), then copy plaintext out of `reader()`; return
//!   `WouldBlock` while no plaintext is ready (a handshake in progress). `try_write`: write
//!   the plaintext into `writer()` (rustls buffers it) and report it accepted. `flush_buffered`:
//!   `write_tls` to the socket until `wants_write()` is false (`Ok(true)`) or the socket would
//!   block (`Ok(false)`): this is what sends the handshake, tickets and `close_notify`.
//!   `wants_write`: `ServerConnection::wants_write()`. `has_buffered_input`: true when rustls
//!   holds plaintext or the last `read_tls` stopped before `WouldBlock`. The handshake has
//!   its own deadline (`--tls-handshake-timeout`, `ConnDeadline::start_handshake`).
//! * **STARTTLS (RFC 3207)** (built): the connection starts plain and upgrades in place. It is
//!   not transport-only: `proto` has the command, the EHLO keyword and the reset to the state
//!   after the greeting (`Resume::TlsStarted`), and answers `220` by going into a mode
//!   that consumes (discards) every byte behind the `STARTTLS` line (CVE-2011-0411). The
//!   connection stops reading, flushes the `220` in plaintext, then calls
//!   [`Transport::start_tls`]: from there on every byte read is TLS. The loop did not change.
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

use crate::proto::envelope::TlsInfo;
use crate::stats::{HandshakeFailure, TlsVersion};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// A connection's byte stream: plain TCP, or TLS over it (implicit TLS, RFC 8314, or after
/// STARTTLS, RFC 3207).
#[derive(Debug)]
pub struct Transport {
    /// The socket.
    socket: TcpStream,
    /// The TLS state, for a connection that speaks TLS (boxed: plain connections stay small).
    tls: Option<Box<rustls::ServerConnection>>,
    /// Why TLS failed, once it has.
    tls_failure: Option<HandshakeFailure>,
    /// Where the TLS handshake stands.
    handshake: Handshake,
    /// For TLS: whether input may be waiting that a short `try_read` does not show (see
    /// [`Transport::has_buffered_input`]). Set by every TLS `try_read` that returns bytes.
    tls_input_left: bool,
}

/// Where a transport's TLS handshake stands: the transport owns it, and reports a finished
/// handshake once ([`Transport::handshake_finished`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// None under way: plain TCP, or a finished (or abandoned) handshake.
    None,
    /// Under way (implicit TLS from accept, or after STARTTLS), or finished and not yet
    /// reported.
    Running,
}

impl Transport {
    /// A plain TCP transport over an accepted socket. Nagle is turned off: replies are
    /// already batched one write per turn, so Nagle would only add delay.
    pub fn plain(socket: TcpStream) -> Transport {
        let _ = socket.set_nodelay(true);
        Transport {
            socket,
            tls: None,
            tls_failure: None,
            handshake: Handshake::None,
            tls_input_left: false,
        }
    }

    /// A TLS transport over an accepted socket: the handshake starts with the client's first
    /// bytes; replies written before it completes wait inside rustls.
    pub fn tls(socket: TcpStream, config: &Arc<rustls::ServerConfig>) -> io::Result<Transport> {
        let _ = socket.set_nodelay(true);
        let tls = rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        Ok(Transport {
            socket,
            tls: Some(Box::new(tls)),
            tls_failure: None,
            handshake: Handshake::Running,
            tls_input_left: true,
        })
    }

    /// STARTTLS (RFC 3207): the plain connection becomes a TLS one, in place. The caller has
    /// written every plaintext reply (the `220` last) and discarded any plaintext input; from
    /// here on every byte read is TLS.
    pub fn start_tls(&mut self, config: &Arc<rustls::ServerConfig>) -> io::Result<()> {
        debug_assert!(self.tls.is_none(), "STARTTLS on a TLS transport");
        let tls = rustls::ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        self.tls = Some(Box::new(tls));
        self.handshake = Handshake::Running;
        self.tls_input_left = true;
        Ok(())
    }

    /// Whether the handshake under way (or done) is a full one: the server signed (rustls
    /// knows once it has answered the ClientHello). A resumed one is not.
    pub fn is_full_handshake(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| {
            matches!(
                tls.handshake_kind(),
                Some(
                    rustls::HandshakeKind::Full | rustls::HandshakeKind::FullWithHelloRetryRequest
                )
            )
        })
    }

    /// Whether a TLS handshake is under way (or finished, and not reported yet by
    /// [`Transport::handshake_finished`]).
    #[inline]
    pub fn in_handshake(&self) -> bool {
        self.handshake == Handshake::Running
    }

    /// The handshake under way finished: what was negotiated. `Some` once per handshake, at
    /// the first call after it finished.
    pub fn handshake_finished(&mut self) -> Option<TlsInfo> {
        if self.handshake != Handshake::Running
            || self.tls.as_ref().is_none_or(|tls| tls.is_handshaking())
        {
            return None;
        }
        self.handshake = Handshake::None;
        self.tls_info()
    }

    /// The connection gives up on the handshake under way (refused, or timed out, and counted
    /// so): it is no longer reported as under way.
    pub fn abandon_handshake(&mut self) {
        self.handshake = Handshake::None;
    }

    /// The negotiated version, once the handshake is complete.
    pub fn tls_version(&self) -> Option<TlsVersion> {
        let tls = self.tls.as_ref().filter(|tls| !tls.is_handshaking())?;
        match tls.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            rustls::ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            _ => None,
        }
    }

    /// The negotiated session, once the handshake is complete.
    fn tls_info(&self) -> Option<TlsInfo> {
        let tls = self.tls.as_ref().filter(|tls| !tls.is_handshaking())?;
        let version = self.tls_version().map_or("TLS", TlsVersion::name);
        let cipher = tls
            .negotiated_cipher_suite()?
            .suite()
            .as_str()
            .unwrap_or("unknown");
        let cipher = iana_cipher_name(cipher);
        Some(TlsInfo {
            version,
            cipher,
            sni: tls.server_name().map(Box::from),
            resumed: matches!(tls.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
        })
    }

    /// Why TLS failed, if it did.
    pub fn tls_failure(&self) -> Option<HandshakeFailure> {
        self.tls_failure
    }

    /// Reads what is available into `buf`: `Ok(0)` at end of stream, `WouldBlock` when
    /// nothing is available now (for TLS: no plaintext yet, e.g. during the handshake).
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.socket.read(buf);
        };
        // Whether the socket may hold more: rustls reads it in pieces of at most 4 KiB, and a
        // piece that came back short took all the socket had (as a short plain read does).
        let mut socket = ShortReads {
            socket: &mut self.socket,
            short: !self.tls_input_left,
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => {
                    // 0: the client closed with close_notify. A full `buf` may have left
                    // plaintext inside rustls.
                    self.tls_input_left = n == buf.len() || !socket.short;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut socket) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    if let Err(error) = tls.process_new_packets() {
                        // Tell the client why (an alert), best effort, then end the connection.
                        let _ = tls.write_tls(socket.socket);
                        self.tls_failure = Some(failure_reason(&error));
                        return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes as much of `buf` as the transport takes now; `WouldBlock` when it takes nothing.
    /// For TLS the plaintext is taken by rustls and sent by [`Transport::flush_buffered`].
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.socket.write(buf);
        };
        let taken = tls.writer().write(buf)?;
        if taken > 0 || buf.is_empty() {
            return Ok(taken);
        }
        // rustls's buffer is full: send records first, then try again.
        if !self.flush_buffered()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let tls = self.tls.as_mut().expect("a TLS transport");
        match tls.writer().write(buf)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            taken => Ok(taken),
        }
    }

    /// Sends bytes the transport itself has queued (TLS records: the handshake, encrypted
    /// replies, alerts): `Ok(true)` when none are left. Plain TCP queues nothing.
    pub fn flush_buffered(&mut self) -> io::Result<bool> {
        let Some(tls) = &mut self.tls else {
            return Ok(true);
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether the transport has bytes of its own to write (TLS records waiting).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Whether input may be waiting that a short read does not show, so the connection reads
    /// on until `WouldBlock` instead of taking a short read as "drained". Never for plain TCP.
    /// For TLS: when the last read filled the caller's buffer (rustls may hold more
    /// plaintext), or rustls's last read of the socket filled the piece it asked for (the
    /// socket may hold more). Otherwise the socket was drained, and with edge-triggered epoll
    /// a later arrival raises a new event: the read that would only return `WouldBlock` (one
    /// system call per pipelined batch, a third of TLS's extra cost in W1) is skipped.
    pub fn has_buffered_input(&self) -> bool {
        self.tls.is_some() && self.tls_input_left
    }

    /// Whether the connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
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

/// The socket as rustls reads it (`read_tls`), noting whether the last read came back short,
/// that is, took everything the socket had.
struct ShortReads<'a> {
    /// The connection's socket.
    socket: &'a mut TcpStream,
    /// The last read returned less than it was offered room for.
    short: bool,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// The IANA names of the TLS 1.3 suites (RFC 8446 §B.4) rustls may negotiate.
const IANA_TLS13_NAMES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The IANA name of a suite rustls names `name`: rustls calls TLS 1.3 suites `TLS13_...`,
/// the IANA registry (and OpenSSL, and other MTAs' trace headers) `TLS_AES_128_GCM_SHA256`.
/// TLS 1.2 names agree already.
fn iana_cipher_name(name: &'static str) -> &'static str {
    match name.strip_prefix("TLS13_") {
        Some(rest) => IANA_TLS13_NAMES
            .iter()
            .find(|iana| iana.strip_prefix("TLS_") == Some(rest))
            .copied()
            .unwrap_or(name),
        None => name,
    }
}

/// Sorts a rustls error into a [`HandshakeFailure`] (`Closed` and `Timeout` are the
/// connection's to tell).
fn failure_reason(error: &rustls::Error) -> HandshakeFailure {
    use rustls::Error;
    match error {
        Error::AlertReceived(_) => HandshakeFailure::Alert,
        Error::PeerIncompatible(_) | Error::NoCertificatesPresented => {
            HandshakeFailure::Incompatible
        }
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. }
        | Error::PeerMisbehaved(_)
        | Error::DecryptError => HandshakeFailure::Garbage,
        _ => HandshakeFailure::Incompatible,
    }
}

#[cfg(test)]
mod tests {
    use super::iana_cipher_name;

    #[test]
    fn cipher_names_are_the_iana_ones() {
        assert_eq!(
            iana_cipher_name("TLS13_AES_128_GCM_SHA256"),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_cipher_name("TLS13_CHACHA20_POLY1305_SHA256"),
            "TLS_CHACHA20_POLY1305_SHA256"
        );
        assert_eq!(
            iana_cipher_name("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_cipher_name("TLS13_SOMETHING_NEW"),
            "TLS13_SOMETHING_NEW"
        );
    }
}
