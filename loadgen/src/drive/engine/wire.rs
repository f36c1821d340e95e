//! The bytes of a connection: replies read and handed to its client, commands and messages
//! written.
//!
//! What it does: read what the socket (or rustls) has, hand every complete reply to the
//! connection's [`Client`] and record what it reports, start TLS when asked (after the `220`
//! to `STARTTLS`, refusing bytes sent before the handshake, RFC 3207 §4), and write pending
//! output until the socket would block, asking for WRITABLE only while output remains.
//!
//! Output: commands (and generated content) are written from the connection's
//! [`Output`](crate::drive::output::Output) as they are. A corpus message in it is streamed:
//! the connection's staging buffer is filled with the wire form of at most [`STAGING`] bytes'
//! worth of the message at a time (read from the file by the thread's [`CorpusReader`], with
//! the commands around it), only when the socket has taken the previous piece; so a
//! connection holds a few KiB of a message whatever its size. File reads happen on the loop
//! (small `pread`s, usually from the page cache).
//!
//! What it does not do: parse replies (`reply`) or decide SMTP steps (the client), speak TLS
//! itself (`transport`), or decide what happens to a connection that fails (`connections`).

use super::{lock, Conn, Engine, ThreadPlan, INTERVAL, STAGING};
use crate::drive::client::{describe_failure, Client, Event, Failure, Stage};
use crate::drive::corpus::CorpusReader;
use crate::drive::delivered::DeliveryLink;
use crate::drive::output::Next;
use crate::drive::record::{record, ErrorKind, Recorder};
use crate::drive::reply::parse_reply;
use crate::drive::slots::Slot;
use crate::drive::transport::tls_error;
use mio::{Interest, Token};
use std::io;
use std::sync::Arc;
use std::time::Instant;

impl Engine {
    /// Starts TLS on connection `key` (its `ClientHello` goes out with the next flush);
    /// returns false if the connection was dropped.
    pub(super) fn start_tls(&mut self, key: usize, now: Instant) -> bool {
        let Some(tls) = &self.plan.targets[self.conns[key].target].tls else {
            self.fail_conn(
                key,
                ErrorKind::Tls,
                "TLS asked for without a configuration".into(),
                now,
            );
            return false;
        };
        let conn = &mut self.conns[key];
        if let Err(e) = conn.transport.start_tls(&tls.config, &tls.server_name) {
            let words = crate::drive::tls::describe_error(&e);
            self.fail_conn(key, ErrorKind::Tls, format!("TLS: {words}"), now);
            return false;
        }
        true
    }

    /// Reads and handles replies. `peer_closed`: the poller saw the server's FIN (or an
    /// error), so read on to end of file: no later event would announce it again.
    pub(super) fn read(&mut self, key: usize, peer_closed: bool, now: Instant) {
        let mut buf = std::mem::take(&mut self.scratch);
        self.read_into(key, peer_closed, now, &mut buf);
        self.scratch = buf;
    }

    /// [`Engine::read`] with the thread's read buffer `buf`.
    fn read_into(&mut self, key: usize, peer_closed: bool, now: Instant, buf: &mut [u8]) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let result = conn.transport.try_read(buf, peer_closed);
            // A handshake that completed in this read comes before the plaintext behind it
            // (with implicit TLS the greeting may arrive in the same records).
            if let Some(resumed) = conn.transport.take_handshake_done() {
                if !self.on_handshake(key, resumed, now) {
                    return;
                }
            }
            let conn = &mut self.conns[key];
            match result {
                Ok(0) => {
                    let clean = conn.client.as_ref().is_some_and(Client::is_closed);
                    let error = if clean { None } else { Some(ErrorKind::Reset) };
                    return self.drop_conn(key, error, now);
                }
                Ok(n) => {
                    conn.input.extend_from_slice(&buf[..n]);
                    let tls = conn.transport.is_tls();
                    if !self.process_replies(key, now) {
                        return;
                    }
                    if n < buf.len() && !peer_closed && !tls {
                        // A short read took all the socket had. mio is edge-triggered and any
                        // later arrival raises a new event, so the read that would only say
                        // WouldBlock is skipped: one read per batch of replies. (Not for TLS:
                        // rustls reads the socket in records and may hold plaintext.)
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return match tls_error(&e) {
                        Some(tls) => {
                            let words = crate::drive::tls::describe_error(tls);
                            self.fail_conn(key, ErrorKind::Tls, format!("TLS: {words}"), now)
                        }
                        None => self.drop_conn(key, Some(ErrorKind::Reset), now),
                    }
                }
            }
        }
    }

    /// The handshake of connection `key` completed: counted (full or resumed) and timed by
    /// the client, which may write (EHLO after STARTTLS). Returns false if the connection was
    /// dropped.
    fn on_handshake(&mut self, key: usize, resumed: bool, now: Instant) -> bool {
        let workload = Arc::clone(&self.workload);
        let conn = &mut self.conns[key];
        let Some(client) = conn.client.as_mut() else {
            return true;
        };
        let recorder = &mut self.recorder;
        let target = (self.plan.targets.len() > 1).then_some(conn.target);
        let delivered = delivered_link(&self.plan, self.interval);
        client.on_tls_established(&workload, now, &mut conn.out, |event| {
            record_event(recorder, event, now, resumed, target, delivered)
        });
        conn.last_progress = now;
        if client.is_closed() {
            self.fail_conn(
                key,
                ErrorKind::Desync,
                "a TLS handshake the session did not ask for".into(),
                now,
            );
            return false;
        }
        true
    }

    /// Parses and handles every complete reply; returns false if the connection was dropped.
    fn process_replies(&mut self, key: usize, now: Instant) -> bool {
        let workload = Arc::clone(&self.workload);
        let conn = &mut self.conns[key];
        let Some(client) = conn.client.as_mut() else {
            return true;
        };
        let recorder = &mut self.recorder;
        let target = (self.plan.targets.len() > 1).then_some(conn.target);
        let delivered = delivered_link(&self.plan, self.interval);
        let mut pos = 0;
        let mut last = 0..0;
        let mut garbage = None;
        // Replies are handed over until the session ends or asks for TLS: bytes behind the
        // 220 to STARTTLS are not replies (see below).
        while !client.is_closed() && !client.tls_requested() {
            match parse_reply(&conn.input[pos..]) {
                Ok(Some((reply, used))) => {
                    let raw = &conn.input[pos..pos + used];
                    client.on_reply(&workload, reply, raw, now, &mut conn.out, |event| {
                        record_event(recorder, event, now, false, target, delivered)
                    });
                    last = pos..pos + used;
                    pos += used;
                    conn.last_progress = now;
                }
                Ok(None) => break,
                Err(e) => {
                    garbage = Some(e);
                    break;
                }
            }
        }
        if client.was_ready() && !conn.ready {
            self.ever_ready = true;
            conn.ready = true;
            self.unready -= 1;
            let mut slots = lock(&self.slots);
            slots.session(now, true);
            if conn.slot == Slot::Down {
                // A session set up again: its slot is alive.
                slots.change(now, Slot::Down, Slot::Alive);
                conn.slot = Slot::Alive;
            }
        }
        if let Some(error) = garbage {
            let detail = format!("a reply that does not parse ({error})");
            self.fail_conn(key, ErrorKind::Desync, detail, now);
            return false;
        }
        if client.is_closed() {
            if let Some(failure) = client.failure() {
                let kind = match failure {
                    Failure::Desync => ErrorKind::Desync,
                    Failure::ServiceClosing => ErrorKind::ServiceClosing,
                    Failure::Refused(_) | Failure::MissingExtension(_) => ErrorKind::Rejected,
                };
                let detail = describe_failure(failure, &workload, &conn.input[last]);
                self.fail_conn(key, kind, detail, now);
                return false;
            }
            // QUIT answered: close now. RFC 5321 §4.1.1.10 has the server close after its
            // 221 and lets the client close once it has the reply, as smtp-source, swaks
            // and smtplib do; waiting for the server's FIN would hang on a server that
            // never sends one (no reply is awaited, so no reply timeout would end it).
            self.drop_conn(key, None, now);
            return false;
        }
        conn.input.drain(..pos);
        if client.tls_requested() && !conn.transport.is_tls() {
            if !conn.input.is_empty() {
                // RFC 3207 §4: the server sends nothing between its 220 and the handshake.
                // Bytes there would be read as if they came through TLS (a man in the middle
                // could inject replies that way): end the connection instead.
                self.fail_conn(
                    key,
                    ErrorKind::Desync,
                    "bytes after the 220 to STARTTLS, before the TLS handshake".into(),
                    now,
                );
                return false;
            }
            return self.start_tls(key, now);
        }
        true
    }

    /// Writes pending output (commands, or TLS records) on the connections listed to flush
    /// that have some. A connection whose socket took less than all waits for its
    /// WRITABLE event, which lists it again.
    pub(super) fn flush_all(&mut self) {
        std::mem::swap(&mut self.to_flush, &mut self.working);
        let now = Instant::now();
        for i in 0..self.working.len() {
            let (key, id) = self.working[i];
            let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id == id) else {
                continue;
            };
            conn.to_flush = false;
            if conn.has_output() || conn.transport.wants_write() {
                self.flush(key, now);
            }
        }
        self.working.clear();
    }

    /// Writes what connection `key` has pending until done or `WouldBlock` (for TLS: into
    /// rustls, then its records to the socket), and asks for WRITABLE only while output
    /// remains. Commands go out from the output as they are; around a corpus message, the
    /// staging buffer is filled with the next piece once the socket took the last.
    fn flush(&mut self, key: usize, now: Instant) {
        let conn = &mut self.conns[key];
        loop {
            let result = if conn.staging_pos < conn.staging.len() {
                conn.transport
                    .try_write(&conn.staging[conn.staging_pos..])
                    .map(|n| (n, true))
            } else if conn.body.is_none() && !conn.out.has_bodies() {
                let Next::Bytes(bytes) = conn.out.next() else {
                    break;
                };
                conn.transport.try_write(bytes).map(|n| (n, false))
            } else {
                match fill_staging(conn, self.reader.as_mut()) {
                    Ok(()) if conn.staging.is_empty() => break,
                    Ok(()) => continue,
                    Err(e) => {
                        let detail = format!("corpus: {e}");
                        return self.fail_conn(key, ErrorKind::Corpus, detail, now);
                    }
                }
            };
            match result {
                Ok((0, _)) => return self.drop_conn(key, Some(ErrorKind::Reset), now),
                Ok((n, true)) => {
                    conn.staging_pos += n;
                    if conn.staging_pos == conn.staging.len() {
                        conn.staging.clear();
                        conn.staging_pos = 0;
                    }
                }
                Ok((n, false)) => conn.out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.drop_conn(key, Some(ErrorKind::Reset), now),
            }
        }
        if conn.transport.flush_buffered().is_err() {
            return self.drop_conn(key, Some(ErrorKind::Reset), now);
        }
        let wanted = if !conn.has_output() && !conn.transport.wants_write() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        if wanted != conn.interest && conn.client.is_some() {
            let _ = self
                .poll
                .registry()
                .reregister(conn.transport.socket(), Token(key), wanted);
            conn.interest = wanted;
        }
    }
}

/// Fills connection `conn`'s empty staging buffer with the next [`STAGING`] bytes or so of
/// its output: commands copied, corpus messages streamed from their files by `reader`.
/// Leaves it empty only when nothing is pending.
fn fill_staging(conn: &mut Conn, mut reader: Option<&mut CorpusReader>) -> io::Result<()> {
    while conn.staging.len() < STAGING {
        let room = STAGING - conn.staging.len();
        if let Some(body) = conn.body.as_mut() {
            let Some(reader) = reader.as_deref_mut() else {
                return Err(io::Error::other("a corpus message without a corpus"));
            };
            if reader.fill(body, &mut conn.staging, room)? {
                conn.body = None;
            }
            continue;
        }
        match conn.out.next() {
            Next::Bytes(bytes) => {
                let n = bytes.len().min(room);
                conn.staging.extend_from_slice(&bytes[..n]);
                conn.out.consume(n);
            }
            Next::Body(body) => {
                let Some(reader) = reader.as_deref_mut() else {
                    return Err(io::Error::other("a corpus message without a corpus"));
                };
                conn.body = Some(reader.open(body.message, body.form)?);
                conn.out.take_body();
            }
            Next::Empty => break,
        }
    }
    Ok(())
}

/// The end-to-end mode's tracker of `plan`, and whether the figures of `interval` count (it
/// starts at or after the warm-up's end: the flag its report will carry).
fn delivered_link(plan: &ThreadPlan, interval: u64) -> Option<(&DeliveryLink, bool)> {
    let interval_start = plan.start + INTERVAL * interval as u32;
    plan.delivered
        .as_deref()
        .map(|link| (link, interval_start >= plan.warmup_end))
}

/// Records what the client reports (`resumed`: how a handshake it reports went; `target`:
/// the connection's target, when figures are kept per target; `delivered`: the end-to-end
/// mode's tracker, told of each message's end, and whether this interval's figures count,
/// i.e. it is past the warm-up).
fn record_event(
    recorder: &mut Recorder,
    event: Event,
    now: Instant,
    resumed: bool,
    target: Option<usize>,
    delivered: Option<(&DeliveryLink, bool)>,
) {
    if let Some(target) = target {
        let figures = recorder.target(target);
        match event {
            Event::Reply {
                stage: Stage::Eod | Stage::Bdat,
                nanos,
                ..
            } => record(&mut figures.eod, nanos),
            Event::Message { accepted, size, .. } => {
                if accepted {
                    figures.accepted += 1;
                    figures.accepted_bytes += size as u64;
                } else {
                    figures.failed += 1;
                }
            }
            _ => {}
        }
    }
    match event {
        Event::Reply { stage, code, nanos } => recorder.reply(stage, code, nanos),
        Event::Code { stage, code } => recorder.code(stage, code),
        Event::Handshake { nanos } => recorder.handshake(nanos, resumed),
        Event::Message {
            accepted,
            size,
            started,
            intended,
            seq,
            rcpts_ok,
            rcpts_refused,
        } => {
            let service = now.saturating_duration_since(started).as_nanos() as u64;
            let corrected = intended.map(|at| now.saturating_duration_since(at).as_nanos() as u64);
            recorder.message_done(accepted, size, service, corrected);
            // The message is awaited at the far end from its clock origin, the one
            // `message_corrected` has (closed loop: `message`'s). Its latency counts when this
            // interval does (past the warm-up), as its `accepted` does: the flag is the
            // interval's, not `now`'s, which a turn may hold from before its poll.
            match delivered {
                Some((link, counts)) if accepted => {
                    let origin = intended.unwrap_or(started);
                    if let Some(nanos) =
                        link.on_accepted(seq, origin, counts, rcpts_ok, rcpts_refused)
                    {
                        record(&mut recorder.stages[Stage::Delivered.index()], nanos);
                    }
                }
                Some((link, _)) => link.on_refused(seq),
                None => {}
            }
        }
    }
}
