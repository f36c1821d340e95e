//! BDAT (RFC 3030 CHUNKING): counted-octet framing and the rules for refusing chunks.
//!
//! What it does: start a chunk transfer for `BDAT n [LAST]`, pass its octets to the sink (or
//! drop them when the chunk is refused), and reply once the octets are consumed: `250` per
//! chunk, the message's final reply after `LAST`.
//!
//! The rules (RFC 3030 §2, §4.2 with RFC 1870):
//! * The announced octets are ALWAYS consumed before any reply, also when the chunk is
//!   refused; otherwise the octets would be read as commands and framing would be lost.
//! * A chunk that takes the message over the size limit is refused with `552 5.3.4`, and
//!   so is every later chunk of that message until `LAST` (or `RSET`) ends it.
//! * Refused octets are read and dropped only up to 1.5 × the size limit since the last
//!   accepted message; past that the session closes with `421 4.7.0` instead of reading on.
//! * After `HELO` (no extensions offered) a chunk is read and refused with `503 5.5.1`.
//! * `BDAT 0` without `LAST` carries nothing: it is answered but counts as a junk command
//!   (it could otherwise keep a session busy for ever).
//!
//! What it does not do: parse the `BDAT` line ([`super::super::command`]) or decide the
//! sequence rules shared with DATA (the session's `content_refusal`).

use super::{Gated, Io, Mode, Session, SessionConfig, Stage};
use crate::proto::envelope::Transfer;
use crate::proto::gate::{Checkpoint, Gate, GateReply};
use crate::proto::reply;
use crate::proto::sink::MessageSink;

/// Progress through one BDAT chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkTransfer {
    /// Octets of the chunk still to come.
    remaining: u64,
    /// The chunk size as announced.
    size: u64,
    /// Whether the chunk was `BDAT n LAST`.
    last: bool,
    /// What becomes of the chunk's octets and what its reply is.
    fate: Fate,
}

/// What becomes of a chunk, decided when its `BDAT` line is read (its octets are read
/// either way, RFC 3030 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// The octets go to the sink; the reply is `250` (the message's final reply after `LAST`).
    Taken,
    /// The protocol refuses the chunk: its octets are dropped, then this reply (a client
    /// error, counted toward the cap).
    Refused(&'static [u8]),
    /// The gate refused a chunk the protocol would take: its octets are dropped, then the
    /// gate's reply (not a client error).
    RefusedByGate(GateReply),
}

impl SessionConfig {
    /// Refused BDAT octets read and thrown away before the connection is closed instead.
    fn max_discard(&self) -> u64 {
        self.max_message_size
            .saturating_add(self.max_message_size / 2)
    }
}

impl Session {
    /// Takes the octets of the current chunk from `input`, passing them to the sink unless
    /// the chunk is refused. Returns the bytes taken, and the transfer once its last octet
    /// is in (`None` while more are to come; the session stays in [`Mode::Chunk`]).
    pub(super) fn take_chunk_octets<S: MessageSink, G: Gate>(
        &mut self,
        mut transfer: ChunkTransfer,
        input: &[u8],
        io: &mut Io<'_, '_, S, G>,
    ) -> (usize, Option<ChunkTransfer>) {
        let take = transfer.remaining.min(input.len() as u64) as usize;
        if take > 0 && transfer.fate == Fate::Taken {
            io.sink.on_message_data(&input[..take]);
        }
        transfer.remaining -= take as u64;
        if transfer.remaining > 0 {
            self.mode = Mode::Chunk(transfer);
            return (take, None);
        }
        (take, Some(transfer))
    }

    /// `BDAT size [LAST]` was given: decide whether the chunk is accepted, then read its
    /// octets either way.
    pub(super) fn on_bdat<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        size: u64,
        last: bool,
        io: &mut Io<'_, '_, S, G>,
    ) {
        if size == 0 && !last {
            // An empty chunk that does not end the message carries nothing (Postfix refuses
            // it). It is valid BDAT syntax, so it is answered, but counted as a junk command:
            // repeated, it cannot keep a session busy for ever.
            if self.is_junk(config) {
                return self.close_with(reply::TOO_MANY_JUNK_COMMANDS, io);
            }
        }
        let mut refusal = match self.stage {
            // The session was refused at the greeting (RFC 5321 §3.1): only QUIT is taken.
            _ if self.refused => Some(reply::SESSION_REFUSED),
            // CHUNKING is offered only in the EHLO reply (RFC 3030 §2; RFC 1869 §4.5: HELO
            // means no extensions). The chunk's octets are still read, then refused.
            Stage::Greeted | Stage::MailGiven if !self.envelope.esmtp => {
                Some(reply::BDAT_NEEDS_EHLO)
            }
            _ => self.content_refusal(),
        };
        if refusal.is_none() && self.chunked_size.saturating_add(size) > config.max_message_size {
            // RFC 3030 §4.2 with RFC 1870: over the limit; this and later chunks are refused.
            refusal = Some(reply::MESSAGE_TOO_BIG);
            self.abort_message(io.sink);
            self.stage = Stage::ChunkingFailed;
        }
        if refusal.is_some() {
            self.discarded = self.discarded.saturating_add(size);
            if self.discarded > config.max_discard() {
                // Reading that much only to refuse it is not worth it: stop here.
                return self.close_with(reply::TOO_MUCH_DISCARDED, io);
            }
        } else {
            // The protocol would take this chunk: only now may a fault rule refuse it.
            match self.ask_gate_about(Checkpoint::Bdat, None, b"", io) {
                Gated::Proceed => {}
                Gated::Refuse(reply) => return self.refuse_chunk_by_gate(size, last, reply, io),
                Gated::Ended => return,
            }
            if self.stage == Stage::MailGiven {
                self.start_message(Transfer::Bdat, io.sink);
                self.stage = Stage::Chunking;
            }
            self.chunked_size += size;
        }
        self.mode = Mode::Chunk(ChunkTransfer {
            remaining: size,
            size,
            last,
            fate: refusal.map_or(Fate::Taken, Fate::Refused),
        });
    }

    /// The gate refused a `BDAT` the protocol would have taken (so its size is within the
    /// limit): the transaction ends, and the chunk's octets are read and dropped before the
    /// gate's reply goes out.
    fn refuse_chunk_by_gate<S: MessageSink, G: Gate>(
        &mut self,
        size: u64,
        last: bool,
        reply: GateReply,
        io: &mut Io<'_, '_, S, G>,
    ) {
        self.reset_transaction(io.sink);
        self.mode = Mode::Chunk(ChunkTransfer {
            remaining: size,
            size,
            last,
            fate: Fate::RefusedByGate(reply),
        });
    }

    /// The chunk's last octet is in: its reply.
    pub(super) fn on_chunk_end<S: MessageSink, G: Gate>(
        &mut self,
        config: &SessionConfig,
        transfer: ChunkTransfer,
        io: &mut Io<'_, '_, S, G>,
    ) {
        match transfer.fate {
            Fate::RefusedByGate(refusal) => self.push_fault_reply(refusal, io),
            Fate::Refused(refusal) => {
                if transfer.last && refusal == reply::NO_VALID_RECIPIENTS {
                    // The attempt ends here without a message: the log hears it.
                    let envelope = self.envelope.view(Transfer::Bdat);
                    io.sink.on_outcome(Some(&envelope), 0, refusal);
                }
                if transfer.last && self.stage == Stage::ChunkingFailed {
                    // RFC 3030 §2: the refused message ends with its LAST chunk.
                    self.reset_transaction(io.sink);
                }
                self.reply_error(config, refusal, io);
            }
            Fate::Taken if transfer.last => {
                let size = self.chunked_size;
                self.finish_message(Transfer::Bdat, size, None, io);
            }
            Fate::Taken => io.out.push_chunk_received(transfer.size),
        }
    }
}
