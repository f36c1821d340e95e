//! MAIL and RCPT: the envelope of a mail transaction (RFC 5321 §4.1.1.2, §4.1.1.3).
//!
//! What it does: apply the sequence rules (a greeting first, one MAIL per transaction, none
//! during BDAT), the policies that come before a transaction (TLS or AUTH required, RFC 3207
//! §4 and RFC 4954 §6), the parameters' rules (RFC 1869 §4.5, RFC 1870 §6.1, RFC 6531 §3.5,
//! RFC 3461 §4: DSN's parameters only when DSN is offered)
//! and the recipient limit (RFC 5321 §4.5.3.1.10); then ask the gate, and record the sender
//! or recipient in the envelope.
//!
//! What it does not do: parse the command line (`crate::proto::command`) or store the
//! envelope's bytes (`crate::proto::envelope`).

use super::{Io, Session, SessionConfig, Stage};
use crate::proto::command::{CommandError, MailParams, RcptParams};
use crate::proto::gate::{Checkpoint, Gate};
use crate::proto::reply;
use crate::proto::sink::MessageSink;

impl Session {
    pub(super) fn on_mail<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        path: &[u8],
        params: MailParams,
        envid: Option<&[u8]>,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let policy = config.security;
        let refusal = match self.stage {
            Stage::Connected => Some(reply::NEED_HELO),
            Stage::MailGiven => Some(reply::NESTED_MAIL),
            // RFC 3207 §4: a server may demand TLS before any transaction.
            Stage::Greeted if policy.require_tls && !self.tls_active => Some(reply::MUST_STARTTLS),
            // RFC 4954 §6: 530 when authentication is required.
            Stage::Greeted if policy.auth_required && !self.envelope.authenticated => {
                Some(reply::AUTH_REQUIRED)
            }
            // RFC 4954 §5: AUTH= is a parameter of the AUTH extension, unknown without it.
            Stage::Greeted if params.auth && !self.auth_offered(config) => {
                Some(reply::command_error(CommandError::UnknownParameter))
            }
            Stage::Chunking | Stage::ChunkingFailed => Some(reply::NOT_DURING_BDAT),
            // RFC 1869 §4.5 (HELO means no extensions): parameters are an error.
            Stage::Greeted if params.any && !self.envelope.esmtp => Some(reply::PARAMS_AFTER_HELO),
            // RFC 3461 §4: RET and ENVID are parameters of DSN, unknown where it is not offered.
            Stage::Greeted if (params.ret.is_some() || envid.is_some()) && !config.dsn => {
                Some(reply::command_error(CommandError::UnknownParameter))
            }
            // RFC 6531 §3.5: a UTF-8 address needs the SMTPUTF8 parameter.
            Stage::Greeted if !path.is_ascii() && !params.smtputf8 => {
                Some(reply::SENDER_NEEDS_SMTPUTF8)
            }
            // RFC 1870 §6.1: a declared size over the limit is refused at once.
            Stage::Greeted
                if params
                    .size
                    .is_some_and(|size| size > config.max_message_size) =>
            {
                Some(reply::MESSAGE_TOO_BIG)
            }
            Stage::Greeted => None,
        };
        if let Some(refusal) = refusal {
            return self.reply_error(config, refusal, io);
        }
        if !self.gate_passes(Checkpoint::Mail, Some(path), b"", io) {
            return;
        }
        self.stage = Stage::MailGiven;
        self.envelope.set_sender(path, params, envid);
        io.out.push(reply::MAIL_OK);
    }

    pub(super) fn on_rcpt<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        path: &[u8],
        params: RcptParams<'_>,
        io: &mut Io<'_, '_, S, G>,
    ) {
        match self.stage {
            Stage::Connected | Stage::Greeted => {
                return self.reply_error(config, reply::NEED_MAIL, io)
            }
            Stage::Chunking | Stage::ChunkingFailed => {
                return self.reply_error(config, reply::NOT_DURING_BDAT, io)
            }
            Stage::MailGiven => {}
        }
        // RFC 3461 §4: NOTIFY and ORCPT are parameters of DSN, unknown where it is not
        // offered (after HELO nothing is).
        if params.any() && !(config.dsn && self.envelope.esmtp) {
            self.envelope.recipients_refused += 1;
            return self.reply_error(
                config,
                reply::command_error(CommandError::UnknownParameter),
                io,
            );
        }
        if self.envelope.recipients().len() >= config.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452, and the recipients so far stay accepted. Not counted
            // as a client error: a legitimate client with a long list hits this.
            io.out.push(reply::TOO_MANY_RECIPIENTS);
            return;
        }
        if !path.is_ascii() && !self.envelope.params.smtputf8 {
            self.envelope.recipients_refused += 1;
            return self.reply_error(config, reply::RECIPIENT_NEEDS_SMTPUTF8, io);
        }
        if !self.gate_passes(Checkpoint::Rcpt, None, path, io) {
            return;
        }
        self.envelope.add_recipient(path, params);
        io.out.push(reply::RCPT_OK);
    }
}
