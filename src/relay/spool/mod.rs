//! The relay's spool: relayed mail kept durably from the `250` until every recipient is
//! delivered or has failed and any delivery status notification is itself spooled (RFC 5321
//! §6.1: after the `250` a message must not be lost because the host crashes).
//!
//! What it does: [`Spool`] is a storage engine used by one thread, with a synchronous API.
//! [`Spool::append`] adds a message (envelope and raw body) to a buffer; [`Spool::commit`]
//! makes every message appended since the last commit durable with one write and one
//! `fdatasync` (group commit), and only after it returns `Ok` may the caller answer `250` for
//! them. [`Spool::set_recipient_state`] and [`Spool::mark_done`] record what happened to each
//! recipient and message. [`Spool::open`] recovers the spool after a stop or a crash and
//! returns the live messages, their recipients' states and where their bodies are
//! ([`SpoolRef`]); bodies are read on demand ([`Spool::read_body`]), never kept in memory.
//!
//! What it does not do: talk SMTP, schedule deliveries, build notifications, read a clock
//! (times are Unix milliseconds the caller gives), or run on the event loop. Wiring it to the
//! server's sessions (a `452 4.3.1` when a commit fails) and to the scheduler comes later.
//!
//! # Layout on disk
//!
//! ```text
//! DIR/lock                      flock'd by the open spool (holds its pid)
//! DIR/seg/0000000000000001.seg  segments: append-only message records
//! DIR/journal                   the state journal: append-only recipient and message states
//! ```
//!
//! # Design, and why
//!
//! - **Segments** (`segment`): every message is one record, header (magic, version, kind,
//!   length, CRC-32 over the rest, `frame`) then the envelope as length-prefixed binary fields
//!   (nothing text-parsed), then the raw body. Append-only files are what makes group commit
//!   cheap: one `write` and one `fdatasync` of one file per batch, however many messages, and
//!   no new inode per message (a new file costs a metadata commit on every filesystem). A new
//!   segment is started once a commit has taken the current one past
//!   [`SpoolLimits::segment_max_bytes`] ([`SEGMENT_MAX_BYTES`] by default), so segments are
//!   a soft size: the batch that crosses the bound finishes in its segment.
//! - **The commit** writes at the last committed length (positional write), syncs the file,
//!   and syncs the segment directory when the segment was created since the last commit:
//!   write → `fdatasync(file)` → `fsync(dir)` → `Ok` (the caller's `250`). A failed commit keeps
//!   nothing of its batch: the segment is cut back to its committed length and synced, so no
//!   half-written record stays visible to recovery; if even the cut fails, the spool starts a
//!   new segment whose first record is a *seal* ("segment N is trusted only up to length L"),
//!   committed at once on its own when the disk allows, else with the next batch; recovery
//!   honours it and the commit's error says so. The caller answers `452 4.3.1` and the client
//!   retries. (Should the process die before the seal is on disk, the unacknowledged records
//!   can come back: a duplicate of a message its client sends again, never a loss.)
//! - **The journal** (`journal`): per-recipient states (deferred with attempts, next attempt
//!   time and last reply; delivered or failed with the final reply; each reply with the
//!   next hop that gave it, when one did) and "message done",
//!   staged in memory and written in one write per [`Spool::flush_journal`] (the delivery
//!   loop's turn), without a sync per entry, and synced by [`Spool::sync_journal`] (the
//!   caller's timer) and before a segment is deleted. Losing its tail in a crash means saying less
//!   than happened: a recipient is tried again, a duplicate, the failure §6.1 tolerates; it
//!   never loses mail. The journal is compacted (the live state written to a new file,
//!   synced, renamed over it, the directory synced) once it passes
//!   [`SpoolLimits::journal_compact_bytes`] and twice its size after the last compaction.
//! - **Deletion**: a segment is deleted when every message in it is done (and it is not the
//!   one being appended to). A "high water" entry (next id, next segment number) is synced to
//!   the journal first, so ids and segment numbers are never given again after restart even
//!   when every segment that held them is gone. That sync also makes the segment's "done"
//!   entries durable, so a deletion lost in a crash brings back a segment recovery deletes
//!   again; compaction, which drops those entries, first syncs the segment directory.
//! - **Recovery** ([`Spool::open`]): read every segment from the start, verifying each CRC; the
//!   first record that is torn or fails its CRC ends what is trusted of that segment. In the
//!   newest segment that is a torn tail, cut away: records are only appended, so a record
//!   that fails its CRC there was never wholly written, and so never acknowledged. In an older
//!   segment (whole when a later one began) it is damage since: the bytes that follow cannot
//!   be framed with confidence, so the rest of that segment is not recovered, but its bytes
//!   are left in place and counted in the [`RecoveryReport`] for an operator (the CRC detects
//!   damage; it cannot repair it, and committed messages after it are lost to the spool).
//!   Then the journal is applied (a torn tail is cut too). The open spool always appends to a
//!   new segment, never after bytes it did not write itself.
//! - **One owner**: `DIR/lock` is `flock`ed for as long as the spool is open, so a second
//!   server on the same directory fails to open it with a clear error.
//!
//! # Bounds, and what is kept in memory
//!
//! Per committed message the spool keeps its place (segment, offsets) and its recipients'
//! states, not its envelope or body: [`Spool::live`] lists messages without reading the disk,
//! and [`Spool::read_message`] reads one back. [`Spool::open`] returns the live messages'
//! envelopes once, for the caller to take its bounded active set from; it may drop the rest
//! and read them again later. Messages already done stay as an id and a place until their
//! segment is deleted.
//!
//! # What "never lost" rests on
//!
//! `fdatasync` on the segment, `fsync` on its directory, and a filesystem that keeps the
//! order of those promises. A `kill -9` keeps written data even without a sync (the page
//! cache survives), so it cannot prove durability alone: the unit tests also check the order
//! of the steps (write, file sync, directory sync) before a commit returns, in the code and,
//! where `strace` can run, in the system calls of a child process (`pwrite64` of the
//! segment, its `fdatasync`, the directory's `fsync`, then the line standing for the `250`).

mod frame;
mod journal;
mod recovery;
mod segment;
#[cfg(test)]
mod tests;

use crate::proto::dsn::{Notify, Ret};
use journal::{Entry, Journal};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The size past which a commit ends its segment and the next commit starts a new one, in
/// bytes (64 MiB: deleting a segment frees at most this much, and a recovery reads at most
/// this much of a segment that is still needed for one live message).
pub const SEGMENT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A segment being appended to whose messages are all done is ended, and so deleted, once it
/// holds this fraction of [`SpoolLimits::segment_max_bytes`] (4 MiB by default): a drained
/// queue gives its disk back without a new file per message at low rates.
pub const EMPTY_SEGMENT_END_FRACTION: u64 = 16;

/// The journal size past which it is compacted, in bytes (16 MiB: about 200 000 entries).
pub const JOURNAL_COMPACT_BYTES: u64 = 16 * 1024 * 1024;

/// A message's id in the spool: unique for the spool's lifetime, never reused after a restart
/// once a commit covering it returned `Ok`. Shown as 16 hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolId(pub u64);

impl fmt::Display for SpoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// Where a spooled message is: enough to read it back without any index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolRef {
    /// The message's id.
    pub id: SpoolId,
    /// The segment that holds it.
    pub segment: u64,
    /// Where its record starts in the segment, in bytes.
    pub offset: u64,
    /// Its record's length, header included, in bytes.
    pub record_len: u64,
    /// Where its raw body starts in the segment, in bytes.
    pub body_offset: u64,
    /// Its raw body's length, in bytes.
    pub body_len: u64,
}

/// The `BODY` parameter of MAIL (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// No `BODY` parameter.
    #[default]
    Unspecified,
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME`.
    BinaryMime,
}

/// The MAIL parameters a relay keeps and passes on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// RFC 3461's `RET`, when given.
    pub ret: Option<Ret>,
    /// RFC 3461's `ENVID` (xtext-decoded), when given.
    pub envid: Option<Vec<u8>>,
    /// `BODY`.
    pub body: BodyType,
    /// RFC 6531's `SMTPUTF8`.
    pub smtputf8: bool,
    /// RFC 1870's `SIZE`, when given.
    pub size: Option<u64>,
}

/// One recipient of the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The forward path's address, without angle brackets.
    pub address: Vec<u8>,
    /// Its `NOTIFY` (RFC 3461 §4.1), kept as [`Notify::bits`].
    pub notify: Notify,
    /// Its `ORCPT` (RFC 3461 §4.2), as given (`addr-type;xtext`).
    pub orcpt: Option<Vec<u8>>,
}

/// Who handed the message over, for the `Received:` line the relay adds (RFC 5321 §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIdentity {
    /// The HELO/EHLO argument.
    pub helo: Vec<u8>,
    /// The client's address, as text (`192.0.2.1`, `2001:db8::1`).
    pub address: Vec<u8>,
    /// The `with` protocol word (`ESMTP`, `ESMTPS`, `ESMTPSA`, RFC 3848).
    pub protocol: Vec<u8>,
}

/// A message's envelope (RFC 5321 §2.3.1), as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// When the message was accepted, Unix milliseconds.
    pub arrival_unix_ms: u64,
    /// The reverse path's address, without angle brackets; empty for `<>`.
    pub reverse_path: Vec<u8>,
    /// The MAIL parameters.
    pub params: MailParams,
    /// Who handed it over.
    pub client: ClientIdentity,
    /// The recipients, in RCPT order (their index is how states name them).
    pub recipients: Vec<Recipient>,
}

/// What is known of one recipient's delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RecipientState {
    /// Not tried yet.
    #[default]
    Pending,
    /// Tried and deferred (a 4xx, no connection, a timeout): try again later.
    Deferred {
        /// Attempts so far.
        attempts: u32,
        /// When to try next, Unix milliseconds.
        next_attempt_unix_ms: u64,
        /// The last attempt's reply (or what went wrong), for `queue show` and a notification.
        last_reply: Vec<u8>,
        /// The next hop that gave `last_reply` (see [`RecipientState::remote_mta`]).
        remote_mta: Vec<u8>,
    },
    /// Delivered: the next hop answered 250 (final).
    Delivered {
        /// The next hop's reply.
        reply: Vec<u8>,
        /// The next hop that gave it (see [`RecipientState::remote_mta`]).
        remote_mta: Vec<u8>,
    },
    /// Failed for good: a 5xx, or the queue lifetime ran out (final).
    Failed {
        /// The reply that decided it, for the notification's `Diagnostic-Code`.
        reply: Vec<u8>,
        /// The next hop that gave it (see [`RecipientState::remote_mta`]).
        remote_mta: Vec<u8>,
    },
}

/// The longest next-hop name kept with a recipient's state, in bytes (a DNS name is at most
/// 255 octets, RFC 1035 §3.1; an IP address is shorter): longer ones are cut.
pub const MAX_REMOTE_MTA_BYTES: usize = 255;

impl RecipientState {
    /// The next hop whose session gave the kept reply (its name as given in `--relay-to`, or
    /// its IP address), for `queue show` and a notification's `Remote-MTA` (RFC 3464
    /// §2.3.5); empty when no next hop was reached (a connection refused everywhere, a
    /// reason of our own before any reply) and when pending.
    pub fn remote_mta(&self) -> &[u8] {
        match self {
            RecipientState::Pending => &[],
            RecipientState::Deferred { remote_mta, .. }
            | RecipientState::Delivered { remote_mta, .. }
            | RecipientState::Failed { remote_mta, .. } => remote_mta,
        }
    }

    /// A deferred recipient's state made due at `now_ms` (`queue retry`: attempts, last
    /// reply and next hop kept); `None` for any other state (pending ones are due already).
    pub fn due_at(&self, now_ms: u64) -> Option<RecipientState> {
        match self {
            RecipientState::Deferred {
                attempts,
                last_reply,
                remote_mta,
                ..
            } => Some(RecipientState::Deferred {
                attempts: *attempts,
                next_attempt_unix_ms: now_ms,
                last_reply: last_reply.clone(),
                remote_mta: remote_mta.clone(),
            }),
            _ => None,
        }
    }

    /// Whether the state is final (delivered or failed): it never changes again.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RecipientState::Delivered { .. } | RecipientState::Failed { .. }
        )
    }
}

/// A live message found by [`Spool::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Where it is.
    pub spool_ref: SpoolRef,
    /// Its envelope.
    pub envelope: Envelope,
    /// Its recipients' states, one per envelope recipient.
    pub recipients: Vec<RecipientState>,
}

/// A live message as [`Spool::live`] lists it (no disk read).
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    /// Where it is.
    pub spool_ref: SpoolRef,
    /// Its recipients' states.
    pub recipients: &'a [RecipientState],
}

/// The spool's sizes, chosen at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// A commit that takes a segment past this many bytes ends it.
    pub segment_max_bytes: u64,
    /// The journal is compacted past this many bytes (and twice its compacted size).
    pub journal_compact_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> SpoolLimits {
        SpoolLimits {
            segment_max_bytes: SEGMENT_MAX_BYTES,
            journal_compact_bytes: JOURNAL_COMPACT_BYTES,
        }
    }
}

/// What [`Spool::open`] found and repaired, for the server to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments_read: usize,
    /// Live messages found.
    pub live_messages: usize,
    /// Bytes cut from segments: the newest segment's torn tail, and tails past a seal.
    pub segment_bytes_cut: u64,
    /// Bytes of damage left in place: records that fail their CRC with good records after
    /// them, and bad tails of segments older than the newest (damage since they were
    /// written, not a tear). The bytes are kept for an operator.
    pub segment_bytes_damaged: u64,
    /// Segments with damage in them (see `segment_bytes_damaged`).
    pub segments_damaged: usize,
    /// Messages recovered from after damage in their segment (found by looking past it).
    pub messages_after_damage: usize,
    /// Bytes cut from the journal's torn or damaged tail.
    pub journal_bytes_cut: u64,
    /// Bytes of damaged journal records stepped over to reach good ones after them (left in
    /// place; the states they held are lost: a recipient tried again, never mail lost).
    pub journal_bytes_damaged: u64,
    /// Segments deleted because every message in them was done.
    pub segments_deleted: usize,
}

impl RecoveryReport {
    /// What the open repaired or found damaged, in words for an operator's log, or `None`
    /// when the spool was as its last writer left it after a clean stop.
    pub fn repairs(&self) -> Option<String> {
        let mut said = Vec::new();
        let torn = self.segment_bytes_cut + self.journal_bytes_cut;
        if torn > 0 {
            said.push(format!(
                "cut {torn} bytes of torn tails written but never acknowledged ({} in segments, {} in the journal)",
                self.segment_bytes_cut, self.journal_bytes_cut
            ));
        }
        if self.segment_bytes_damaged > 0 {
            said.push(format!(
                "DAMAGE: {} bytes in {} segments fail their checks and are left in place for inspection; {} messages were recovered from after the damage",
                self.segment_bytes_damaged, self.segments_damaged, self.messages_after_damage
            ));
        }
        if self.journal_bytes_damaged > 0 {
            said.push(format!(
                "DAMAGE: {} bytes of the journal fail their checks and are left in place; the states after them were kept (a state lost in them means a recipient tried again)",
                self.journal_bytes_damaged
            ));
        }
        (!said.is_empty()).then(|| said.join("; "))
    }
}

/// A committed message, as the spool keeps it in memory.
#[derive(Debug, Clone)]
struct Kept {
    /// Where it is.
    place: SpoolRef,
    /// Its recipients' states (emptied once done).
    recipients: Vec<RecipientState>,
    /// Done: nothing more will happen to it.
    done: bool,
}

/// A segment's messages.
#[derive(Debug, Default)]
struct SegmentInfo {
    /// The ids of its messages.
    ids: Vec<u64>,
    /// How many are not done.
    live: usize,
    /// Recovery found damage in it (kept in place): never deleted by the spool.
    damaged: bool,
    /// The file opened for reading, at the first read, kept until the segment is deleted:
    /// an `open` and a `close` per message read cost the delivery loop more than the read
    /// (a path walk each; measured in docs/benchmarks/2026-12-07-relay-speed.md).
    reader: OnceLock<File>,
}

/// The segment being appended to.
#[derive(Debug)]
struct Current {
    /// Its number.
    number: u64,
    /// The file, once created (at the first commit that writes to it).
    file: Option<File>,
    /// Bytes committed to it.
    committed_len: u64,
}

/// A step of a commit: where a test can make one fail, and what the order check records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Creating a segment file.
    Create,
    /// Writing the batch.
    Write,
    /// `fdatasync` of the segment.
    SyncFile,
    /// `fsync` of the segment directory.
    SyncDir,
    /// Cutting a segment back after a failure.
    Cut,
}

/// The spool, open (see the module docs).
#[derive(Debug)]
pub struct Spool {
    /// The spool directory.
    dir: PathBuf,
    /// Its segment directory.
    seg_dir: PathBuf,
    /// The lock file, `flock`ed while open (closing it releases the lock).
    _lock: File,
    /// The sizes.
    limits: SpoolLimits,
    /// The CRC seed of this spool's records (`DIR/key`; see `frame::Seed`).
    seed: frame::Seed,
    /// A commit failed since the current segment began (a full disk, likely): once drained,
    /// the segment is ended and deleted whatever its size.
    space_wanted: bool,
    /// The clean-close entry this open found, (segment, length): written again at this
    /// close when nothing was appended meanwhile (a queue tool's open and close), so what it
    /// protects stays protected.
    found_closed: Option<(u64, u64)>,
    /// The journal length from which a commit refused for want of journal room may compact
    /// it again (see [`Spool::compact_for_room`]).
    room_compact_at: u64,
    /// The state journal.
    journal: Journal,
    /// The journal length at which it is compacted next.
    compact_at: u64,
    /// The next id to give.
    next_id: u64,
    /// The next segment number to give.
    next_segment: u64,
    /// The segment being appended to.
    current: Current,
    /// The records appended since the last commit, to be written at `current.committed_len`.
    pending: Vec<u8>,
    /// The messages whose records are in `pending`.
    pending_messages: Vec<Kept>,
    /// Seals at the head of `pending` that no commit has written yet.
    seals: Vec<(u64, u64)>,
    /// Sealed segments not yet cut back to their sealed length.
    uncut: Vec<(u64, u64)>,
    /// The segment directory has an entry no `fsync` made durable yet.
    dir_unsynced: bool,
    /// Every committed message of every segment on disk, done ones too.
    messages: BTreeMap<u64, Kept>,
    /// Every segment on disk (and the current one once created).
    segments: BTreeMap<u64, SegmentInfo>,
    /// What the open found.
    report: RecoveryReport,
    /// Test-only failures and the trace of steps.
    #[cfg(test)]
    faults: tests::Faults,
}

impl Spool {
    /// Opens (creating) the spool in `dir` with the default sizes and recovers it (see
    /// [`Spool::open_with`]).
    pub fn open(dir: &Path) -> io::Result<(Spool, Vec<Recovered>)> {
        Spool::open_with(dir, SpoolLimits::default())
    }

    /// Opens (creating) the spool in `dir` and recovers it: takes its lock (failing clearly
    /// when another process holds it), reads every segment and cuts torn tails, applies the
    /// journal, deletes segments whose messages are all done, and returns the live messages
    /// in id order.
    pub fn open_with(dir: &Path, limits: SpoolLimits) -> io::Result<(Spool, Vec<Recovered>)> {
        recovery::open(dir, limits)
    }

    /// What the open found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a message to the current batch and returns its id. Nothing is durable, or
    /// visible to [`Spool::live`], until [`Spool::commit`] returns `Ok`; a failed commit drops
    /// it. Errors (appending nothing) when the message is too large for one record.
    pub fn append(&mut self, envelope: &Envelope, body: &[u8]) -> io::Result<SpoolId> {
        let id = self.next_id;
        let offset = self.current.committed_len + self.pending.len() as u64;
        let start = self.pending.len();
        let body_at =
            segment::message_record_into(&mut self.pending, self.seed, id, envelope, body)?;
        let record_len = (self.pending.len() - start) as u64;
        self.next_id += 1;
        self.pending_messages.push(Kept {
            place: SpoolRef {
                id: SpoolId(id),
                segment: self.current.number,
                offset,
                record_len,
                body_offset: offset + body_at,
                body_len: body.len() as u64,
            },
            recipients: vec![RecipientState::Pending; envelope.recipients.len()],
            done: false,
        });
        Ok(SpoolId(id))
    }

    /// Messages appended and not committed yet.
    pub fn pending(&self) -> usize {
        self.pending_messages.len()
    }

    /// Makes every message appended since the last commit durable: one positional write and
    /// one `fdatasync` of the current segment, and an `fsync` of the segment directory when
    /// the segment is new. Only after `Ok` may the caller answer `250` for them.
    ///
    /// On `Err` none of them is kept (answer `452 4.3.1`): the segment is cut back to its
    /// committed length, or, when that fails too, sealed there and replaced by a new segment.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() && !self.dir_unsynced {
            return Ok(());
        }
        match self.write_pending() {
            Ok(()) => {
                self.on_committed();
                Ok(())
            }
            Err(e) => {
                let sealed = self.on_commit_failed();
                // A full disk, likely: a journal grown long on a drained queue (it only
                // compacts at its bound) may be what fills it; compacting frees nearly all.
                let _ = self.compact_for_room();
                match sealed {
                    None => Err(e),
                    Some((number, len)) => Err(io::Error::new(
                        e.kind(),
                        format!(
                            "{e}; segment {number} could not be cut back to its committed {len} \
                         bytes: it is sealed there and a new segment follows"
                        ),
                    )),
                }
            }
        }
    }

    /// A test failure at `step`, or the step traced (nothing outside tests).
    fn step(&mut self, step: Step) -> io::Result<()> {
        #[cfg(test)]
        {
            self.faults.hit(step)
        }
        #[cfg(not(test))]
        {
            let _ = step;
            Ok(())
        }
    }

    /// The I/O of a commit: create the segment if needed, write, sync, sync the directory.
    fn write_pending(&mut self) -> io::Result<()> {
        if self.current.file.is_none() {
            self.step(Step::Create)?;
            let path = segment::segment_path(&self.seg_dir, self.current.number);
            let file = open_file(
                &path,
                OpenOptions::new().read(true).write(true).create_new(true),
            )?;
            self.current.file = Some(file);
            self.dir_unsynced = true;
            self.segments.entry(self.current.number).or_default();
        }
        if !self.pending.is_empty() {
            if !self.journal.has_room() && !self.compact_for_room() {
                // A full disk: taking more mail now would leave what is delivered
                // unrecorded, sent again after a restart. Refused (452) until space returns.
                // (First the journal is compacted: on a drained queue that frees nearly all
                // of it, where waiting for its 16 MiB bound would wedge a small disk.)
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no room left for the journal to record the mail already accepted",
                ));
            }
            self.step(Step::Write)?;
            #[cfg(test)]
            if let Some(n) = self.faults.partial_write.take() {
                let n = n.min(self.pending.len());
                let file = self.current_file()?;
                file.write_all_at(&self.pending[..n], self.current.committed_len)?;
                return Err(io::Error::other("injected: the disk filled part way"));
            }
            let file = self.current_file()?;
            file.write_all_at(&self.pending, self.current.committed_len)?;
            self.step(Step::SyncFile)?;
            self.current_file()?.sync_data()?;
        }
        if self.dir_unsynced {
            self.step(Step::SyncDir)?;
            sync_dir(&self.seg_dir)?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// The current segment's file (created by `write_pending` before any use).
    fn current_file(&self) -> io::Result<&File> {
        self.current
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("no current segment file"))
    }

    /// After a commit succeeded: its messages are kept; the segment ends if it is full.
    fn on_committed(&mut self) {
        self.current.committed_len += self.pending.len() as u64;
        self.pending.clear();
        self.seals.clear();
        let info = self.segments.entry(self.current.number).or_default();
        for kept in self.pending_messages.drain(..) {
            info.ids.push(kept.place.id.0);
            info.live += 1;
            self.messages.insert(kept.place.id.0, kept);
        }
        // Sealed segments whose cut failed before: try again, now that the disk took a write.
        let had_uncut = !self.uncut.is_empty();
        for (number, len) in std::mem::take(&mut self.uncut) {
            let path = segment::segment_path(&self.seg_dir, number);
            let cut = self.step(Step::Cut).and_then(|()| {
                let file = open_file(&path, OpenOptions::new().write(true))?;
                file.set_len(len)?;
                file.sync_data()
            });
            match cut {
                Err(e) if e.kind() != io::ErrorKind::NotFound => self.uncut.push((number, len)),
                _ => {}
            }
        }
        if had_uncut && self.uncut.is_empty() {
            self.sweep_finished();
        }
        if self.current.committed_len >= self.limits.segment_max_bytes {
            self.start_segment();
        }
    }

    /// After a commit failed: none of its messages is kept, and nothing half-written stays
    /// visible (see [`Spool::commit`]). Returns the seal, (segment, length), when the segment
    /// could not be cut back.
    fn on_commit_failed(&mut self) -> Option<(u64, u64)> {
        // The disk may be full: a drained segment is given back whatever its size.
        self.space_wanted = true;
        self.pending_messages.clear();
        self.pending.clear();
        if self.cut_back().is_err() {
            // The tail past the committed length may hold whole records never acknowledged:
            // seal the segment there, in the first record of a new segment, written at once
            // (alone) when the disk allows, else with the next commit.
            let sealed = (self.current.number, self.current.committed_len);
            self.seals.push(sealed);
            self.uncut.push(sealed);
            self.start_segment();
            self.pending_seals();
            if self.write_pending().is_ok() {
                self.on_committed();
                return Some(sealed);
            }
            self.pending.clear();
            let _ = self.cut_back(); // the next commit writes from the committed length anyway
            self.pending_seals();
            return Some(sealed);
        }
        if self.seals.is_empty() && self.current.committed_len > 0 {
            // The disk is full, likely: the next commit starts a new segment, so this one is
            // deleted as soon as its messages are done (delivered in moments) rather than
            // stay while it keeps a message or two live under a steady load.
            self.start_segment();
        }
        self.pending_seals();
        None
    }

    /// Cuts the current segment back to its committed length, synced.
    fn cut_back(&mut self) -> io::Result<()> {
        self.step(Step::Cut)?;
        match &self.current.file {
            None => Ok(()),
            Some(file) => {
                file.set_len(self.current.committed_len)?;
                file.sync_data()
            }
        }
    }

    /// Puts the seals no commit has written yet at the head of the (empty) pending batch.
    fn pending_seals(&mut self) {
        for &(number, len) in &self.seals {
            segment::seal_record_into(&mut self.pending, self.seed, number, len);
        }
    }

    /// Ends the current segment: the next commit creates a new one. The ended segment is
    /// deleted when all its messages are done already.
    fn start_segment(&mut self) {
        self.space_wanted = false;
        let ended = self.current.number;
        self.current = Current {
            number: self.next_segment,
            file: None,
            committed_len: 0,
        };
        self.next_segment += 1;
        if self.segments.get(&ended).is_some_and(|info| info.live == 0) {
            // A failure leaves it for the next open (its messages are all done).
            let _ = self.delete_segment(ended);
        }
    }

    /// Deletes every segment but the current one whose messages are all done (those whose
    /// deletion waited for a cut); a failure leaves the rest for the next open.
    fn sweep_finished(&mut self) {
        let finished: Vec<u64> = self
            .segments
            .iter()
            .filter(|&(&number, info)| info.live == 0 && number != self.current.number)
            .map(|(&number, _)| number)
            .collect();
        for number in finished {
            if self.delete_segment(number).is_err() {
                break;
            }
        }
    }

    /// Deletes segment `number` (all its messages done, not the current one): the high-water
    /// marks are synced to the journal first, then the file is removed.
    fn delete_segment(&mut self, number: u64) -> io::Result<()> {
        if self.segments.get(&number).is_some_and(|info| info.damaged) {
            // Damage stays for an operator, and every open reports it: the bytes of a
            // message that got its 250 and cannot be read are never deleted by the spool.
            return Ok(());
        }
        if !self.uncut.is_empty() {
            // A seal may sit in this segment, for a segment not cut back yet: keep it (and
            // every other) until the cuts are done (`sweep_finished`) or the next open.
            return Ok(());
        }
        let high_water = self.high_water();
        self.journal_append(&[high_water])?;
        self.journal.sync()?;
        match std::fs::remove_file(segment::segment_path(&self.seg_dir, number)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        if let Some(info) = self.segments.remove(&number) {
            for id in info.ids {
                self.messages.remove(&id);
            }
        }
        Ok(())
    }

    /// The journal entry that keeps ids and segment numbers from being given again.
    fn high_water(&self) -> Entry {
        Entry::HighWater {
            next_id: self.next_id,
            next_segment: self.next_segment.max(self.current.number + 1),
        }
    }

    /// Records that recipient `rcpt` (its index in the envelope) of message `id` is now in
    /// `state`: its journal entry is staged for the next [`Spool::flush_journal`]. The
    /// spool's state changes whatever the journal does; an `Err` says entries may not reach
    /// the disk (after a crash the recipient may be tried again: a duplicate at worst).
    ///
    /// Refused (`InvalidInput`, nothing changes): an id that is not committed or is done, an
    /// index past the recipients, a recipient already delivered or failed, or `Pending`.
    pub fn set_recipient_state(
        &mut self,
        id: SpoolId,
        rcpt: usize,
        state: RecipientState,
    ) -> io::Result<()> {
        let refuse = |why: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("spool message {id}: {why}"),
            ))
        };
        if state == RecipientState::Pending {
            return refuse("a recipient cannot become pending again");
        }
        let Some(kept) = self.messages.get_mut(&id.0).filter(|kept| !kept.done) else {
            return refuse("not a live committed message");
        };
        let Some(slot) = kept.recipients.get_mut(rcpt) else {
            return refuse("no such recipient");
        };
        if slot.is_final() {
            return refuse("the recipient's state is final");
        }
        *slot = state.clone();
        let rcpt = u32::try_from(rcpt).unwrap_or(u32::MAX); // below the envelope's count
        self.journal_append(&[Entry::Recipient {
            id: id.0,
            rcpt,
            state,
        }])
    }

    /// Records that message `id` is done (every recipient delivered or failed and any
    /// notification spooled and committed, or deleted by an operator); deletes its segment
    /// when that was the segment's last live message (the segment being appended to only
    /// past [`EMPTY_SEGMENT_END_FRACTION`] of its size bound, and with no batch pending). Done twice is fine. An unknown id is
    /// refused (`InvalidInput`). As with [`Spool::set_recipient_state`], the state changes
    /// whatever the journal write does.
    pub fn mark_done(&mut self, id: SpoolId) -> io::Result<()> {
        let Some(kept) = self.messages.get_mut(&id.0) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("spool message {id}: not a committed message"),
            ));
        };
        if kept.done {
            return Ok(());
        }
        kept.done = true;
        kept.recipients = Vec::new();
        let segment = kept.place.segment;
        let mut now_empty = false;
        if let Some(info) = self.segments.get_mut(&segment) {
            info.live = info.live.saturating_sub(1);
            now_empty = info.live == 0;
        }
        let written = self.journal_append(&[Entry::Done { id: id.0 }]);
        if now_empty && segment != self.current.number {
            written.and(self.delete_segment(segment))
        } else {
            if now_empty
                && self.pending.is_empty()
                && self.current.committed_len > 0
                && (self.space_wanted
                    || self.current.committed_len
                        >= self.limits.segment_max_bytes / EMPTY_SEGMENT_END_FRACTION)
            {
                // The queue drained: end the segment being appended to, which deletes it,
                // rather than keep its bytes until it fills (nothing in it is needed).
                self.start_segment();
            }
            written
        }
    }

    /// Makes the journal's entries durable (written, then `fdatasync`): for the caller's
    /// timer.
    pub fn sync_journal(&mut self) -> io::Result<()> {
        self.journal.sync()
    }

    /// Writes the states recorded since the last flush in one write, without a sync.
    /// [`Spool::set_recipient_state`] and [`Spool::mark_done`] only stage their journal
    /// entries; the delivery loop flushes once per turn (one `pwrite` for all the turn's
    /// states), [`Spool::sync_journal`] and dropping the spool flush too. An entry lost in a
    /// crash before its flush means a recipient tried again: a duplicate, never a loss. An
    /// `Err` says the staged entries may not be on disk (the next compaction writes the live
    /// state again).
    pub fn flush_journal(&mut self) -> io::Result<()> {
        self.journal.flush()
    }

    /// Appends entries to the journal, rewriting it first when a failed write broke it, and
    /// compacting it when it has grown past its bound.
    fn journal_append(&mut self, entries: &[Entry]) -> io::Result<()> {
        if self.journal.is_broken() {
            self.compact()?;
        }
        self.journal.stage(entries)?;
        if self.journal.len() >= self.compact_at {
            self.compact()?;
        }
        Ok(())
    }

    /// On a disk too full for the journal's room: compacts it (once per 64 KiB it grows, so a
    /// full disk does not rewrite it at every refused commit) and says whether it has room now.
    fn compact_for_room(&mut self) -> bool {
        if self.journal.len() < self.room_compact_at {
            return false;
        }
        self.room_compact_at = self.journal.len() + 64 * 1024;
        self.compact().is_ok() && self.journal.has_room()
    }

    /// Rewrites the journal with the live state only. The segment directory is synced first:
    /// the deletions of segments whose "done" entries are about to go must be durable.
    fn compact(&mut self) -> io::Result<()> {
        let result = sync_dir(&self.seg_dir).and_then(|()| {
            let entries = self.state_entries();
            self.journal.rewrite(&entries)
        });
        // After a failure too: no new attempt before the journal has grown again.
        self.compact_at = self
            .limits
            .journal_compact_bytes
            .max(self.journal.len().saturating_mul(2));
        result
    }

    /// The live state as journal entries: the high-water marks, then per message either
    /// "done" or its recipients' states that are not pending.
    fn state_entries(&self) -> Vec<Entry> {
        let mut entries = vec![self.high_water()];
        for (&id, kept) in &self.messages {
            if kept.done {
                entries.push(Entry::Done { id });
                continue;
            }
            for (rcpt, state) in kept.recipients.iter().enumerate() {
                if *state != RecipientState::Pending {
                    entries.push(Entry::Recipient {
                        id,
                        rcpt: u32::try_from(rcpt).unwrap_or(u32::MAX),
                        state: state.clone(),
                    });
                }
            }
        }
        entries
    }

    /// The live (committed, not done) messages in id order, without reading the disk.
    pub fn live(&self) -> impl Iterator<Item = Listed<'_>> + '_ {
        self.messages
            .values()
            .filter(|kept| !kept.done)
            .map(|kept| Listed {
                spool_ref: kept.place,
                recipients: &kept.recipients,
            })
    }

    /// The live messages with an id above `after` (all of them for `None`), in id order,
    /// without reading the disk: what the queue tools walk in bounded chunks.
    pub fn live_after(
        &self,
        after: Option<SpoolId>,
    ) -> impl DoubleEndedIterator<Item = Listed<'_>> + '_ {
        let from = match after {
            Some(id) => std::ops::Bound::Excluded(id.0),
            None => std::ops::Bound::Unbounded,
        };
        self.messages
            .range((from, std::ops::Bound::Unbounded))
            .map(|(_, kept)| kept)
            .filter(|kept| !kept.done)
            .map(|kept| Listed {
                spool_ref: kept.place,
                recipients: &kept.recipients,
            })
    }

    /// How many messages are live (committed, not done): a walk over the ids in memory.
    pub fn live_count(&self) -> usize {
        self.messages.values().filter(|kept| !kept.done).count()
    }

    /// The bytes the spool holds on disk: its segment files and its journal, as their
    /// sizes say now (a `stat` per file; for metrics, not the event loop's hot path).
    pub fn disk_bytes(&self) -> io::Result<u64> {
        disk_bytes(&self.dir)
    }

    /// One live message, without reading the disk.
    pub fn get(&self, id: SpoolId) -> Option<Listed<'_>> {
        self.messages
            .get(&id.0)
            .filter(|kept| !kept.done)
            .map(|kept| Listed {
                spool_ref: kept.place,
                recipients: &kept.recipients,
            })
    }

    /// Segment files on disk (the current one once created).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Reads a committed message back: its envelope and raw body, the record's CRC verified
    /// (`InvalidData` when the disk changed it since).
    pub fn read_message(&self, place: &SpoolRef) -> io::Result<(Envelope, Vec<u8>)> {
        read_record(self.reader(place.segment)?, self.seed, place)
    }

    /// The file to read segment `number` from: the current segment's own file, else the
    /// segment's kept reader (opened now if this is its first read).
    fn reader(&self, number: u64) -> io::Result<&File> {
        if number == self.current.number {
            if let Some(file) = &self.current.file {
                return Ok(file);
            }
        }
        let info = self.segments.get(&number).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("spool segment {number} is not on disk"),
            )
        })?;
        if let Some(file) = info.reader.get() {
            return Ok(file);
        }
        let file = open_to_read(&segment::segment_path(&self.seg_dir, number))?;
        // Only this thread can set it (the spool is behind its owner's `&self`); a lost
        // race would drop the second file, harmless.
        let _ = info.reader.set(file);
        info.reader
            .get()
            .ok_or_else(|| io::Error::other("spool segment reader not kept"))
    }

    /// Reads a committed message's envelope only: the record's head up to its body, framed
    /// but not CRC-checked (the CRC covers the body, which is not read; a listing must not
    /// read every body). [`Spool::read_message`] checks the whole record.
    pub fn read_envelope(&self, place: &SpoolRef) -> io::Result<Envelope> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "spool message {} in segment {}: {what}",
                    place.id, place.segment
                ),
            )
        };
        let head = place
            .body_offset
            .checked_sub(place.offset)
            .and_then(|len| usize::try_from(len).ok())
            .filter(|&len| len >= frame::HEADER_LEN)
            .ok_or_else(|| bad("not a record"))?;
        let mut record = vec![0u8; head];
        self.reader(place.segment)?
            .read_exact_at(&mut record, place.offset)?;
        let header =
            frame::parse_header(&record, segment::SEGMENT_MAGIC).map_err(|_| bad("no header"))?;
        if header.kind != segment::KIND_MESSAGE {
            return Err(bad("not a message record"));
        }
        let (id, envelope, _) = segment::parse_message(&record[frame::HEADER_LEN..])
            .map_err(|_| bad("unreadable envelope"))?;
        if id != place.id.0 {
            return Err(bad("another message's record"));
        }
        Ok(envelope)
    }

    /// Reads a committed message's raw body (see [`Spool::read_message`]).
    pub fn read_body(&self, place: &SpoolRef) -> io::Result<Vec<u8>> {
        self.read_message(place).map(|(_, body)| body)
    }
}

/// Reads the message record at `place` from `file`, checking its frame and CRC.
fn read_record(
    file: &File,
    seed: frame::Seed,
    place: &SpoolRef,
) -> io::Result<(Envelope, Vec<u8>)> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "spool message {} in segment {}: {what}",
                place.id, place.segment
            ),
        )
    };
    let len = usize::try_from(place.record_len).map_err(|_| bad("too large"))?;
    if len < frame::HEADER_LEN {
        return Err(bad("not a record"));
    }
    let mut record = vec![0u8; len];
    file.read_exact_at(&mut record, place.offset)?;
    let header =
        frame::parse_header(&record, segment::SEGMENT_MAGIC).map_err(|_| bad("no header"))?;
    let payload = &record[frame::HEADER_LEN..];
    frame::check_record(seed, &header, payload).map_err(|_| bad("its CRC does not match"))?;
    if header.kind != segment::KIND_MESSAGE {
        return Err(bad("not a message record"));
    }
    let (id, envelope, body_at) =
        segment::parse_message(payload).map_err(|_| bad("unreadable envelope"))?;
    if id != place.id.0 {
        return Err(bad("another message's record"));
    }
    record.drain(..frame::HEADER_LEN + body_at);
    Ok((envelope, record))
}

/// The bytes a spool directory holds on disk: every file in `DIR/seg/` and the journal
/// (`stat` only: usable on a spool another process owns).
pub fn disk_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir.join("seg"))? {
        let entry = entry?;
        if let Ok(meta) = entry.metadata() {
            if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    match std::fs::metadata(dir.join("journal")) {
        Ok(meta) => total = total.saturating_add(meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(total)
}

/// Whether `dir` looks like a spool: a directory with the segment directory in it.
pub fn is_spool_dir(dir: &Path) -> bool {
    dir.join("seg").is_dir()
}

impl Drop for Spool {
    /// A clean close: the journal's last entry says which segment was appended to last and
    /// how long it was (the journal's `Closed` entry), synced. A crash writes none.
    fn drop(&mut self) {
        let (segment, len) = match (self.current.file.is_some(), self.found_closed) {
            (false, Some(found)) => found,
            _ => (self.current.number, self.current.committed_len),
        };
        let closed = Entry::Closed { segment, len };
        if self.journal_append(&[closed]).is_ok() {
            let _ = self.journal.sync();
        }
    }
}

/// Opens one of the spool's files with `options`: never through a symbolic link
/// (`O_NOFOLLOW`: a spool another user can write must not make a root-run tool or server
/// truncate what a link points to), never waiting on a FIFO (`O_NONBLOCK`, which changes
/// nothing for a regular file), created with mode 0600 (the spool holds mail: readable by
/// its owner only, as Postfix's queue is); anything but a regular file is refused.
fn open_file(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link: a spool's files must be regular files",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
    let metadata = file.metadata()?;
    if metadata.file_type().is_file() && std::os::unix::fs::MetadataExt::nlink(&metadata) > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} has other names (hard links): a spool's files are its own",
                path.display()
            ),
        ));
    }
    if !metadata.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file: a spool's files must be regular files",
                path.display()
            ),
        ));
    }
    Ok(file)
}

/// Opens one of the spool's files for reading (see [`open_file`]).
fn open_to_read(path: &Path) -> io::Result<File> {
    open_file(path, OpenOptions::new().read(true))
}

/// Creates the directory `dir` and its missing parents, each new one with mode 0700 (the
/// spool holds mail).
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// `fsync` a directory, making the entries created or removed in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory that holds `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}
