//! The delivery loop's control socket: how `fastsmtpd queue ...` reaches a running relay.
//!
//! # Design, and why
//!
//! The running server owns its spool: the spool's `flock` keeps a second process out, and
//! only the delivery loop knows which messages a connection has taken, which are due and
//! which wait on disk. So the tools ask the loop itself, over a Unix-domain socket in the
//! spool directory, `DIR/control.sock` ([`CONTROL_SOCKET`]):
//! - **Found by the spool's path**, the one name the operator already gives the tool; no
//!   port to choose, nothing reachable from the network, and the file's mode (0600, set
//!   right after `bind`) with the directory's own permissions decide who may use it: the
//!   server's user. A socket left by a `kill -9` is replaced at the next start (the new
//!   server holds the spool's lock, so the name is its own); a stop removes it.
//! - **Served by the loop, in its `Poll`**, as one more source of events: the answers come
//!   from the loop's own state (active set, connections) and the spool, with no lock held
//!   across the loop's turns and no second thread racing the loop for a message. `delete`
//!   drops the message from the active set and marks it done in the spool; a connection
//!   that carries it finds it gone and ignores its transaction's outcome (no notification).
//!   `retry` makes the deferred recipients due now (journal and memory) and lifts the next
//!   hops' connection back-off (Postfix's flush does so for dead destinations). `bounce` fails
//!   the recipients not final with [`BOUNCE_REPLY`]; the message then finishes as any
//!   other, its failure notification by the usual rules (after the attempt in flight, if a
//!   connection has it). Each takes effect in the turn the request arrives (a turn waits at
//!   most one second in `poll`).
//! - **Never stalls delivery**: at most [`MAX_CONTROL_CONNECTIONS`] at once (more are told
//!   so and closed), one request line of at most `MAX_REQUEST_BYTES` each, dropped after
//!   [`CONTROL_TIMEOUT`] without progress (no request, or a reader that stopped reading);
//!   `list` and the `all` actions walk the spool
//!   [`CONTROL_CHUNK_MESSAGES`] at a time, at most [`CONTROL_STEPS_PER_TURN`] chunks per
//!   connection per turn, and only while the connection's output is drained (a slow reader
//!   holds only its unsent chunk, never the loop). A chunk holds the spool's lock for its
//!   reads only (a listing reads each held message's envelope, never a body).
//! - **Answers are JSON lines** ([`Reply`]): the same records the tool prints with `--json`,
//!   and the tool renders text from them, so a stopped spool (read by the tool directly) and
//!   a running relay print alike.
//!
//! What it does not do: authenticate beyond the file's mode, serve more than one request per
//! connection, or hold a message back (Postfix's `hold` has no counterpart yet).

use super::{plan, Loop};
use crate::relay::admin::model::{message_info, queue_state_of, QueueState, Reply};
use crate::relay::admin::request::{
    next_request, parse_request, Request, Target, BOUNCE_REPLY, MAX_REQUEST_BYTES,
};
use crate::relay::admin::CONTROL_SOCKET;
use crate::relay::spool::{RecipientState, SpoolId};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// The token of the control socket's listener.
pub const LISTENER: Token = Token(usize::MAX - 1);
/// Tokens from here on are control connections (slab key added); below are next hops'.
const CONNECTION_BASE: usize = 1 << (usize::BITS - 2);
/// The most control connections at once.
pub const MAX_CONTROL_CONNECTIONS: usize = 8;
/// How long a control connection may go without progress (its request not whole, or
/// nothing of its answer written), then it is dropped.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages listed or acted on per chunk.
pub const CONTROL_CHUNK_MESSAGES: usize = 128;
/// Chunks per connection per loop turn.
pub const CONTROL_STEPS_PER_TURN: usize = 4;

/// Whether `token` is a control connection's.
pub fn is_connection(token: Token) -> bool {
    token.0 >= CONNECTION_BASE && token != LISTENER && token != super::WAKER
}

/// What a walk over the spool does with each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Lists it.
    List,
    /// Makes its deferred recipients due now.
    Retry,
    /// Removes it, no notification.
    Delete,
}

/// Where a control connection is.
#[derive(Debug)]
enum Job {
    /// Reading the request line.
    Reading,
    /// Walking the live messages after `after`, up to `last`.
    Walking {
        /// What is done with each.
        walk: Walk,
        /// The last id done.
        after: Option<SpoolId>,
        /// The highest live id when the request came (messages committed since are left
        /// alone: a walk ends).
        last: SpoolId,
        /// Messages done so far.
        count: u64,
    },
    /// The answer is whole: close once it is written.
    Answered,
}

/// One control connection.
#[derive(Debug)]
struct ControlConn {
    /// The socket.
    stream: UnixStream,
    /// The request read so far.
    input: Vec<u8>,
    /// Where it is.
    job: Job,
    /// Answer lines not yet written.
    out: Vec<u8>,
    /// Bytes of `out` written.
    written: usize,
    /// When it is dropped unless it makes progress (reset by every write that takes bytes).
    deadline: Duration,
    /// The last write would block: wait for the socket's next event.
    blocked: bool,
    /// Ended: to be removed.
    closed: bool,
}

/// The control socket and its connections.
#[derive(Debug, Default)]
pub struct Control {
    /// The listener, when it could be bound.
    listener: Option<UnixListener>,
    /// Its path (removed at stop).
    path: Option<PathBuf>,
    /// Open connections.
    conns: Slab<ControlConn>,
}

impl Control {
    /// Binds `DIR/control.sock` (replacing a stale one: the caller's spool holds the lock)
    /// and registers it. A failure (a path longer than a socket address allows, a read-only
    /// directory) is said on stderr and leaves the relay without one: the tools then report
    /// that the spool is in use.
    pub fn bind(dir: &std::path::Path, registry: &Registry) -> Control {
        let path = dir.join(CONTROL_SOCKET);
        let _ = std::fs::remove_file(&path);
        let bound = UnixListener::bind(&path).and_then(|mut listener| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            registry.register(&mut listener, LISTENER, Interest::READABLE)?;
            Ok(listener)
        });
        match bound {
            Ok(listener) => Control {
                listener: Some(listener),
                path: Some(path),
                conns: Slab::new(),
            },
            Err(error) => {
                eprintln!(
                    "fastsmtpd: relay: no control socket at {} ({error}): `fastsmtpd queue` \
                     cannot reach this server",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                Control::default()
            }
        }
    }

    /// Whether a connection has work it can do now (a walk to go on or output to write,
    /// and its socket not known to be full): the loop then polls without waiting.
    pub fn has_work(&self) -> bool {
        self.conns.iter().any(|(_, conn)| {
            !conn.closed
                && !conn.blocked
                && (matches!(conn.job, Job::Walking { .. }) || conn.written < conn.out.len())
        })
    }

    /// Closes every connection and the listener, and removes the socket file.
    pub fn close(&mut self, registry: &Registry) {
        for (_, mut conn) in std::mem::take(&mut self.conns) {
            let _ = registry.deregister(&mut conn.stream);
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Loop {
    /// Accepts control connections until none is waiting.
    pub(super) fn on_control_accept(&mut self, now: Duration) {
        loop {
            let Some(listener) = &self.control.listener else {
                return;
            };
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return, // e.g. out of descriptors: the next event tries again
            };
            if self.control.conns.len() >= MAX_CONTROL_CONNECTIONS {
                let mut line = Vec::new();
                Reply::Error {
                    error: "too many queue tools at once; try again".into(),
                }
                .line_into(&mut line);
                let _ = stream.write(&line); // best effort: a fresh socket takes a line
                continue;
            }
            let entry = self.control.conns.vacant_entry();
            let token = Token(CONNECTION_BASE + entry.key());
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            entry.insert(ControlConn {
                stream,
                input: Vec::new(),
                job: Job::Reading,
                out: Vec::new(),
                written: 0,
                deadline: now.saturating_add(CONTROL_TIMEOUT),
                blocked: false,
                closed: false,
            });
        }
    }

    /// A control connection's event (a hint): read its request, then make progress.
    pub(super) fn on_control_event(&mut self, token: Token, now: Duration) {
        let key = token.0 - CONNECTION_BASE;
        let Some(conn) = self.control.conns.get_mut(key) else {
            return; // stale token
        };
        conn.blocked = false;
        if matches!(conn.job, Job::Reading) {
            let mut buf = [0u8; MAX_REQUEST_BYTES];
            loop {
                let room = MAX_REQUEST_BYTES.saturating_sub(conn.input.len());
                if room == 0 {
                    break;
                }
                match conn.stream.read(&mut buf[..room]) {
                    Ok(0) => {
                        if conn.input.is_empty() {
                            conn.closed = true;
                        } else {
                            conn.input.push(b'\n'); // a last line without its newline
                        }
                        break;
                    }
                    Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        conn.closed = true;
                        break;
                    }
                }
            }
            let request = match next_request(&conn.input) {
                Ok(None) => None,
                Ok(Some(line)) => Some(parse_request(line)),
                Err(error) => Some(Err(error)),
            };
            match request {
                None => {}
                Some(Err(error)) => {
                    Reply::Error {
                        error: error.to_string(),
                    }
                    .line_into(&mut conn.out);
                    conn.job = Job::Answered;
                }
                Some(Ok(request)) => self.on_control_request(key, request, now),
            }
        }
        self.control_progress(key, now);
    }

    /// Starts serving `request` on connection `key`: a single message is answered at once;
    /// a walk starts (and runs in [`Loop::control_progress`]).
    fn on_control_request(&mut self, key: usize, request: Request, now: Duration) {
        let single = |this: &mut Loop, id: SpoolId, found: Option<Vec<u8>>| {
            let Some(conn) = this.control.conns.get_mut(key) else {
                return;
            };
            match found {
                Some(lines) => conn.out.extend_from_slice(&lines),
                None => Reply::NotFound {
                    error: format!("no message {id} in the queue"),
                }
                .line_into(&mut conn.out),
            }
            conn.job = Job::Answered;
        };
        let done = |count: u64| {
            let mut line = Vec::new();
            Reply::Done {
                count,
                next_hops: Vec::new(),
            }
            .line_into(&mut line);
            line
        };
        if let Request::Retry(_) = request {
            // As Postfix's flush un-throttles dead destinations: the operator says the next
            // hops are worth trying now, so their connection back-off is lifted too.
            for hop in 0..self.config.hops.len() {
                if let Some(health) = self.hops.health_mut(hop) {
                    health.on_connected();
                }
            }
        }
        let walk = match request {
            Request::Show(id) => {
                let mut lines = Vec::new();
                let found = self.control_list_one(id, now, &mut lines).then(|| {
                    lines.extend_from_slice(&done(1));
                    lines
                });
                return single(self, id, found);
            }
            Request::Retry(Target::One(id)) => {
                // Counted only when it has recipients left to deliver: a finishing message
                // has nothing to retry.
                let found = self
                    .control_retry(id, now)
                    .map(|retried| done(u64::from(retried)));
                return single(self, id, found);
            }
            Request::Delete(Target::One(id)) => {
                let found = self.control_delete(id).then(|| done(1));
                return single(self, id, found);
            }
            Request::Bounce(id) => {
                let found = self.control_bounce(id, now).then(|| done(1));
                return single(self, id, found);
            }
            Request::List => Walk::List,
            Request::Retry(Target::All) => Walk::Retry,
            Request::Delete(Target::All) => Walk::Delete,
        };
        let last = self
            .queue
            .spool()
            .live_after(None)
            .next_back()
            .map_or(SpoolId(0), |listed| listed.spool_ref.id);
        if let Some(conn) = self.control.conns.get_mut(key) {
            conn.job = Job::Walking {
                walk,
                after: None,
                last,
                count: 0,
            };
        }
    }

    /// Writes what connection `key` has, and walks on while its output drains (at most
    /// [`CONTROL_STEPS_PER_TURN`] chunks).
    pub(super) fn control_progress(&mut self, key: usize, now: Duration) {
        for _ in 0..=CONTROL_STEPS_PER_TURN {
            let Some(conn) = self.control.conns.get_mut(key) else {
                return;
            };
            if conn.closed {
                return;
            }
            while conn.written < conn.out.len() {
                match conn.stream.write(&conn.out[conn.written..]) {
                    Ok(0) => {
                        conn.closed = true;
                        return;
                    }
                    Ok(n) => {
                        conn.written += n;
                        conn.deadline = now.saturating_add(CONTROL_TIMEOUT);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        conn.blocked = true;
                        return;
                    }
                    Err(_) => {
                        conn.closed = true;
                        return;
                    }
                }
            }
            conn.out.clear();
            conn.written = 0;
            match conn.job {
                Job::Reading => return,
                Job::Answered => {
                    conn.closed = true;
                    return;
                }
                Job::Walking {
                    walk,
                    after,
                    last,
                    count,
                } => self.control_step(key, walk, after, last, count, now),
            }
        }
    }

    /// One chunk of a walk on connection `key`.
    fn control_step(
        &mut self,
        key: usize,
        walk: Walk,
        after: Option<SpoolId>,
        last: SpoolId,
        mut count: u64,
        now: Duration,
    ) {
        let ids: Vec<SpoolId> = self
            .queue
            .spool()
            .live_after(after)
            .map(|listed| listed.spool_ref.id)
            .take_while(|&id| id <= last)
            .take(CONTROL_CHUNK_MESSAGES)
            .collect();
        let mut out = Vec::new();
        match walk {
            Walk::List => {
                for &id in &ids {
                    if self.control_list_one(id, now, &mut out) {
                        count += 1;
                    }
                }
            }
            Walk::Retry => {
                for &id in &ids {
                    count += u64::from(self.control_retry(id, now) == Some(true));
                }
            }
            Walk::Delete => {
                for &id in &ids {
                    count += u64::from(self.control_delete(id));
                }
            }
        }
        let finished = ids.len() < CONTROL_CHUNK_MESSAGES;
        let next_hops = self.config.hops.iter().map(|hop| hop.to_string()).collect();
        let Some(conn) = self.control.conns.get_mut(key) else {
            return;
        };
        conn.out.extend_from_slice(&out);
        if finished {
            Reply::Done { count, next_hops }.line_into(&mut conn.out);
            conn.job = Job::Answered;
        } else {
            conn.job = Job::Walking {
                walk,
                after: ids.last().copied(),
                last,
                count,
            };
        }
    }

    /// Appends message `id`'s line to `out`; `false` when it is not live.
    fn control_list_one(&self, id: SpoolId, now: Duration, out: &mut Vec<u8>) -> bool {
        let spool = self.queue.spool();
        let Some(listed) = spool.get(id) else {
            return false;
        };
        let info = match self.active.get(&id) {
            Some(active) => {
                let queue = if active.busy {
                    QueueState::Active
                } else {
                    queue_state_of(&active.states, plan::unix_ms(now))
                };
                message_info(&listed, &active.envelope, queue)
            }
            None => match spool.read_envelope(&listed.spool_ref) {
                Ok(envelope) => message_info(&listed, &envelope, QueueState::Held),
                Err(error) => {
                    eprintln!("fastsmtpd: relay: queue list: spool message {id}: {error}");
                    return false;
                }
            },
        };
        Reply::Message(info).line_into(out);
        true
    }

    /// `retry`: message `id`'s deferred recipients are due now (journal and memory). `None`
    /// when it is not live; else whether it has a recipient left to deliver, deferred or
    /// pending (what `retry` counts: pending ones are due already, and waited only for the
    /// next hops' back-off, which `retry` lifts; a finishing message, every recipient
    /// final, has nothing to retry and is not counted).
    pub(super) fn control_retry(&mut self, id: SpoolId, now: Duration) -> Option<bool> {
        let now_ms = plan::unix_ms(now);
        let left;
        let updates: Vec<(usize, RecipientState)> = {
            let mut spool = self.queue.spool();
            let listed = spool.get(id)?;
            left = listed.recipients.iter().any(|state| !state.is_final());
            let updates: Vec<(usize, RecipientState)> = listed
                .recipients
                .iter()
                .enumerate()
                .filter_map(|(index, state)| Some((index, state.due_at(now_ms)?)))
                .collect();
            for (index, state) in &updates {
                if let Err(error) = spool.set_recipient_state(id, *index, state.clone()) {
                    eprintln!("fastsmtpd: relay: queue retry: {error}");
                }
            }
            updates
        };
        if !updates.is_empty() {
            self.journal_dirty = true;
            self.journal_staged = true;
        }
        if let Some(active) = self.active.get_mut(&id) {
            for (index, state) in updates {
                if let Some(slot) = active.states.get_mut(index) {
                    *slot = state;
                }
            }
            if !active.busy {
                // Its entry in the due heap is stale now; `promote_due` re-checks and skips.
                self.ready.push(id);
            }
        }
        Some(left)
    }

    /// `delete`: message `id` leaves the spool and the active set with no notification; a
    /// connection that has it finds it gone. `false` when it is not live.
    pub(super) fn control_delete(&mut self, id: SpoolId) -> bool {
        {
            let mut spool = self.queue.spool();
            if spool.get(id).is_none() {
                return false;
            }
            if let Err(error) = spool.mark_done(id) {
                eprintln!("fastsmtpd: relay: queue delete: {error}");
            }
        }
        self.journal_dirty = true;
        self.journal_staged = true;
        self.remove_active(id);
        true
    }

    /// `bounce`: message `id`'s recipients not final fail with [`BOUNCE_REPLY`], and it
    /// finishes as any message whose recipients are all final (the failure notification by
    /// the usual rules). A message held on disk is admitted now for that. `false` when it
    /// is not live.
    pub(super) fn control_bounce(&mut self, id: SpoolId, now: Duration) -> bool {
        let failed = RecipientState::Failed {
            reply: BOUNCE_REPLY.to_vec(),
            remote_mta: Vec::new(),
        };
        let (place, states) = {
            let mut spool = self.queue.spool();
            let Some(listed) = spool.get(id) else {
                return false;
            };
            let place = listed.spool_ref;
            let open: Vec<usize> = listed
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, state)| !state.is_final())
                .map(|(index, _)| index)
                .collect();
            for index in open {
                if let Err(error) = spool.set_recipient_state(id, index, failed.clone()) {
                    eprintln!("fastsmtpd: relay: queue bounce: {error}");
                }
            }
            let states = spool
                .get(id)
                .map(|listed| listed.recipients.to_vec())
                .unwrap_or_default();
            (place, states)
        };
        self.journal_dirty = true;
        self.journal_staged = true;
        match self.active.get_mut(&id) {
            Some(active) => {
                for (slot, state) in active.states.iter_mut().zip(states) {
                    *slot = state;
                }
                if !active.busy {
                    self.schedule(id, now);
                }
            }
            None => {
                let read = self.queue.spool().read_envelope(&place);
                match read {
                    Ok(envelope) => self.insert(id, place, envelope, states),
                    Err(error) => {
                        eprintln!("fastsmtpd: relay: queue bounce: spool message {id}: {error}")
                    }
                }
            }
        }
        true
    }

    /// Each turn: progress on every control connection, drop those past their deadline,
    /// remove those that ended.
    pub(super) fn control_turn(&mut self, now: Duration) {
        let keys: Vec<usize> = self.control.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.control_progress(key, now);
            if let Some(conn) = self.control.conns.get_mut(key) {
                if conn.deadline <= now {
                    conn.closed = true;
                }
                if conn.closed {
                    let mut conn = self.control.conns.remove(key);
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                }
            }
        }
    }
}
