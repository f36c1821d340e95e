//! A connection's AUTH check: the credentials the session collected go to the AUTH back end
//! (`crate::auth`), answered at once or later on a verifier thread, and the verdict goes
//! back to the session ([`Resume::Auth`]).
//!
//! What it does not do: decide a reply (the session does) or the limits on failures and on
//! checks in flight per client (`crate::auth` does).

use super::{Blocked, Conn, Driver, Next, Outcome, ReadSide};
use crate::auth::{Check, Verdict};
use crate::proto::reply;
use crate::proto::session::{AuthVerdict, Resume};
use crate::wake::Notify;
use std::io;
use std::sync::Arc;
use std::time::Instant;

impl Conn {
    /// The verifier thread decided the AUTH attempt this session waits for: the reply goes
    /// out, then the input kept behind it is processed, and reading resumes.
    pub fn on_auth_complete(
        &mut self,
        verdict: Verdict,
        cx: &mut Driver<'_>,
        now: Instant,
    ) -> Outcome {
        if !matches!(self.blocked, Blocked::Verdict(_)) {
            return self.outcome(Next::Wait, 0);
        }
        self.blocked = Blocked::No;
        self.finish_auth(verdict, cx, now);
        self.take_kept(cx, now);
        self.ready(cx, now)
    }

    /// Checks the credentials the session collected: at once (`--auth any`, a `{PLAIN}`
    /// entry, a client past its limits), or on a verifier thread (hashes;
    /// [`Conn::on_auth_complete`] follows).
    pub(super) fn check_auth(&mut self, cx: &mut Driver<'_>, now: Instant) {
        let Some((user, password)) = self.session.credentials() else {
            return;
        };
        let notify = || Notify {
            mailbox: Arc::clone(cx.mailbox),
            key: self.token.0,
            id: self.id,
        };
        let check = match cx.auth {
            Some(auth) => auth.check(self.client.ip(), user, password, notify),
            None => Check::Now(Verdict::Rejected),
        };
        match check {
            Check::Now(verdict) => self.finish_auth(verdict, cx, now),
            Check::Pending(ticket) => self.blocked = Blocked::Verdict(ticket),
        }
    }

    /// Gives the session its AUTH verdict: `235`, `535`, or a `454` (busy, or too many
    /// failures from this client). Every answer goes out as soon as it is known, so the time
    /// it takes says nothing about the password (`crate::auth` bounds failures per client
    /// instead of slowing them down).
    pub(super) fn finish_auth(&mut self, verdict: Verdict, cx: &mut Driver<'_>, now: Instant) {
        let security = &mut cx.stats.security;
        let verdict = match verdict {
            Verdict::Accepted => AuthVerdict::Accepted,
            Verdict::Rejected => AuthVerdict::Rejected,
            Verdict::Busy => {
                security.auth_busy += 1;
                AuthVerdict::Unavailable(reply::AUTH_TEMPORARY_FAILURE)
            }
            Verdict::Limited => {
                security.auth_limited += 1;
                AuthVerdict::Unavailable(reply::AUTH_TOO_MANY_FAILURES)
            }
        };
        self.resume(Resume::Auth(verdict), cx, now);
        if !matches!(verdict, AuthVerdict::Unavailable(_)) {
            if self.session.authenticated() {
                cx.stats.security.auth_successes += 1;
            } else {
                cx.stats.security.auth_failures += 1;
            }
        }
        // The input kept behind the AUTH exchange goes next, before anything more is read.
        if matches!(self.blocked, Blocked::No) && !self.carry.is_empty() {
            self.blocked = Blocked::Backlog;
        }
    }

    /// While an AUTH check is pending and the client has closed its side (FIN): whether
    /// anything follows the AUTH. With nothing kept in `carry`, one read tells: end of
    /// stream (the read side is then `Ended`, and [`Conn::ready`] drops the check), or input
    /// that is kept behind the AUTH, as any pipelined input is (at most one read), and
    /// answered after the verdict.
    pub(super) fn notice_end_behind_auth(&mut self, scratch: &mut [u8]) {
        if self.read != ReadSide::ReadyToEnd || !self.carry.is_empty() {
            return;
        }
        loop {
            match self.transport.try_read(scratch) {
                Ok(0) => self.read = ReadSide::Ended,
                Ok(n) => self.carry.extend_from_slice(&scratch[..n]),
                // A TLS record not yet whole: its end raises another event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => self.read = ReadSide::Ended,
            }
            return;
        }
    }
}
