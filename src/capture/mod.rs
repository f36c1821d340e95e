//! The capture store: accepted messages kept in memory under a strict budget, so a test can
//! ask what arrived (issue 18). This is its core: no HTTP, no SMTP wiring.
//!
//! # What it does
//!
//! - Keeps each message's raw bytes exactly as received after dot-unstuffing (one
//!   [`bytes::Bytes`]: the HTTP side streams it without a copy), its envelope packed into one
//!   allocation ([`envelope::Packed`]), and the values of its first `From`, `To`, `Cc`,
//!   `Subject`, `Message-ID` and `Date` fields as ranges into the raw bytes, found by a
//!   bounded scan ([`headers`], at most [`headers::HEADER_SCAN_MAX`] octets, no MIME).
//! - Or keeps, for a message a durable store wrote to a file (`--store eml:DIR`), only the
//!   header block (up to its empty line, at most [`headers::HEADER_SCAN_MAX`] octets: all
//!   the scans and filters read) and the file's name and length ([`Body::File`], made with
//!   [`Arrival::in_file`]); readers read the file (`crate::view::body`).
//! - Numbers messages with a sequence number (`seq`, a `u64` from 1, monotonic, never
//!   reused) and finds them by the queue id the `250` named (ids are never reused: a second
//!   insert of a live or tombstoned id is refused).
//! - Enforces [`Limits`] AT INSERT, never by a later sweep: the budget holds after every
//!   insert. [`OnFull::EvictOldest`] drops the oldest messages until the new one fits;
//!   [`OnFull::Refuse`] refuses it ([`Refused::Full`]: the SMTP side answers `452 4.3.1`).
//!   A message larger than the whole budget is refused either way ([`Refused::TooLarge`]).
//!   [`Capture::expire`] drops messages older than `max_age` (also run at every insert).
//! - Remembers removed ids in a bounded ring of tombstones ([`Gone`]), so a lookup tells
//!   "evicted / deleted at T" (HTTP 410) from "never arrived" (404).
//! - Answers reads: by id ([`Capture::get`]), by seq ([`Capture::get_seq`]), pages newest or
//!   oldest first from a cursor (a seq: pages never shift when mail arrives), counts, all with
//!   a [`Filter`] (exact recipient from an index; sender; subject substring; header values;
//!   addresses in `To:`; `Message-ID`; size; time of arrival).
//! - Parses the search grammar ([`query`]) into the [`Filter`] it evaluates and the residual
//!   terms that need the decoded message (evaluated by the `view` room, outside the lock).
//! - Wakes waiters ([`std::task::Waker`]) registered for a recipient or for any message, once
//!   per matching insert, after the store's lock is released; the waiters for any message
//!   also after a client's delete or an expiry (so event streams report removals); the
//!   waiters of a mailbox, and those for any message, also when the mailbox ends (deleted,
//!   or expired where [`Capture::expire`] runs: at inserts and when the API asks), so a wait
//!   on a mailbox that is gone ends at once.
//! - Keeps a message's SMTP transcript beside it when the SMTP side records one
//!   ([`Capture::attach_transcript`], [`transcript`]), charged to the budget with it and
//!   dropped with it.
//! - Numbers removals in the order they happen, read back from the tombstone ring
//!   ([`removals`], [`Capture::removals_after`]): the event stream's `gone` events.
//! - Keeps per-test mailboxes ([`mailbox`]): a message joins, at insert, every live mailbox
//!   whose [`Route`] holds (kept once, indexed in each); a [`Term::Mailbox`] filter pages and
//!   counts from the mailbox's own list; [`WaitKey::Mailbox`] waiters are woken by the
//!   inserts that join it; deleting a mailbox ([`Capture::delete_mailbox`]) or its expiry
//!   (where [`Capture::expire`] runs) removes only the mail that is in no other mailbox.
//! - Counts, for metrics ([`Stats`]).
//!
//! # What it does not do
//!
//! No HTTP, no JSON, no MIME parsing or RFC 2047 decoding (that is lazy, at read time, later),
//! no disk (a [`Body::File`] is a name the store never opens), no tokio (waiters are plain `Waker`s, so any executor can wait), no clock of its
//! own beyond `SystemTime::now()` for deletions (an arrival's `received_at` is the clock at
//! insert). No fault plans per mailbox (`crate::fault`; [`Route::covers`] is their question).
//!
//! # Memory: what one message costs
//!
//! The budget charges each message [`Arrival::charge`] octets:
//! `raw.len()` + [`ENTRY_OVERHEAD`] + the packed envelope's length +
//! [`RECIPIENT_OVERHEAD`] per recipient. `ENTRY_OVERHEAD` is the entry struct (112 octets:
//! seq, time, the `Bytes` handle, the envelope pointer, six header ranges of 4 octets, the
//! hashes of the id and the first recipient and the recipient count, which let eviction
//! unindex it without reading the envelope), the id index's slot (24: a 16-octet slot at a
//! hash table's load) and the envelope allocation's header (16): 152 octets.
//! `RECIPIENT_OVERHEAD` is 48 (a 40-octet slot in the recipient index at its load). Beside
//! these, a message's SMTP transcript, when the SMTP side records one, is charged with it:
//! its octets (at most [`transcript::TRANSCRIPT_MAX`]) +
//! [`transcript::TRANSCRIPT_OVERHEAD`], and a preamble it shares with its connection's
//! other messages once for them all (its octets + [`transcript::PREAMBLE_OVERHEAD`]). So a one-recipient message costs its raw bytes +
//! 200 + its envelope's text and ~10 octets of lengths (a typical envelope: ~100, so ~300
//! in all); the test `a_one_recipient_message_costs_what_the_doc_says` checks the sums, and
//! `tests/capture_memory.rs` measures the heap with a counting allocator: 100 000 kept
//! messages of 1 KiB allocate 329 octets each beyond the raw bytes with distinct recipients
//! (charged 306; the packed envelope is 106 of it, so the index overhead is ~223), 279 with
//! one shared recipient (charged 300). Not charged: the slack of tables that grow by
//! doubling (at 100 000 entries they have room for 131 072: most of the 329 - 306; up to a
//! table's worth just past a doubling), the allocator's own headers, the tombstone ring (a
//! fixed bound, below), the waiters, and the spare capacity of a `Vec` the caller turned
//! into the `Bytes` (hand over a buffer sized to the message: `Bytes::from(Vec)` does not
//! copy, and cannot shrink it). A [`Snapshot`] held by a reader keeps its message's bytes
//! alive after an eviction until the reader drops it.
//!
//! A message whose body is in a file ([`Body::File`]) is charged, instead of `raw.len()`,
//! the header block it keeps (up to and with its empty line, at most
//! [`headers::HEADER_SCAN_MAX`] octets) + the file's path + [`FILE_BODY_OVERHEAD`] (the
//! [`FileBody`] struct of 64 octets, the `Arc`'s two counts and two allocation headers: 112
//! octets). So a one-recipient message with a 500-octet header block and a 60-octet path
//! costs ~500 + 60 + 112 + the ~300 above (~1 KB), whatever its body's size. Eviction and deletion drop the entry; the file
//! is the durable store's and stays.
//!
//! A message in per-test mailboxes is charged [`MAILBOX_OVERHEAD`] (72) octets more per
//! mailbox it is in, while it is in it (see [`mailbox`] for the sum; deleting a mailbox that
//! shares the message gives them back). With no mailbox live, an insert's routing is one
//! check of an empty table: nothing more is allocated or charged.
//!
//! A live mailbox's own record is charged too, from its creation to its end:
//! [`MAILBOX_RECORD_OVERHEAD`] (420) + its label's octets + its route's text (none for a
//! plus-tag route; a header route's name and value twice), [`mailbox::record_charge`]; a
//! plus-tag mailbox with a 10-octet label costs 430, 10 000 of them 4.3 MB of the budget.
//! Creating one makes room as an insert does: the oldest messages are evicted under
//! [`OnFull::EvictOldest`]; under [`OnFull::Refuse`] (or when no message is left to evict)
//! it is refused ([`TooManyMailboxes::Full`], HTTP 507), never over the budget. An insert
//! that finds the budget held by mailboxes alone (no message left to evict) is refused
//! [`Refused::Full`]. [`Stats::mailbox_bytes`] is the mailboxes' share (records and
//! memberships).
//!
//! Tombstones: at most [`Limits::max_tombstones`] (default [`TOMBSTONES_MAX`] = 65 536, about
//! 56 octets each with their two tables: ≤ 3.5 MiB, ~1.4 % of a 256 MiB budget). They are
//! outside the budget so that a burst of evictions cannot evict messages; the ring covers
//! the last 65 536 removals: hours of a test suite, seconds at a sustained 10k evictions/s,
//! after which an id answers "unknown".
//!
//! # Locking
//!
//! One `Mutex` over the index (taken through [`crate::lock::lock`]); every operation holds it
//! for a short time and never while calling out (no waker is called under it; the one
//! allocation for waiters under it, the list of the new message's recipient hashes, happens
//! only when a waiter is registered). Packing the envelope and scanning the headers happen in
//! [`Arrival::new`], on the caller's thread, before the lock. Waiters live under a second
//! `Mutex`, taken after the index lock is released, and only when an atomic count of
//! registered waiters is non-zero: with no waiters an insert costs them one atomic load.
//! A single delete is `O(n)` (a move inside a `VecDeque`); eviction and expiry pop the front.
//! Reads that could examine many messages (a page or count with a rare match, a delete of
//! many) hold the lock for at most [`SCAN_CHUNK`] candidates or [`REMOVE_CHUNK`] removals
//! at a time and free removed messages outside it: the HTTP side never holds up an SMTP
//! worker's insert for more than a fraction of a millisecond.
//!
//! A waiter must register BEFORE it checks the store (a page or count after its cursor);
//! then a message inserted after the check always wakes it: the insert reads the waiter
//! count after its own insert, under the index lock the check also takes.
//!
//! # The interface, for the next increments
//!
//! SMTP side (the `StoreSink` capture target): accumulate the content in a `Vec<u8>` sized
//! from `SIZE=` (or grown), then at `on_message_end`: [`Arrival::from_envelope`]`(id, now,
//! Bytes::from(vec), envelope, client)` (a connection makes its client's [`ClientText`] once
//! and calls [`Arrival::from_connection`]; or [`Arrival::new`] with [`EnvelopeParts`] for a
//! message seeded over HTTP) and [`Capture::insert`] → `Ok(Inserted)`:
//! `Verdict::Stored` (the record is visible before the `250` is written);
//! `Err(Refused::Full)`: `452 4.3.1`; `Err(Refused::TooLarge)`: `552 5.3.4`;
//! `Err(Refused::DuplicateId)`: a bug, `451 4.3.0`.
//!
//! HTTP side: `cursor` = [`Capture::head`]; `await` = [`Capture::register`] a waker for
//! [`WaitKey::Recipient`] (or [`WaitKey::Any`] for other filters), then [`Capture::page`]
//! `(Some(after), Direction::Newer, ..)` with the filter, and on each wake page again from the
//! last seq seen; [`Capture::cancel`] when done or timed out. `messages` =
//! [`Capture::page`] (newest first, `next` is the next cursor); `get`/`raw` =
//! [`Capture::get`] (a [`Lookup::Gone`] is a `410` with its time and reason);
//! `DELETE` = [`Capture::delete`], [`Capture::delete_all`], [`Capture::delete_matching`];
//! `events` = [`Capture::get_seq`] / [`Capture::page`] after the subscriber's cursor, with
//! [`Capture::oldest`] to tell a lagging subscriber what it missed, and
//! [`Capture::removals_after`] for removals; metrics = [`Capture::stats`];
//! `search?q=` = [`query::parse`] (a [`QueryError`] is a `400`), then `view::search` with a
//! shared `view::ViewCache` (it pages the index part here and decodes outside the lock);
//! a message's text, HTML, parts, links and codes = `view::ViewCache::get_or_parse`, a part's
//! bytes = `view::MessageView::part`.

pub mod address;
pub mod envelope;
pub mod filter;
pub mod headers;
mod index;
pub mod mailbox;
pub mod query;
pub mod removals;
mod seqs;
#[cfg(test)]
mod tests;
pub mod transcript;

pub use address::{same_address, Address};
pub use envelope::{ClientText, EnvelopeParts, EnvelopeView};
pub use filter::{Filter, Match, Term};
pub use headers::Field;
pub use mailbox::{
    MailboxFilter, MailboxGone, MailboxGoneReason, MailboxId, MailboxInfo, MailboxLookup,
    MailboxPage, Route, TooManyMailboxes, MAILBOXES_MAX, MAILBOX_OVERHEAD, MAILBOX_RECORD_OVERHEAD,
};
pub use query::{Query, QueryError, Residual};
pub use removals::RemovalPage;

use crate::lock::lock;
use crate::proto::envelope::Envelope;
use crate::proto::sink::QueueId;
use bytes::Bytes;
use envelope::Packed;
use headers::HeaderRanges;
use index::{Index, Passthrough};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, SystemTime};
use transcript::Transcript;

/// The default bound of the tombstone ring (see the module doc).
pub const TOMBSTONES_MAX: usize = 65_536;

/// What the budget charges per message beyond its raw bytes, its packed envelope and its
/// recipients: the entry struct, the id index's slot, the envelope allocation's header.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<index::Entry>() + 24 + 16;

/// What the budget charges per recipient: its slot in the recipient index.
pub const RECIPIENT_OVERHEAD: usize = 48;

// Issue 18's bound: the index overhead of a one-recipient message, beyond its raw bytes and
// its envelope's text, is at most 256 octets.
const _: () = assert!(ENTRY_OVERHEAD + RECIPIENT_OVERHEAD <= 256);

/// The retention limits, all enforced at insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most octets kept, counting [`Arrival::charge`] per message.
    pub max_bytes: u64,
    /// The most messages kept.
    pub max_messages: usize,
    /// Messages older than this (by `received_at`) are dropped; `None`: no age limit.
    pub max_age: Option<Duration>,
    /// The most tombstones kept (see the module doc).
    pub max_tombstones: usize,
    /// The most live per-test mailboxes (see [`mailbox`]).
    pub max_mailboxes: usize,
}

impl Default for Limits {
    /// 256 MiB, a million messages, no age limit, [`TOMBSTONES_MAX`] tombstones,
    /// [`MAILBOXES_MAX`] mailboxes.
    fn default() -> Limits {
        Limits {
            max_bytes: 256 << 20,
            max_messages: 1_000_000,
            max_age: None,
            max_tombstones: TOMBSTONES_MAX,
            max_mailboxes: MAILBOXES_MAX,
        }
    }
}

/// What an insert does when the message does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Drop the oldest messages until it fits.
    EvictOldest,
    /// Refuse it ([`Refused::Full`]); the sender retries later (`452 4.3.1`).
    Refuse,
}

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The store is full and its policy is [`OnFull::Refuse`] (`452 4.3.1`).
    Full,
    /// The message alone costs more than the whole budget, or `max_messages` is 0
    /// (`552 5.3.4`).
    TooLarge,
    /// The id is kept or tombstoned already: ids are never reused (a caller's bug).
    DuplicateId,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Full => "capture store full",
            Refused::TooLarge => "message larger than the capture budget",
            Refused::DuplicateId => "queue id already used",
        })
    }
}

impl std::error::Error for Refused {}

/// Where a kept message's bytes are: in memory, or in the file a durable store wrote (see
/// "Memory" in the module doc). The store never reads a file: a reader that needs the whole
/// message of a [`Body::File`] reads it (`crate::view::body`), off the SMTP event loops.
#[derive(Debug, Clone)]
pub enum Body {
    /// The whole message, as received after dot-unstuffing.
    Memory(Bytes),
    /// The message is in a file; only its header block is in memory.
    File(Arc<FileBody>),
}

/// A message kept in a file (`--store eml:DIR`, written byte for byte as received), and the
/// start of it kept in memory so that summaries and filters need no I/O.
#[derive(Debug)]
pub struct FileBody {
    /// The first `min(len, HEADER_SCAN_MAX)` octets of the message.
    head: Bytes,
    /// The message's length (the file's, when it was written).
    len: u64,
    /// The file.
    path: std::path::PathBuf,
}

impl FileBody {
    /// The file that holds the message.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The message's length in octets.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a file body costs beyond its head and its path: the [`FileBody`] struct, the `Arc`'s
/// two counts, and the headers of its two allocations (struct, path).
pub const FILE_BODY_OVERHEAD: usize = std::mem::size_of::<FileBody>() + 16 + 2 * 16;

impl Body {
    /// The message's length in octets (the whole message, wherever it is).
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(raw) => raw.len() as u64,
            Body::File(file) => file.len,
        }
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The octets kept in memory: the whole message for [`Body::Memory`], its first
    /// [`headers::HEADER_SCAN_MAX`] octets (the header block the scans read) for
    /// [`Body::File`].
    pub fn in_memory(&self) -> &Bytes {
        match self {
            Body::Memory(raw) => raw,
            Body::File(file) => &file.head,
        }
    }

    /// The whole message, if it is in memory.
    pub fn memory(&self) -> Option<&Bytes> {
        match self {
            Body::Memory(raw) => Some(raw),
            Body::File(_) => None,
        }
    }

    /// The file that holds it, if any.
    pub fn file(&self) -> Option<&FileBody> {
        match self {
            Body::Memory(_) => None,
            Body::File(file) => Some(file),
        }
    }

    /// The octets the budget charges for the body (see "Memory" in the module doc).
    fn charged(&self) -> usize {
        match self {
            Body::Memory(raw) => raw.len(),
            Body::File(file) => file.head.len() + file.path.as_os_str().len() + FILE_BODY_OVERHEAD,
        }
    }
}

/// A message to keep, made (envelope packed, headers scanned) on the caller's thread before
/// the store's lock is taken.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The id its `250` names (also in the envelope: kept here so the insert need not read
    /// it back).
    id: QueueId,
    /// When the message's content was complete.
    received_at: SystemTime,
    /// The message, or where it is.
    body: Body,
    /// The id and envelope.
    envelope: Packed,
    /// The located header fields.
    headers: HeaderRanges,
}

/// Nanoseconds since the Unix epoch (0 before it; saturating after 2554).
fn nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The `SystemTime` of `nanos` since the epoch.
fn time(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

impl Arrival {
    /// A message named `id` (the id of its `250`), complete at `received_at`, with its raw
    /// bytes, envelope and recipients (in RCPT order, without brackets).
    pub fn new<'r>(
        id: QueueId,
        received_at: SystemTime,
        raw: Bytes,
        parts: &EnvelopeParts<'_>,
        recipients: impl IntoIterator<Item = &'r [u8]> + Clone,
    ) -> Arrival {
        let client = parts.client.map(ClientText::new);
        Arrival::with_client(id, received_at, raw, parts, client.as_ref(), recipients)
    }

    /// [`Arrival::new`] with the client's address as text made already (`parts.client` is
    /// not read).
    fn with_client<'r>(
        id: QueueId,
        received_at: SystemTime,
        raw: Bytes,
        parts: &EnvelopeParts<'_>,
        client: Option<&ClientText>,
        recipients: impl IntoIterator<Item = &'r [u8]> + Clone,
    ) -> Arrival {
        let headers = headers::scan_headers(&raw);
        Arrival {
            id,
            received_at,
            body: Body::Memory(raw),
            envelope: Packed::pack_with(&id, parts, client, recipients),
            headers,
        }
    }

    /// A message the SMTP session accepted: its envelope as the session lends it to the
    /// sink, and the client's address (the transport's; `None` if unknown).
    pub fn from_envelope(
        id: QueueId,
        received_at: SystemTime,
        raw: Bytes,
        envelope: &Envelope<'_>,
        client: Option<std::net::SocketAddr>,
    ) -> Arrival {
        let client = client.map(ClientText::new);
        Arrival::from_connection(id, received_at, raw, envelope, client.as_ref())
    }

    /// [`Arrival::from_envelope`] with the client's address as text, made once per
    /// connection ([`ClientText::new`]).
    pub fn from_connection(
        id: QueueId,
        received_at: SystemTime,
        raw: Bytes,
        envelope: &Envelope<'_>,
        client: Option<&ClientText>,
    ) -> Arrival {
        let params = envelope::mail_params_text(&envelope.params);
        let parts = EnvelopeParts {
            sender: envelope.sender,
            params: params.as_bytes(),
            helo: envelope.helo,
            client: None,
            tls: envelope.tls.map(|tls| (tls.version, tls.cipher)),
            auth_user: envelope.auth_user,
        };
        let recipients = envelope.recipients.iter();
        Arrival::with_client(id, received_at, raw, &parts, client, recipients)
    }

    /// This message, made with only its start as `raw` (at least its header block or its
    /// first [`headers::HEADER_SCAN_MAX`] octets, or all of it), kept in the file at `path`
    /// that holds all `len` octets of it: the store keeps a copy of the header block (at
    /// most the bound), not the message (see "Memory" in the module doc).
    pub fn in_file(self, path: std::path::PathBuf, len: u64) -> Arrival {
        let start = match &self.body {
            Body::Memory(raw) => raw.clone(),
            Body::File(file) => file.head.clone(),
        };
        // A copy of exactly the header block: the buffer it came in (up to the bound) goes.
        let head = Bytes::copy_from_slice(&start[..header_block_len(&start)]);
        Arrival {
            body: Body::File(Arc::new(FileBody { head, len, path })),
            ..self
        }
    }

    /// What the budget charges for this message (see the module doc).
    pub fn charge(&self) -> u64 {
        charge(&self.body, &self.envelope)
    }
}

/// The length of the header block at the start of `raw`, up to and with the empty line that
/// ends it (RFC 5322 §2.1; CR LF or a bare LF), at most [`headers::HEADER_SCAN_MAX`]: what
/// a [`Body::File`] keeps (every scan and filter reads no further).
fn header_block_len(raw: &[u8]) -> usize {
    let block = &raw[..raw.len().min(headers::HEADER_SCAN_MAX)];
    let mut at = 0;
    while at < block.len() {
        match block[at..] {
            [b'\r', b'\n', ..] => return at + 2,
            [b'\n', ..] => return at + 1,
            _ => {}
        }
        match memchr::memchr(b'\n', &block[at..]) {
            Some(end) => at += end + 1,
            None => break,
        }
    }
    block.len()
}

/// The budget's charge for a message of `body` and `envelope`.
fn charge(body: &Body, envelope: &Packed) -> u64 {
    charge_of(
        body.charged(),
        envelope.len(),
        envelope.view().recipients.len(),
    )
}

/// The budget's charge for a message of `raw` octets in memory, a packed envelope of `envelope`
/// octets and `recipients` recipients (see the module doc).
fn charge_of(raw: usize, envelope: usize, recipients: usize) -> u64 {
    (raw + ENTRY_OVERHEAD + envelope + RECIPIENT_OVERHEAD * recipients) as u64
}

/// A kept message's place and name, as an insert gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// Its sequence number.
    pub seq: u64,
    /// Its id.
    pub id: QueueId,
    /// How many older messages were evicted (or expired) to make room.
    pub evicted: usize,
}

/// Why a message is no longer kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    /// Evicted to keep the byte budget.
    EvictedBytes,
    /// Evicted to keep the message count.
    EvictedCount,
    /// Older than `max_age`.
    Expired,
    /// The `ttl` of the per-test mailbox it was in ran out, and no other mailbox held it.
    MailboxExpired,
    /// Deleted by a client.
    Deleted,
}

/// A tombstone: a message that was kept and no longer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    /// Its sequence number.
    pub seq: u64,
    /// When it was removed.
    pub at: SystemTime,
    /// Why.
    pub reason: GoneReason,
}

/// A kept message, cloned out of the store (the raw bytes are shared, not copied).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its sequence number.
    pub seq: u64,
    /// When its content was complete.
    pub received_at: SystemTime,
    /// The message as received after dot-unstuffing, or where it is.
    pub body: Body,
    /// The id and envelope.
    envelope: Packed,
    /// The located header fields.
    headers: HeaderRanges,
    /// The per-test mailboxes it is in (ascending ids; empty for most messages).
    pub mailboxes: Vec<MailboxId>,
}

impl Snapshot {
    /// The id its `250` named.
    pub fn id(&self) -> QueueId {
        self.envelope.id()
    }

    /// The envelope.
    pub fn envelope(&self) -> EnvelopeView<'_> {
        self.envelope.view()
    }

    /// The raw value of a located header field (folded, encoded as sent; see
    /// [`headers::unfold`]).
    pub fn header(&self, field: Field) -> Option<&[u8]> {
        self.headers.value(self.body.in_memory(), field)
    }

    /// The located header fields' ranges into [`Body::in_memory`].
    pub fn header_ranges(&self) -> &HeaderRanges {
        &self.headers
    }

    /// What the budget charged for it.
    pub fn charge(&self) -> u64 {
        charge(&self.body, &self.envelope)
    }
}

/// What a lookup by id found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The message is kept.
    Found(Snapshot),
    /// It was kept and no longer is (HTTP 410).
    Gone(Gone),
    /// No such id in the store or the tombstone ring (HTTP 404).
    Unknown,
}

/// Which way a page runs from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Newest first: sequence numbers below the cursor (from the newest without one).
    #[default]
    Older,
    /// Oldest first: sequence numbers above the cursor (from the oldest without one).
    Newer,
}

/// A page of messages.
#[derive(Debug, Clone)]
pub struct Page {
    /// The messages, in the page's direction.
    pub items: Vec<Snapshot>,
    /// The cursor for the next page in the same direction; `None` when nothing more matched.
    pub next: Option<u64>,
}

/// What a delete removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The removed messages' sequence numbers, ascending.
    pub seqs: Vec<u64>,
    /// The octets their charges freed.
    pub bytes: u64,
}

/// What a waiter waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitKey {
    /// A message with this envelope recipient (any spelling that is the same address, see
    /// [`address`]).
    Recipient(Vec<u8>),
    /// A message that joins this mailbox.
    Mailbox(MailboxId),
    /// Any message.
    Any,
}

/// A registered waiter, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaiterId(u64);

/// The store's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages kept now.
    pub messages: usize,
    /// Octets charged now.
    pub bytes: u64,
    /// The byte budget.
    pub max_bytes: u64,
    /// The last sequence number given (0: none yet).
    pub head: u64,
    /// Messages inserted since start.
    pub inserted: u64,
    /// Messages evicted for the byte budget.
    pub evicted_bytes: u64,
    /// Messages evicted for the message count.
    pub evicted_count: u64,
    /// Messages dropped for age.
    pub expired: u64,
    /// Messages deleted by clients.
    pub deleted: u64,
    /// Inserts refused: full under [`OnFull::Refuse`].
    pub refused_full: u64,
    /// Inserts refused: larger than the budget.
    pub refused_too_large: u64,
    /// Inserts refused: id reused.
    pub refused_duplicate: u64,
    /// Tombstones kept now.
    pub tombstones: usize,
    /// Waiters registered now.
    pub waiters: usize,
    /// Per-test mailboxes live now.
    pub mailboxes: usize,
    /// Octets of [`Stats::bytes`] charged for the mailboxes: their records and their
    /// messages' memberships (see [`mailbox`]).
    pub mailbox_bytes: u64,
    /// Mailbox tombstones kept now.
    pub mailbox_tombstones: usize,
}

/// The registered waiters.
#[derive(Default)]
struct Waiters {
    /// The next waiter id.
    next: u64,
    /// Waiters by the keyed hash of their normalised recipient.
    by_recipient: HashMap<u64, Vec<(WaiterId, Waker)>, BuildHasherDefault<Passthrough>>,
    /// Waiters by mailbox.
    by_mailbox: HashMap<MailboxId, Vec<(WaiterId, Waker)>>,
    /// Waiters for any message.
    any: Vec<(WaiterId, Waker)>,
    /// Each waiter's key, to cancel it.
    keys: HashMap<WaiterId, Slot>,
}

/// Where a waiter is registered.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// By the keyed hash of its recipient.
    Recipient(u64),
    /// By its mailbox.
    Mailbox(MailboxId),
    /// For any message.
    Any,
}

impl Waiters {
    /// The list `slot` names, if it exists.
    fn list(&mut self, slot: Slot) -> Option<&mut Vec<(WaiterId, Waker)>> {
        match slot {
            Slot::Recipient(hash) => self.by_recipient.get_mut(&hash),
            Slot::Mailbox(id) => self.by_mailbox.get_mut(&id),
            Slot::Any => Some(&mut self.any),
        }
    }
}

/// The most candidates a page, count or delete examines per hold of the index lock (the
/// lock an SMTP worker's insert takes before its `250`): about half a millisecond of
/// scanning at most (a subject match examined ~0.45 µs per message in
/// `benches/api_vs_ingest.py`), then the lock is released and taken again.
pub const SCAN_CHUNK: usize = 1024;

/// The most messages a delete removes per hold of the index lock.
pub const REMOVE_CHUNK: usize = 1024;

/// The capture store, shared by the SMTP workers and the HTTP thread (`Arc<Capture>`).
pub struct Capture {
    /// The kept messages and their indexes.
    index: Mutex<Index>,
    /// The waiters.
    waiters: Mutex<Waiters>,
    /// How many waiters are registered (read without the lock at every insert).
    waiting: AtomicUsize,
    /// The keys of the hashes that index ids and addresses (random per store).
    keys: RandomState,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Capture {
    /// An empty store with these limits and policy.
    pub fn new(limits: Limits, on_full: OnFull) -> Capture {
        let keys = RandomState::new();
        Capture {
            index: Mutex::new(Index::new(limits, on_full, keys.clone())),
            waiters: Mutex::new(Waiters::default()),
            waiting: AtomicUsize::new(0),
            keys,
        }
    }

    /// Keeps `arrival` (see [`Limits`], [`OnFull`] and [`Refused`]), then wakes the waiters
    /// of its recipients and of any message. Visible to every read once this returns.
    pub fn insert(&self, arrival: Arrival) -> Result<Inserted, Refused> {
        // Allocates nothing unless a waiter is registered.
        let mut recipients: Vec<u64> = Vec::new();
        let (inserted, waiting, mailboxes) = {
            let mut index = lock(&self.index);
            let inserted = index.insert(arrival);
            // Read after the insert, under the lock a waiter's check also takes (module doc).
            let waiting = self.waiting.load(Ordering::SeqCst) > 0;
            // Mailboxes the insert's expiry ended: their waiters hear of it (empty, not
            // allocated, unless one ended).
            let mut mailboxes = index.take_ended();
            if let (true, Ok(inserted)) = (waiting, &inserted) {
                recipients = index.recipient_hashes(inserted.seq);
                mailboxes.extend(index.memberships(inserted.seq));
            }
            (inserted, waiting, mailboxes)
        };
        if waiting && (inserted.is_ok() || !mailboxes.is_empty()) {
            self.wake(&recipients, &mailboxes);
        }
        inserted
    }

    /// Wakes the waiters of these recipient hashes and mailboxes and the waiters for any
    /// message, each once.
    fn wake(&self, recipients: &[u64], mailboxes: &[MailboxId]) {
        let mut wakers: Vec<(WaiterId, Waker)> = Vec::new();
        {
            let waiters = lock(&self.waiters);
            for hash in recipients {
                if let Some(list) = waiters.by_recipient.get(hash) {
                    wakers.extend(list.iter().cloned());
                }
            }
            for id in mailboxes {
                if let Some(list) = waiters.by_mailbox.get(id) {
                    wakers.extend(list.iter().cloned());
                }
            }
            wakers.extend(waiters.any.iter().cloned());
        }
        wakers.sort_unstable_by_key(|(id, _)| *id);
        wakers.dedup_by_key(|(id, _)| *id);
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// Registers `waker` to be woken by each insert matching `key`, until
    /// [`Capture::cancel`]. Register before checking the store (module doc).
    pub fn register(&self, key: WaitKey, waker: Waker) -> WaiterId {
        let slot = match &key {
            WaitKey::Recipient(address) => {
                Slot::Recipient(address::address_hash(&self.keys, address))
            }
            WaitKey::Mailbox(id) => Slot::Mailbox(*id),
            WaitKey::Any => Slot::Any,
        };
        let mut waiters = lock(&self.waiters);
        let id = WaiterId(waiters.next);
        waiters.next += 1;
        match slot {
            Slot::Recipient(hash) => waiters
                .by_recipient
                .entry(hash)
                .or_default()
                .push((id, waker)),
            Slot::Mailbox(mailbox) => waiters
                .by_mailbox
                .entry(mailbox)
                .or_default()
                .push((id, waker)),
            Slot::Any => waiters.any.push((id, waker)),
        }
        waiters.keys.insert(id, slot);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        id
    }

    /// Replaces the waker of a registered waiter (a future polled by another task); false if
    /// it is not registered.
    pub fn update(&self, id: WaiterId, waker: &Waker) -> bool {
        let mut waiters = lock(&self.waiters);
        let Some(&slot) = waiters.keys.get(&id) else {
            return false;
        };
        if let Some(slot) = waiters
            .list(slot)
            .and_then(|l| l.iter_mut().find(|(w, _)| *w == id))
        {
            if !slot.1.will_wake(waker) {
                slot.1 = waker.clone();
            }
        }
        true
    }

    /// Forgets a waiter; false if it was not registered.
    pub fn cancel(&self, id: WaiterId) -> bool {
        let mut waiters = lock(&self.waiters);
        let Some(slot) = waiters.keys.remove(&id) else {
            return false;
        };
        if let Some(list) = waiters.list(slot) {
            list.retain(|(w, _)| *w != id);
            let empty = list.is_empty();
            match slot {
                Slot::Recipient(hash) if empty => {
                    waiters.by_recipient.remove(&hash);
                }
                Slot::Mailbox(mailbox) if empty => {
                    waiters.by_mailbox.remove(&mailbox);
                }
                _ => {}
            }
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// Drops the messages older than `max_age` at `now`; how many.
    pub fn expire(&self, now: SystemTime) -> usize {
        let (expired, ended) = {
            let mut index = lock(&self.index);
            (index.expire(nanos(now)), index.take_ended())
        };
        self.removed(expired, &ended);
        expired
    }

    /// The message named `id`, or its tombstone.
    pub fn get(&self, id: &QueueId) -> Lookup {
        lock(&self.index).get(id)
    }

    /// The message numbered `seq`, if kept.
    pub fn get_seq(&self, seq: u64) -> Option<Snapshot> {
        lock(&self.index).get_seq(seq)
    }

    /// The last sequence number given (0 before the first insert): the cursor to take before
    /// triggering the action a test waits for.
    pub fn head(&self) -> u64 {
        lock(&self.index).head()
    }

    /// The greatest sequence number the store's limits removed (evicted for room or by
    /// count, or expired; never one a client deleted), 0 if none: a reader that has not yet
    /// examined the messages after cursor `c` lost one unseen if this is above `c` (eviction
    /// takes the oldest first).
    pub fn last_evicted(&self) -> u64 {
        lock(&self.index).last_evicted()
    }

    /// The oldest kept sequence number, if any.
    pub fn oldest(&self) -> Option<u64> {
        lock(&self.index).oldest()
    }

    /// Up to `limit` messages matching `filter`, from `cursor` (exclusive) in `direction`.
    pub fn page(
        &self,
        cursor: Option<u64>,
        direction: Direction,
        limit: usize,
        filter: &Filter,
    ) -> Page {
        let mut items: Vec<Snapshot> = Vec::with_capacity(limit.min(512));
        let mut more = false;
        let mut at = cursor;
        // A filter that matches rarely could examine every kept message: at most
        // `SCAN_CHUNK` candidates per hold of the lock an SMTP worker's insert takes.
        loop {
            let index = lock(&self.index);
            let scan = index.scan(at, direction, filter, SCAN_CHUNK, |entry| {
                if items.len() == limit {
                    more = true;
                    return false;
                }
                items.push(index.snapshot_of(entry));
                true
            });
            drop(index);
            match scan {
                index::Scan::Paused(resume) => at = Some(resume),
                index::Scan::Done | index::Scan::Stopped => break,
            }
        }
        let next = if more {
            items.last().map(|s| s.seq)
        } else {
            None
        };
        Page { items, next }
    }

    /// How many kept messages match `filter` (counted in the store, never through a page;
    /// from the indexes alone for no terms, one mailbox or one recipient, else by a scan
    /// that releases the lock every [`SCAN_CHUNK`] candidates, so a message inserted
    /// meanwhile may or may not be counted).
    pub fn count(&self, filter: &Filter) -> usize {
        if let Some(count) = lock(&self.index).quick_count(filter) {
            return count;
        }
        let mut count = 0;
        let mut at = None;
        loop {
            let scan = lock(&self.index).scan(at, Direction::Newer, filter, SCAN_CHUNK, |_| {
                count += 1;
                true
            });
            match scan {
                index::Scan::Paused(resume) => at = Some(resume),
                index::Scan::Done | index::Scan::Stopped => return count,
            }
        }
    }

    /// Keeps the SMTP transcript of the message named `id` (see [`transcript`]), charged to
    /// the budget with it: older messages may be evicted for it (under
    /// [`OnFull::EvictOldest`]); one that does not fit otherwise is not kept. False if it
    /// was not kept (no such message, one kept already, no room).
    pub fn attach_transcript(&self, id: &QueueId, transcript: impl Into<Transcript>) -> bool {
        let now = nanos(SystemTime::now());
        let transcript = transcript.into();
        let (kept, evicted) = lock(&self.index).attach_transcript(id.as_bytes(), transcript, now);
        self.removed(evicted, &[]);
        kept
    }

    /// [`Capture::attach_transcript`] for the message numbered `seq` (as its insert gave
    /// it): no id lookup.
    pub fn attach_transcript_at(&self, seq: u64, transcript: impl Into<Transcript>) -> bool {
        let now = nanos(SystemTime::now());
        let transcript = transcript.into();
        let (kept, evicted) = lock(&self.index).attach_transcript_at(seq, transcript, now);
        self.removed(evicted, &[]);
        kept
    }

    /// The SMTP transcript of the message named `id`, if it is kept and has one: its whole
    /// text, the shared preamble first.
    pub fn transcript(&self, id: &QueueId) -> Option<Bytes> {
        lock(&self.index).transcript(id.as_bytes())
    }

    /// Deletes the message named `id` (leaving a tombstone).
    pub fn delete(&self, id: &QueueId) -> Removed {
        let removed = lock(&self.index).delete_id(id, nanos(SystemTime::now()));
        self.removed(removed.seqs.len(), &[]);
        removed
    }

    /// After a removal outside an insert: wakes the waiters for any message (the event
    /// streams report removals) and those of the mailboxes that `ended`, if any is
    /// registered.
    fn removed(&self, count: usize, ended: &[MailboxId]) {
        if (count > 0 || !ended.is_empty()) && self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake(&[], ended);
        }
    }

    /// Up to `limit` removals numbered after `after`, oldest first (see [`removals`]).
    pub fn removals_after(&self, after: u64, limit: usize) -> RemovalPage {
        lock(&self.index).removals_after(after, limit)
    }

    /// The number of the newest removal (0: none yet): where a new reader of removals
    /// starts.
    pub fn removal_head(&self) -> u64 {
        lock(&self.index).removals_after(u64::MAX, 0).head
    }

    /// Deletes every message.
    pub fn delete_all(&self) -> Removed {
        self.delete_matching(&Filter::all())
    }

    /// Deletes the messages matching `filter` (those kept when it starts: a message
    /// inserted meanwhile may stay). Found by a scan and removed in chunks of at most
    /// [`REMOVE_CHUNK`], the lock released between them and their memory freed outside it,
    /// so deleting 100 000 messages never holds up an SMTP worker's insert for long.
    pub fn delete_matching(&self, filter: &Filter) -> Removed {
        let now = nanos(SystemTime::now());
        let mut seqs = Vec::new();
        let mut at = None;
        loop {
            let scan = lock(&self.index).scan(at, Direction::Newer, filter, SCAN_CHUNK, |e| {
                seqs.push(e.seq());
                true
            });
            match scan {
                index::Scan::Paused(resume) => at = Some(resume),
                index::Scan::Done | index::Scan::Stopped => break,
            }
        }
        let mut removed = Removed::default();
        let mut dropped = Vec::with_capacity(REMOVE_CHUNK.min(seqs.len()));
        for chunk in seqs.chunks(REMOVE_CHUNK) {
            let part =
                lock(&self.index).remove_chunk(chunk, GoneReason::Deleted, now, &mut dropped);
            // The messages' memory is freed here, outside the lock.
            dropped.clear();
            removed.seqs.extend(part.seqs);
            removed.bytes += part.bytes;
        }
        self.removed(removed.seqs.len(), &[]);
        removed
    }

    /// Creates a per-test mailbox living `ttl` from now (`route` `None`, or a
    /// [`Route::PlusTag`] whatever its id: routed by the new mailbox's own id as a plus-tag);
    /// refused past [`Limits::max_mailboxes`]. Its record is charged to the budget
    /// ([`mailbox::record_charge`]): the oldest messages are evicted for it under
    /// [`OnFull::EvictOldest`]; under [`OnFull::Refuse`] (or with no mail to evict) a
    /// mailbox that does not fit is refused ([`TooManyMailboxes::Full`]).
    pub fn create_mailbox(
        &self,
        route: Option<Route>,
        ttl: Duration,
        label: String,
    ) -> Result<MailboxInfo, TooManyMailboxes> {
        let now = nanos(SystemTime::now());
        let ttl = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        let (created, evicted) = lock(&self.index).create_mailbox(route, label, now, ttl);
        self.removed(evicted, &[]);
        created
    }

    /// A page of the live mailboxes `filter` admits, newest first, created before the one
    /// numbered `before` (a [`MailboxPage::next`]), at most `limit`, with their counts and
    /// how many match in all.
    pub fn mailbox_page(
        &self,
        before: Option<u64>,
        limit: usize,
        filter: &MailboxFilter,
    ) -> MailboxPage {
        lock(&self.index).mailboxes().page(before, limit, filter)
    }

    /// The mailbox `id`, or its tombstone.
    pub fn mailbox(&self, id: &MailboxId) -> MailboxLookup {
        lock(&self.index).mailboxes().lookup(id)
    }

    /// Deletes mailbox `id`: removes its messages that are in no other mailbox (leaving
    /// their tombstones), unindexes the rest from it; `None` if it is not live.
    pub fn delete_mailbox(&self, id: &MailboxId) -> Option<Removed> {
        let now = nanos(SystemTime::now());
        let (removed, ended) = {
            let mut index = lock(&self.index);
            let removed = index.end_mailbox(id, MailboxGoneReason::Deleted, now);
            (removed, index.take_ended())
        };
        let removed = removed?;
        self.removed(removed.seqs.len(), &ended);
        Some(removed)
    }

    /// Deletes the live mailboxes `filter` admits (all with [`MailboxFilter::default`]), as
    /// [`Capture::delete_mailbox`] deletes one, in one pass over the kept messages; their
    /// ids and what went.
    pub fn delete_mailboxes(&self, filter: &MailboxFilter) -> (Vec<MailboxId>, Removed) {
        let now = nanos(SystemTime::now());
        let (ids, removed, ended) = {
            let mut index = lock(&self.index);
            let (ids, removed) = index.delete_mailboxes(filter, now);
            (ids, removed, index.take_ended())
        };
        self.removed(removed.seqs.len(), &ended);
        (ids, removed)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let mut stats = lock(&self.index).stats();
        stats.waiters = self.waiting.load(Ordering::SeqCst);
        stats
    }
}
