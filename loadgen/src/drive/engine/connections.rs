//! A connection's life: opened, connected, set up or not, closed, replaced.
//!
//! What it does: open the pending connections that are due and still needed (each to the next
//! `--target` in turn, from the next `--source` address in turn, bound with socket2 before
//! the non-blocking connect), complete a connect when its socket turns writable (timing it,
//! starting TLS for implicit TLS, making its client), close a connection (cleanly after
//! `QUIT`, or with an error counted and described) and schedule its replacement, and give up
//! the set-ups the end of the work leaves hanging.
//!
//! Connections asked for: each of the thread's connections is a slot in the run's
//! [`SlotAccount`](crate::drive::slots::SlotAccount) (shared by the threads): a connection
//! moves it to alive or down as sessions are set up, fail, take too long to set up, or
//! close cleanly, and the connections that never got ready are counted by reason (see
//! `slots`). A thread gives up when its first connections all fail before getting ready
//! (refused, TLS or AUTH failing, ...): a run against a server that never lets a session
//! through ends and says why instead of retrying for ever.
//!
//! What it does not do: read or write a connection's bytes (`wire`) or decide when a
//! message starts (`schedule`).

use super::{capacity, lock, Conn, Deadline, Engine};
use crate::drive::client::{Client, Stage};
use crate::drive::output::Output;
use crate::drive::record::{record, ErrorKind};
use crate::drive::slots::{Slot, SETUP_GRACE};
use crate::drive::transport::Transport;
use crate::drive::workload::Security;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Wait before reconnecting after a failed connect.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Connects started in one turn of the loop at most. Between turns the loop polls, so a
/// connect's completion is seen (and timed) soon after it happens, not after the thread
/// has issued every other connect of a large `-c` (which would time the generator).
const CONNECTS_PER_TURN: usize = 16;

impl Engine {
    /// Moves one slot from `from` to `to` in the run's account.
    fn slot_change(&self, now: Instant, from: Slot, to: Slot) {
        if from != to {
            lock(&self.slots).change(now, from, to);
        }
    }

    /// A slot (in state `slot`) that no connection will fill any more: retired once the
    /// work is done or covered; down for good when the thread gave up (the connections
    /// asked for never came).
    fn release_slot(&self, now: Instant, slot: Slot) {
        let to = if self.gave_up() {
            Slot::Down
        } else {
            Slot::Retired
        };
        self.slot_change(now, slot, to);
    }

    /// Whether one more connection has work to do: with a message quota and a per-connection
    /// limit, the connections open or pending may already cover every message left, and a
    /// new one would only greet and QUIT (and inflate the server's connection count).
    fn connection_needed(&self, now: Instant) -> bool {
        if !self.work_left(now) {
            return false;
        }
        let per_conn = self.workload.msgs_per_conn;
        let Some(quota) = self.plan.messages else {
            return true;
        };
        if per_conn == 0 {
            return true;
        }
        let remaining = quota.saturating_sub(self.started);
        debug_assert_eq!(
            self.open_capacity,
            self.conns
                .iter()
                .map(|(_, conn)| capacity(conn, per_conn))
                .sum::<u64>(),
            "the open connections' capacity counter"
        );
        let pending_capacity = self.pending_connects.len() as u64 * per_conn;
        remaining > self.open_capacity + pending_capacity
    }

    /// Opens the pending connections that are due, if still needed (drops them when not),
    /// at most [`CONNECTS_PER_TURN`] (the rest stay due: the loop comes back at once).
    /// A slot's first connection makes it alive (within [`SETUP_GRACE`]).
    pub(super) fn open_due_connections(&mut self, now: Instant) {
        let mut i = 0;
        let mut opened = 0;
        while i < self.pending_connects.len() {
            if opened == CONNECTS_PER_TURN {
                break;
            }
            let (at, slot) = self.pending_connects[i];
            if at <= now || !self.work_left(now) {
                self.pending_connects.swap_remove(i);
                // Asked with this connect no longer pending (it counts among the pending).
                if self.connection_needed(now) {
                    opened += 1;
                    let slot = if slot == Slot::New {
                        self.slot_change(now, Slot::New, Slot::Alive);
                        Slot::Alive
                    } else {
                        slot
                    };
                    self.connect(now, slot);
                } else {
                    self.release_slot(now, slot);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Starts a non-blocking connect to the next target from the next source address and
    /// registers the socket, for a slot in state `slot`; a failure is retried later. The
    /// connect is timed from its own start (the clock read here), not from the loop turn's
    /// `now` shared by every connect of the turn.
    fn connect(&mut self, now: Instant, slot: Slot) {
        let started = Instant::now().max(now);
        let turn = self.connects;
        self.connects += 1;
        let target = turn % self.plan.targets.len();
        let source = match self.plan.sources.len() {
            0 => None,
            n => Some(self.plan.sources[turn % n]),
        };
        match open_socket(self.plan.targets[target].addr, source) {
            Ok(mut stream) => {
                let entry = self.conns.vacant_entry();
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut stream, Token(entry.key()), interest)
                    .is_err()
                {
                    self.count_error(ErrorKind::Refused, target);
                    self.recorder.not_ready("connect failed".into());
                    self.slot_change(now, slot, Slot::Down);
                    self.pending_connects
                        .push((now + RECONNECT_BACKOFF, Slot::Down));
                    return;
                }
                let key = entry.key();
                let id = turn as u64;
                entry.insert(Conn {
                    id,
                    to_flush: false,
                    to_serve: false,
                    queued: false,
                    transport: Transport::plain(stream),
                    client: None,
                    target,
                    connect_started: started,
                    out: Output::with_capacity(4096),
                    staging: Vec::new(),
                    staging_pos: 0,
                    body: None,
                    input: Vec::with_capacity(4096),
                    last_progress: started,
                    interest,
                    slot,
                    ready: false,
                });
                self.open_capacity += self.workload.msgs_per_conn;
                self.unready += 1;
                self.push_deadline(
                    started.checked_add(self.plan.reply_timeout),
                    Deadline::Reply,
                    key,
                    id,
                );
                self.push_deadline(started.checked_add(SETUP_GRACE), Deadline::Setup, key, id);
            }
            Err(e) => {
                if let Some(source) = source {
                    // Binding can fail at run time (the address's ports are all in use).
                    self.recorder
                        .note(format!("connect from {}: {e}", source.ip()));
                }
                self.connect_failed(now, target, slot);
            }
        }
    }

    /// Counts a failed connect to `target` (its slot, in state `slot`, is down) and
    /// schedules another after the backoff.
    fn connect_failed(&mut self, now: Instant, target: usize, slot: Slot) {
        self.count_error(ErrorKind::Refused, target);
        self.recorder.not_ready("connect failed".into());
        self.setup_failures += 1;
        self.slot_change(now, slot, Slot::Down);
        self.pending_connects
            .push((now + RECONNECT_BACKOFF, Slot::Down));
    }

    /// Counts an error of `kind` with `target` (and in its own figures when there are
    /// several targets).
    fn count_error(&mut self, kind: ErrorKind, target: usize) {
        self.recorder.error(kind);
        if self.plan.targets.len() > 1 {
            self.recorder.target(target).errors += 1;
        }
    }

    /// Handles readiness of connection `key`: completes a pending connect (timing it,
    /// starting TLS for implicit TLS, and creating its client), then reads.
    pub(super) fn on_event(&mut self, key: usize, peer_closed: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.client.is_none() {
            // A connect completes when the socket turns writable without an error.
            let socket = conn.transport.socket();
            match socket.take_error() {
                Ok(None) => {}
                _ => return self.drop_conn(key, Some(ErrorKind::Refused), now),
            }
            match socket.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.drop_conn(key, Some(ErrorKind::Refused), now),
            }
            let _ = socket.set_nodelay(true);
            let nanos = now
                .saturating_duration_since(conn.connect_started)
                .as_nanos() as u64;
            record(&mut self.recorder.stages[Stage::Connect.index()], nanos);
            conn.client = Some(Client::new(&self.workload, conn.connect_started, now));
            conn.last_progress = now;
            if self.workload.security == Security::Implicit && !self.start_tls(key, now) {
                return;
            }
        }
        self.read(key, peer_closed, now);
    }

    /// Once no work is left, closes the connections whose session has been setting up
    /// (connecting, or awaiting the greeting, EHLO, TLS or AUTH) for longer than
    /// [`SETUP_GRACE`]: no message can go out on them any more, and a server that never
    /// answers them would otherwise hold the run's end for up to `--timeout`. Each counts
    /// as never ready ("awaiting greeting at the run's end"). Younger set-ups (a reconnect
    /// for `--msgs-per-conn` just before the end) are left to finish with QUIT.
    pub(super) fn abandon_setups(&mut self, now: Instant) {
        if self.unready == 0 {
            return;
        }
        let mut keys = std::mem::take(&mut self.working);
        keys.extend(
            self.conns
                .iter()
                .filter(|(_, conn)| {
                    !conn.client.as_ref().is_some_and(Client::was_ready)
                        && now >= conn.connect_started + SETUP_GRACE
                })
                .map(|(key, conn)| (key, conn.id)),
        );
        for &(key, _) in &keys {
            let conn = self.remove_conn(key);
            let awaiting = conn.client.as_ref().map_or("connect", |client| {
                client.awaiting().map_or("nothing", |s| s.name())
            });
            self.recorder
                .not_ready(format!("awaiting {awaiting} at the run's end"));
            self.release_slot(now, conn.slot);
        }
        keys.clear();
        self.working = keys;
    }

    /// Takes connection `key` out of the slab, and out of the counters.
    fn remove_conn(&mut self, key: usize) -> Conn {
        let conn = self.conns.remove(key);
        self.open_capacity -= capacity(&conn, self.workload.msgs_per_conn);
        if !conn.ready {
            self.unready -= 1;
        }
        conn
    }

    /// Closes a connection with an error of `kind` described by `detail`.
    pub(super) fn fail_conn(&mut self, key: usize, kind: ErrorKind, detail: String, now: Instant) {
        self.recorder.note(detail);
        self.drop_conn(key, Some(kind), now);
    }

    /// Closes a connection, counts `error`, and replaces it if work is left. An error puts
    /// its slot down until a new session is set up; a clean close (after `QUIT`) keeps it as
    /// it was.
    pub(super) fn drop_conn(&mut self, key: usize, error: Option<ErrorKind>, now: Instant) {
        if !self.conns.contains(key) {
            return;
        }
        let conn = self.remove_conn(key);
        if let Some(kind) = error {
            if let Some((Stage::Auth, 500..=599)) =
                conn.client.as_ref().and_then(Client::last_reply)
            {
                self.credentials_refused = true;
            }
            if !conn.client.as_ref().is_some_and(Client::was_ready) {
                self.setup_failures += 1;
                self.recorder.not_ready(never_ready_reason(&conn, kind));
            }
            self.count_error(kind, conn.target);
        }
        if conn.ready {
            lock(&self.slots).session(now, false);
        }
        let slot = if error.is_some() {
            Slot::Down
        } else {
            conn.slot
        };
        self.slot_change(now, conn.slot, slot);
        // Messages still in flight on a broken connection are lost: count them failed.
        if let Some(client) = &conn.client {
            let lost = client.in_flight() as u64;
            self.recorder.failed += lost;
            if self.plan.targets.len() > 1 {
                self.recorder.target(conn.target).failed += lost;
            }
        }
        if self.connection_needed(now) {
            let delay = if error.is_some() {
                RECONNECT_BACKOFF
            } else {
                Duration::ZERO
            };
            self.pending_connects.push((now + delay, slot));
        } else {
            self.release_slot(now, slot);
        }
    }
}

/// Why a connection that never got ready ended (the key of [`Recorder::never_ready`]): a
/// refusal's step and code (`greeting 421`, `auth 535`), or what went wrong while waiting
/// for a step (`closed awaiting greeting`, `timeout awaiting ehlo`).
///
/// [`Recorder::never_ready`]: crate::drive::record::Recorder::never_ready
fn never_ready_reason(conn: &Conn, kind: ErrorKind) -> String {
    let Some(client) = &conn.client else {
        return match kind {
            ErrorKind::Timeout => "connect timed out".into(),
            _ => "connect failed".into(),
        };
    };
    if let Some((stage, code)) = client.last_reply() {
        if code >= 400 {
            return format!("{} {code}", stage.name());
        }
    }
    let awaiting = client.awaiting().map_or("nothing", |s| s.name());
    match kind {
        ErrorKind::Refused => "connect failed".into(),
        ErrorKind::Reset => format!("closed awaiting {awaiting}"),
        ErrorKind::Timeout => format!("timeout awaiting {awaiting}"),
        ErrorKind::Tls => "TLS failed".into(),
        ErrorKind::Desync => format!("desync awaiting {awaiting}"),
        ErrorKind::ServiceClosing => format!("{awaiting} 421"),
        ErrorKind::Rejected => "a needed extension not offered".into(),
        ErrorKind::Corpus => "corpus".into(),
    }
}

/// Opens a non-blocking TCP connection to `target`, from `source` (port 0: the system picks
/// one) if given. mio's own connect cannot bind first, so the socket is made with socket2.
fn open_socket(target: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(target);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&source.into())?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        // A non-blocking connect under way; its end is the socket turning writable.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
