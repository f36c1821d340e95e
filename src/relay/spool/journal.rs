//! The state journal: what happened to each spooled message since it was committed, as
//! append-only records beside the segments (`DIR/journal`).
//!
//! What it does: encodes and decodes the journal's entries ([`Entry`]); [`Journal`] appends
//! them to the file without a sync per entry, syncs when asked, cuts a failed write back so no
//! half-written entry sits before later ones, and is replaced whole by [`Journal::rewrite`]
//! (compaction: a new file with the live state, renamed over the old one, the directory
//! synced); [`read_journal`] reads it back at recovery (past damage, with the seed) and
//! [`cut_journal`] cuts a torn tail.
//!
//! What it does not do: decide what an entry means for a message (the spool applies them), or
//! when to compact or sync (the spool's policy).
//!
//! Why no sync per entry (RFC 5321 §6.1): an entry lost in a crash says less than happened,
//! never more. A lost "delivered" means the recipient is tried again, a duplicate, the failure
//! §6.1 tolerates; a lost "done" keeps a message that could have gone. Nothing lost here loses
//! mail, which lives in the segments.

use super::frame::{
    check_record, parse_header, record_into, FieldReader, FieldWriter, Malformed, Seed,
};
use super::frame::{HEADER_LEN, MAX_PAYLOAD_BYTES};
use super::{RecipientState, MAX_REMOTE_MTA_BYTES};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The magic that starts every journal record.
const JOURNAL_MAGIC: &[u8; 4] = b"FSPJ";

/// Kind: a recipient's new state, no next hop named (the only recipient kind before
/// `Remote-MTA` was kept; still written when no next hop gave the reply, so such entries
/// read the same in both versions).
const KIND_RECIPIENT: u8 = 1;
/// Kind: a recipient's new state, then the next hop that gave its reply (a byte string of
/// at most [`MAX_REMOTE_MTA_BYTES`]). A new kind rather than a new format version: journals
/// written before it stay readable as they are.
const KIND_RECIPIENT_AT_HOP: u8 = 4;
/// Kind: a message is done.
const KIND_DONE: u8 = 2;
/// Kind: the high-water marks.
const KIND_HIGH_WATER: u8 = 3;
/// Kind: the spool was closed cleanly (see [`Entry::Closed`]).
const KIND_CLOSED: u8 = 5;

/// Recipient state codes inside a [`KIND_RECIPIENT`] entry.
const STATE_DEFERRED: u8 = 1;
/// Delivered.
const STATE_DELIVERED: u8 = 2;
/// Failed.
const STATE_FAILED: u8 = 3;

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    /// Recipient `rcpt` (its index in the envelope) of message `id` is now in `state`
    /// (never [`RecipientState::Pending`]).
    Recipient {
        /// The message.
        id: u64,
        /// The recipient's index.
        rcpt: u32,
        /// Its new state.
        state: RecipientState,
    },
    /// Message `id` is done: every recipient is delivered or failed and any notification is
    /// spooled, or it was deleted.
    Done {
        /// The message.
        id: u64,
    },
    /// No id below `next_id` and no segment number below `next_segment` may be given again:
    /// written before a segment is deleted and at the head of a compacted journal, so numbers
    /// stay unique when their segments are gone.
    HighWater {
        /// The next spool id.
        next_id: u64,
        /// The next segment number.
        next_segment: u64,
    },
    /// The spool was closed cleanly with `segment` (the one appended to last) committed to
    /// `len` bytes: the last entry of a clean stop. A bad record found below `len` in that
    /// segment at the next open is damage, not a torn write, and is kept (a crash writes no
    /// such entry, and every open appends to a new segment).
    Closed {
        /// The segment appended to last.
        segment: u64,
        /// Its committed length then.
        len: u64,
    },
}

/// Appends `entry`, framed, to `out`.
pub(super) fn entry_into(out: &mut Vec<u8>, seed: Seed, entry: &Entry) {
    let mut payload = Vec::with_capacity(64);
    let mut w = FieldWriter::new(&mut payload);
    let kind = match entry {
        Entry::Recipient { id, rcpt, state } => {
            w.u64(*id);
            w.u32(*rcpt);
            match state {
                // Not written (the spool refuses it); encoded as a deferral never tried.
                RecipientState::Pending => {
                    w.u8(STATE_DEFERRED);
                    w.u32(0);
                    w.u64(0);
                    w.bytes(b"");
                }
                RecipientState::Deferred {
                    attempts,
                    next_attempt_unix_ms,
                    last_reply,
                    ..
                } => {
                    w.u8(STATE_DEFERRED);
                    w.u32(*attempts);
                    w.u64(*next_attempt_unix_ms);
                    w.bytes(truncated(last_reply));
                }
                RecipientState::Delivered { reply, .. } => {
                    w.u8(STATE_DELIVERED);
                    w.bytes(truncated(reply));
                }
                RecipientState::Failed { reply, .. } => {
                    w.u8(STATE_FAILED);
                    w.bytes(truncated(reply));
                }
            }
            let remote_mta = state.remote_mta();
            if remote_mta.is_empty() {
                KIND_RECIPIENT
            } else {
                w.bytes(&remote_mta[..remote_mta.len().min(MAX_REMOTE_MTA_BYTES)]);
                KIND_RECIPIENT_AT_HOP
            }
        }
        Entry::Done { id } => {
            w.u64(*id);
            KIND_DONE
        }
        Entry::HighWater {
            next_id,
            next_segment,
        } => {
            w.u64(*next_id);
            w.u64(*next_segment);
            KIND_HIGH_WATER
        }
        Entry::Closed { segment, len } => {
            w.u64(*segment);
            w.u64(*len);
            KIND_CLOSED
        }
    };
    record_into(out, seed, JOURNAL_MAGIC, kind, &payload);
}

/// A reply kept in the journal, cut to [`MAX_PAYLOAD_BYTES`] less room for the rest (a reply
/// is a few hundred bytes; the bound only keeps the framing honest).
fn truncated(reply: &[u8]) -> &[u8] {
    &reply[..reply.len().min(MAX_PAYLOAD_BYTES - 64)]
}

/// Decodes one entry's payload.
fn parse_entry(kind: u8, payload: &[u8]) -> Result<Entry, Malformed> {
    let mut r = FieldReader::new(payload);
    let entry = match kind {
        KIND_RECIPIENT | KIND_RECIPIENT_AT_HOP => {
            let id = r.u64()?;
            let rcpt = r.u32()?;
            let code = r.u8()?;
            let (attempts, next_attempt_unix_ms) = match code {
                STATE_DEFERRED => (r.u32()?, r.u64()?),
                _ => (0, 0),
            };
            let reply = r.bytes()?.to_vec();
            let remote_mta = match kind {
                KIND_RECIPIENT_AT_HOP => {
                    let name = r.bytes()?;
                    name[..name.len().min(MAX_REMOTE_MTA_BYTES)].to_vec()
                }
                _ => Vec::new(),
            };
            let state = match code {
                STATE_DEFERRED => RecipientState::Deferred {
                    attempts,
                    next_attempt_unix_ms,
                    last_reply: reply,
                    remote_mta,
                },
                STATE_DELIVERED => RecipientState::Delivered { reply, remote_mta },
                STATE_FAILED => RecipientState::Failed { reply, remote_mta },
                _ => return Err(Malformed),
            };
            Entry::Recipient { id, rcpt, state }
        }
        KIND_DONE => Entry::Done { id: r.u64()? },
        KIND_HIGH_WATER => Entry::HighWater {
            next_id: r.u64()?,
            next_segment: r.u64()?,
        },
        KIND_CLOSED => Entry::Closed {
            segment: r.u64()?,
            len: r.u64()?,
        },
        _ => return Err(Malformed),
    };
    r.end()?;
    Ok(entry)
}

/// What [`read_journal`] found.
#[derive(Debug, Default)]
pub(super) struct JournalScan {
    /// The entries, in order.
    pub(super) entries: Vec<Entry>,
    /// Bytes cut from a torn or damaged tail.
    pub(super) cut_bytes: u64,
    /// Bytes of damaged records stepped over to reach good ones after them (left in place).
    pub(super) damaged_bytes: u64,
    /// Where the last good record ends: the length the file is cut to ([`cut_journal`]).
    pub(super) good_len: u64,
    /// Whole records (sound header, length inside the file) that failed their check.
    pub(super) bad_records: u64,
}

/// Reads the journal at `path` (a missing file is an empty journal): every good record, in
/// order. A damaged record costs only itself: the next good one after it is searched for
/// (each later magic whose record passes its CRC with the spool's seed, which a reply text
/// quoting a journal record cannot have), and the stretch between is left in place. The
/// tail after the last good record is a torn write and is cut (synced), so entries appended
/// later follow good ones. A legacy (unseeded) journal is read up to its first bad record,
/// as before seeds. A record with a valid CRC that does not decode fails the open before any
/// damage (another version wrote it); after damage it is stepped over.
#[cfg(test)]
pub(super) fn scan_journal(path: &Path, seed: Seed) -> io::Result<JournalScan> {
    let scan = read_journal(path, seed)?;
    cut_journal(path, &scan)?;
    Ok(scan)
}

/// Cuts the journal at `path` to the end of its last good record, as `scan` found it
/// (nothing to do when no tail was found, or the file is missing).
pub(super) fn cut_journal(path: &Path, scan: &JournalScan) -> io::Result<()> {
    if scan.cut_bytes == 0 {
        return Ok(());
    }
    let file = super::open_file(path, OpenOptions::new().write(true))?;
    file.set_len(scan.good_len)?;
    file.sync_data()
}

/// Reads the journal as `scan_journal` describes, without the cut: what it would keep, and
/// the tail it would cut ([`cut_journal`] does, once recovery has checked the key).
pub(super) fn read_journal(path: &Path, seed: Seed) -> io::Result<JournalScan> {
    let mut file = match super::open_file(path, OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(JournalScan::default()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut scan = JournalScan::default();
    // Where the last good record ends (the rest is a torn tail), and where the next begins.
    let mut good_end = 0usize;
    let mut at = 0usize;
    let good_at = |at: usize| -> Option<(super::frame::Header, usize)> {
        let header = parse_header(bytes.get(at..)?, JOURNAL_MAGIC).ok()?;
        let end = at.checked_add(HEADER_LEN + header.len as usize)?;
        let payload = bytes.get(at + HEADER_LEN..end)?;
        check_record(seed, &header, payload).ok()?;
        Some((header, end))
    };
    let finder = memchr::memmem::Finder::new(JOURNAL_MAGIC);
    while at < bytes.len() {
        let (header, end) = match good_at(at) {
            Some(found) => found,
            None => {
                let whole = parse_header(&bytes[at..], JOURNAL_MAGIC)
                    .is_ok_and(|header| at + HEADER_LEN + header.len as usize <= bytes.len());
                if whole {
                    scan.bad_records += 1;
                }
                if seed == Seed::LEGACY {
                    break;
                }
                // Damage: the next good record after it, if any.
                let next = finder
                    .find_iter(&bytes[at + 1..])
                    .map(|hit| at + 1 + hit)
                    .find_map(|start| good_at(start).map(|found| (start, found)));
                let Some((start, found)) = next else {
                    break;
                };
                scan.damaged_bytes += (start - at) as u64;
                at = start;
                found
            }
        };
        let payload = &bytes[at + HEADER_LEN..end];
        let entry = (header.version == super::frame::FORMAT_VERSION)
            .then(|| parse_entry(header.kind, payload).ok())
            .flatten();
        let Some(entry) = entry else {
            if scan.damaged_bytes > 0 {
                scan.damaged_bytes += (end - at) as u64;
                at = end;
                good_end = end;
                continue;
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: an unreadable entry at offset {at} (written by another version of fastsmtpd?)",
                    path.display()
                ),
            ));
        };
        scan.entries.push(entry);
        at = end;
        good_end = end;
    }
    scan.good_len = good_end as u64;
    scan.cut_bytes = (bytes.len() - good_end) as u64;
    Ok(scan)
}

/// The most octets of journal entries staged before they are written anyway (about a
/// thousand recipient states).
pub(super) const JOURNAL_STAGE_MAX_BYTES: usize = 64 * 1024;

/// Disk space kept allocated past the journal's end, in bytes (4 MiB: some 40 000 recipient
/// states). On a full disk the entries that free space (a message done, the high-water mark
/// before a segment is deleted) must still be written, else delivered mail keeps its
/// segments and the disk stays full; the space is taken with `fallocate(FALLOC_FL_KEEP_SIZE)`
/// ahead of need, renewed once half of it is used, and a write into it cannot run out.
pub(super) const JOURNAL_RESERVE_BYTES: u64 = 4 * 1024 * 1024;

/// The least room (bytes allocated past the journal's end) under which the spool takes no
/// more mail (`452 4.3.1`): what it has accepted must still be recordable as delivered, or a
/// restart sends it again. A small disk gets a smaller reserve, halved down to this.
pub(super) const JOURNAL_ROOM_MIN_BYTES: u64 = 64 * 1024;

/// The journal file, open for appending.
#[derive(Debug)]
pub(super) struct Journal {
    /// Where it is.
    path: PathBuf,
    /// The open file.
    file: File,
    /// Its length: where the next entry goes.
    len: u64,
    /// The spool's CRC seed (see [`Seed`]).
    seed: Seed,
    /// Entries encoded by [`Journal::stage`] and not written yet (see [`Journal::flush`]).
    staged: Vec<u8>,
    /// Entries written since the last sync.
    dirty: bool,
    /// Where the space allocated ahead ends ([`JOURNAL_RESERVE_BYTES`]; `len` when none).
    reserved_to: u64,
    /// The file system cannot allocate ahead (`EOPNOTSUPP`): not tried again.
    reserve_unsupported: bool,
    /// A failed write could not be cut back: the file must be rewritten before anything is
    /// appended to it again.
    broken: bool,
    /// Test-only failures: the next append writes this many bytes and fails...
    #[cfg(test)]
    pub(super) partial_append: Option<usize>,
    /// ...and its cut back fails too.
    #[cfg(test)]
    pub(super) fail_cut: bool,
    /// Test-only: the disk has no room for the journal's reserve.
    #[cfg(test)]
    pub(super) no_room: bool,
}

impl Journal {
    /// Opens (creating) the journal at `path` for appending after what it holds. Returns it
    /// and whether it was created (then its directory must be synced).
    pub(super) fn open(path: &Path, seed: Seed) -> io::Result<(Journal, bool)> {
        let created = !path.exists();
        let file = super::open_file(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )?;
        let len = file.metadata()?.len();
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
            len,
            seed,
            staged: Vec::new(),
            dirty: false,
            reserved_to: len,
            reserve_unsupported: false,
            broken: false,
            #[cfg(test)]
            partial_append: None,
            #[cfg(test)]
            fail_cut: false,
            #[cfg(test)]
            no_room: false,
        };
        journal.keep_reserve();
        Ok((journal, created))
    }

    /// Allocates [`JOURNAL_RESERVE_BYTES`] past the end when less than half of that is left
    /// (on a disk too small or too full for it, half as much, and so on down to
    /// [`JOURNAL_ROOM_MIN_BYTES`]). A failure is tried again after the next write.
    fn keep_reserve(&mut self) {
        if self.reserve_unsupported || self.reserved_to >= self.len + JOURNAL_RESERVE_BYTES / 2 {
            return;
        }
        let mut size = JOURNAL_RESERVE_BYTES;
        while size >= JOURNAL_ROOM_MIN_BYTES && self.reserved_to < self.len + size {
            match allocate_ahead(&self.file, self.len, size) {
                Ok(()) => {
                    self.reserved_to = self.len + size;
                    return;
                }
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    self.reserve_unsupported = true;
                    return;
                }
                Err(_) => size /= 2,
            }
        }
    }

    /// Whether the journal has room for the states of the mail already accepted (at least
    /// [`JOURNAL_ROOM_MIN_BYTES`] allocated past its end, renewed now if it can be; always,
    /// where the file system cannot allocate ahead).
    pub(super) fn has_room(&mut self) -> bool {
        #[cfg(test)]
        if self.no_room {
            return false;
        }
        self.keep_reserve();
        self.reserve_unsupported || self.reserved_to >= self.len() + JOURNAL_ROOM_MIN_BYTES
    }

    /// Its length in bytes, the staged entries counted as written.
    pub(super) fn len(&self) -> u64 {
        self.len + self.staged.len() as u64
    }

    /// Whether a failed write left it in need of a rewrite.
    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Appends `entries` in one write (after any staged ones), without a sync (the tests'
    /// shorthand for [`Journal::stage`] then [`Journal::flush`]). A failed
    /// write is cut back to where the entries began; if even that fails the journal is
    /// broken (see [`Journal::is_broken`]) until rewritten.
    #[cfg(test)]
    pub(super) fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        for entry in entries {
            entry_into(&mut self.staged, self.seed, entry);
        }
        self.flush()
    }

    /// Encodes `entries` for the next [`Journal::flush`] and writes nothing now, unless
    /// [`JOURNAL_STAGE_MAX_BYTES`] are staged. Why: the delivery loop records two or more
    /// states per message (a recipient's outcome, then "done"); one write per loop turn
    /// instead of one per state saves a system call per state, and an entry the process dies
    /// before writing costs what an unsynced written one costs: a recipient tried again,
    /// never a loss (the module doc's rule).
    pub(super) fn stage(&mut self, entries: &[Entry]) -> io::Result<()> {
        for entry in entries {
            entry_into(&mut self.staged, self.seed, entry);
        }
        if self.staged.len() >= JOURNAL_STAGE_MAX_BYTES {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Writes the staged entries in one write, without a sync. A failed write is cut back to
    /// where they began (they are dropped: the spool's state still has them, and the next
    /// rewrite writes it); if even that fails the journal is broken until rewritten.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        if self.broken {
            self.staged.clear();
            return Err(io::Error::other(
                "the journal needs a rewrite after a failed write",
            ));
        }
        let bytes = std::mem::take(&mut self.staged);
        let written = self.write_at_end(&bytes);
        // Keep the buffer's capacity for the next turn.
        self.staged = bytes;
        let staged_len = self.staged.len() as u64;
        self.staged.clear();
        match written {
            Ok(()) => {
                self.len += staged_len;
                self.dirty = true;
                self.reserved_to = self.reserved_to.max(self.len);
                self.keep_reserve();
                Ok(())
            }
            Err(e) => {
                if self.cut_back().is_err() {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    /// Writes `bytes` at the journal's end (a failure may leave part of them).
    fn write_at_end(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.partial_append.take() {
            self.file
                .write_all_at(&bytes[..n.min(bytes.len())], self.len)?;
            return Err(io::Error::other("injected: the disk filled part way"));
        }
        self.file.write_all_at(bytes, self.len)
    }

    /// Cuts the file back to the end of its last whole entry.
    fn cut_back(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_cut) {
            return Err(io::Error::other("injected: cannot cut"));
        }
        // A cut frees what was allocated past the new end too.
        self.file.set_len(self.len)?;
        self.reserved_to = self.len;
        self.keep_reserve();
        Ok(())
    }

    /// Makes every entry written so far durable (`fdatasync`), if any was written since the
    /// last sync.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Replaces the journal with `entries` (the live state): written to `journal.tmp`, synced,
    /// renamed over the journal, the directory synced. On failure the old journal stays in
    /// use (unless it is broken, then the next rewrite tries again).
    pub(super) fn rewrite(&mut self, entries: &[Entry]) -> io::Result<()> {
        let temporary = self.path.with_extension("tmp");
        let mut bytes = Vec::with_capacity(64 * entries.len());
        for entry in entries {
            entry_into(&mut bytes, self.seed, entry);
        }
        let written = (|| {
            let file = super::open_file(
                &temporary,
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true),
            )?;
            file.write_all_at(&bytes, 0)?;
            file.sync_data()?;
            std::fs::rename(&temporary, &self.path)?;
            super::sync_dir(super::parent_dir(&self.path))?;
            Ok(file)
        })();
        match written {
            Ok(file) => {
                self.file = file;
                self.len = bytes.len() as u64;
                self.reserved_to = self.len;
                self.keep_reserve();
                // The live state it was written from includes every staged entry.
                self.staged.clear();
                self.dirty = false;
                self.broken = false;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                Err(e)
            }
        }
    }
}

impl Drop for Journal {
    /// Writes what is staged (no sync): a spool closed without [`Journal::sync`] keeps its
    /// last states as an unsynced write would.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// `fallocate(file, FALLOC_FL_KEEP_SIZE, offset, len)`: blocks for `offset..offset + len`
/// without changing the file's length.
#[allow(unsafe_code)]
pub(super) fn allocate_ahead(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: fallocate takes a file descriptor and integers and touches no memory of ours;
    // `file` is open for the duration of the call.
    let result =
        unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, offset, len) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            Entry::HighWater {
                next_id: 5,
                next_segment: 2,
            },
            Entry::Recipient {
                id: 1,
                rcpt: 0,
                state: RecipientState::Deferred {
                    attempts: 2,
                    next_attempt_unix_ms: 1_000_000,
                    last_reply: b"451 4.3.0 later".to_vec(),
                    remote_mta: b"mx.far.test".to_vec(),
                },
            },
            Entry::Recipient {
                id: 1,
                rcpt: 1,
                state: RecipientState::Delivered {
                    reply: b"250 2.0.0 ok".to_vec(),
                    remote_mta: b"127.0.0.1".to_vec(),
                },
            },
            Entry::Recipient {
                id: 2,
                rcpt: 0,
                state: RecipientState::Failed {
                    reply: b"4.4.1 no next hop answered".to_vec(),
                    remote_mta: Vec::new(),
                },
            },
            Entry::Done { id: 2 },
        ]
    }

    /// A journal written before next hops were kept (recipient entries of kind 1 only) is
    /// read as it was, each state without a next hop; an entry with one is read back with
    /// it, and a name past [`MAX_REMOTE_MTA_BYTES`] is cut; one without is still written as
    /// kind 1, byte for byte what the older version wrote.
    #[test]
    fn old_journals_read_and_next_hops_are_kept_bounded() {
        let dir = super::super::tests::TempDir::new("journal-hop");
        let path = dir.path().join("journal");
        // The older writer's encoding of "recipient 0 of message 7 failed: 550 no".
        let mut payload = Vec::new();
        let mut w = FieldWriter::new(&mut payload);
        w.u64(7);
        w.u32(0);
        w.u8(STATE_FAILED);
        w.bytes(b"550 no");
        let mut old = Vec::new();
        record_into(
            &mut old,
            Seed::LEGACY,
            JOURNAL_MAGIC,
            KIND_RECIPIENT,
            &payload,
        );
        let failed = |remote_mta: &[u8]| Entry::Recipient {
            id: 7,
            rcpt: 0,
            state: RecipientState::Failed {
                reply: b"550 no".to_vec(),
                remote_mta: remote_mta.to_vec(),
            },
        };
        let mut now = Vec::new();
        entry_into(&mut now, Seed::LEGACY, &failed(b""));
        assert_eq!(now, old, "no next hop: the old encoding");
        let long = vec![b'h'; MAX_REMOTE_MTA_BYTES + 40];
        let mut bytes = old.clone();
        entry_into(&mut bytes, Seed::LEGACY, &failed(b"mx.far.test"));
        entry_into(&mut bytes, Seed::LEGACY, &failed(&long));
        std::fs::write(&path, &bytes).unwrap();
        let scan = scan_journal(&path, Seed::LEGACY).unwrap();
        assert_eq!(
            scan.entries,
            [
                failed(b""),
                failed(b"mx.far.test"),
                failed(&long[..MAX_REMOTE_MTA_BYTES]),
            ]
        );
        assert_eq!(scan.cut_bytes, 0);
    }

    /// A torn journal tail, cut at every length: the scan keeps exactly the whole entries
    /// before the cut, and cuts the file back to them.
    #[test]
    fn a_torn_journal_tail_keeps_the_whole_entries_and_is_cut() {
        let dir = super::super::tests::TempDir::new("journal-torn");
        let path = dir.path().join("journal");
        let all = entries();
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for entry in &all {
            entry_into(&mut bytes, Seed::LEGACY, entry);
            ends.push(bytes.len());
        }
        for len in 0..=bytes.len() {
            std::fs::write(&path, &bytes[..len]).unwrap();
            let scan = scan_journal(&path, Seed::LEGACY).unwrap();
            let whole = ends.iter().filter(|&&end| end <= len).count();
            assert_eq!(scan.entries, all[..whole], "cut at {len}");
            let kept = if whole == 0 { 0 } else { ends[whole - 1] };
            assert_eq!(scan.cut_bytes, (len - kept) as u64);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), kept as u64);
        }
    }

    /// A write that fails part way is cut back, so the entries appended after it are read;
    /// when even the cut fails, nothing more is appended until a rewrite.
    #[test]
    fn a_failed_append_leaves_no_half_entry_before_later_ones() {
        let dir = super::super::tests::TempDir::new("journal-fail");
        let path = dir.path().join("journal");
        let (mut journal, _) = Journal::open(&path, Seed::LEGACY).unwrap();
        let all = entries();
        journal.append(&all[..1]).unwrap();
        journal.partial_append = Some(7);
        assert!(journal.append(&all[1..2]).is_err());
        assert!(!journal.is_broken());
        journal.append(&all[2..3]).unwrap();
        assert_eq!(
            scan_journal(&path, Seed::LEGACY).unwrap().entries,
            [all[0].clone(), all[2].clone()]
        );
        journal.partial_append = Some(7);
        journal.fail_cut = true;
        assert!(journal.append(&all[3..4]).is_err());
        assert!(journal.is_broken());
        assert!(
            journal.append(&all[4..]).is_err(),
            "refused until rewritten"
        );
        journal.rewrite(&all[3..]).unwrap();
        assert!(!journal.is_broken());
        journal.append(&all[..1]).unwrap();
        let mut expected = all[3..].to_vec();
        expected.push(all[0].clone());
        let scan = scan_journal(&path, Seed::LEGACY).unwrap();
        assert_eq!((scan.entries, scan.cut_bytes), (expected, 0));
    }

    #[test]
    fn appended_entries_are_read_back_and_a_rewrite_replaces_them() {
        let dir = super::super::tests::TempDir::new("journal-append");
        let path = dir.path().join("journal");
        assert!(scan_journal(&path, Seed::LEGACY)
            .unwrap()
            .entries
            .is_empty());
        let (mut journal, created) = Journal::open(&path, Seed::LEGACY).unwrap();
        assert!(created);
        journal.append(&entries()[..2]).unwrap();
        journal.append(&entries()[2..]).unwrap();
        journal.sync().unwrap();
        assert_eq!(
            scan_journal(&path, Seed::LEGACY).unwrap().entries,
            entries()
        );
        journal.rewrite(&entries()[4..]).unwrap();
        assert_eq!(
            scan_journal(&path, Seed::LEGACY).unwrap().entries,
            entries()[4..]
        );
        journal.append(&entries()[..1]).unwrap();
        let mut expected = entries()[4..].to_vec();
        expected.push(entries()[0].clone());
        assert_eq!(scan_journal(&path, Seed::LEGACY).unwrap().entries, expected);
        assert!(!dir.path().join("journal.tmp").exists());
    }
}
