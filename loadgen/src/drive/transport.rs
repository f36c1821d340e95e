//! A connection's byte stream: plain TCP, or TLS over it (rustls's `ClientConnection` driven
//! non-blocking), so the engine moves plaintext whatever the connection speaks.
//!
//! What it does: non-blocking reads and writes of plaintext ([`Transport::try_read`],
//! [`Transport::try_write`]) with the socket's own `WouldBlock` semantics; the TLS records the
//! layer itself must send ([`Transport::flush_buffered`], [`Transport::wants_write`]: the
//! handshake, alerts); the switch to TLS on a connected socket ([`Transport::start_tls`]: at
//! connect for implicit TLS, after the `220` to `STARTTLS`); and the news that a handshake
//! completed, once, with whether it resumed ([`Transport::take_handshake_done`]).
//!
//! TLS is driven as rustls's mio examples do: `read_tls` from the socket, `process_new_packets`
//! (an error ends the connection: returned as `InvalidData` with the rustls error inside),
//! plaintext out of `reader()`; plaintext into `writer()`, records out with `write_tls` while
//! `wants_write()`. rustls keeps its own buffers per connection (and allocates a record buffer
//! per write); the plain path carries none of it (a `Box` behind an `Option`).
//!
//! What it does not do: parse a reply, know SMTP, or decide when TLS starts (the client
//! state machine says when; the engine calls [`Transport::start_tls`]).

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// A connection's transport.
#[derive(Debug)]
pub struct Transport {
    /// The socket.
    socket: TcpStream,
    /// The TLS state once TLS started (boxed: plain connections stay small).
    tls: Option<Box<ClientConnection>>,
    /// Whether a handshake is under way (so its end is noticed once).
    handshaking: bool,
    /// A handshake completed and nobody asked yet: `Some(resumed)`.
    handshake_done: Option<bool>,
    /// TLS: the last socket read returned less than rustls asked for, so it took all the
    /// socket had at that moment.
    drained: bool,
}

impl Transport {
    /// A plain transport over a socket (connected or connecting).
    pub fn plain(socket: TcpStream) -> Transport {
        Transport {
            socket,
            tls: None,
            handshaking: false,
            handshake_done: None,
            drained: false,
        }
    }

    /// The socket (to register, or to check a connect).
    pub fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Starts TLS on the connected socket: the `ClientHello` is queued at once (sent by
    /// [`Transport::flush_buffered`]).
    pub fn start_tls(
        &mut self,
        config: &Arc<ClientConfig>,
        name: &ServerName<'static>,
    ) -> Result<(), rustls::Error> {
        let tls = ClientConnection::new(Arc::clone(config), name.clone())?;
        self.tls = Some(Box::new(tls));
        self.handshaking = true;
        Ok(())
    }

    /// Whether the transport speaks TLS (from its start, handshake included).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `Some(resumed)` once, after the handshake completed.
    pub fn take_handshake_done(&mut self) -> Option<bool> {
        self.handshake_done.take()
    }

    /// Reads plaintext into `buf`: `Ok(0)` at the end of the stream, `WouldBlock` when none
    /// is available now (for TLS also while the handshake goes on). A TLS error is an
    /// `InvalidData` error carrying the rustls error.
    ///
    /// TLS, unless `to_the_end`: once rustls holds no more plaintext and the last socket read
    /// came back short (it took all there was), `WouldBlock` comes without the read that
    /// would only say so: mio is edge-triggered, so any later arrival raises a new event (the
    /// engine's plain path skips that read the same way). `to_the_end` (the poller saw the
    /// peer's FIN) reads on until the socket says `WouldBlock` or end of stream, since no
    /// later event would announce the end.
    pub fn try_read(&mut self, buf: &mut [u8], to_the_end: bool) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.socket.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the server closed with close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if std::mem::take(&mut self.drained) && !to_the_end {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut socket = NoteShort {
                socket: &mut self.socket,
                short: &mut self.drained,
            };
            match tls.read_tls(&mut socket) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    if let Err(error) = tls.process_new_packets() {
                        // Tell the server why (an alert), best effort; the caller ends the
                        // connection.
                        let _ = tls.write_tls(&mut self.socket);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                    }
                    if self.handshaking && !tls.is_handshaking() {
                        self.handshaking = false;
                        self.handshake_done =
                            Some(tls.handshake_kind() == Some(HandshakeKind::Resumed));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes as much of `buf` as the transport takes now; `WouldBlock` when it takes none.
    /// TLS takes the plaintext into rustls; [`Transport::flush_buffered`] sends the records.
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

    /// Sends the records rustls holds (handshake, encrypted commands, alerts): `Ok(true)`
    /// when none are left, `Ok(false)` when the socket would block. Plain TCP holds none.
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

    /// Whether the transport has records of its own to send (keep WRITABLE registered).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }
}

/// The socket as rustls reads it, noting whether a read returned less than it asked for.
struct NoteShort<'a> {
    /// The socket.
    socket: &'a mut TcpStream,
    /// Set when the last read was short.
    short: &'a mut bool,
}

impl Read for NoteShort<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        *self.short = n < buf.len();
        Ok(n)
    }
}

/// The rustls error inside an error from [`Transport::try_read`], if it is one.
pub fn tls_error(error: &io::Error) -> Option<&rustls::Error> {
    if error.kind() != io::ErrorKind::InvalidData {
        return None;
    }
    error.get_ref()?.downcast_ref::<rustls::Error>()
}
