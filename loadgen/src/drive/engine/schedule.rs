//! The turn's schedule: what the load model allows now, and which connections have
//! something to do.
//!
//! One pass per turn: the loop never walks every connection. A connection is put on a list
//! when something happened to it: it had an event (output may be due, and its client may
//! start a message or QUIT), or it started one (output is due). Open loop: connections
//! that may start but wait for a message to be due wait in a queue, served first in, first
//! out when one is. Reply timeouts and set-up grace ends are deadlines in a heap, checked
//! from the nearest; how many more messages the open connections may still carry is a
//! counter. Only the end of the work (and a thread giving up) looks at every connection,
//! once, since it changes what each may do.
//!
//! Time: the loop waits with its [`Pacer`](crate::drive::pacer::Pacer), a timer of
//! nanosecond resolution (the poll's own timeout is whole milliseconds), until the nearest
//! deadline: the next open-loop send, a pending connect, the interval's end.
//!
//! Load models:
//! * **closed loop** (no `--rate`): a connection starts its next message as soon as the client
//!   allows (for pipelining: right behind the previous end-of-data dot).
//! * **open loop** (`--rate R`): the thread's share of messages has intended start times
//!   `start + i / rate`, shared by all its connections. A due message waits for a free
//!   connection; its latency counts from the intended time (as wrk2 does), so a server stall
//!   shows in the corrected histogram even though the generator sent nothing meanwhile.
//!
//! What it does not do: open or close connections (`connections`; a reply timeout found
//! here closes through it), or move bytes (`wire`).

use super::{capacity, lock, Deadline, Engine, Served};
use crate::drive::client::Client;
use crate::drive::record::{record, ErrorKind};
use crate::drive::slots::Slot;
use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections that failed before getting ready (connect refused, greeting, TLS, AUTH ...),
/// with none ever ready, after which a thread gives up.
const MAX_SETUP_FAILURES: u64 = 20;

impl Engine {
    /// Whether more messages may still be started (ignoring whether one is due yet).
    pub(super) fn work_left(&self, now: Instant) -> bool {
        if self.gave_up() {
            return false;
        }
        let quota_left = self.plan.messages.is_none_or(|quota| self.started < quota);
        let time_left = self.plan.end.is_none_or(|end| now < end);
        quota_left && time_left
    }

    /// Whether the thread gave up: its first connections all failed before getting ready.
    pub(super) fn gave_up(&self) -> bool {
        self.credentials_refused || (self.setup_failures >= MAX_SETUP_FAILURES && !self.ever_ready)
    }

    /// Whether the thread is done: no work left and every connection closed.
    pub(super) fn finished(&self) -> bool {
        !self.work_left(Instant::now()) && self.conns.is_empty()
    }

    /// Open loop: the intended start of the next slot (`None` in closed loop, or when it
    /// lies past what the clock can add up: never due).
    fn next_intended(&self) -> Option<Instant> {
        let rate = self.plan.rate?;
        let offset = Duration::try_from_secs_f64(self.next_slot as f64 / rate).ok()?;
        self.plan.start.checked_add(offset)
    }

    /// When to wake up at the latest: the nearest of the interval end, a pending connect, the
    /// next open-loop slot and the run's end (the pacer waits at most
    /// [`pacer::MAX_WAIT`]: reply timeouts are checked after each poll).
    ///
    /// [`pacer::MAX_WAIT`]: crate::drive::pacer::MAX_WAIT
    pub(super) fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = self.interval_end();
        if let Some(next) = self.pending_connects.iter().map(|(at, _)| *at).min() {
            wake = wake.min(next);
        }
        if self.work_left(now) {
            if let Some(intended) = self.next_intended() {
                wake = wake.min(intended);
            }
        }
        if let Some(end) = self.plan.end {
            if now < end {
                wake = wake.min(end);
            }
        }
        wake
    }

    /// Starts every message the load model allows now, and QUITs finished connections: on
    /// the connections queued for a due message (open loop), then on those that had an
    /// event. When work runs out (or comes back), every connection is looked at once.
    pub(super) fn start_messages(&mut self, now: Instant) {
        let work_left = self.work_left(now);
        if work_left != self.work_was_left {
            self.work_was_left = work_left;
            for (key, conn) in self.conns.iter_mut() {
                if !conn.to_serve {
                    conn.to_serve = true;
                    self.to_serve.push((key, conn.id));
                }
            }
        }
        // The queue first, oldest first: a due message goes to the connection that waited
        // longest. One that may start but finds nothing due ends the walk (none behind it
        // would find more).
        while let Some(&(key, id)) = self.queue.front() {
            if self.conns.get(key).is_some_and(|conn| conn.id == id)
                && self.serve(key, now) == Served::NotDue
            {
                break;
            }
            self.queue.pop_front();
            if let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id == id) {
                conn.queued = false;
            }
        }
        std::mem::swap(&mut self.to_serve, &mut self.working);
        for i in 0..self.working.len() {
            let (key, id) = self.working[i];
            let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id == id) else {
                continue;
            };
            conn.to_serve = false;
            if self.serve(key, now) == Served::NotDue {
                let conn = &mut self.conns[key];
                if !conn.queued {
                    conn.queued = true;
                    self.queue.push_back((key, id));
                }
            }
        }
        self.working.clear();
    }

    /// Starts the messages the load model allows now on connection `key`, or QUITs it when
    /// it is done; says why it stopped.
    fn serve(&mut self, key: usize, now: Instant) -> Served {
        let workload = Arc::clone(&self.workload);
        let per_conn = workload.msgs_per_conn;
        loop {
            let work_left = self.work_left(now);
            let conn = &mut self.conns[key];
            let Some(client) = conn.client.as_mut() else {
                return Served::Waiting;
            };
            if client.should_quit(&workload, !work_left) {
                if !client.is_waiting() {
                    // The QUIT's reply is timed from now, not from the last reply before
                    // an idle spell (as a message's first command is).
                    conn.last_progress = now;
                }
                client.quit(now, &mut conn.out);
                let id = conn.id;
                self.mark_flush(key, id);
                return Served::Waiting;
            }
            if !work_left || !client.can_start(&workload) {
                return Served::Waiting;
            }
            let intended = match self.plan.rate {
                None => None,
                Some(_) => {
                    let Some(intended) = self.next_intended().filter(|at| *at <= now) else {
                        return Served::NotDue;
                    };
                    self.next_slot += 1;
                    record(
                        &mut self.recorder.send_lateness,
                        now.saturating_duration_since(intended).as_nanos() as u64,
                    );
                    Some(intended)
                }
            };
            let seq = self.started * self.threads + self.plan.index as u64;
            let content = workload.pick_content(seq, &mut self.rng);
            self.started += 1;
            self.recorder.started += 1;
            let conn = &mut self.conns[key];
            if self.plan.targets.len() > 1 {
                self.recorder.target(conn.target).started += 1;
            }
            let before = capacity(conn, per_conn);
            let client = conn.client.as_mut().expect("checked above");
            if !client.is_waiting() {
                conn.last_progress = now;
            }
            client.start_message(&workload, seq, content, intended, now, &mut conn.out);
            self.open_capacity -= before - capacity(conn, per_conn);
            let id = conn.id;
            self.mark_flush(key, id);
        }
    }

    /// Puts connection `key` (number `id`) on the list to flush, once.
    pub(super) fn mark_flush(&mut self, key: usize, id: u64) {
        if let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id == id) {
            if !conn.to_flush {
                conn.to_flush = true;
                self.to_flush.push((key, id));
            }
        }
    }

    /// Puts connection `key` (number `id`) on the list whose clients may start or QUIT,
    /// once.
    pub(super) fn mark_serve(&mut self, key: usize, id: u64) {
        if let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id == id) {
            if !conn.to_serve {
                conn.to_serve = true;
                self.to_serve.push((key, id));
            }
        }
    }

    /// Adds a deadline of `kind` at `at` for connection `key` (number `id`); none when the
    /// moment lies past what the clock can add up (never due).
    pub(super) fn push_deadline(
        &mut self,
        at: Option<Instant>,
        kind: Deadline,
        key: usize,
        id: u64,
    ) {
        if let Some(at) = at {
            self.deadlines.push(Reverse((at, kind, key, id)));
        }
        // Entries of closed connections stay until due; when they outnumber the live ones,
        // they go (no allocation: the heap keeps its room).
        if self.deadlines.len() > 4 * self.conns.len() + 64 {
            let conns = &self.conns;
            self.deadlines.retain(|Reverse((_, _, key, id))| {
                conns.get(*key).is_some_and(|conn| conn.id == *id)
            });
        }
    }

    /// Drops connections that waited longer than the reply timeout for a reply (or a
    /// connect); marks down the slots whose session is taking longer than [`SETUP_GRACE`]
    /// to set up (from the moment the grace ran out). Only the deadlines that passed are
    /// looked at: a reply deadline whose connection made progress since is pushed again,
    /// at the new one (or, when it waits for nothing, one timeout from now: whatever it
    /// waits for next is timed from then or later).
    ///
    /// [`SETUP_GRACE`]: crate::drive::slots::SETUP_GRACE
    pub(super) fn check_timeouts(&mut self, now: Instant) {
        let timeout = self.plan.reply_timeout;
        while let Some(&Reverse((at, kind, key, id))) = self.deadlines.peek() {
            if at >= now {
                break;
            }
            self.deadlines.pop();
            let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.id == id) else {
                continue;
            };
            match kind {
                Deadline::Setup => {
                    if !conn.ready && conn.slot == Slot::Alive {
                        lock(&self.slots).change(at, Slot::Alive, Slot::Down);
                        conn.slot = Slot::Down;
                    }
                }
                Deadline::Reply => {
                    let waiting = conn.client.as_ref().is_none_or(Client::is_waiting);
                    if waiting && now.saturating_duration_since(conn.last_progress) > timeout {
                        self.drop_conn(key, Some(ErrorKind::Timeout), now);
                        continue;
                    }
                    let next = if waiting { conn.last_progress } else { now };
                    self.push_deadline(next.checked_add(timeout), Deadline::Reply, key, id);
                }
            }
        }
    }
}
