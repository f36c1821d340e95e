//! What the queue tools say about a message, and the lines the control socket sends: one
//! shape for a running relay and a stopped spool, so both print the same way.
//!
//! What it does: [`MessageInfo`] (a live message, its envelope and its recipients' states,
//! built by [`message_info`] from what the spool keeps) and [`Reply`], one JSON object per
//! line on the control socket; both are the stable `--json` output (docs/relay.md, "Queue
//! tools"). What it does not do: read the spool, talk to a socket, or print text.

use crate::proto::dsn::Ret;
use crate::relay::spool::{Envelope, Listed, RecipientState};
use serde::{Deserialize, Serialize};

/// Where a live message is in the relay's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Taken by a connection: in its batch or in flight (postqueue's `*`).
    Active,
    /// Due now (a recipient never tried, or its retry time has come), waiting for a
    /// connection.
    Ready,
    /// Waiting for its deferred recipients' next attempt.
    Deferred,
    /// Kept on disk only, not (yet) in the delivery loop's bounded active set
    /// (`ACTIVE_MAX_DEFAULT` messages in memory), or committed a moment ago and not yet
    /// taken by the loop (a running relay only).
    Held,
    /// Every recipient is final; its failure notification (if any) is spooled and the
    /// message removed on the delivery loop's next turn, or at the next start when the
    /// server is stopped (what `bounce` leaves on a stopped spool).
    Finishing,
}

impl QueueState {
    /// The word the text output and the JSON use.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Active => "active",
            QueueState::Ready => "ready",
            QueueState::Deferred => "deferred",
            QueueState::Held => "held",
            QueueState::Finishing => "finishing",
        }
    }
}

/// One recipient's state as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientInfo {
    /// The forward path's address (lossy UTF-8).
    pub address: String,
    /// `pending` (never tried), `deferred`, `delivered` or `failed`.
    pub state: String,
    /// Delivery attempts that ended in a deferral so far (0 when pending or final).
    pub attempts: u32,
    /// When a deferred recipient is tried next, Unix milliseconds.
    pub next_attempt_unix_ms: Option<u64>,
    /// The last attempt's reply (deferred), or the reply that decided (delivered, failed):
    /// the next hop's `451 4.3.0 text`, or the relay's own `4.4.1 text` without a code.
    pub last_reply: Option<String>,
    /// The next hop whose session gave `last_reply` (its name as given in `--relay-to`, or
    /// its IP address; a notification's `Remote-MTA`); `None` when no next hop was reached.
    /// Absent from the lines of an older relay, read as `None`.
    #[serde(default)]
    pub remote_mta: Option<String>,
}

/// A live message, as `queue list` and `queue show` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageInfo {
    /// The spool id, 16 hexadecimal digits.
    pub id: String,
    /// Where it is in the queue.
    pub queue: QueueState,
    /// When it was accepted, Unix milliseconds.
    pub arrival_unix_ms: u64,
    /// The raw message's size (what the next hop receives), bytes.
    pub size_bytes: u64,
    /// The reverse path's address (lossy UTF-8), empty for `<>` (a notification).
    pub sender: String,
    /// The earliest next attempt of its deferred recipients, Unix milliseconds.
    pub next_attempt_unix_ms: Option<u64>,
    /// The client's address, as the `Received:` line has it.
    pub client_address: String,
    /// The client's HELO/EHLO name.
    pub helo: String,
    /// RFC 3461's `ENVID` (lossy UTF-8), when given.
    pub envid: Option<String>,
    /// RFC 3461's `RET`: `full` or `hdrs`, when given.
    pub ret: Option<String>,
    /// RFC 6531's `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// The recipients in RCPT order.
    pub recipients: Vec<RecipientInfo>,
}

/// One line the control socket sends, a JSON object tagged by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// A live message (`list`, `show`).
    Message(MessageInfo),
    /// The request is done: `count` messages listed or acted on. `next_hops` are the relay's
    /// (empty from a stopped spool, which does not keep them).
    Done {
        /// Messages listed, or acted on.
        count: u64,
        /// The relay's next hops, `HOST:PORT`.
        #[serde(default)]
        next_hops: Vec<String>,
    },
    /// No live message has that id.
    NotFound {
        /// What was not found.
        error: String,
    },
    /// The request could not be served.
    Error {
        /// Why.
        error: String,
    },
}

impl Reply {
    /// The reply as one JSON line, `\n` included.
    pub fn line_into(&self, out: &mut Vec<u8>) {
        // Serializing plain data with string keys cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

/// A recipient's state for the tools.
pub fn recipient_info(address: &[u8], state: &RecipientState) -> RecipientInfo {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let (word, attempts, next, reply) = match state {
        RecipientState::Pending => ("pending", 0, None, None),
        RecipientState::Deferred {
            attempts,
            next_attempt_unix_ms,
            last_reply,
            ..
        } => (
            "deferred",
            *attempts,
            Some(*next_attempt_unix_ms),
            Some(text(last_reply)),
        ),
        RecipientState::Delivered { reply, .. } => ("delivered", 0, None, Some(text(reply))),
        RecipientState::Failed { reply, .. } => ("failed", 0, None, Some(text(reply))),
    };
    let remote_mta = state.remote_mta();
    RecipientInfo {
        address: text(address),
        state: word.to_owned(),
        attempts,
        next_attempt_unix_ms: next,
        last_reply: reply,
        remote_mta: (!remote_mta.is_empty()).then(|| text(remote_mta)),
    }
}

/// Where a message is by its recipients' states alone (a stopped spool, or a message in
/// the delivery loop's active set and not taken by a connection): finishing when every
/// recipient is final, deferred while its earliest retry is after `now_ms`, else ready.
pub fn queue_state_of(states: &[RecipientState], now_ms: u64) -> QueueState {
    let due = states
        .iter()
        .filter_map(|state| match state {
            RecipientState::Pending => Some(0),
            RecipientState::Deferred {
                next_attempt_unix_ms,
                ..
            } => Some(*next_attempt_unix_ms),
            RecipientState::Delivered { .. } | RecipientState::Failed { .. } => None,
        })
        .min();
    match due {
        None => QueueState::Finishing,
        Some(at) if at > now_ms => QueueState::Deferred,
        Some(_) => QueueState::Ready,
    }
}

/// A live message for the tools, from the spool's listing and its envelope.
pub fn message_info(listed: &Listed<'_>, envelope: &Envelope, queue: QueueState) -> MessageInfo {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let recipients: Vec<RecipientInfo> = envelope
        .recipients
        .iter()
        .zip(listed.recipients)
        .map(|(recipient, state)| recipient_info(&recipient.address, state))
        .collect();
    let next_attempt_unix_ms = recipients
        .iter()
        .filter_map(|r| r.next_attempt_unix_ms)
        .min();
    MessageInfo {
        id: listed.spool_ref.id.to_string(),
        queue,
        arrival_unix_ms: envelope.arrival_unix_ms,
        size_bytes: listed.spool_ref.body_len,
        sender: text(&envelope.reverse_path),
        next_attempt_unix_ms,
        client_address: text(&envelope.client.address),
        helo: text(&envelope.client.helo),
        envid: envelope.params.envid.as_deref().map(text),
        ret: envelope.params.ret.map(|ret| {
            match ret {
                Ret::Full => "full",
                Ret::Headers => "hdrs",
            }
            .to_owned()
        }),
        smtputf8: envelope.params.smtputf8,
        recipients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_state_follows_the_earliest_retry() {
        let deferred = |at| RecipientState::Deferred {
            attempts: 1,
            next_attempt_unix_ms: at,
            last_reply: b"451 4.3.0 later".to_vec(),
            remote_mta: b"mx.test".to_vec(),
        };
        let failed = RecipientState::Failed {
            reply: b"5.0.0 x".to_vec(),
            remote_mta: Vec::new(),
        };
        assert_eq!(
            queue_state_of(&[RecipientState::Pending], 10),
            QueueState::Ready
        );
        assert_eq!(queue_state_of(&[deferred(11)], 10), QueueState::Deferred);
        assert_eq!(queue_state_of(&[deferred(10)], 10), QueueState::Ready);
        assert_eq!(
            queue_state_of(&[failed.clone(), deferred(20)], 10),
            QueueState::Deferred
        );
        assert_eq!(queue_state_of(&[failed], 10), QueueState::Finishing);
        assert_eq!(queue_state_of(&[], 10), QueueState::Finishing);
    }

    #[test]
    fn replies_are_one_json_line_each_and_read_back() {
        let replies = [
            Reply::Done {
                count: 3,
                next_hops: vec!["127.0.0.1:25".into()],
            },
            Reply::NotFound {
                error: "no message 0000000000000007".into(),
            },
            Reply::Error {
                error: "bad".into(),
            },
        ];
        for reply in replies {
            let mut line = Vec::new();
            reply.line_into(&mut line);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(line.last(), Some(&b'\n'));
            let back: Reply = serde_json::from_slice(&line).unwrap();
            assert_eq!(back, reply);
        }
        let done: Reply = serde_json::from_str(r#"{"type":"done","count":1}"#).unwrap();
        assert_eq!(
            done,
            Reply::Done {
                count: 1,
                next_hops: vec![]
            }
        );
    }
}
