//! Opening a spool: its lock, then recovery from whatever a stop or a crash left.
//!
//! What it does: creates the spool's directories (syncing their parents), takes `DIR/lock`
//! with `flock` (a second opener gets a clear error naming the holder's pid), reads every
//! segment (`segment::scan_segment`), honours seals, cuts torn tails, applies the journal
//! (`journal::scan_journal`, which cuts its torn tail), deletes segments whose messages are
//! all done, and builds the open [`Spool`] and the list of live messages.
//!
//! What it does not do: append or commit (the open spool does), or decide what a live
//! message needs next (the scheduler reads the recipients' states it returns).
//!
//! Rules it applies, in order:
//! - A segment's good records are those `scan_segment` finds: framed one after another from
//!   its start, and past a bad record the good ones found after it (one damaged record does
//!   not cost the messages after it). Its trusted part ends after the last good record, or
//!   at a seal for it found in a later segment, whichever is shorter. The newest segment
//!   (the only one a crash can tear: every other was whole when a later one began) and a
//!   sealed one are cut there and synced; in any other segment a bad tail is damage, not a
//!   tear. Damage is left in place (counted in the report, every open alike) for an
//!   operator to look at; a damaged newest segment is never appended to again either (every
//!   open starts a new segment).
//! - Ids and segment numbers continue after the largest seen in any segment or journal
//!   high-water entry, so none is given twice.
//! - An id found twice (which the spool never writes) keeps its first record.
//! - Journal entries apply in order; an entry for a message that is gone (its segment was
//!   deleted) is skipped; a final recipient state is never changed back.

use super::frame::Seed;
use super::journal::{self, Entry, Journal};
use super::segment::{self, Scan};
use super::{
    sync_dir, Current, Envelope, Kept, RecipientState, Recovered, RecoveryReport, SegmentInfo,
    Spool, SpoolId, SpoolLimits, SpoolRef,
};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// The segment directory's name inside the spool directory.
const SEGMENT_DIR: &str = "seg";

/// Opens the spool in `dir` (see [`Spool::open_with`]).
pub(super) fn open(dir: &Path, limits: SpoolLimits) -> io::Result<(Spool, Vec<Recovered>)> {
    let seg_dir = dir.join(SEGMENT_DIR);
    super::create_private_dir(&seg_dir).map_err(|e| context(e, dir, "cannot create"))?;
    // `seg` through a symbolic link would let two spools (two locks) share segments.
    if std::fs::symlink_metadata(&seg_dir)?
        .file_type()
        .is_symlink()
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link: a spool's segment directory must be its own",
                seg_dir.display()
            ),
        ));
    }
    sync_dir(dir)?;
    sync_dir(super::parent_dir(dir))?;
    let lock = take_lock(dir)?;
    let _ = std::fs::remove_file(dir.join("journal.tmp")); // a compaction that did not finish
    let seed = read_or_make_seed(dir, &seg_dir)?;
    let mut report = RecoveryReport::default();

    // The journal first: whether the last stop was clean says what a bad tail is.
    let journal_path = dir.join("journal");
    let scanned = journal::read_journal(&journal_path, seed)?;
    report.journal_bytes_cut = scanned.cut_bytes;
    report.journal_bytes_damaged = scanned.damaged_bytes;
    let closed = match scanned.entries.last() {
        Some(&Entry::Closed { segment, len }) => Some((segment, len)),
        _ => None,
    };

    // Segments, in number order.
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(&seg_dir)? {
        let entry = entry?;
        if let Some(number) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_segment_name)
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    let mut scans: BTreeMap<u64, Scan> = BTreeMap::new();
    for &number in &numbers {
        let path = segment::segment_path(&seg_dir, number);
        scans.insert(number, segment::scan_segment(&path, seed)?);
    }
    report.segments_read = scans.len();
    // Before anything is cut: records that mostly fail their check are not damage but
    // another key (the key file lost or replaced): cutting them as torn or deleting them
    // would destroy the queue, and a record quoted in a body might pass the wrong check.
    let good: u64 = scans
        .values()
        .map(|scan| (scan.messages.len() + scan.seals.len()) as u64)
        .sum::<u64>()
        + scanned.entries.len() as u64;
    let bad: u64 = scans.values().map(|scan| scan.bad_records).sum::<u64>() + scanned.bad_records;
    // A spool with records and no key file was made before keys (read with the plain CRC):
    // its first record must pass so; else the key file was lost, and a record that passes
    // the plain CRC could be one quoted in a body.
    let keyless_unproven = seed == Seed::LEGACY
        && !dir.join(KEY_FILE).exists()
        && scans
            .values()
            .find(|scan| scan.file_len > 0)
            .is_some_and(|scan| !scan.first_good);
    if (good == 0 && bad > 0) || keyless_unproven {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {bad} records fail their check and {good} pass (the oldest segment's first one {}): the spool's key ({}) is missing or not this spool's, or the spool is damaged beyond recovery; nothing was changed (restore the key, or move the damaged files aside)",
                dir.display(),
                if keyless_unproven { "fails" } else { "checked" },
                dir.join(KEY_FILE).display()
            ),
        ));
    }
    journal::cut_journal(&journal_path, &scanned)
        .map_err(|e| context(e, &journal_path, "cannot cut the torn tail of"))?;
    let mut sealed_at: BTreeMap<u64, u64> = BTreeMap::new();
    for &(sealed, len) in scans.values().flat_map(|s| &s.seals) {
        let at = sealed_at.entry(sealed).or_insert(len);
        *at = (*at).min(len);
    }
    let newest = numbers.last().copied();

    let mut next_id = 1u64;
    let mut next_segment = numbers.last().map_or(1, |n| n + 1);
    let mut messages: BTreeMap<u64, Kept> = BTreeMap::new();
    let mut segments: BTreeMap<u64, SegmentInfo> = BTreeMap::new();
    let mut envelopes: BTreeMap<u64, Envelope> = BTreeMap::new();
    for (&number, scan) in &mut scans {
        let seal = sealed_at.get(&number).copied();
        if let Some(len) = seal {
            scan.trusted_len = scan.trusted_len.min(len);
        }
        // Stretches stepped over to reach good records after them: damage, left in place
        // (the newest segment is never appended to again: a new one starts below).
        let stepped_over: u64 = scan
            .gaps
            .iter()
            .map(|&(start, end)| end.min(scan.trusted_len).saturating_sub(start))
            .sum();
        report.segment_bytes_damaged += stepped_over;
        if stepped_over > 0 {
            report.messages_after_damage += scan
                .messages
                .iter()
                .filter(|m| {
                    scan.gaps
                        .first()
                        .is_some_and(|&(start, _)| m.offset > start)
                })
                .filter(|m| m.offset + m.record_len <= scan.trusted_len)
                .count();
        }
        // After a clean stop this segment was whole up to its closing length: a bad record
        // below it is damage (kept), not a torn write; only bytes past it could be torn.
        if let Some((_, len)) = closed.filter(|&(segment, _)| segment == number) {
            if seal.is_none() && scan.trusted_len < len.min(scan.file_len) {
                let kept_to = len.min(scan.file_len);
                report.segment_bytes_damaged += kept_to - scan.trusted_len;
                report.segments_damaged += 1;
                segments.entry(number).or_default().damaged = true;
                scan.trusted_len = kept_to;
            }
        }
        if scan.trusted_len < scan.file_len {
            if seal.is_some() || Some(number) == newest {
                // A torn tail (only the segment appended to last can have one: every other
                // was whole when a later one began) or a tail past a seal: cut it away.
                let path = segment::segment_path(&seg_dir, number);
                let file = super::open_file(&path, OpenOptions::new().write(true))?;
                file.set_len(scan.trusted_len)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| context(e, &path, "cannot cut the torn tail of"))?;
                report.segment_bytes_cut += scan.file_len - scan.trusted_len;
            } else {
                // Damage to the end of a segment that was whole: left for an operator.
                report.segment_bytes_damaged += scan.file_len - scan.trusted_len;
            }
        }
        if stepped_over > 0
            || (scan.trusted_len < scan.file_len && seal.is_none() && Some(number) != newest)
        {
            report.segments_damaged += 1;
            segments.entry(number).or_default().damaged = true;
        }
        let info = segments.entry(number).or_default();
        for found in scan.messages.drain(..) {
            next_id = next_id.max(found.id.saturating_add(1));
            if found.offset + found.record_len > scan.trusted_len {
                continue; // past a seal: never acknowledged
            }
            if messages.contains_key(&found.id) {
                continue;
            }
            info.ids.push(found.id);
            info.live += 1;
            messages.insert(
                found.id,
                Kept {
                    place: SpoolRef {
                        id: SpoolId(found.id),
                        segment: number,
                        offset: found.offset,
                        record_len: found.record_len,
                        body_offset: found.body_offset,
                        body_len: found.body_len,
                    },
                    recipients: vec![RecipientState::Pending; found.envelope.recipients.len()],
                    done: false,
                },
            );
            // Kept aside for the returned list (dropped below for messages found done).
            envelopes.insert(found.id, found.envelope);
        }
    }

    // The journal's entries (read before the segments, below).
    for entry in scanned.entries {
        match entry {
            Entry::Closed { .. } => {}
            Entry::HighWater {
                next_id: id,
                next_segment: segment,
            } => {
                next_id = next_id.max(id);
                next_segment = next_segment.max(segment);
            }
            Entry::Done { id } => {
                if let Some(kept) = messages.get_mut(&id) {
                    if !kept.done {
                        kept.done = true;
                        kept.recipients = Vec::new();
                        if let Some(info) = segments.get_mut(&kept.place.segment) {
                            info.live = info.live.saturating_sub(1);
                        }
                    }
                }
            }
            Entry::Recipient { id, rcpt, state } => {
                let slot = messages
                    .get_mut(&id)
                    .and_then(|kept| kept.recipients.get_mut(rcpt as usize));
                if let Some(slot) = slot {
                    if !slot.is_final() && state != RecipientState::Pending {
                        *slot = state;
                    }
                }
            }
        }
    }
    let (journal, created) = Journal::open(&journal_path, seed)?;
    if created {
        sync_dir(dir)?;
    }

    let mut recovered = Vec::new();
    for (id, kept) in &messages {
        if kept.done {
            continue;
        }
        let Some(envelope) = envelopes.remove(id) else {
            continue;
        };
        recovered.push(Recovered {
            spool_ref: kept.place,
            envelope,
            recipients: kept.recipients.clone(),
        });
    }
    report.live_messages = recovered.len();

    let mut spool = Spool {
        dir: dir.to_path_buf(),
        seg_dir,
        _lock: lock,
        limits,
        seed,
        space_wanted: false,
        found_closed: closed,
        room_compact_at: 0,
        compact_at: limits.journal_compact_bytes,
        journal,
        next_id,
        next_segment: next_segment + 1,
        current: Current {
            number: next_segment,
            file: None,
            committed_len: 0,
        },
        pending: Vec::new(),
        pending_messages: Vec::new(),
        seals: Vec::new(),
        uncut: Vec::new(),
        dir_unsynced: false,
        messages,
        segments,
        report,
        #[cfg(test)]
        faults: super::tests::Faults::default(),
    };
    let finished: Vec<u64> = spool
        .segments
        .iter()
        .filter(|(_, info)| info.live == 0 && !info.damaged)
        .map(|(&number, _)| number)
        .collect();
    for number in finished {
        spool.delete_segment(number)?;
        spool.report.segments_deleted += 1;
    }
    if spool.journal.len() >= spool.compact_at {
        spool.compact()?;
    }
    Ok((spool, recovered))
}

/// The key file's name: the spool's CRC seed, 8 hexadecimal digits and a newline.
const KEY_FILE: &str = "key";

/// The spool's CRC seed (`frame::Seed`): read from `DIR/key`; made (random, written and
/// synced with its directory before any record) for a new spool; [`Seed::LEGACY`] for a
/// spool that has records but no key (made before seeds were). A key file that does not
/// read is an error: the records could not be checked.
fn read_or_make_seed(dir: &Path, seg_dir: &Path) -> io::Result<Seed> {
    let path = dir.join(KEY_FILE);
    match super::open_to_read(&path) {
        Ok(mut file) => {
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(|e| context(e, &path, "cannot read"))?;
            return u32::from_str_radix(text.trim_end(), 16)
                .ok()
                .filter(|_| text.len() == 9 && text.ends_with('\n'))
                .map(Seed)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: not a spool key (8 hexadecimal digits); without it the spool's records cannot be checked",
                            path.display()
                        ),
                    )
                });
        }
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(context(e, &path, "cannot open"))
        }
        Err(_) => {}
    }
    let has_records = dir.join("journal").exists()
        || std::fs::read_dir(seg_dir)?.any(|entry| {
            entry.is_ok_and(|entry| {
                entry
                    .file_name()
                    .to_str()
                    .and_then(segment::parse_segment_name)
                    .is_some()
            })
        });
    if has_records {
        return Ok(Seed::LEGACY);
    }
    let mut random = [0u8; 4];
    fill_random(&mut random)?;
    // Never the legacy seed: a new spool's records must not pass for an old one's.
    let seed = Seed(u32::from_le_bytes(random).max(1));
    let mut file = super::open_file(&path, OpenOptions::new().write(true).create_new(true))
        .map_err(|e| context(e, &path, "cannot create"))?;
    writeln!(file, "{:08x}", seed.0)?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(seed)
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`).
#[allow(unsafe_code)]
fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most `len` bytes into the buffer it is given, which is
        // the unfilled rest of `buf`, valid for writes for the duration of the call.
        let got =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if got < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        } else {
            filled += got as usize;
        }
    }
    Ok(())
}

/// `e` with what was being done to `path`.
fn context(e: io::Error, path: &Path, doing: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

/// Takes `DIR/lock` with `flock(LOCK_EX | LOCK_NB)` and writes this process's id into it. The
/// lock is the open file's: it lasts until the file is closed (the spool dropped, or the
/// process gone, however it ended).
fn take_lock(dir: &Path) -> io::Result<File> {
    let path = dir.join("lock");
    let mut file = super::open_file(
        &path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
    .map_err(|e| context(e, &path, "cannot open"))?;
    if let Err(e) = flock_exclusive(&file) {
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(context(e, &path, "cannot lock"));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let holder = if holder.is_empty() || !holder.bytes().all(|b| b.is_ascii_digit()) {
            String::from("another process")
        } else {
            format!("process {holder}")
        };
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "the spool {} is in use: {holder} holds its lock ({}); two servers cannot share one spool",
                dir.display(),
                path.display()
            ),
        ));
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `WouldBlock` when another open file holds it.
#[allow(unsafe_code)]
fn flock_exclusive(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock takes a file descriptor and touches no memory of ours; `file` is open for
    // the duration of the call.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
