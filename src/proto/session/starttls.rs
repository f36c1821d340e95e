//! STARTTLS (RFC 3207): the `220` and the fresh start inside TLS.
//!
//! What it does: answer `STARTTLS` (refused when TLS is not configured, already on, or a
//! transaction is open), then wait for the caller's handshake ([`super::Wait::StartTls`]),
//! discarding any plaintext pipelined behind the command (RFC 3207 §4.2, CVE-2011-0411; in
//! `Session::take_input`), and, once it hears [`super::Resume::TlsStarted`], forget
//! everything learnt in plaintext.
//!
//! What it does not do: run TLS (the server's transport does) or advertise it (the EHLO
//! replies in [`crate::proto::reply::Banner`]).

use super::{Io, Mode, Session, SessionConfig, Stage};
use crate::proto::command::CommandError;
use crate::proto::gate::Gate;
use crate::proto::reply::{self, Replies};
use crate::proto::sink::MessageSink;

impl Session {
    /// `STARTTLS` (RFC 3207 §4): `220`, then the caller starts TLS.
    pub(super) fn on_starttls<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let refusal = if !config.security.starttls {
            Some(reply::command_error(CommandError::NotImplemented))
        } else if self.tls_active {
            Some(reply::TLS_ALREADY_ACTIVE)
        } else {
            match self.stage {
                Stage::MailGiven | Stage::Chunking | Stage::ChunkingFailed => {
                    Some(reply::NOT_IN_TRANSACTION)
                }
                Stage::Connected | Stage::Greeted => None,
            }
        };
        if let Some(refusal) = refusal {
            return self.reply_error(config, refusal, io);
        }
        io.out.push(reply::READY_TO_START_TLS);
        self.mode = Mode::StartingTls;
    }

    /// The handshake finished: `info` goes into every later message's envelope. After
    /// STARTTLS, the session is back at the state right after the greeting (RFC 3207 §4.2):
    /// the EHLO name, the envelope and any authentication are forgotten, and the client must
    /// send EHLO again. Nothing is sent (no second greeting). During shutdown the session
    /// ends with `421` at once.
    pub(super) fn on_tls_started<S: MessageSink>(
        &mut self,
        info: crate::proto::envelope::TlsInfo,
        out: &mut Replies<'_>,
        sink: &mut S,
    ) {
        if matches!(self.mode, Mode::StartingTls) {
            self.abort_message(sink);
            self.envelope.forget_all();
            self.wipe_credentials();
            self.chunked_size = 0;
            self.stage = Stage::Connected;
            self.tls_active = true;
            self.mode = Mode::Command;
            if self.draining {
                self.close_for_shutdown(out, sink);
            }
        }
        self.envelope.tls = Some(Box::new(info));
    }
}
