//! The message of a mail transaction: DATA content, and the end every message attempt comes
//! to (DATA or BDAT): the gate's last word, the sink's verdict, the final reply.
//!
//! What it does: start DATA (RFC 5321 §4.1.1.4, the `354`), read its content through
//! [`crate::proto::data::DataScanner`] into the sink, refuse an oversized message only after
//! its end (RFC 1870 §6.3) or one with a bare CR/LF, and finish every message: `250` with the
//! sink's queue id, `451 4.3.0`, or the wait for a store ([`super::Wait::Store`]) and its
//! outcome ([`super::Resume::Stored`]).
//!
//! What it does not do: frame BDAT chunks (`bdat`) or decide the envelope (`MAIL`/`RCPT`
//! in the session's command handling).

use super::{BareLfPolicy, Io, Mode, Session, SessionConfig, Stage};
use crate::proto::command::Body;
use crate::proto::data::DataScanner;
use crate::proto::envelope::Transfer;
use crate::proto::gate::{Checkpoint, Decision, Gate};
use crate::proto::reply::{self, Origin, Replies};
use crate::proto::sink::{MessageSink, Verdict};

/// Progress through DATA content.
#[derive(Debug, Clone, Copy)]
pub(super) struct DataTransfer {
    /// Finds the end of data and undoes dot-stuffing.
    scanner: DataScanner,
    /// Content octets so far.
    size: u64,
    /// Whether `size` passed the limit (the rest is read and dropped; RFC 1870 §6.3 lets us
    /// refuse only after the end of data).
    too_big: bool,
}

impl DataTransfer {
    /// Content octets so far (dot-stuffing undone), past the size limit too.
    pub(super) fn size(&self) -> u64 {
        self.size
    }
}

impl Session {
    /// Takes DATA content from `input`, undoing dot-stuffing and passing it to the sink (the
    /// message is open for as long as the session is in `Mode::Data`) while within the size
    /// limit. Returns the bytes taken, and the transfer once the end of data is in (`None`
    /// while more is to come). The session stays in `Mode::Data` either way: the message is
    /// open until [`Session::finish_message`] ends it.
    #[inline]
    pub(super) fn take_data_octets<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        mut transfer: DataTransfer,
        input: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) -> (usize, Option<DataTransfer>) {
        let max = config.max_message_size;
        let sink = &mut *io.sink;
        let scan = transfer.scanner.scan(input, |piece| {
            transfer.size += piece.len() as u64;
            if transfer.size > max {
                transfer.too_big = true;
            } else {
                sink.on_message_data(piece);
            }
        });
        self.mode = Mode::Data(transfer);
        (scan.consumed, scan.done.then_some(transfer))
    }

    pub(super) fn on_data<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let refusal = match self.stage {
            // RFC 3030 §2: DATA may not follow BDAT in one transaction.
            Stage::Chunking | Stage::ChunkingFailed => Some(reply::DATA_AFTER_BDAT),
            // RFC 3030 §3: BINARYMIME content cannot be dot-stuffed text.
            Stage::MailGiven if self.envelope.params.body == Some(Body::BinaryMime) => self
                .content_refusal()
                .or(Some(reply::BINARYMIME_NEEDS_BDAT)),
            Stage::Connected | Stage::Greeted | Stage::MailGiven => self.content_refusal(),
        };
        if let Some(refusal) = refusal {
            if refusal == reply::NO_VALID_RECIPIENTS {
                // A transaction that ends here is a message attempt too: the log hears it.
                let envelope = self.envelope.view(Transfer::Data);
                io.sink.on_outcome(Some(&envelope), 0, refusal);
            }
            return self.reply_error(config, refusal, io);
        }
        if !self.gate_passes(Checkpoint::Data, None, b"", io) {
            return;
        }
        self.start_message(Transfer::Data, io.sink);
        self.mode = Mode::Data(DataTransfer {
            scanner: DataScanner::new(),
            size: 0,
            too_big: false,
        });
        io.out.push(reply::DATA_GO_AHEAD);
    }

    pub(super) fn on_data_end<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        transfer: DataTransfer,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let bare = transfer.scanner.saw_bare_cr_or_lf() && config.bare_lf == BareLfPolicy::Reject;
        let refusal = if transfer.too_big {
            Some(reply::MESSAGE_TOO_BIG)
        } else if bare {
            Some(reply::BARE_CR_LF_IN_DATA)
        } else {
            None
        };
        self.finish_message(Transfer::Data, transfer.size, refusal, io);
        debug_assert!(
            !matches!(self.mode, Mode::Data(_)),
            "every end of a message leaves Mode::Data"
        );
        if refusal.is_some() && self.is_junk(config) && !self.is_closed() {
            self.close_with(reply::TOO_MANY_JUNK_COMMANDS, io);
        }
    }

    /// The reply for DATA/BDAT when no message may start, if any.
    pub(super) fn content_refusal(&self) -> Option<&'static [u8]> {
        match self.stage {
            Stage::Connected | Stage::Greeted => Some(reply::NEED_MAIL),
            Stage::MailGiven if self.envelope.recipients().is_empty() => {
                Some(if self.envelope.recipients_refused > 0 {
                    reply::NO_VALID_RECIPIENTS
                } else {
                    reply::NEED_RCPT
                })
            }
            Stage::MailGiven | Stage::Chunking => None,
            Stage::ChunkingFailed => Some(reply::MESSAGE_TOO_BIG),
        }
    }

    /// Opens the message in the sink. The caller then enters the state that says so
    /// (`Mode::Data`, or `Stage::Chunking` for BDAT): the session keeps no flag of its own
    /// that could disagree with it.
    pub(super) fn start_message<S: MessageSink>(&self, transfer: Transfer, sink: &mut S) {
        sink.on_message_start(&self.envelope.view(transfer));
    }

    /// Whether the sink has an open message (started, neither ended nor aborted): DATA
    /// content is being read or its end is being answered (`Mode::Data`), or a BDAT message
    /// has chunks in and waits for more or for `LAST` (`Stage::Chunking`).
    pub(super) fn has_open_message(&self) -> bool {
        matches!(self.mode, Mode::Data(_)) || self.stage == Stage::Chunking
    }

    /// Leaves the state that says a message is open: DATA framing goes back to command
    /// lines, a BDAT transaction is over (the caller resets the transaction or closes the
    /// session next). Returns whether a message was open; the caller ends it in the sink
    /// (stored, or aborted).
    fn close_message(&mut self) -> bool {
        if matches!(self.mode, Mode::Data(_)) {
            self.mode = Mode::Command;
            true
        } else if self.stage == Stage::Chunking {
            self.stage = Stage::Greeted;
            true
        } else {
            false
        }
    }

    /// Abandons the sink's open message, if there is one (it is never accepted).
    pub(super) fn abort_message<S: MessageSink>(&mut self, sink: &mut S) {
        if self.close_message() {
            sink.on_message_abort();
        }
    }

    /// Ends an accepted-or-refused message: the final reply, then a clean transaction.
    pub(super) fn finish_message<S: MessageSink, G: Gate>(
        &mut self,
        transfer: Transfer,
        size: u64,
        refusal: Option<&'static [u8]>,
        io: &mut Io<'_, '_, S, G>,
    ) {
        let accept = refusal.is_none() && self.has_open_message();
        if accept {
            // The message is complete and the protocol would accept it (no size or bare-LF
            // refusal): only now may a fault rule decide otherwise.
            let refused = match self.ask_gate(Checkpoint::EndOfData, None, b"", io) {
                Decision::Proceed => None,
                Decision::Refuse(reply) => Some(reply),
                Decision::Pause(then) => {
                    io.pause_here();
                    then
                }
                Decision::Hangup => {
                    let envelope = self.envelope.view(transfer);
                    io.sink.on_outcome(Some(&envelope), size, b"(disconnected)");
                    return self.on_disconnect(io.sink);
                }
                Decision::Close(reply) => {
                    let envelope = self.envelope.view(transfer);
                    io.sink
                        .on_outcome(Some(&envelope), size, io.gate.text(reply));
                    return self.close_injected(reply, io);
                }
            };
            if let Some(reply) = refused {
                let text = io.gate.text(reply);
                return self.end_message_with(transfer, size, text, Origin::Fault, io.out, io.sink);
            }
        }
        let accepted;
        let reply = match refusal {
            Some(refusal) => refusal,
            None if !accept => reply::STORE_FAILED,
            None => {
                // The sink ends the message now, whatever its verdict: nothing is left to
                // abort.
                self.close_message();
                match io.sink.on_message_end(&self.envelope.view(transfer)) {
                    Verdict::Stored => {
                        self.count_accepted(size);
                        // `250 2.0.0 Ok: queued as <id>`, with the sink's name for it.
                        accepted = reply::message_accepted(io.sink.queue_id());
                        accepted.as_bytes()
                    }
                    Verdict::Failed => reply::STORE_FAILED,
                    Verdict::Refused(refusal) => refusal,
                    // The transaction is over either way; only the reply waits.
                    Verdict::Pending => {
                        self.mode = Mode::AwaitingStore { size };
                        return self.reset_transaction(io.sink);
                    }
                }
            }
        };
        self.end_message_with(transfer, size, reply, Origin::Protocol, io.out, io.sink);
    }

    /// The final reply of a message attempt (made by `origin`), then a clean transaction.
    pub(super) fn end_message_with<S: MessageSink>(
        &mut self,
        transfer: Transfer,
        size: u64,
        reply: &[u8],
        origin: Origin,
        out: &mut Replies<'_>,
        sink: &mut S,
    ) {
        out.push_from(reply, origin);
        sink.on_outcome(Some(&self.envelope.view(transfer)), size, reply);
        self.reset_transaction(sink);
        if origin == Origin::Fault && reply::is_closing(reply) {
            // RFC 5321 §3.8, as in `push_fault_reply`.
            self.mode = Mode::Closed;
        }
    }

    pub(super) fn count_accepted(&mut self, size: u64) {
        self.discarded = 0;
        self.junk = 0;
        self.accepted_messages += 1;
        self.accepted_bytes += size;
    }

    /// The sink's outcome for the message it answered [`Verdict::Pending`] for: appends `250`
    /// (`Ok`) or the refusal (`451 4.3.0`, or the sink's own reply) and resumes reading
    /// commands. Ignored when the session is not waiting (it timed out or closed meanwhile).
    pub(super) fn on_stored<S: MessageSink>(
        &mut self,
        stored: Result<(), &'static [u8]>,
        out: &mut Replies<'_>,
        sink: &mut S,
    ) {
        let Mode::AwaitingStore { size } = self.mode else {
            return;
        };
        self.mode = Mode::Command;
        let accepted;
        let reply = match stored {
            Ok(()) => {
                self.count_accepted(size);
                accepted = reply::message_accepted(sink.queue_id());
                accepted.as_bytes()
            }
            Err(refusal) => refusal,
        };
        out.push(reply);
        sink.on_outcome(None, size, reply);
    }
}
