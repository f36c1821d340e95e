//! Replies: every fixed reply as a byte constant, and encoders for the few that carry values.
//!
//! What it does: hold the exact bytes we send, so tests can compare byte for byte and the hot
//! path only copies a slice into the output buffer.
//!
//! [`Replies`] is where every reply a session produces goes: the bytes for the wire, and one
//! count per reply in the caller's [`ReplyTally`], so replies are counted where they are made,
//! never by re-reading output.
//!
//! What it does not do: choose which reply to send (that is [`super::session`]), or write to a
//! socket. Reply text is always ours and printable ASCII: client bytes are never echoed
//! (a reply that echoes input is how header injection and log forgery start).
//!
//! Every 2xx/4xx/5xx reply except the greeting and the HELO/EHLO replies carries an enhanced
//! status code (RFC 2034 §4, codes from RFC 3463), since we always advertise
//! ENHANCEDSTATUSCODES.

use super::command::CommandError;
use super::sink::QueueId;
use std::io::Write as _;

/// `MAIL` accepted.
pub const MAIL_OK: &[u8] = b"250 2.1.0 Ok\r\n";
/// `RCPT` accepted.
pub const RCPT_OK: &[u8] = b"250 2.1.5 Ok\r\n";
/// `RSET` / `NOOP`.
pub const OK: &[u8] = b"250 2.0.0 Ok\r\n";
/// `DATA` accepted: send the content (RFC 5321 §4.1.1.4). 3xx carries no enhanced code.
pub const DATA_GO_AHEAD: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";
/// The message is accepted (after `.` or `BDAT ... LAST`) by a sink that names no id; with
/// one, see [`message_accepted`].
pub const MESSAGE_ACCEPTED: &[u8] = b"250 2.0.0 Ok: queued\r\n";
/// `VRFY`: we do not verify, but would accept (RFC 5321 §3.5.3).
pub const VRFY_CANNOT: &[u8] = b"252 2.5.0 Cannot VRFY user, but will accept message\r\n";
/// `HELP`.
pub const HELP: &[u8] = b"214 2.0.0 fastsmtpd: see RFC 5321\r\n";
/// `QUIT`.
pub const BYE: &[u8] = b"221 2.0.0 Bye\r\n";

/// The line exceeded the command-line limit (RFC 5321 §4.5.3.1.4, §4.5.3.1.10 use 500).
pub const LINE_TOO_LONG: &[u8] = b"500 5.5.2 Line too long\r\n";
/// `MAIL`/`RCPT`/`DATA` before `HELO`/`EHLO`.
pub const NEED_HELO: &[u8] = b"503 5.5.1 Error: send HELO/EHLO first\r\n";
/// `RCPT` without a transaction.
pub const NEED_MAIL: &[u8] = b"503 5.5.1 Error: need MAIL command\r\n";
/// `MAIL` inside a transaction.
pub const NESTED_MAIL: &[u8] = b"503 5.5.1 Error: nested MAIL command\r\n";
/// `DATA`/`BDAT` with no accepted recipient (and none were tried).
pub const NEED_RCPT: &[u8] = b"503 5.5.1 Error: need RCPT command\r\n";
/// `DATA`/`BDAT` when every recipient tried was refused (RFC 5321 §3.3).
pub const NO_VALID_RECIPIENTS: &[u8] = b"554 5.5.1 Error: no valid recipients\r\n";
/// `DATA` after `BDAT` in one transaction (RFC 3030 §2).
pub const DATA_AFTER_BDAT: &[u8] = b"503 5.5.1 Error: DATA not allowed after BDAT\r\n";
/// `DATA` with `BODY=BINARYMIME` (RFC 3030 §3: BINARYMIME needs BDAT).
pub const BINARYMIME_NEEDS_BDAT: &[u8] = b"503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n";
/// `BDAT` after `HELO`: CHUNKING was never offered (RFC 3030 §2, RFC 1869 §4.5).
pub const BDAT_NEEDS_EHLO: &[u8] = b"503 5.5.1 Error: BDAT requires EHLO\r\n";
/// `MAIL`/`RCPT` while a BDAT message is being received.
pub const NOT_DURING_BDAT: &[u8] = b"503 5.5.1 Error: command not allowed during BDAT\r\n";
/// Parameters on `MAIL` after `HELO` (no extensions were offered).
pub const PARAMS_AFTER_HELO: &[u8] = b"555 5.5.4 Error: parameters not supported after HELO\r\n";
/// Declared or actual size over the limit (RFC 1870 §6.2, RFC 3463 5.3.4).
pub const MESSAGE_TOO_BIG: &[u8] = b"552 5.3.4 Error: message size exceeds fixed limit\r\n";
/// Too many recipients (RFC 5321 §4.5.3.1.10: 452, not 552).
pub const TOO_MANY_RECIPIENTS: &[u8] = b"452 4.5.3 Error: too many recipients\r\n";
/// Non-ASCII sender without `SMTPUTF8` (RFC 6531 §3.5).
pub const SENDER_NEEDS_SMTPUTF8: &[u8] =
    b"550 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n";
/// Non-ASCII recipient without `SMTPUTF8` (RFC 6531 §3.5).
pub const RECIPIENT_NEEDS_SMTPUTF8: &[u8] =
    b"553 5.6.7 Error: non-ASCII address requires SMTPUTF8\r\n";
/// The message held a bare CR or bare LF and the policy is to refuse it.
/// The text names the switch that keeps such messages, for whoever reads the sender's log
/// (RFC 5321 §2.3.8 is the rule broken: a protocol-level error, hence 5.5.2 as for commands).
pub const BARE_CR_LF_IN_DATA: &[u8] =
    b"550 5.5.2 Error: bare CR or LF in message data (see --bare-lf keep)\r\n";
/// The sink could not store the message: the client should retry (RFC 5321 §4.1.1.4 forbids
/// a 250 for a message we cannot take responsibility for).
pub const STORE_FAILED: &[u8] = b"451 4.3.0 Error: could not store message, try again later\r\n";
/// The capture store is full and refuses rather than evicts (`--on-full tempfail`): RFC 3463
/// 4.3.1 "mail system full", a transient failure the client retries after room is made.
pub const CAPTURE_FULL: &[u8] = b"452 4.3.1 Error: capture store full, try again later\r\n";
/// The message alone is larger than the capture store's whole budget (`--capture-memory`):
/// RFC 3463 5.3.4 "message too big for system", permanent (a retry cannot fit either).
pub const CAPTURE_TOO_BIG: &[u8] =
    b"552 5.3.4 Error: message larger than the capture store's budget\r\n";
/// The messages being received for the capture store already hold as much memory as its
/// budget: RFC 3463 4.3.1 "mail system full", transient (the sender retries once they end).
pub const CAPTURE_BUSY: &[u8] =
    b"452 4.3.1 Error: too much mail in flight to the capture store, try again later\r\n";

/// Too many failed commands in one session.
pub const TOO_MANY_ERRORS: &[u8] = b"421 4.7.0 Error: too many errors, closing connection\r\n";
/// Too many commands that move no message forward (HELO, EHLO, RSET, NOOP, VRFY, HELP, ...).
pub const TOO_MANY_JUNK_COMMANDS: &[u8] =
    b"421 4.7.0 Error: too many commands without mail, closing connection\r\n";
/// Too many connections from the client's address at once.
pub const TOO_MANY_CONNECTIONS_FROM_ADDRESS: &[u8] =
    b"421 4.7.0 Error: too many connections from your address, try again later\r\n";
/// The idle or command timeout expired (RFC 5321 §4.5.3.2.7).
pub const TIMEOUT: &[u8] = b"421 4.4.2 Error: timeout exceeded, closing connection\r\n";
/// Data arrived more slowly than the minimum rate.
pub const TOO_SLOW: &[u8] = b"421 4.4.2 Error: data rate too low, closing connection\r\n";
/// The connection limit is reached.
pub const TOO_MANY_CONNECTIONS: &[u8] =
    b"421 4.7.0 Error: too many connections, try again later\r\n";
/// A fault rule closes the connection (`disconnect=421`).
pub const FAULT_CLOSING: &[u8] =
    b"421 4.3.0 Service not available, closing transmission channel\r\n";
/// Any command but `QUIT` after a `554` greeting (RFC 5321 §3.1: "SHOULD respond to any
/// intervening commands with "503 bad sequence of commands"").
pub const SESSION_REFUSED: &[u8] = b"503 5.5.1 Error: this session was refused, send QUIT\r\n";
/// The server is shutting down.
pub const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Error: service shutting down, closing connection\r\n";
/// BDAT octets discarded beyond the allowance: the client keeps sending a refused message.
pub const TOO_MUCH_DISCARDED: &[u8] =
    b"421 4.7.0 Error: too much refused message data, closing connection\r\n";

/// `STARTTLS` accepted: the TLS handshake follows at once (RFC 3207 §4).
pub const READY_TO_START_TLS: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
/// `STARTTLS` inside TLS (RFC 3207 §4.2: no second negotiation).
pub const TLS_ALREADY_ACTIVE: &[u8] = b"503 5.5.1 Error: TLS already active\r\n";
/// `STARTTLS` or `AUTH` inside a mail transaction.
pub const NOT_IN_TRANSACTION: &[u8] =
    b"503 5.5.1 Error: command not allowed during a mail transaction\r\n";
/// `MAIL` or `AUTH` on plaintext under `--require-tls` (RFC 3207 §4).
pub const MUST_STARTTLS: &[u8] = b"530 5.7.0 Must issue a STARTTLS command first\r\n";
/// `MAIL` without AUTH under `--auth-required` (RFC 4954 §6).
pub const AUTH_REQUIRED: &[u8] = b"530 5.7.0 Error: authentication required\r\n";
/// `AUTH` before `EHLO` (RFC 4954 §4: AUTH is an ESMTP extension), or after `HELO`.
pub const NEED_EHLO: &[u8] = b"503 5.5.1 Error: send EHLO first\r\n";
/// `AUTH` succeeded (RFC 4954 §6).
pub const AUTH_OK: &[u8] = b"235 2.7.0 Authentication successful\r\n";
/// The credentials cannot be checked now (RFC 4954 §6): try again later.
pub const AUTH_TEMPORARY_FAILURE: &[u8] = b"454 4.7.0 Temporary authentication failure\r\n";
/// The client failed to authenticate too often within the window (RFC 4954 §6's temporary
/// failure, as Postfix's anvil answers past `smtpd_client_auth_rate_limit`): try again later.
pub const AUTH_TOO_MANY_FAILURES: &[u8] =
    b"454 4.7.0 Error: too many failed authentications from your address, try again later\r\n";
/// `AUTH` with wrong credentials (RFC 4954 §6).
pub const AUTH_FAILED: &[u8] = b"535 5.7.8 Error: authentication failed\r\n";
/// The client answered a challenge with `*` (RFC 4954 §4).
pub const AUTH_CANCELLED: &[u8] = b"501 5.7.0 Error: authentication cancelled\r\n";
/// A response that is not base64, or a PLAIN message that is not three fields (RFC 4954 §4).
pub const AUTH_UNDECODABLE: &[u8] = b"501 5.5.2 Error: cannot decode response\r\n";
/// `AUTH` on plaintext when it is offered only under TLS (RFC 4954 §6).
pub const AUTH_NEEDS_TLS: &[u8] =
    b"538 5.7.11 Encryption required for requested authentication mechanism\r\n";
/// `AUTH` with a mechanism we do not offer (RFC 4954 §4).
pub const AUTH_UNKNOWN_MECHANISM: &[u8] =
    b"504 5.5.4 Error: unrecognized authentication mechanism\r\n";
/// `AUTH` after a successful `AUTH` (RFC 4954 §4).
pub const ALREADY_AUTHENTICATED: &[u8] = b"503 5.5.1 Error: already authenticated\r\n";
/// The challenge of `AUTH PLAIN` without an initial response: empty (RFC 4616, RFC 4954 §4).
pub const PLAIN_CHALLENGE: &[u8] = b"334 \r\n";
/// `AUTH LOGIN`'s first challenge, base64 of `Username:`.
pub const LOGIN_USERNAME: &[u8] = b"334 VXNlcm5hbWU6\r\n";
/// `AUTH LOGIN`'s second challenge, base64 of `Password:`.
pub const LOGIN_PASSWORD: &[u8] = b"334 UGFzc3dvcmQ6\r\n";

/// Whether `reply` is a `421`: the server closes the connection after it (RFC 5321 §3.8,
/// §4.2.2: "Service not available, closing transmission channel").
pub fn is_closing(reply: &[u8]) -> bool {
    reply.starts_with(b"421")
}

/// The fixed reply for a command that failed to parse.
pub fn command_error(error: CommandError) -> &'static [u8] {
    match error {
        CommandError::Unrecognized => b"500 5.5.2 Error: command not recognized\r\n",
        CommandError::InvalidBytes => b"500 5.5.2 Error: bare CR, LF or NUL in command line\r\n",
        CommandError::InvalidUtf8 => b"500 5.5.2 Error: invalid UTF-8 in command line\r\n",
        CommandError::NotSmtp => b"221 2.7.0 Error: this is an SMTP server, closing\r\n",
        CommandError::NotImplemented => b"502 5.5.1 Error: command not implemented\r\n",
        CommandError::MissingDomain => b"501 5.5.4 Syntax: HELO/EHLO domain\r\n",
        CommandError::ControlInDomain => {
            b"501 5.5.4 Error: control characters in HELO/EHLO argument\r\n"
        }
        CommandError::MissingArgument => b"501 5.5.4 Syntax: VRFY address\r\n",
        CommandError::UnexpectedArgument => b"501 5.5.4 Syntax: command takes no argument\r\n",
        CommandError::BadKeyword => {
            b"501 5.5.4 Syntax: MAIL FROM:<address> / RCPT TO:<address>\r\n"
        }
        CommandError::BadSenderPath => b"501 5.1.7 Error: bad sender address syntax\r\n",
        CommandError::BadRecipientPath => b"501 5.1.3 Error: bad recipient address syntax\r\n",
        CommandError::SenderTooLong => b"501 5.1.7 Error: sender address too long\r\n",
        CommandError::RecipientTooLong => b"501 5.1.3 Error: recipient address too long\r\n",
        CommandError::RecipientNotUtf8 => {
            b"553 5.6.7 Error: recipient address is not valid UTF-8\r\n"
        }
        CommandError::BadParameter => b"501 5.5.4 Error: bad parameter syntax\r\n",
        CommandError::UnknownParameter => b"555 5.5.4 Error: unsupported parameter\r\n",
        CommandError::MissingMechanism => {
            b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
        }
        CommandError::BadBdat => b"501 5.5.4 Syntax: BDAT size [LAST], closing connection\r\n",
    }
}

/// Appends `250 2.0.0 Ok: <n> octets received` (a non-last BDAT chunk, RFC 3030 §2).
pub fn chunk_received_into(octets: u64, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail; formatting integers does not allocate.
    let _ = write!(out, "250 2.0.0 Ok: {octets} octets received\r\n");
}

/// The start of [`message_accepted`]'s reply when the sink named the message.
const QUEUED_AS: &[u8] = b"250 2.0.0 Ok: queued as ";
/// Room for the longest `250 2.0.0 Ok: queued as <id>` reply.
const ACCEPTED_MAX: usize = QUEUED_AS.len() + QueueId::MAX_LEN + 2;

/// The `250` for an accepted message, built on the stack (nothing allocated per message).
#[derive(Clone, Copy, Debug)]
pub struct Accepted {
    /// Octets used in `bytes`.
    len: usize,
    /// The reply.
    bytes: [u8; ACCEPTED_MAX],
}

impl Accepted {
    /// The whole reply, `CR LF` included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// `250 2.0.0 Ok: queued as <id>` when the sink named the message (as Postfix says it, so a
/// sender's log can be joined with the stored record), else [`MESSAGE_ACCEPTED`]. The id is
/// printable ASCII by construction ([`QueueId::new`]).
pub fn message_accepted(id: Option<QueueId>) -> Accepted {
    let mut reply = Accepted {
        len: 0,
        bytes: [0; ACCEPTED_MAX],
    };
    let parts: [&[u8]; 3] = match &id {
        Some(id) => [QUEUED_AS, id.as_bytes(), b"\r\n"],
        None => [MESSAGE_ACCEPTED, b"", b""],
    };
    for part in parts {
        reply.bytes[reply.len..reply.len + part.len()].copy_from_slice(part);
        reply.len += part.len();
    }
    reply
}

/// Lowest reply code [`ReplyTally`] counts (RFC 5321 §4.2.1: codes run from 2yz to 5yz).
pub const FIRST_CODE: u16 = 200;
/// Highest reply code [`ReplyTally`] counts.
pub const LAST_CODE: u16 = 599;
/// Codes from [`FIRST_CODE`] to [`LAST_CODE`].
const CODES: usize = (LAST_CODE - FIRST_CODE + 1) as usize;

/// Who made a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The server: the protocol's rules and limits, a store's verdict, a timeout, shutdown.
    Protocol,
    /// A fault rule, through the session's gate (an injected refusal or `421`).
    Fault,
}

/// Error replies (4xx and 5xx) made so far, by class and by [`Origin`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorReplies {
    /// `[4xx, 5xx]` made by the server itself.
    pub protocol: [u64; 2],
    /// `[4xx, 5xx]` made by fault rules.
    pub fault: [u64; 2],
}

impl ErrorReplies {
    /// Every error reply, whatever its class and origin.
    pub fn total(&self) -> u64 {
        self.protocol.iter().chain(&self.fault).sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &ErrorReplies) {
        for (mine, theirs) in self
            .protocol
            .iter_mut()
            .zip(&other.protocol)
            .chain(self.fault.iter_mut().zip(&other.fault))
        {
            *mine += theirs;
        }
    }
}

/// Replies produced, by code: kept by whoever drives sessions (one per server worker), counted
/// as [`Replies::push`] appends them. A multi-line reply counts once. A tally made with
/// [`ReplyTally::disabled`] does not count by code (a server without `--metrics` pays one
/// branch per reply, not the count); error replies ([`ErrorReplies`]) are counted always.
#[derive(Debug, Clone)]
pub struct ReplyTally {
    /// Whether replies are counted by code.
    enabled: bool,
    /// 4xx and 5xx replies by origin: counted even when `enabled` is false (the exit summary
    /// and the stats line report them).
    errors: ErrorReplies,
    /// Replies per code, indexed by `code - FIRST_CODE`.
    counts: [u64; CODES],
    /// One bit per code counted since the last [`ReplyTally::take_changed`].
    changed: [u64; CODES.div_ceil(64)],
}

impl Default for ReplyTally {
    fn default() -> Self {
        ReplyTally {
            enabled: true,
            errors: ErrorReplies::default(),
            counts: [0; CODES],
            changed: [0; CODES.div_ceil(64)],
        }
    }
}

impl ReplyTally {
    /// A tally that counts nothing.
    pub fn disabled() -> ReplyTally {
        ReplyTally {
            enabled: false,
            ..ReplyTally::default()
        }
    }

    /// Counts one reply made by `origin`; its code is its first three octets (ours always
    /// have one).
    #[inline]
    fn count(&mut self, reply: &[u8], origin: Origin) {
        let class = match reply.first() {
            Some(b'4') => Some(0),
            Some(b'5') => Some(1),
            _ => None,
        };
        if let Some(class) = class {
            match origin {
                Origin::Protocol => self.errors.protocol[class] += 1,
                Origin::Fault => self.errors.fault[class] += 1,
            }
        }
        if !self.enabled {
            return;
        }
        let code = match reply {
            [a, b, c, ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return,
        };
        if (FIRST_CODE..=LAST_CODE).contains(&code) {
            let index = usize::from(code - FIRST_CODE);
            self.counts[index] += 1;
            self.changed[index / 64] |= 1 << (index % 64);
        }
    }

    /// Error replies so far, by class and origin.
    pub fn errors(&self) -> ErrorReplies {
        self.errors
    }

    /// Replies with `code` so far.
    pub fn get(&self, code: u16) -> u64 {
        if (FIRST_CODE..=LAST_CODE).contains(&code) {
            self.counts[usize::from(code - FIRST_CODE)]
        } else {
            0
        }
    }

    /// Calls `publish(code, total)` for every code counted since the last call (cheap when
    /// nothing changed: one look at a few words), for publishing to another thread.
    pub fn take_changed(&mut self, mut publish: impl FnMut(u16, u64)) {
        for (word_index, word) in self.changed.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let index = word_index * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                publish(FIRST_CODE + index as u16, self.counts[index]);
            }
        }
    }
}

/// Room past a budget for the reply that crosses it (the longest reply we build, the EHLO
/// reply, is about 200 octets; a fault rule's reply is one line).
const BUDGET_SLACK: usize = 1024;

/// Where a session writes its replies: the caller's output buffer (appended to, never
/// cleared here), the caller's tally, and the caller's budget.
#[derive(Debug)]
pub struct Replies<'a> {
    /// The bytes for the wire.
    bytes: &'a mut Vec<u8>,
    /// The count per code.
    tally: &'a mut ReplyTally,
    /// Once `bytes` is this long, the session takes no further command until the caller has
    /// written some out (see [`Replies::with_limit`]).
    limit: usize,
}

impl<'a> Replies<'a> {
    /// Replies appended to `bytes`, counted in `tally`, without a budget.
    pub fn new(bytes: &'a mut Vec<u8>, tally: &'a mut ReplyTally) -> Replies<'a> {
        Replies::with_limit(bytes, tally, usize::MAX)
    }

    /// Replies appended to `bytes`, counted in `tally`; once `bytes` holds `limit` octets the
    /// session stops taking commands (the reply being written is finished, so the buffer ends
    /// at most one reply past the limit) and says so in
    /// [`super::session::Wait::Output`]. A client that pipelines commands but never
    /// reads its replies then holds a bounded amount of memory: its input stays unread.
    pub fn with_limit(
        bytes: &'a mut Vec<u8>,
        tally: &'a mut ReplyTally,
        limit: usize,
    ) -> Replies<'a> {
        Replies {
            bytes,
            tally,
            limit,
        }
    }

    /// Whether the budget is spent.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= self.limit
    }

    /// Appends one whole reply (all its lines) and counts it as the server's own.
    #[inline]
    pub fn push(&mut self, reply: &[u8]) {
        self.push_from(reply, Origin::Protocol);
    }

    /// Appends one whole reply and counts it as made by `origin`.
    #[inline]
    pub fn push_from(&mut self, reply: &[u8], origin: Origin) {
        self.tally.count(reply, origin);
        self.make_room(reply.len());
        self.bytes.extend_from_slice(reply);
    }

    /// With a budget, a growing buffer doubles as usual but never past the budget plus room
    /// for the reply that crosses it: a full buffer holds about the budget, not twice that.
    #[inline]
    fn make_room(&mut self, additional: usize) {
        let needed = self.bytes.len() + additional;
        if needed <= self.bytes.capacity() || self.limit == usize::MAX {
            return;
        }
        self.grow_to_budget(needed);
    }

    /// The slow half of [`Replies::make_room`].
    #[cold]
    fn grow_to_budget(&mut self, needed: usize) {
        let doubled = (self.bytes.capacity() * 2).max(needed).max(256);
        let target = doubled.min(needed.max(self.limit.saturating_add(BUDGET_SLACK)));
        self.bytes.reserve_exact(target - self.bytes.len());
    }

    /// Appends and counts `250 2.0.0 Ok: <n> octets received` (a non-last BDAT chunk).
    pub fn push_chunk_received(&mut self, octets: u64) {
        // "250 2.0.0 Ok: " + 20 digits + " octets received\r\n".
        self.make_room(52);
        let start = self.bytes.len();
        chunk_received_into(octets, self.bytes);
        self.tally.count(&self.bytes[start..], Origin::Protocol);
    }

    /// The length of the caller's buffer: where the next reply would start.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the caller's buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The replies that depend on the server's name, built once at start-up.
#[derive(Debug, Clone)]
pub struct Banner {
    /// `220 <host> ESMTP fastsmtpd`.
    pub greeting: Box<[u8]>,
    /// The one-line reply to `HELO`.
    pub helo: Box<[u8]>,
    /// The multi-line reply to `EHLO` on a plaintext connection, listing every extension we
    /// implement (with `STARTTLS` when TLS is configured).
    pub ehlo: Box<[u8]>,
    /// The reply to `EHLO` inside TLS: never `STARTTLS` (RFC 3207 §4.2).
    pub ehlo_tls: Box<[u8]>,
}

/// The extensions that depend on how the server is set up (TLS, AUTH) and on the connection:
/// made only by `SecurityPolicy::advertised` (in `super::session`), so what EHLO lists and
/// what the session accepts come from one policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Advertised {
    /// `STARTTLS` on plaintext connections (RFC 3207): TLS is configured.
    pub starttls: bool,
    /// `AUTH PLAIN LOGIN` on plaintext connections (`--auth-plaintext`).
    pub auth_on_plaintext: bool,
    /// `AUTH PLAIN LOGIN` inside TLS.
    pub auth_under_tls: bool,
    /// `DSN` (RFC 3461): only a server that relays, and sends notifications, offers it (a
    /// sink would promise notifications it never sends). Set from `SessionConfig::dsn`.
    pub dsn: bool,
}

impl Banner {
    /// Builds the replies for `hostname` (printable ASCII without spaces, checked by the caller)
    /// and the advertised message size limit (RFC 1870 §4), with no STARTTLS or AUTH.
    pub fn new(hostname: &str, max_message_size: u64) -> Banner {
        Banner::with(hostname, max_message_size, Advertised::default())
    }

    /// The same, with the extensions in `advertised`.
    pub fn with(hostname: &str, max_message_size: u64, advertised: Advertised) -> Banner {
        let greeting = format!("220 {hostname} ESMTP fastsmtpd\r\n");
        let helo = format!("250 {hostname}\r\n");
        // RFC 5321 §4.1.1.1: the first line names the server; then one extension a line.
        let ehlo = |starttls: bool, auth: bool| {
            let mut reply = format!(
                "250-{hostname}\r\n\
                 250-PIPELINING\r\n\
                 250-SIZE {max_message_size}\r\n\
                 250-8BITMIME\r\n\
                 250-BINARYMIME\r\n\
                 250-CHUNKING\r\n\
                 250-SMTPUTF8\r\n"
            );
            if advertised.dsn {
                reply.push_str("250-DSN\r\n");
            }
            if starttls {
                reply.push_str("250-STARTTLS\r\n");
            }
            if auth {
                // RFC 4954 §3: the mechanisms, space separated.
                reply.push_str("250-AUTH PLAIN LOGIN\r\n");
            }
            reply.push_str("250 ENHANCEDSTATUSCODES\r\n");
            reply.into_bytes().into_boxed_slice()
        };
        Banner {
            greeting: greeting.into_bytes().into(),
            helo: helo.into_bytes().into(),
            ehlo: ehlo(advertised.starttls, advertised.auth_on_plaintext),
            ehlo_tls: ehlo(false, advertised.auth_under_tls),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply is one or more lines `ddd[ -]text CRLF` of printable ASCII, and every 2xx,
    /// 4xx and 5xx line carries an enhanced code whose class matches (RFC 2034 §4).
    fn check_reply(reply: &[u8], enhanced: bool) {
        assert!(reply.ends_with(b"\r\n"), "{reply:?}");
        for line in reply[..reply.len() - 2].split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(line.len() >= 4, "{line:?}");
            assert!(line[..3].iter().all(u8::is_ascii_digit));
            assert!(line[3] == b' ' || line[3] == b'-');
            assert!(line.iter().all(|&b| (32..127).contains(&b)), "{line:?}");
            if enhanced && line[0] != b'3' {
                assert_eq!(
                    line[4],
                    line[0],
                    "class of {}",
                    String::from_utf8_lossy(line)
                );
                assert_eq!(line[5], b'.');
            }
        }
    }

    #[test]
    fn fixed_replies_are_well_formed() {
        for reply in [
            MAIL_OK,
            RCPT_OK,
            OK,
            DATA_GO_AHEAD,
            MESSAGE_ACCEPTED,
            message_accepted(QueueId::new(&[b'~'; QueueId::MAX_LEN])).as_bytes(),
            VRFY_CANNOT,
            HELP,
            BYE,
            LINE_TOO_LONG,
            NEED_HELO,
            NEED_MAIL,
            NESTED_MAIL,
            NEED_RCPT,
            NO_VALID_RECIPIENTS,
            DATA_AFTER_BDAT,
            BINARYMIME_NEEDS_BDAT,
            NOT_DURING_BDAT,
            PARAMS_AFTER_HELO,
            MESSAGE_TOO_BIG,
            TOO_MANY_RECIPIENTS,
            SENDER_NEEDS_SMTPUTF8,
            RECIPIENT_NEEDS_SMTPUTF8,
            BARE_CR_LF_IN_DATA,
            STORE_FAILED,
            CAPTURE_FULL,
            CAPTURE_TOO_BIG,
            CAPTURE_BUSY,
            TOO_MANY_ERRORS,
            TIMEOUT,
            TOO_SLOW,
            TOO_MANY_CONNECTIONS,
            TOO_MANY_CONNECTIONS_FROM_ADDRESS,
            TOO_MANY_JUNK_COMMANDS,
            BDAT_NEEDS_EHLO,
            FAULT_CLOSING,
            SHUTTING_DOWN,
            TOO_MUCH_DISCARDED,
            READY_TO_START_TLS,
            TLS_ALREADY_ACTIVE,
            NOT_IN_TRANSACTION,
            MUST_STARTTLS,
            AUTH_REQUIRED,
            NEED_EHLO,
            AUTH_OK,
            AUTH_FAILED,
            AUTH_TEMPORARY_FAILURE,
            AUTH_TOO_MANY_FAILURES,
            AUTH_CANCELLED,
            AUTH_UNDECODABLE,
            AUTH_NEEDS_TLS,
            AUTH_UNKNOWN_MECHANISM,
            ALREADY_AUTHENTICATED,
            PLAIN_CHALLENGE,
            LOGIN_USERNAME,
            LOGIN_PASSWORD,
        ] {
            check_reply(reply, true);
        }
        use CommandError::*;
        for error in [
            Unrecognized,
            InvalidBytes,
            InvalidUtf8,
            NotSmtp,
            NotImplemented,
            MissingDomain,
            ControlInDomain,
            MissingArgument,
            UnexpectedArgument,
            BadKeyword,
            BadSenderPath,
            BadRecipientPath,
            SenderTooLong,
            RecipientTooLong,
            RecipientNotUtf8,
            BadParameter,
            UnknownParameter,
            MissingMechanism,
            BadBdat,
        ] {
            check_reply(command_error(error), true);
        }
        let mut out = Vec::new();
        chunk_received_into(1234, &mut out);
        assert_eq!(out, b"250 2.0.0 Ok: 1234 octets received\r\n");
    }

    #[test]
    fn an_accepted_message_names_its_queue_id_when_there_is_one() {
        assert_eq!(message_accepted(None).as_bytes(), MESSAGE_ACCEPTED);
        let id = QueueId::new(b"1764393906.M1P2Q3");
        assert_eq!(
            message_accepted(id).as_bytes(),
            b"250 2.0.0 Ok: queued as 1764393906.M1P2Q3\r\n"
        );
        let longest = QueueId::new(&[b'z'; QueueId::MAX_LEN]);
        assert_eq!(message_accepted(longest).as_bytes().len(), ACCEPTED_MAX);
    }

    #[test]
    fn replies_are_counted_once_each_as_they_are_pushed() {
        let mut bytes = Vec::new();
        let mut tally = ReplyTally::default();
        let mut replies = Replies::new(&mut bytes, &mut tally);
        let banner = Banner::new("mx.example", 1000);
        replies.push(&banner.ehlo);
        replies.push(OK);
        replies.push(TIMEOUT);
        replies.push_chunk_received(7);
        assert_eq!(replies.len(), bytes.len());
        assert_eq!(tally.get(250), 3, "a multi-line reply counts once");
        assert_eq!(tally.get(421), 1);
        let mut changed = Vec::new();
        tally.take_changed(|code, total| changed.push((code, total)));
        assert_eq!(changed, [(250, 3), (421, 1)]);
        tally.take_changed(|_, _| panic!("nothing changed since"));
        assert_eq!(tally.get(199), 0);
        let mut bytes = Vec::new();
        let mut off = ReplyTally::disabled();
        Replies::new(&mut bytes, &mut off).push(OK);
        assert_eq!((off.get(250), bytes.len()), (0, OK.len()));
    }

    #[test]
    fn banner() {
        let banner = Banner::new("mx.example", 1000);
        assert_eq!(&*banner.greeting, b"220 mx.example ESMTP fastsmtpd\r\n");
        assert_eq!(&*banner.helo, b"250 mx.example\r\n");
        check_reply(&banner.ehlo, false);
        assert!(banner
            .ehlo
            .starts_with(b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"));
        assert!(banner.ehlo.ends_with(b"250 ENHANCEDSTATUSCODES\r\n"));
    }
}
