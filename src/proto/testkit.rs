//! The test kit: one recording [`MessageSink`] for everything that drives a session outside
//! the server (the session's unit tests, the fuzz target, benches). Built for tests, and for
//! other crates with the `testkit` feature.
//!
//! What it does: record every call the session makes into its sink (each message's envelope
//! and content, aborts, outcomes, the security fields), answer each message as told (stored,
//! failed, or pending), and check the sink's half of the contract: a message starts only
//! when none is open, has at least one recipient, and gets content, an end or an abort only
//! while open; with [`SecurityChecks`], the envelope's TLS and AUTH fields agree with what
//! the driver knows.
//!
//! What it does not do: store anything, or drive the session (each test drives it its way).

use super::dsn::{Notify, Ret};
use super::envelope::Envelope;
use super::sink::{MessageSink, QueueId, Verdict};

/// A stored message: (sender, recipients, content).
pub type Stored = (Vec<u8>, Vec<Vec<u8>>, Vec<u8>);

/// A stored message's DSN parameters (RFC 3461): `RET`, `ENVID` as given, and each
/// recipient's `NOTIFY` and `ORCPT` as given.
pub type StoredDsn = (Option<Ret>, Option<Vec<u8>>, Vec<(Notify, Option<Vec<u8>>)>);

/// What the driver knows about the connection, checked against every message's envelope.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SecurityChecks {
    /// `--require-tls`: no message outside TLS.
    pub require_tls: bool,
    /// `--auth-required`: no message without AUTH.
    pub auth_required: bool,
    /// TLS is on.
    pub tls: bool,
    /// The user of the last accepted AUTH (forgotten when TLS starts, RFC 3207 §4.2).
    pub authenticated: Option<Vec<u8>>,
}

/// A sink that records everything, to check what the session hands over.
#[derive(Debug, Default, PartialEq)]
pub struct RecordingSink {
    /// Completed messages: (sender, recipients, content).
    pub messages: Vec<Stored>,
    /// Per completed message: (TLS version, AUTH user) from its envelope.
    pub security: Vec<(Option<String>, Option<Vec<u8>>)>,
    /// Per completed message: its DSN parameters.
    pub dsn: Vec<StoredDsn>,
    /// Content of the open message so far.
    pub current: Vec<u8>,
    /// A message is open.
    pub open: bool,
    /// Messages started, ended (stored or not) and aborted.
    pub started: usize,
    /// Messages ended.
    pub ended: usize,
    /// Messages aborted.
    pub aborted: usize,
    /// Answer `Failed` to every message.
    pub fail_store: bool,
    /// Answer `Pending` and count the messages awaiting completion.
    pub defer_store: bool,
    /// Messages answered `Pending`.
    pub pending: usize,
    /// Every outcome heard: (sender, recipients, reply).
    pub outcomes: Vec<(Vec<u8>, usize, Vec<u8>)>,
    /// Name each message `Q<n>` (n: messages ended so far), as the server's stores do.
    pub names_messages: bool,
    /// Checks of the envelope's security fields, if wanted.
    pub checks: Option<SecurityChecks>,
    /// Each end of DATA content reported ([`MessageSink::on_content_end`]): the offset in
    /// its call's input, the octets.
    pub content_ends: Vec<(usize, u64)>,
}

impl RecordingSink {
    /// The security fields of `envelope` agree with what the driver knows, and the policy
    /// allows a message now.
    fn check_security(&self, envelope: &Envelope<'_>) {
        let Some(checks) = &self.checks else {
            return;
        };
        assert!(
            !checks.require_tls || checks.tls,
            "message outside TLS with require_tls"
        );
        assert!(
            !checks.auth_required || checks.authenticated.is_some(),
            "message without AUTH with auth_required"
        );
        assert_eq!(envelope.tls.is_some(), checks.tls, "envelope TLS state");
        assert_eq!(
            envelope.auth_user,
            checks.authenticated.as_deref(),
            "envelope AUTH user"
        );
    }
}

impl MessageSink for RecordingSink {
    fn on_outcome(&mut self, envelope: Option<&Envelope<'_>>, _size: u64, reply: &[u8]) {
        let (sender, recipients) = envelope.map_or((Vec::new(), 0), |e| {
            (e.sender.to_vec(), e.recipient_count())
        });
        self.outcomes.push((sender, recipients, reply.to_vec()));
    }
    fn on_message_start(&mut self, envelope: &Envelope<'_>) {
        assert!(!self.open, "message started twice");
        assert!(
            envelope.recipient_count() >= 1,
            "message without recipients"
        );
        self.check_security(envelope);
        self.open = true;
        self.started += 1;
        self.current.clear();
    }
    fn on_content_end(&mut self, input_end: usize, octets: u64) {
        assert!(self.open, "content end outside a message");
        self.content_ends.push((input_end, octets));
    }
    fn on_message_data(&mut self, piece: &[u8]) {
        assert!(self.open, "data outside a message");
        self.current.extend_from_slice(piece);
    }
    fn on_message_end(&mut self, envelope: &Envelope<'_>) -> Verdict {
        assert!(self.open, "end without a message");
        assert!(
            envelope.recipient_count() >= 1,
            "message without recipients"
        );
        self.check_security(envelope);
        self.open = false;
        self.ended += 1;
        if self.fail_store {
            self.current.clear();
            return Verdict::Failed;
        }
        if self.defer_store {
            self.pending += 1;
        }
        self.messages.push((
            envelope.sender.to_vec(),
            envelope.recipients().map(<[u8]>::to_vec).collect(),
            std::mem::take(&mut self.current),
        ));
        self.security.push((
            envelope.tls.map(|t| t.version.to_string()),
            envelope.auth_user.map(<[u8]>::to_vec),
        ));
        self.dsn.push((
            envelope.params.ret,
            envelope.envid.map(<[u8]>::to_vec),
            envelope
                .recipients
                .dsn()
                .map(|params| (params.notify, params.orcpt.map(<[u8]>::to_vec)))
                .collect(),
        ));
        if self.defer_store {
            Verdict::Pending
        } else {
            Verdict::Stored
        }
    }
    fn on_message_abort(&mut self) {
        assert!(self.open, "abort without a message");
        self.open = false;
        self.aborted += 1;
        self.current.clear();
    }
    fn queue_id(&self) -> Option<QueueId> {
        let name = format!("Q{}", self.messages.len());
        self.names_messages
            .then(|| QueueId::new(name.as_bytes()))
            .flatten()
    }
}
