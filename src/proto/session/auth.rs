//! AUTH (RFC 4954): the exchange of challenges and responses, and the verdict's reply.
//!
//! What it does: refuse `AUTH` where RFC 4954 §4 and our policy say so (no EHLO, already
//! authenticated, inside a transaction, TLS required), send the `334` challenges of PLAIN
//! and LOGIN, have [`crate::proto::sasl`] decode each response into the credentials, and
//! when they are complete wait for the caller's verdict ([`super::Wait::Credentials`],
//! [`super::Resume::Auth`]), then reply `235`, `535` or the caller's `454`.
//!
//! What it does not do: decode base64 or split PLAIN's message (`sasl` does), or check a
//! password: the caller does, possibly on another thread, and bounds failures per client.

use super::{Io, Mode, Session, SessionConfig, Stage};
use crate::proto::command::CommandError;
use crate::proto::gate::Gate;
use crate::proto::reply::{self, Replies};
use crate::proto::sasl::{Filled, Step};
use crate::proto::sink::MessageSink;

/// The caller's verdict on an AUTH attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// The credentials are right: `235 2.7.0` (unless the session found the attempt invalid
    /// itself).
    Accepted,
    /// They are wrong: `535 5.7.8`.
    Rejected,
    /// Not checked now: this `454 4.7.0` reply (RFC 4954 §6: the checkers are saturated, or
    /// the client failed too often).
    Unavailable(&'static [u8]),
}

impl Session {
    /// The credentials of the AUTH attempt waiting for a verdict ([`Wait::Credentials`](super::Wait::Credentials)),
    /// `(user, password)`: the caller checks them and answers with [`Resume::Auth`](super::Resume::Auth). `None`
    /// when no attempt is waiting.
    pub fn credentials(&self) -> Option<(&[u8], &[u8])> {
        match self.mode {
            Mode::AwaitingAuth => self
                .credentials
                .as_deref()
                .map(|c| (&c.user[..], &c.password[..])),
            _ => None,
        }
    }

    /// Whether the attempt waiting for a verdict fails whatever the caller answers (see
    /// `Session::on_auth_verdict`: an authorization identity other than the user, a user name
    /// that is not printable UTF-8, an empty password); `None` when no attempt is waiting.
    /// For drivers that check every reply against what they answered (the fuzz target).
    #[cfg(any(test, feature = "testkit"))]
    pub fn credentials_refused(&self) -> Option<bool> {
        match self.mode {
            Mode::AwaitingAuth => self.credentials.as_deref().map(|c| c.refused),
            _ => None,
        }
    }

    /// Whether the client has authenticated (RFC 4954) in this session.
    pub fn authenticated(&self) -> bool {
        self.envelope.authenticated
    }

    /// Failed AUTH attempts so far.
    pub fn auth_failures(&self) -> u32 {
        self.auth_failures
    }

    /// Forgets the AUTH attempt's user and password (wiping the password).
    pub(super) fn wipe_credentials(&mut self) {
        if let Some(credentials) = &mut self.credentials {
            credentials.wipe();
        }
    }

    /// The caller's verdict on [`Session::credentials`]. Accepted: `235 2.7.0` and the user is
    /// recorded; rejected: `535 5.7.8` (counted toward the error cap, RFC 4954 §6). An
    /// attempt the session found invalid itself (an authorization identity other than the
    /// user, an empty user or password, a user name that is not printable UTF-8) fails
    /// whatever the caller says: it is handed over like any other only so it takes as long.
    /// Unavailable: the `454` given is not a failed attempt, but a failed command: it counts
    /// toward the error cap like any other (else a client could send `AUTH` for ever for
    /// free). The password is wiped either way. Ignored when no attempt is waiting.
    pub(super) fn on_auth_verdict<S: MessageSink>(
        &mut self,
        config: &SessionConfig,
        verdict: AuthVerdict,
        out: &mut Replies<'_>,
        sink: &mut S,
    ) {
        if !matches!(self.mode, Mode::AwaitingAuth) {
            return;
        }
        self.mode = Mode::Command;
        let accepted = verdict == AuthVerdict::Accepted
            && self.credentials.as_ref().is_some_and(|c| !c.refused);
        let reply = match verdict {
            _ if accepted => {
                if let Some(credentials) = &self.credentials {
                    self.envelope.set_auth_user(&credentials.user);
                }
                reply::AUTH_OK
            }
            AuthVerdict::Accepted | AuthVerdict::Rejected => {
                self.auth_failures = self.auth_failures.saturating_add(1);
                reply::AUTH_FAILED
            }
            AuthVerdict::Unavailable(reply) => reply,
        };
        self.wipe_credentials();
        out.push(reply);
        if !accepted {
            self.errors += 1;
            if self.errors >= config.max_errors {
                self.end_with(reply::TOO_MANY_ERRORS, out, sink);
            }
        }
    }

    /// Whether AUTH is offered on this connection now (RFC 4954 §3).
    pub(super) fn auth_offered(&self, config: &SessionConfig) -> bool {
        let policy = config.security;
        policy.auth && (self.tls_active || policy.auth_plaintext)
    }

    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    pub(super) fn on_auth<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        mechanism: &[u8],
        initial: Option<&[u8]>,
        io: &mut Io<'_, '_, S, G>,
    ) {
        use crate::proto::sasl::Mechanism;
        let policy = config.security;
        let refusal = if !policy.auth {
            Some(reply::command_error(CommandError::NotImplemented))
        } else if self.stage == Stage::Connected || !self.envelope.esmtp {
            Some(reply::NEED_EHLO)
        } else if self.envelope.authenticated {
            Some(reply::ALREADY_AUTHENTICATED)
        } else if self.stage != Stage::Greeted {
            Some(reply::NOT_IN_TRANSACTION)
        } else if policy.require_tls && !self.tls_active {
            Some(reply::MUST_STARTTLS)
        } else if !self.auth_offered(config) {
            Some(reply::AUTH_NEEDS_TLS)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return self.reply_error(config, refusal, io);
        }
        let Some(mechanism) = Mechanism::from_name(mechanism) else {
            return self.reply_error(config, reply::AUTH_UNKNOWN_MECHANISM, io);
        };
        self.wipe_credentials();
        let step = match mechanism {
            Mechanism::Plain => Step::Plain,
            Mechanism::Login => Step::LoginUser,
        };
        match initial {
            Some(response) => self.on_auth_response(config, step, response, true, io),
            None => {
                io.out.push(match step {
                    Step::Plain => reply::PLAIN_CHALLENGE,
                    Step::LoginUser | Step::LoginPassword => reply::LOGIN_USERNAME,
                });
                self.mode = Mode::AuthResponse(step);
            }
        }
    }

    /// One client response in an AUTH exchange: the next challenge, a refusal, or complete
    /// credentials for the caller to check (`Mode::AwaitingAuth`).
    pub(super) fn on_auth_response<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        step: Step,
        line: &[u8],
        initial: bool,
        io: &mut Io<'_, '_, S, G>,
    ) {
        self.mode = Mode::Command;
        let credentials = self.credentials.get_or_insert_with(Box::default);
        let refusal = match credentials.take_response(step, line, initial) {
            Filled::Complete => None,
            Filled::NeedPassword => {
                // A user name we would not keep still gets the password challenge: the
                // reply to a user name never tells whether it could exist.
                io.out.push(reply::LOGIN_PASSWORD);
                self.mode = Mode::AuthResponse(Step::LoginPassword);
                return;
            }
            Filled::Cancelled => Some(reply::AUTH_CANCELLED),
            Filled::Undecodable => Some(reply::AUTH_UNDECODABLE),
        };
        match refusal {
            None => self.mode = Mode::AwaitingAuth,
            Some(refusal) => {
                self.wipe_credentials();
                self.reply_error(config, refusal, io);
            }
        }
    }
}
