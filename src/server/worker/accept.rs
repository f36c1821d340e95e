//! Accepting connections: the connection cap, and what happens when accept itself fails.
//!
//! What it does: accept until `WouldBlock`; past `--max-connections` (counted over all
//! workers) or `--max-connections-per-ip` answer `421 4.7.0` and close (before any fault
//! rule at `connect` is asked: a refused connection is not an occurrence of that point);
//! on an implicit-TLS listener close without a byte instead (the client expects a TLS
//! record: a plaintext `421` reads as a broken one, RFC 8314 §3.3 has no refusal before the
//! handshake, and a handshake just to refuse is work for a client we are shedding); either
//! way the refusal is counted. Otherwise build the connection's sink (store or
//! discard, with the session log) and gate (fault rules), open it and greet. When `accept`
//! fails for want of descriptors (EMFILE, ENFILE), the worker's spare descriptor is given up
//! to accept the waiting connection, answer it `421 4.7.0` (or nothing, on a TLS listener)
//! and close it (see
//! `server::descriptors`); for other failures (ENOBUFS) the pending connection stays queued and
//! accepting pauses briefly instead of spinning on it. Failures are reported on stderr at most
//! once every 10 s, with a count.
//!
//! What it does not do: decide anything about a connection once it is open (the connection
//! and its session do, fault rules at `connect` included).

use super::{driver, Worker};
use crate::fault::FaultGate;
use crate::proto::reply;
use crate::server::conn::{Conn, Driver};
use crate::server::transport::Transport;
use crate::store::StoreSink;
use crate::txlog::Logged;
use crate::wake::Notify;
use mio::net::TcpStream;
use mio::Token;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After an accept error that the spare descriptor cannot answer (ENOBUFS, or no spare),
/// wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Accept failures are reported at most this often.
const ACCEPT_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Whether `accept` failed because the process (EMFILE) or the system (ENFILE) has no
/// descriptor left.
fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Worker {
    /// Accepts every pending connection on listener `index`.
    pub(super) fn accept_all(&mut self, index: usize, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.on_accept(stream, peer, index, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) if is_out_of_descriptors(&e) && self.spare.release() => {
                    // The connection waiting is accepted on the spare descriptor, told why,
                    // and closed; then the spare is taken back.
                    let answered = self.refuse_for_descriptors(index);
                    self.spare.restore();
                    self.report_accept_error(&e, now);
                    if !answered {
                        // Another thread took the descriptor: do not spin on it.
                        self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                        return;
                    }
                }
                Err(e) => {
                    // ENOBUFS, ENOMEM, or out of descriptors with no spare: the pending
                    // connection stays queued; try again shortly instead of spinning on it.
                    self.report_accept_error(&e, now);
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Accepts one connection from listener `index` (the spare descriptor was just given
    /// up for it), says `421 4.7.0` and closes it.
    /// Returns whether a connection was accepted and answered.
    fn refuse_for_descriptors(&mut self, index: usize) -> bool {
        let Some(listener) = self.listeners.get(index) else {
            return false;
        };
        match listener.accept() {
            Ok((stream, _)) => {
                self.refuse(&stream, index, reply::TOO_MANY_CONNECTIONS);
                true
            }
            Err(_) => false,
        }
    }

    /// Says on stderr that accepting failed, at most once per [`ACCEPT_REPORT_EVERY`] with a
    /// count of the failures in between, so a flood does not flood the log too.
    fn report_accept_error(&mut self, error: &io::Error, now: Instant) {
        self.accept_errors.0 += 1;
        if self
            .accept_errors
            .1
            .is_some_and(|last| now < last + ACCEPT_REPORT_EVERY)
        {
            return;
        }
        crate::warn_line!(
            "fastsmtpd: worker {}: accept failed: {error} ({} time(s) since the last report); connections meanwhile get 421 4.7.0 or wait",
            self.index, self.accept_errors.0
        );
        self.accept_errors = (0, Some(now));
    }

    /// Accepting was paused after an error: once the pause is over, accept what waits.
    pub(super) fn resume_accepting(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|until| now >= until) {
            self.accept_paused_until = None;
            for i in 0..self.listeners.len() {
                self.accept_all(i, now);
            }
        }
    }

    /// Whether listener `index` speaks implicit TLS.
    fn is_tls_listener(&self, index: usize) -> bool {
        self.links.tls.is_some() && index >= self.links.first_tls_listener
    }

    /// Refuses a connection accepted from listener `index`: `reply` (a `421`) on a plaintext
    /// listener, nothing on an implicit-TLS one (see the module docs); counted either way.
    /// The caller drops the stream, which closes it.
    fn refuse(&mut self, stream: &TcpStream, index: usize, reply: &[u8]) {
        self.lent.stats.refused_connections += 1;
        if !self.is_tls_listener(index) {
            // Best effort: a fresh socket's send buffer takes the short reply at once.
            let _ = (&*stream).write(reply);
        }
    }

    fn on_accept(&mut self, stream: TcpStream, peer: SocketAddr, listener: usize, now: Instant) {
        let open = self.links.open_connections.fetch_add(1, Ordering::Relaxed);
        if open >= self.links.max_connections {
            self.links.open_connections.fetch_sub(1, Ordering::Relaxed);
            self.refuse(&stream, listener, reply::TOO_MANY_CONNECTIONS);
            return;
        }
        if !self.links.per_client.try_open(peer.ip()) {
            self.links.open_connections.fetch_sub(1, Ordering::Relaxed);
            self.refuse(&stream, listener, reply::TOO_MANY_CONNECTIONS_FROM_ADDRESS);
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut store = match &self.links.store {
            None => StoreSink::discard(),
            Some(hub) => {
                let notify = Notify {
                    mailbox: Arc::clone(&self.links.mailbox),
                    key,
                    id,
                };
                let relays = self
                    .links
                    .relay_listeners
                    .as_ref()
                    .is_none_or(|chosen| chosen.get(listener).copied().unwrap_or(false));
                StoreSink::storing(hub, notify, peer, relays)
            }
        };
        if let Some(capture) = &self.links.capture {
            let max_size = self.links.session_config.max_message_size;
            store = store.capturing(capture, peer, max_size);
        }
        let sink = Logged::new(store, self.links.txlog.as_deref(), peer);
        let gate = self
            .links
            .faults
            .as_ref()
            .map(|plans| Box::new(FaultGate::new(Arc::clone(plans), peer.ip())));
        let mut cx: Driver<'_> = driver!(self);
        let tls = self
            .links
            .tls
            .as_ref()
            .filter(|_| listener >= self.links.first_tls_listener);
        let transport = match tls {
            None => Transport::plain(stream),
            Some(config) => match Transport::tls(stream, config) {
                Ok(transport) => transport,
                Err(_) => {
                    self.links.open_connections.fetch_sub(1, Ordering::Relaxed);
                    self.links.per_client.close(peer.ip());
                    return;
                }
            },
        };
        let Ok(conn) = Conn::open(transport, peer, Token(key), id, sink, gate, &mut cx, now) else {
            self.links.open_connections.fetch_sub(1, Ordering::Relaxed);
            self.links.per_client.close(peer.ip());
            return;
        };
        entry.insert(conn);
        self.lent.stats.connections += 1;
        self.lent.stats.open_connections += 1;
        self.drive(key, now);
    }
}
