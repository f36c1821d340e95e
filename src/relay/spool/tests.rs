//! The spool's tests: round trips through a reopen, torn and damaged segments at every
//! offset, the journal, deletion, the lock, commit failures at every step (injected through
//! [`Faults`]), a model-based property test, and a `kill -9` of a child process that commits
//! in a loop.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Test-only failures: steps that fail once each, a write that stops part way, and the trace
/// of the steps taken.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// Steps to fail, once each, in any order.
    pub(super) fail: Vec<Step>,
    /// The next batch write writes this many bytes, then fails.
    pub(super) partial_write: Option<usize>,
    /// The steps taken (not failed), in order.
    pub(super) trace: Vec<Step>,
}

impl Faults {
    /// Fails `step` if asked to, else records it.
    pub(super) fn hit(&mut self, step: Step) -> io::Result<()> {
        if let Some(i) = self.fail.iter().position(|&s| s == step) {
            self.fail.remove(i);
            return Err(io::Error::other(format!("injected failure at {step:?}")));
        }
        self.trace.push(step);
        Ok(())
    }
}

/// A directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub(super) struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory named after `name`.
    pub(super) fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fastsmtpd-spool-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Its path.
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An envelope with `recipients` recipients and every field set.
pub(super) fn sample_envelope(recipients: usize) -> Envelope {
    Envelope {
        arrival_unix_ms: 1_765_000_000_123,
        reverse_path: b"sender@example.org".to_vec(),
        params: MailParams {
            ret: Some(Ret::Headers),
            envid: Some(b"QQ314159".to_vec()),
            body: BodyType::EightBitMime,
            smtputf8: true,
            size: Some(4096),
        },
        client: ClientIdentity {
            helo: b"client.example.org".to_vec(),
            address: b"192.0.2.7".to_vec(),
            protocol: b"ESMTPS".to_vec(),
        },
        recipients: (0..recipients)
            .map(|i| Recipient {
                address: format!("rcpt{i}@example.net").into_bytes(),
                notify: if i % 2 == 0 {
                    Notify::FAILURE.union(Notify::DELAY)
                } else {
                    Notify::default()
                },
                orcpt: (i % 3 == 0).then(|| format!("rfc822;rcpt{i}@example.net").into_bytes()),
            })
            .collect(),
    }
}

/// A plain envelope: `<>` sender, no parameters.
fn bare_envelope(recipients: usize) -> Envelope {
    Envelope {
        recipients: (0..recipients)
            .map(|i| Recipient {
                address: format!("r{i}@b").into_bytes(),
                notify: Notify::default(),
                orcpt: None,
            })
            .collect(),
        ..Envelope::default()
    }
}

fn body(n: usize) -> Vec<u8> {
    format!("Subject: message {n}\r\n\r\nbody of {n}\r\n").into_bytes()
}

fn ids(recovered: &[Recovered]) -> Vec<u64> {
    recovered.iter().map(|r| r.spool_ref.id.0).collect()
}

fn live_ids(spool: &Spool) -> Vec<u64> {
    spool.live().map(|l| l.spool_ref.id.0).collect()
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("seg"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn delivered() -> RecipientState {
    RecipientState::Delivered {
        reply: b"250 2.0.0 queued as X".to_vec(),
        remote_mta: b"mx.next.test".to_vec(),
    }
}

#[test]
fn appended_and_committed_messages_come_back_after_reopen_with_their_bodies() {
    let dir = TempDir::new("round-trip");
    let (mut spool, recovered) = Spool::open(dir.path()).unwrap();
    assert!(recovered.is_empty());
    let envelopes = [sample_envelope(1), sample_envelope(4), bare_envelope(2)];
    let mut sent = Vec::new();
    for (n, envelope) in envelopes.iter().enumerate() {
        sent.push(spool.append(envelope, &body(n)).unwrap());
    }
    assert_eq!(spool.pending(), 3);
    assert_eq!(spool.live().count(), 0, "nothing is live before the commit");
    spool.commit().unwrap();
    assert_eq!(spool.pending(), 0);
    let places: Vec<SpoolRef> = spool.live().map(|l| l.spool_ref).collect();
    assert_eq!(places.len(), 3);
    for (n, place) in places.iter().enumerate() {
        let (envelope, raw) = spool.read_message(place).unwrap();
        assert_eq!((&envelope, &raw), (&envelopes[n], &body(n)));
        assert_eq!(place.body_len, body(n).len() as u64);
    }
    // An empty body and a message with no recipients round-trip too.
    let empty = spool.append(&bare_envelope(0), b"").unwrap();
    spool.commit().unwrap();
    drop(spool);

    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(
        ids(&recovered),
        [sent[0].0, sent[1].0, sent[2].0, empty.0],
        "in id order"
    );
    for (n, found) in recovered.iter().take(3).enumerate() {
        assert_eq!(found.envelope, envelopes[n]);
        assert_eq!(found.spool_ref, places[n]);
        assert!(found
            .recipients
            .iter()
            .all(|s| *s == RecipientState::Pending));
        assert_eq!(found.recipients.len(), envelopes[n].recipients.len());
        assert_eq!(spool.read_body(&found.spool_ref).unwrap(), body(n));
    }
    assert_eq!(spool.read_body(&recovered[3].spool_ref).unwrap(), b"");
    assert_eq!(spool.recovery_report().live_messages, 4);
    assert_eq!(spool.recovery_report().segment_bytes_cut, 0);
}

#[test]
fn messages_appended_but_not_committed_are_not_kept() {
    let dir = TempDir::new("uncommitted");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let kept = spool.append(&sample_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    let lost = spool.append(&sample_envelope(1), &body(2)).unwrap();
    assert!(spool.get(lost).is_none());
    assert!(spool.set_recipient_state(lost, 0, delivered()).is_err());
    drop(spool);
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(ids(&recovered), [kept.0]);
    assert!(spool.get(kept).is_some());
}

#[test]
fn recipient_states_and_done_survive_a_reopen() {
    let dir = TempDir::new("journal-states");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let a = spool.append(&sample_envelope(3), &body(1)).unwrap();
    let b = spool.append(&sample_envelope(1), &body(2)).unwrap();
    let c = spool.append(&sample_envelope(2), &body(3)).unwrap();
    spool.commit().unwrap();
    let deferred = RecipientState::Deferred {
        attempts: 3,
        next_attempt_unix_ms: 1_765_000_900_000,
        last_reply: b"451 4.7.1 greylisted".to_vec(),
        remote_mta: b"127.0.0.1".to_vec(),
    };
    let failed = RecipientState::Failed {
        reply: b"550 5.1.1 no such user".to_vec(),
        remote_mta: b"mx.next.test".to_vec(),
    };
    spool.set_recipient_state(a, 0, delivered()).unwrap();
    spool.set_recipient_state(a, 1, deferred.clone()).unwrap();
    spool.set_recipient_state(a, 2, failed.clone()).unwrap();
    spool.set_recipient_state(b, 0, delivered()).unwrap();
    spool.mark_done(b).unwrap();
    spool.mark_done(b).unwrap(); // twice is fine
    assert!(spool.get(b).is_none());
    spool.sync_journal().unwrap();
    drop(spool);
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(ids(&recovered), [a.0, c.0]);
    assert_eq!(recovered[0].recipients, [delivered(), deferred, failed]);
    assert_eq!(recovered[1].recipients, vec![RecipientState::Pending; 2]);
    assert_eq!(
        spool.get(a).map(|l| l.recipients.to_vec()),
        Some(recovered[0].recipients.clone())
    );
}

#[test]
fn a_state_change_that_makes_no_sense_is_refused_and_changes_nothing() {
    let dir = TempDir::new("refused");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let a = spool.append(&sample_envelope(2), &body(1)).unwrap();
    spool.commit().unwrap();
    let refused = |r: io::Result<()>| r.unwrap_err().kind() == io::ErrorKind::InvalidInput;
    assert!(refused(spool.set_recipient_state(
        a,
        0,
        RecipientState::Pending
    )));
    assert!(refused(spool.set_recipient_state(a, 2, delivered())));
    assert!(refused(spool.set_recipient_state(
        SpoolId(999),
        0,
        delivered()
    )));
    assert!(refused(spool.mark_done(SpoolId(999))));
    spool.set_recipient_state(a, 0, delivered()).unwrap();
    assert!(refused(spool.set_recipient_state(
        a,
        0,
        RecipientState::Failed {
            reply: Vec::new(),
            remote_mta: Vec::new(),
        }
    )));
    spool.mark_done(a).unwrap();
    assert!(refused(spool.set_recipient_state(a, 1, delivered())));
    assert_eq!(spool.live().count(), 0);
}

/// Three committed records in one segment, their ends, and the segment's bytes.
fn three_records(dir: &Path) -> (Vec<u64>, Vec<u64>, Vec<u8>) {
    let (mut spool, _) = Spool::open(dir).unwrap();
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(spool.append(&sample_envelope(n + 1), &body(n)).unwrap().0);
        spool.commit().unwrap();
    }
    let ends: Vec<u64> = spool
        .live()
        .map(|l| l.spool_ref.offset + l.spool_ref.record_len)
        .collect();
    drop(spool);
    let names = segment_files(dir);
    assert_eq!(names.len(), 1);
    let bytes = std::fs::read(dir.join("seg").join(&names[0])).unwrap();
    assert_eq!(bytes.len() as u64, ends[2]);
    (sent, ends, bytes)
}

/// Opens `dir` after replacing its one segment's bytes with `bytes` (and forgetting the
/// journal), and returns the ids recovered and the report.
fn reopen_with_segment(dir: &Path, name: &str, bytes: &[u8]) -> (Vec<u64>, RecoveryReport) {
    for entry in std::fs::read_dir(dir.join("seg")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("journal"));
    std::fs::write(dir.join("seg").join(name), bytes).unwrap();
    let (spool, recovered) = open_despite_forks(dir);
    (ids(&recovered), spool.recovery_report().clone())
}

/// `Spool::open`, tried again (bounded) while the lock is held by a copy of this process's
/// own lock descriptor: a child that the tests beside this one spawn (`kill9_child_...`,
/// `order_child_...`, strace) holds copies of every descriptor from its fork until its exec
/// closes them (close-on-exec), and the lock belongs to the open file, so a spool dropped
/// and opened again just then is briefly "in use". Tests that reopen hundreds of times
/// (every cut, every flipped byte) would otherwise fail now and then.
fn open_despite_forks(dir: &Path) -> (Spool, Vec<Recovered>) {
    try_open_despite_forks(dir).unwrap()
}

/// [`open_despite_forks`], its other errors returned.
fn try_open_despite_forks(dir: &Path) -> io::Result<(Spool, Vec<Recovered>)> {
    let start = std::time::Instant::now();
    loop {
        match Spool::open(dir) {
            Err(error)
                if error.kind() == io::ErrorKind::WouldBlock
                    && start.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            opened => return opened,
        }
    }
}

/// A torn tail at every length of the segment: recovery keeps exactly the records written
/// whole before the cut, cuts the rest away, and never panics.
#[test]
fn a_torn_segment_tail_at_every_length_keeps_exactly_the_whole_records() {
    let dir = TempDir::new("torn");
    let (sent, ends, bytes) = three_records(dir.path());
    let name = segment_files(dir.path())[0].clone();
    // Every length of the last record (from the end of the last committed one before it),
    // and every fifth below (each open syncs a few times: this keeps the test short).
    let lengths = (0..ends[1] as usize)
        .step_by(5)
        .chain(ends[1] as usize..=bytes.len());
    for len in lengths {
        let (found, report) = reopen_with_segment(dir.path(), &name, &bytes[..len]);
        let whole = ends.iter().filter(|&&end| end <= len as u64).count();
        assert_eq!(found, sent[..whole], "cut at {len}");
        let kept = if whole == 0 { 0 } else { ends[whole - 1] };
        assert_eq!(report.segment_bytes_cut, len as u64 - kept, "cut at {len}");
        if whole > 0 {
            let on_disk = std::fs::metadata(dir.path().join("seg").join(&name)).unwrap();
            assert_eq!(on_disk.len(), kept, "the torn tail is cut away");
        } else {
            // Nothing live in it: the segment is deleted.
            assert!(segment_files(dir.path()).is_empty(), "cut at {len}");
        }
    }
}

/// A flipped byte anywhere in the middle record of the newest segment: that record is
/// refused, the records before and after it are kept (damage, not a torn tail: a good record
/// follows), nothing is cut, and the damaged bytes stay on disk.
#[test]
fn a_damaged_record_costs_only_itself() {
    let dir = TempDir::new("flipped");
    let (sent, ends, bytes) = three_records(dir.path());
    let name = segment_files(dir.path())[0].clone();
    for at in ends[0]..ends[1] {
        let mut damaged = bytes.clone();
        damaged[at as usize] ^= 0x20;
        let (found, report) = reopen_with_segment(dir.path(), &name, &damaged);
        assert_eq!(found, [sent[0], sent[2]], "byte {at}");
        assert_eq!(report.segment_bytes_cut, 0, "byte {at}");
        assert_eq!(report.segment_bytes_damaged, ends[1] - ends[0], "byte {at}");
        assert_eq!(report.segments_damaged, 1);
        assert_eq!(report.messages_after_damage, 1);
        assert!(report.repairs().unwrap().contains("DAMAGE"), "byte {at}");
        let on_disk = std::fs::read(dir.path().join("seg").join(&name)).unwrap();
        assert_eq!(on_disk, damaged, "left as it was, byte {at}");
    }
}

/// Damage followed by a torn tail (nothing good after the damage): what follows the last
/// good record is cut as a torn tail.
#[test]
fn damage_with_no_good_record_after_it_is_cut_as_a_torn_tail() {
    let dir = TempDir::new("flipped-torn");
    let (sent, ends, bytes) = three_records(dir.path());
    let name = segment_files(dir.path())[0].clone();
    let mut damaged = bytes[..bytes.len() - 3].to_vec();
    damaged[ends[0] as usize + 20] ^= 0x01;
    let (found, report) = reopen_with_segment(dir.path(), &name, &damaged);
    assert_eq!(found, sent[..1]);
    assert_eq!(report.segment_bytes_cut, damaged.len() as u64 - ends[0]);
    assert_eq!(report.segment_bytes_damaged, 0);
    assert!(!report.repairs().unwrap().contains("DAMAGE"));
}

/// Damage in a segment older than the newest: the records after it are recovered too, its
/// bytes stay for an operator, and every open says the same.
#[test]
fn damage_in_an_older_segment_is_left_in_place_and_reported() {
    let dir = TempDir::new("damaged-older");
    let (sent, ends, bytes) = three_records(dir.path());
    let name = segment_files(dir.path())[0].clone();
    let mut damaged = bytes.clone();
    damaged[ends[0] as usize + 30] ^= 0x01;
    // A bad tail too: damage to the end of an older segment is not a tear either.
    damaged.extend_from_slice(b"FSPS\x01\x01\0\0garbage");
    for entry in std::fs::read_dir(dir.path().join("seg")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let _ = std::fs::remove_file(dir.path().join("journal"));
    std::fs::write(dir.path().join("seg").join(&name), &damaged).unwrap();
    // A newer segment with one message, so the damaged one is not the newest.
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let later = spool.append(&bare_envelope(1), &body(9)).unwrap();
    spool.commit().unwrap();
    drop(spool);
    std::fs::write(dir.path().join("seg").join(&name), &damaged).unwrap();
    for _ in 0..2 {
        let (spool, recovered) = Spool::open(dir.path()).unwrap();
        assert_eq!(ids(&recovered), [sent[0], sent[2], later.0]);
        let report = spool.recovery_report();
        assert_eq!(report.segment_bytes_cut, 0);
        assert_eq!(
            report.segment_bytes_damaged,
            ends[1] - ends[0] + damaged.len() as u64 - ends[2]
        );
        assert_eq!(report.segments_damaged, 1);
        let on_disk = std::fs::read(dir.path().join("seg").join(&name)).unwrap();
        assert_eq!(on_disk, damaged, "left as it was");
    }
}

/// Three messages whose middle one's body quotes a whole spool record of id `quoted_id`
/// (a message may carry anything, a spool segment included); returns the ids, the ends,
/// the segment's bytes, and where the quoted record starts in it.
fn three_records_one_quoting(dir: &Path, quoted_id: u64) -> (Vec<u64>, Vec<u64>, Vec<u8>, usize) {
    let mut quoted = b"Subject: a spool record, attached\r\n\r\n".to_vec();
    let quoted_at_in_body = quoted.len();
    // Written as anyone outside the spool can: without its seed (here the legacy one).
    segment::message_record_into(
        &mut quoted,
        frame::Seed::LEGACY,
        quoted_id,
        &sample_envelope(1),
        b"quoted\r\n",
    )
    .unwrap();
    // A second one right after it, its id higher still: framed after the first.
    segment::message_record_into(
        &mut quoted,
        frame::Seed::LEGACY,
        quoted_id.saturating_add(1),
        &sample_envelope(1),
        b"quoted too\r\n",
    )
    .unwrap();
    quoted.extend_from_slice(b"\r\nafter the quote\r\n");
    let (mut spool, _) = Spool::open(dir).unwrap();
    let mut sent = Vec::new();
    for body in [body(0), quoted.clone(), body(2)] {
        sent.push(spool.append(&sample_envelope(1), &body).unwrap().0);
        spool.commit().unwrap();
    }
    let live: Vec<_> = spool.live().map(|l| l.spool_ref).collect();
    drop(spool);
    let ends = live.iter().map(|r| r.offset + r.record_len).collect();
    let name = &segment_files(dir)[0];
    let bytes = std::fs::read(dir.join("seg").join(name)).unwrap();
    let quoted_at = live[1].body_offset as usize + quoted_at_in_body;
    assert_eq!(&bytes[quoted_at..quoted_at + 4], b"FSPS");
    (sent, ends, bytes, quoted_at)
}

/// Looking past damage never takes records quoted inside a message's body (two in a row here,
/// made without the spool's seed as anyone outside it must) for messages of the spool, whatever
/// their ids: below the last good one, between it and the next (the fresh review's forged
/// envelope), or above every one. Damage to the body only (the header's length intact) steps
/// over the whole record, the quotes unseen.
#[test]
fn a_record_quoted_in_a_damaged_message_is_not_taken_for_a_message() {
    for quoted_id in [0, 1, 2, u64::MAX - 1] {
        let dir = TempDir::new("quoted");
        let (sent, ends, bytes, quoted_at) = three_records_one_quoting(dir.path(), quoted_id);
        let name = segment_files(dir.path())[0].clone();
        // The header's magic, then its length (then the search finds the quote first), then
        // a body byte before the quote.
        for at in [ends[0] as usize, ends[0] as usize + 9, quoted_at - 2] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let (found, report) = reopen_with_segment(dir.path(), &name, &damaged);
            assert_eq!(
                found,
                [sent[0], sent[2]],
                "quoted id {quoted_id}, byte {at}"
            );
            assert_eq!(report.segment_bytes_damaged, ends[1] - ends[0]);
        }
    }
}
#[test]
fn a_torn_journal_tail_loses_only_the_last_states() {
    let dir = TempDir::new("journal-tail");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let a = spool.append(&sample_envelope(2), &body(1)).unwrap();
    spool.commit().unwrap();
    spool.set_recipient_state(a, 0, delivered()).unwrap();
    spool.set_recipient_state(a, 1, delivered()).unwrap();
    spool.sync_journal().unwrap();
    let journal = dir.path().join("journal");
    // A crash tears the second state (and leaves no clean-close entry: cut with it).
    let len = std::fs::metadata(&journal).unwrap().len();
    drop(spool);
    let file = OpenOptions::new().write(true).open(&journal).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(
        recovered[0].recipients,
        [delivered(), RecipientState::Pending]
    );
    // What is left of the second entry is cut away.
    let kept = std::fs::metadata(&journal).unwrap().len();
    assert!(kept < len - 3);
    assert_eq!(spool.recovery_report().journal_bytes_cut, len - 3 - kept);
}

/// A damaged journal record costs only its own state: the states after it are kept (found
/// past it with the spool's seed), the damage is left in place and reported, nothing is cut;
/// at every byte of the record.
#[test]
fn a_damaged_journal_record_costs_only_its_state() {
    let dir = TempDir::new("journal-damage");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let a = spool.append(&sample_envelope(3), &body(1)).unwrap();
    spool.commit().unwrap();
    spool.sync_journal().unwrap();
    let journal = dir.path().join("journal");
    let before = std::fs::metadata(&journal).unwrap().len();
    spool.set_recipient_state(a, 0, delivered()).unwrap();
    spool.sync_journal().unwrap();
    let first_end = std::fs::metadata(&journal).unwrap().len();
    spool.set_recipient_state(a, 1, delivered()).unwrap();
    spool.sync_journal().unwrap();
    let second_end = std::fs::metadata(&journal).unwrap().len();
    spool.set_recipient_state(a, 2, delivered()).unwrap();
    drop(spool);
    let bytes = std::fs::read(&journal).unwrap();
    assert!(before <= first_end && first_end < second_end);
    for at in first_end..second_end {
        let mut damaged = bytes.clone();
        damaged[at as usize] ^= 0x10;
        std::fs::write(&journal, &damaged).unwrap();
        let (spool, recovered) = open_despite_forks(dir.path());
        assert_eq!(
            recovered[0].recipients,
            [delivered(), RecipientState::Pending, delivered()],
            "byte {at}"
        );
        let report = spool.recovery_report();
        assert_eq!(report.journal_bytes_cut, 0, "byte {at}");
        assert!(report.journal_bytes_damaged > 0, "byte {at}");
        assert!(report.repairs().unwrap().contains("DAMAGE"));
        drop(spool);
        // Left in place (the clean close of this open appends its entry after it).
        assert!(
            std::fs::read(&journal).unwrap().starts_with(&damaged),
            "left in place, byte {at}"
        );
    }
}

/// After a clean stop (the journal's last entry says so), a bad last record of the newest
/// segment is damage, not a torn write: reported and kept on disk, never cut (the fresh
/// review: a flipped byte there lost the message and its bytes). After a crash (no such
/// entry) the same bytes are a torn tail and are cut.
#[test]
fn after_a_clean_stop_a_bad_last_record_is_damage_not_a_tear() {
    let dir = TempDir::new("clean-stop");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let a = spool.append(&sample_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    let b = spool.append(&sample_envelope(1), &body(2)).unwrap();
    spool.commit().unwrap();
    let last = spool.get(b).unwrap().spool_ref;
    drop(spool); // a clean close
    let name = segment_files(dir.path())[0].clone();
    let path = dir.path().join("seg").join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[last.offset as usize + 30] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(ids(&recovered), [a.0]);
    let report = spool.recovery_report().clone();
    assert_eq!(report.segment_bytes_cut, 0);
    assert_eq!(report.segment_bytes_damaged, last.record_len);
    assert!(report.repairs().unwrap().contains("DAMAGE"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "kept for inspection");
    drop(spool);
    // An open and close with nothing appended (a queue tool) keeps it protected.
    let (spool, _) = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.recovery_report().segment_bytes_cut, 0);
    drop(spool);
    // The same bytes after a crash: no clean-close entry, so a torn tail, cut.
    let _ = std::fs::remove_file(dir.path().join("journal"));
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(ids(&recovered), [a.0]);
    assert_eq!(spool.recovery_report().segment_bytes_cut, last.record_len);
}

#[test]
fn a_segment_is_deleted_when_all_its_messages_are_done_and_not_before() {
    let dir = TempDir::new("delete");
    let limits = SpoolLimits {
        segment_max_bytes: 1, // every commit ends its segment
        ..SpoolLimits::default()
    };
    let (mut spool, _) = Spool::open_with(dir.path(), limits).unwrap();
    let a1 = spool.append(&sample_envelope(1), &body(1)).unwrap();
    let a2 = spool.append(&sample_envelope(1), &body(2)).unwrap();
    spool.commit().unwrap();
    let b = spool.append(&sample_envelope(1), &body(3)).unwrap();
    spool.commit().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2);
    spool.set_recipient_state(a1, 0, delivered()).unwrap();
    spool.mark_done(a1).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 2, "a2 is still live");
    spool.mark_done(a2).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(spool.segment_count(), 1);
    spool.mark_done(b).unwrap();
    assert!(segment_files(dir.path()).is_empty());
    drop(spool);

    // The segment being appended to is kept until it ends (here: until the next open).
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let c = spool.append(&sample_envelope(1), &body(4)).unwrap();
    spool.commit().unwrap();
    spool.mark_done(c).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(spool);
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert!(recovered.is_empty());
    assert_eq!(spool.recovery_report().segments_deleted, 1);
    assert!(segment_files(dir.path()).is_empty());
}

/// The segment being appended to is deleted when its last message is done once it holds
/// `segment_max_bytes / EMPTY_SEGMENT_END_FRACTION`, and not while a batch is pending: a
/// drained queue gives its disk back; the next commit starts a new segment.
#[test]
fn a_drained_current_segment_past_its_fraction_is_deleted() {
    let dir = TempDir::new("drained");
    let limits = SpoolLimits {
        segment_max_bytes: 16 * 64, // ended when done past 64 bytes, full past 1 024
        ..SpoolLimits::default()
    };
    let (mut spool, _) = Spool::open_with(dir.path(), limits).unwrap();
    let a = spool.append(&sample_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    let first = segment_files(dir.path());
    assert_eq!(first.len(), 1);
    // A batch pending in the same segment keeps it.
    let b = spool.append(&sample_envelope(1), &body(2)).unwrap();
    spool.mark_done(a).unwrap();
    assert_eq!(segment_files(dir.path()), first, "a batch is pending in it");
    spool.commit().unwrap();
    spool.mark_done(b).unwrap();
    assert!(segment_files(dir.path()).is_empty(), "drained: deleted");
    assert_eq!(spool.segment_count(), 0);
    let c = spool.append(&sample_envelope(1), &body(3)).unwrap();
    spool.commit().unwrap();
    let second = segment_files(dir.path());
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "a new segment");
    assert_eq!(
        spool.read_body(&spool.get(c).unwrap().spool_ref).unwrap(),
        body(3)
    );
    drop(spool);
    let (_spool, recovered) = Spool::open_with(dir.path(), limits).unwrap();
    assert_eq!(ids(&recovered), [c.0]);
}

/// A full disk: with no room for the journal's reserve, a commit is refused (452) and keeps
/// nothing, so no accepted mail goes unrecorded; once room returns, commits succeed. And a
/// segment drained after a failed commit is deleted whatever its size (its space is wanted).
#[test]
fn without_journal_room_commits_are_refused_and_a_drained_segment_is_given_back() {
    let dir = TempDir::new("no-room");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let a = spool.append(&sample_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    spool.journal.no_room = true;
    spool.append(&sample_envelope(1), &body(2)).unwrap();
    let error = spool.commit().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
    assert_eq!(live_ids(&spool), [a.0], "the refused batch is not kept");
    spool.journal.no_room = false;
    // The segment is small (far under a sixteenth of 64 MiB), but a commit failed.
    spool.mark_done(a).unwrap();
    assert!(
        segment_files(dir.path()).is_empty(),
        "drained after a failure: deleted"
    );
    let b = spool.append(&sample_envelope(1), &body(3)).unwrap();
    spool.commit().unwrap();
    spool.mark_done(b).unwrap();
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "a small segment, no failure: kept"
    );
}

#[test]
fn ids_are_never_given_twice_even_when_every_segment_is_gone() {
    let dir = TempDir::new("ids");
    let limits = SpoolLimits {
        segment_max_bytes: 1,
        journal_compact_bytes: 1, // compact at every chance: only the high water survives
    };
    let mut seen = BTreeSet::new();
    for _round in 0..4 {
        let (mut spool, recovered) = Spool::open_with(dir.path(), limits).unwrap();
        assert!(recovered.is_empty());
        for n in 0..3 {
            let id = spool.append(&bare_envelope(1), &body(n)).unwrap();
            spool.commit().unwrap();
            spool.mark_done(id).unwrap();
            assert!(seen.insert(id.0), "id {id} given twice");
        }
        drop(spool);
        assert!(segment_files(dir.path()).len() <= 1);
    }
}

/// A spool's files are never opened through a symbolic link (the link's target stays as it
/// was: a root-run tool must not truncate what another user's link points to) nor waited on
/// when a FIFO: each open fails at once with a clear error. New directories are 0700, new
/// files 0600.
#[test]
fn links_and_fifos_in_a_spool_are_refused_and_new_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let outside = TempDir::new("links-victim");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    for name in ["journal", "lock", "seg/0000000000000001.seg"] {
        let dir = TempDir::new("links");
        std::fs::create_dir_all(dir.path().join("seg")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        let error = Spool::open(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("symbolic link"),
            "{name}: {error}"
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{name}");
    }
    for name in ["journal", "seg/0000000000000001.seg"] {
        let dir = TempDir::new("fifos");
        std::fs::create_dir_all(dir.path().join("seg")).unwrap();
        let path = std::ffi::CString::new(dir.path().join(name).to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
        #[allow(unsafe_code)]
        let made = unsafe { libc::mkfifo(path.as_ptr(), 0o600) };
        assert_eq!(made, 0);
        let error = Spool::open(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("not a regular file"),
            "{name}: {error}"
        );
    }
    // A hard link: the spool's file would be someone else's too.
    let dir = TempDir::new("hard-link");
    std::fs::create_dir_all(dir.path().join("seg")).unwrap();
    std::fs::hard_link(&victim, dir.path().join("seg/0000000000000001.seg")).unwrap();
    let error = Spool::open(dir.path()).unwrap_err();
    assert!(error.to_string().contains("hard links"), "{error}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // `seg` itself a link (to another spool's): two locks over one set of segments.
    let other = TempDir::new("seg-owner");
    std::fs::create_dir_all(other.path().join("seg")).unwrap();
    let dir = TempDir::new("seg-link");
    std::os::unix::fs::symlink(other.path().join("seg"), dir.path().join("seg")).unwrap();
    let error = Spool::open(dir.path()).unwrap_err();
    assert!(error.to_string().contains("symbolic link"), "{error}");
    let dir = TempDir::new("private");
    let spool_dir = dir.path().join("new");
    let (mut spool, _) = Spool::open(&spool_dir).unwrap();
    spool.append(&sample_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    drop(spool);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool_dir), 0o700);
    assert_eq!(mode(&spool_dir.join("seg")), 0o700);
    assert_eq!(mode(&spool_dir.join("journal")), 0o600);
    assert_eq!(mode(&spool_dir.join("lock")), 0o600);
    let segment = spool_dir.join("seg").join(&segment_files(&spool_dir)[0]);
    assert_eq!(mode(&segment), 0o600);
}

/// The journal keeps [`JOURNAL_RESERVE_BYTES`] allocated past its end (where the file
/// system can), so the entries that free a full disk can still be written.
#[test]
fn the_journal_keeps_space_allocated_ahead() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("reserve");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let id = spool.append(&sample_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    spool.mark_done(id).unwrap();
    spool.sync_journal().unwrap();
    let journal = std::fs::metadata(dir.path().join("journal")).unwrap();
    let allocated = journal.blocks() * 512;
    // Probe whether this file system allocates ahead at all (tmpfs, ext4 and xfs do).
    let probe = std::fs::File::create(dir.path().join("probe")).unwrap();
    if journal::allocate_ahead(&probe, 0, 4096).is_err() {
        eprintln!("skipped: this file system cannot allocate ahead");
        return;
    }
    assert!(
        allocated >= journal.len() + journal::JOURNAL_RESERVE_BYTES / 2,
        "{allocated} bytes allocated for a journal of {}",
        journal.len()
    );
}

#[test]
fn a_second_open_of_one_spool_fails_clearly_until_the_first_is_closed() {
    let dir = TempDir::new("lock");
    let (spool, _) = Spool::open(dir.path()).unwrap();
    let err = Spool::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    let text = err.to_string();
    assert!(text.contains("is in use"), "{text}");
    assert!(
        text.contains(&format!("process {}", std::process::id())),
        "{text}"
    );
    drop(spool);
    Spool::open(dir.path()).unwrap();
}

/// The spool moves to the storage thread that owns it.
#[test]
fn the_spool_can_move_to_its_storage_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Spool>();
}

/// A spool directory that cannot be one is refused with its path named.
#[test]
fn a_spool_path_that_is_a_file_is_refused_clearly() {
    let dir = TempDir::new("not-a-dir");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let err = Spool::open(&file).unwrap_err();
    assert!(err.to_string().contains("plain"), "{err}");
}

/// The order of a commit's steps: the write, the file's sync, the directory's sync (a new
/// segment), and only then `Ok` (the caller's `250`).
#[test]
fn a_commit_writes_then_syncs_the_file_then_the_directory_before_it_returns() {
    let dir = TempDir::new("order");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    spool.append(&bare_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    assert_eq!(
        spool.faults.trace,
        [Step::Create, Step::Write, Step::SyncFile, Step::SyncDir]
    );
    spool.faults.trace.clear();
    spool.append(&bare_envelope(1), &body(2)).unwrap();
    spool.append(&bare_envelope(1), &body(3)).unwrap();
    spool.commit().unwrap();
    assert_eq!(spool.faults.trace, [Step::Write, Step::SyncFile]);
    spool.faults.trace.clear();
    spool.commit().unwrap(); // nothing to do
    assert!(spool.faults.trace.is_empty());
}

/// A commit that fails at any step keeps nothing of its batch, in memory or after a reopen;
/// the segment is cut back to its committed length, and the next commit works.
#[test]
fn a_failed_commit_keeps_nothing_of_its_batch_at_every_step() {
    enum Fault {
        Fail(Step),
        Partial(usize),
    }
    let faults = [
        Fault::Fail(Step::Create),
        Fault::Fail(Step::Write),
        Fault::Fail(Step::SyncFile),
        Fault::Fail(Step::SyncDir),
        Fault::Partial(0),
        Fault::Partial(20),
        Fault::Partial(usize::MAX), // every byte written, then a failure
    ];
    for (case, fault) in faults.iter().enumerate() {
        for fresh_segment in [true, false] {
            let dir = TempDir::new("commit-fails");
            let (mut spool, _) = Spool::open(dir.path()).unwrap();
            let mut kept = Vec::new();
            if !fresh_segment {
                kept.push(spool.append(&sample_envelope(1), &body(0)).unwrap().0);
                spool.commit().unwrap();
            }
            let before = spool.current.committed_len;
            match fault {
                Fault::Fail(step) => spool.faults.fail.push(*step),
                Fault::Partial(n) => spool.faults.partial_write = Some(*n),
            }
            let lost = spool.append(&sample_envelope(2), &body(1)).unwrap();
            spool.append(&sample_envelope(1), &body(2)).unwrap();
            let injected = spool.commit();
            let fires =
                !matches!(fault, Fault::Fail(Step::Create | Step::SyncDir)) || fresh_segment;
            if !fires {
                // The step does not happen on this path: the commit succeeds.
                spool.faults.fail.clear();
                assert!(injected.is_ok());
                continue;
            }
            assert!(injected.is_err(), "case {case}");
            assert_eq!(spool.pending(), 0);
            assert!(spool.get(lost).is_none(), "case {case}");
            assert_eq!(live_ids(&spool), kept, "case {case}");
            if let Some(file) = &spool.current.file {
                assert_eq!(file.metadata().unwrap().len(), before, "case {case}");
            }
            kept.push(spool.append(&bare_envelope(1), &body(3)).unwrap().0);
            spool.commit().unwrap();
            assert_eq!(live_ids(&spool), kept, "case {case}");
            drop(spool);
            let (spool, recovered) = Spool::open(dir.path()).unwrap();
            assert_eq!(ids(&recovered), kept, "case {case}");
            assert_eq!(spool.recovery_report().segment_bytes_cut, 0, "case {case}");
        }
    }
}

/// When even the cut back fails, the segment is sealed at its committed length in the next
/// segment's first record: a whole record past the seal (written, never acknowledged) is not
/// recovered, and the open cuts it away.
#[test]
fn a_failed_commit_whose_cut_fails_seals_the_segment_and_recovery_honours_it() {
    let dir = TempDir::new("seal");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let kept = spool.append(&sample_envelope(1), &body(0)).unwrap();
    spool.commit().unwrap();
    spool.faults.partial_write = Some(usize::MAX);
    // The cut fails, and so do its retries after the seal's own commit and after the next
    // one: the open has to honour the seal itself.
    spool.faults.fail.extend([Step::Cut; 3]);
    let lost = spool.append(&sample_envelope(1), &body(1)).unwrap();
    let said = spool.commit().unwrap_err().to_string();
    assert!(
        said.contains("is sealed there and a new segment follows"),
        "{said}"
    );
    let sealed_segment = spool.uncut[0].0;
    assert!(spool.seals.is_empty(), "the seal was committed at once");
    assert_eq!(spool.segment_count(), 2);
    assert_ne!(spool.current.number, sealed_segment);
    let after = spool.append(&bare_envelope(1), &body(2)).unwrap();
    spool.commit().unwrap();
    assert_eq!(spool.uncut.len(), 1);
    drop(spool);
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(ids(&recovered), [kept.0, after.0]);
    assert!(!ids(&recovered).contains(&lost.0));
    assert!(spool.recovery_report().segment_bytes_cut > 0);
    drop(spool);
    // Cut for good: a second open finds nothing to cut.
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(ids(&recovered), [kept.0, after.0]);
    assert_eq!(spool.recovery_report().segment_bytes_cut, 0);
}

/// When the seal cannot be written at once either, it heads the next commit's batch.
#[test]
fn a_seal_that_cannot_be_written_at_once_goes_with_the_next_commit() {
    let dir = TempDir::new("seal-later");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let kept = spool.append(&sample_envelope(1), &body(0)).unwrap();
    spool.commit().unwrap();
    spool.faults.partial_write = Some(usize::MAX);
    spool
        .faults
        .fail
        .extend([Step::Cut, Step::Create, Step::Cut, Step::Cut]);
    spool.append(&sample_envelope(1), &body(1)).unwrap();
    assert!(spool.commit().is_err());
    assert_eq!(spool.seals.len(), 1, "the seal waits for the next commit");
    assert_eq!(spool.segment_count(), 1);
    let after = spool.append(&bare_envelope(1), &body(2)).unwrap();
    spool.commit().unwrap();
    assert!(spool.seals.is_empty());
    assert_eq!(
        spool
            .read_body(&spool.get(after).unwrap().spool_ref)
            .unwrap(),
        body(2)
    );
    drop(spool);
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(ids(&recovered), [kept.0, after.0]);
    assert!(spool.recovery_report().segment_bytes_cut > 0);
}

/// States are staged: nothing reaches the journal file until a flush, which writes every
/// staged state in one write; a sync flushes first, and so does closing the spool.
#[test]
fn recipient_states_are_written_at_a_flush_in_one_write_and_at_close() {
    let dir = TempDir::new("journal-staged");
    let journal_len = || std::fs::metadata(dir.path().join("journal")).unwrap().len();
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let a = spool.append(&sample_envelope(3), &body(1)).unwrap();
    let b = spool.append(&sample_envelope(1), &body(2)).unwrap();
    spool.commit().unwrap();
    spool.sync_journal().unwrap();
    let before = journal_len();
    spool.set_recipient_state(a, 0, delivered()).unwrap();
    spool.set_recipient_state(a, 1, delivered()).unwrap();
    spool.mark_done(b).unwrap();
    assert_eq!(journal_len(), before, "staged, not written");
    spool.flush_journal().unwrap();
    let flushed = journal_len();
    assert!(flushed > before);
    spool.flush_journal().unwrap();
    assert_eq!(
        journal_len(),
        flushed,
        "a flush with nothing staged writes nothing"
    );
    spool.set_recipient_state(a, 2, delivered()).unwrap();
    spool.sync_journal().unwrap();
    assert!(journal_len() > flushed, "a sync writes what is staged");
    spool.mark_done(a).unwrap();
    drop(spool);
    let (_, recovered) = Spool::open(dir.path()).unwrap();
    assert!(
        recovered.is_empty(),
        "the last done, staged at close, was written"
    );
}

/// Reads come from the current segment's own file and from an older segment's kept reader,
/// and a segment deleted since says so instead of reading another's bytes.
#[test]
fn messages_are_read_from_current_and_older_segments_until_deleted() {
    let dir = TempDir::new("readers");
    let limits = SpoolLimits {
        segment_max_bytes: 1,
        journal_compact_bytes: 1 << 20,
    };
    let (mut spool, _) = Spool::open_with(dir.path(), limits).unwrap();
    let a = spool.append(&sample_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    let b = spool.append(&sample_envelope(1), &body(2)).unwrap();
    spool.commit().unwrap();
    let place_a = spool.get(a).unwrap().spool_ref;
    let place_b = spool.get(b).unwrap().spool_ref;
    assert_ne!(place_a.segment, place_b.segment);
    for _ in 0..3 {
        assert_eq!(spool.read_body(&place_a).unwrap(), body(1));
        assert_eq!(spool.read_body(&place_b).unwrap(), body(2));
    }
    spool.mark_done(a).unwrap();
    let error = spool.read_body(&place_a).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(spool.read_body(&place_b).unwrap(), body(2));
}

/// A journal write that fails and cannot be cut back: the state still changes, and the next
/// change rewrites the journal from the live state, so nothing is lost after a reopen.
#[test]
fn a_broken_journal_is_rewritten_from_the_live_state() {
    let dir = TempDir::new("journal-broken");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let a = spool.append(&sample_envelope(3), &body(1)).unwrap();
    spool.commit().unwrap();
    spool.set_recipient_state(a, 0, delivered()).unwrap();
    spool.flush_journal().unwrap();
    spool.journal.partial_append = Some(5);
    spool.journal.fail_cut = true;
    spool.set_recipient_state(a, 1, delivered()).unwrap();
    assert!(spool.flush_journal().is_err());
    assert_eq!(spool.get(a).unwrap().recipients[1], delivered());
    spool.set_recipient_state(a, 2, delivered()).unwrap();
    drop(spool);
    let (spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(recovered[0].recipients, vec![delivered(); 3]);
    assert_eq!(spool.recovery_report().journal_bytes_cut, 0);
}

#[test]
fn the_journal_is_compacted_and_keeps_the_live_state() {
    let dir = TempDir::new("compact");
    let limits = SpoolLimits {
        segment_max_bytes: SEGMENT_MAX_BYTES,
        journal_compact_bytes: 2048,
    };
    let (mut spool, _) = Spool::open_with(dir.path(), limits).unwrap();
    let a = spool.append(&sample_envelope(2), &body(1)).unwrap();
    let b = spool.append(&sample_envelope(1), &body(2)).unwrap();
    spool.commit().unwrap();
    for attempt in 1..=500u32 {
        spool
            .set_recipient_state(
                a,
                0,
                RecipientState::Deferred {
                    attempts: attempt,
                    next_attempt_unix_ms: u64::from(attempt) * 1000,
                    last_reply: b"421 4.4.2 try later".to_vec(),
                    remote_mta: Vec::new(),
                },
            )
            .unwrap();
    }
    spool.mark_done(b).unwrap();
    let len = std::fs::metadata(dir.path().join("journal")).unwrap().len();
    assert!(len <= 2048, "the journal stays bounded: {len} bytes");
    drop(spool);
    let (_, recovered) = Spool::open_with(dir.path(), limits).unwrap();
    assert_eq!(ids(&recovered), [a.0]);
    assert_eq!(
        recovered[0].recipients[0],
        RecipientState::Deferred {
            attempts: 500,
            next_attempt_unix_ms: 500_000,
            last_reply: b"421 4.4.2 try later".to_vec(),
            remote_mta: Vec::new(),
        }
    );
}

/// What the model-based test does, one step at a time.
#[derive(Debug, Clone)]
enum Op {
    /// Append a message with this many recipients and this body length.
    Append(usize, usize),
    /// Commit.
    Commit,
    /// Commit with a failure injected at one of the steps (0..5).
    FailedCommit(usize),
    /// Set a live message's recipient's state (message pick, recipient pick, state kind).
    Set(usize, usize, u8),
    /// Mark a live message done (pick).
    Done(usize),
    /// Close and open again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4, 0usize..400).prop_map(|(r, b)| Op::Append(r, b)),
        3 => Just(Op::Commit),
        1 => (0usize..5).prop_map(Op::FailedCommit),
        4 => (any::<usize>(), any::<usize>(), 0u8..3).prop_map(|(m, r, k)| Op::Set(m, r, k)),
        2 => any::<usize>().prop_map(Op::Done),
        1 => Just(Op::Reopen),
    ]
}

/// The simple model: committed live messages with their envelope, body and states, and the
/// appended ones waiting for a commit.
#[derive(Debug, Default)]
struct Model {
    /// Committed and live.
    live: BTreeMap<u64, (Envelope, Vec<u8>, Vec<RecipientState>)>,
    /// Appended, not committed.
    pending: Vec<(u64, Envelope, Vec<u8>)>,
    /// Every id given since the last reopen.
    given: BTreeSet<u64>,
    /// Every id committed.
    committed: BTreeSet<u64>,
}

fn check_against(spool: &Spool, model: &Model) {
    let live: Vec<(u64, Vec<RecipientState>)> = spool
        .live()
        .map(|l| (l.spool_ref.id.0, l.recipients.to_vec()))
        .collect();
    let expected: Vec<(u64, Vec<RecipientState>)> = model
        .live
        .iter()
        .map(|(&id, (_, _, states))| (id, states.clone()))
        .collect();
    assert_eq!(live, expected);
    for listed in spool.live() {
        let (envelope, raw) = spool.read_message(&listed.spool_ref).unwrap();
        let (e, b, _) = &model.live[&listed.spool_ref.id.0];
        assert_eq!((&envelope, &raw), (e, b));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random appends, commits (some failing), state changes, done marks and reopens, with
    /// tiny segments and journal bounds (so rotation, deletion and compaction all happen):
    /// the spool always equals the model, and no id is given twice.
    #[test]
    fn the_spool_behaves_like_a_simple_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = TempDir::new("model");
        let limits = SpoolLimits { segment_max_bytes: 900, journal_compact_bytes: 600 };
        let (mut spool, _) = Spool::open_with(dir.path(), limits).unwrap();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Append(recipients, len) => {
                    let envelope = sample_envelope(recipients);
                    let raw = vec![b'x'; len];
                    let id = spool.append(&envelope, &raw).unwrap().0;
                    // Never the id of a committed message, nor of one appended in this run
                    // (an id appended and lost to a failed commit or a close may come back
                    // after a reopen: nobody was told of it).
                    prop_assert!(!model.committed.contains(&id), "id {} given twice", id);
                    prop_assert!(model.given.insert(id), "id {} given twice in one run", id);
                    model.pending.push((id, envelope, raw));
                }
                Op::Commit => {
                    spool.commit().unwrap();
                    for (id, envelope, raw) in model.pending.drain(..) {
                        model.committed.insert(id);
                        let states = vec![RecipientState::Pending; envelope.recipients.len()];
                        model.live.insert(id, (envelope, raw, states));
                    }
                }
                Op::FailedCommit(step) => {
                    let step = [Step::Write, Step::SyncFile, Step::SyncDir, Step::Create, Step::Cut][step];
                    spool.faults.fail.push(step);
                    if step == Step::Cut {
                        spool.faults.partial_write = Some(usize::MAX);
                    }
                    let result = spool.commit();
                    let failed = result.is_err();
                    spool.faults.fail.clear();
                    spool.faults.partial_write = None;
                    if failed {
                        model.pending.clear();
                    } else {
                        // The step did not happen on this path (nothing pending, or no new
                        // segment): a plain commit.
                        for (id, envelope, raw) in model.pending.drain(..) {
                            model.committed.insert(id);
                            let states = vec![RecipientState::Pending; envelope.recipients.len()];
                            model.live.insert(id, (envelope, raw, states));
                        }
                    }
                }
                Op::Set(pick, rcpt, kind) => {
                    if model.live.is_empty() {
                        continue;
                    }
                    let id = *model.live.keys().nth(pick % model.live.len()).unwrap();
                    let states = &mut model.live.get_mut(&id).unwrap().2;
                    let state = match kind {
                        0 => RecipientState::Deferred {
                            attempts: rcpt as u32 % 7,
                            next_attempt_unix_ms: rcpt as u64,
                            last_reply: b"451 later".to_vec(),
                            remote_mta: if rcpt % 2 == 0 { b"mx.test".to_vec() } else { Vec::new() },
                        },
                        1 => delivered(),
                        _ => RecipientState::Failed { reply: b"550 no".to_vec(), remote_mta: Vec::new() },
                    };
                    let result = spool.set_recipient_state(SpoolId(id), rcpt % 5, state.clone());
                    match states.get_mut(rcpt % 5) {
                        Some(slot) if !slot.is_final() => {
                            prop_assert!(result.is_ok());
                            *slot = state;
                        }
                        _ => prop_assert!(result.is_err()),
                    }
                }
                Op::Done(pick) => {
                    if model.live.is_empty() {
                        continue;
                    }
                    let id = *model.live.keys().nth(pick % model.live.len()).unwrap();
                    spool.mark_done(SpoolId(id)).unwrap();
                    model.live.remove(&id);
                }
                Op::Reopen => {
                    drop(spool);
                    model.pending.clear();
                    model.given.clear();
                    let (reopened, recovered) = Spool::open_with(dir.path(), limits).unwrap();
                    spool = reopened;
                    let found: Vec<(u64, Envelope, Vec<RecipientState>)> = recovered
                        .into_iter()
                        .map(|r| (r.spool_ref.id.0, r.envelope, r.recipients))
                        .collect();
                    let expected: Vec<(u64, Envelope, Vec<RecipientState>)> = model
                        .live
                        .iter()
                        .map(|(&id, (e, _, s))| (id, e.clone(), s.clone()))
                        .collect();
                    prop_assert_eq!(found, expected);
                    prop_assert_eq!(spool.recovery_report().segment_bytes_cut, 0);
                }
            }
            check_against(&spool, &model);
        }
    }
}

/// The environment variable that makes [`kill9_child_appends_and_commits`] run: the spool
/// directory.
const KILL9_DIR: &str = "FASTSMTPD_SPOOL_KILL9_DIR";

/// The child of [`a_kill_9_loses_no_committed_message`] (does nothing unless started by it):
/// opens the spool, then appends batches and commits them, printing `committed ID` for every
/// message only after its commit returned, and marks every third one done (`done ID`).
#[test]
fn kill9_child_appends_and_commits() {
    use std::io::Write;
    let Some(dir) = std::env::var_os(KILL9_DIR) else {
        return;
    };
    let limits = SpoolLimits {
        segment_max_bytes: 16 * 1024,
        journal_compact_bytes: 4096,
    };
    let (mut spool, _) = Spool::open_with(Path::new(&dir), limits).unwrap();
    let mut out = std::io::stdout().lock();
    for round in 0..20_000usize {
        let batch: Vec<SpoolId> = (0..1 + round % 7)
            .map(|n| spool.append(&sample_envelope(2), &body(n)).unwrap())
            .collect();
        spool.commit().unwrap();
        for id in batch {
            writeln!(out, "committed {}", id.0).unwrap();
            if id.0 % 3 == 0 {
                spool.mark_done(id).unwrap();
                writeln!(out, "done {}", id.0).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

/// `kill -9` at ten random moments of a child that commits in a loop: every id the child printed
/// as committed (and not done) is recovered, ids are never given twice, and nothing is cut
/// that was whole. (A kill keeps the page cache, so this proves the recovery logic, not the
/// syncs: their order is checked by the order test above.)
#[test]
fn a_kill_9_loses_no_committed_message() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = TempDir::new("kill9");
    let exe = std::env::current_exe().unwrap();
    let mut seed = u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut committed = BTreeSet::new();
    let mut done = BTreeSet::new();
    for kill in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 20 + (seed % 400) as usize;
        let mut child = Command::new(&exe)
            .args([
                "relay::spool::tests::kill9_child_appends_and_commits",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(KILL9_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut seen = 0;
        let mut killed = false;
        loop {
            line.clear();
            if lines.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if !line.ends_with('\n') {
                break; // a line cut by the kill
            }
            // The last two words: the harness writes `test NAME ... ` before the first line.
            let mut words = line.split_whitespace().rev();
            let id = words.next().and_then(|w| w.parse::<u64>().ok());
            match (words.next(), id) {
                (Some("committed"), Some(id)) => {
                    assert!(committed.insert(id), "id {id} given twice");
                    seen += 1;
                }
                (Some("done"), Some(id)) => {
                    done.insert(id);
                }
                _ => {}
            }
            if seen >= kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(killed, "the child ended before it was killed");
        let (spool, recovered) = Spool::open(dir.path()).unwrap();
        let live: BTreeSet<u64> = ids(&recovered).into_iter().collect();
        let missing: Vec<&u64> = committed
            .iter()
            .filter(|id| !done.contains(id) && !live.contains(id))
            .collect();
        assert!(missing.is_empty(), "committed and lost: {missing:?}");
        // Live but never printed: at most the batch in flight at each kill (up to 7).
        let unprinted = live.iter().filter(|id| !committed.contains(id)).count();
        assert!(
            unprinted <= 7 * (kill + 1),
            "{unprinted} live messages never printed: {:?}, last printed {:?}",
            live.iter()
                .filter(|id| !committed.contains(id))
                .collect::<Vec<_>>(),
            committed.last()
        );
        drop(spool);
    }
}

/// Not a check: how many 1 KiB messages per second the spool commits at a few batch sizes
/// on this machine (`cargo test -p fastsmtpd --lib spool_throughput -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, printed; run by hand"]
fn spool_throughput() {
    let dir = TempDir::new("throughput");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let envelope = sample_envelope(1);
    let raw = vec![b'a'; 1024];
    for batch in [1usize, 10, 100] {
        let messages = 4000;
        let start = std::time::Instant::now();
        for _ in 0..messages / batch {
            for _ in 0..batch {
                spool.append(&envelope, &raw).unwrap();
            }
            spool.commit().unwrap();
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "batch {batch:>3}: {:>8.0} msgs/s, {:>6.0} commits/s",
            messages as f64 / seconds,
            (messages / batch) as f64 / seconds
        );
    }
}

/// The environment variable that makes [`order_child_commits_twice`] run: the spool
/// directory.
const ORDER_DIR: &str = "FASTSMTPD_SPOOL_ORDER_DIR";

/// The child of [`the_commit_order_holds_at_the_system_call_level`] (does nothing unless
/// started by it): two commits, each followed by a line on standard output, where a server
/// would answer `250`.
#[test]
fn order_child_commits_twice() {
    use std::io::Write;
    let Some(dir) = std::env::var_os(ORDER_DIR) else {
        return;
    };
    let (mut spool, _) = Spool::open(Path::new(&dir)).unwrap();
    let mut out = std::io::stdout().lock();
    spool.append(&bare_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    writeln!(out, "250 first").unwrap();
    out.flush().unwrap();
    spool.append(&bare_envelope(1), &body(2)).unwrap();
    spool.append(&bare_envelope(1), &body(3)).unwrap();
    spool.commit().unwrap();
    writeln!(out, "250 second").unwrap();
    out.flush().unwrap();
}

/// The order write → `fdatasync(segment)` → `fsync(segment directory)` → `250`, seen in the
/// system calls themselves: the child runs under `strace` (skipped, with a note, where strace
/// is missing or may not trace). A new segment's first commit syncs the directory; the next
/// commit to the same segment needs only the write and the file's sync.
#[test]
fn the_commit_order_holds_at_the_system_call_level() {
    use std::process::{Command, Stdio};
    let dir = TempDir::new("strace");
    let spool_dir = dir.path().join("spool");
    let trace = dir.path().join("trace");
    let status = Command::new("strace")
        .arg("-f")
        .arg("-qq")
        .args(["-e", "trace=openat,pwrite64,fdatasync,fsync,write"])
        .args(["-s", "32", "-o"])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args([
            "relay::spool::tests::order_child_commits_twice",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ORDER_DIR, &spool_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    if !matches!(status, Ok(s) if s.success()) || !text.contains("250 second") {
        eprintln!("skipped: strace is missing or may not trace here ({status:?})");
        return;
    }
    // Each call as (name, first argument, whole line), in order.
    let calls: Vec<(&str, &str, &str)> = text
        .lines()
        .filter_map(|line| {
            let call = line
                .split_once(' ')
                .map_or(line, |(_, rest)| rest)
                .trim_start();
            let (name, rest) = call.split_once('(')?;
            let first = rest.split([',', ')']).next().unwrap_or("");
            Some((name, first, line))
        })
        .collect();
    let result_fd = |line: &str| line.rsplit("= ").next().unwrap_or("").trim().to_string();
    let position = |from: usize, what: &dyn Fn(&(&str, &str, &str)) -> bool| {
        calls[from..]
            .iter()
            .position(what)
            .map(|i| from + i)
            .unwrap_or_else(|| panic!("not found after call {from}:\n{text}"))
    };
    let created = position(0, &|c| {
        c.0 == "openat" && c.2.contains(".seg\"") && c.2.contains("O_CREAT")
    });
    let segment_fd = result_fd(calls[created].2);
    let write = position(created, &|c| c.0 == "pwrite64" && c.1 == segment_fd);
    let sync = position(write, &|c| c.0 == "fdatasync" && c.1 == segment_fd);
    let dir_open = position(sync, &|c| {
        c.0 == "openat" && c.2.contains("/seg\"") && !c.2.contains(".seg\"")
    });
    let dir_fd = result_fd(calls[dir_open].2);
    let dir_sync = position(dir_open, &|c| c.0 == "fsync" && c.1 == dir_fd);
    let first = position(0, &|c| c.0 == "write" && c.2.contains("250 first"));
    assert!(
        dir_sync < first,
        "the directory sync comes before the 250:\n{text}"
    );
    let write2 = position(first, &|c| c.0 == "pwrite64" && c.1 == segment_fd);
    let sync2 = position(write2, &|c| c.0 == "fdatasync" && c.1 == segment_fd);
    let second = position(0, &|c| c.0 == "write" && c.2.contains("250 second"));
    assert!(write2 < sync2 && sync2 < second, "{text}");
    // One write and one sync for the two messages of the second batch.
    let batch = &calls[first + 1..second];
    assert_eq!(
        batch.iter().filter(|c| c.0 == "pwrite64").count(),
        1,
        "{text}"
    );
    assert_eq!(
        batch.iter().filter(|c| c.0 == "fdatasync").count(),
        1,
        "{text}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Damage anywhere, any amount (bytes flipped at random places of a segment of records
    /// of random sizes): opening never fails or panics, never invents a message, and keeps
    /// every record whose bytes the damage did not touch; the damaged bytes stay on disk.
    #[test]
    fn damage_costs_exactly_the_records_it_touches(
        sizes in proptest::collection::vec(0usize..600, 2..10),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..=255), 1..5),
    ) {
        let dir = TempDir::new("damage-prop");
        let (mut spool, _) = Spool::open(dir.path()).unwrap();
        let mut sent = Vec::new();
        for (n, size) in sizes.iter().enumerate() {
            let body: Vec<u8> = (0..*size).map(|i| b'a' + ((i + n) % 26) as u8).collect();
            sent.push(spool.append(&sample_envelope(1 + n % 3), &body).unwrap().0);
            spool.commit().unwrap();
        }
        let places: Vec<(u64, u64)> = spool
            .live()
            .map(|l| (l.spool_ref.offset, l.spool_ref.offset + l.spool_ref.record_len))
            .collect();
        drop(spool);
        let name = segment_files(dir.path())[0].clone();
        let path = dir.path().join("seg").join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        let mut touched = BTreeSet::new();
        for (index, mask) in &flips {
            let at = index.index(bytes.len());
            bytes[at] ^= mask;
            touched.extend(places.iter().position(|&(start, end)| (start..end).contains(&(at as u64))));
        }
        std::fs::write(&path, &bytes).unwrap();
        let _ = std::fs::remove_file(dir.path().join("journal"));
        if touched.len() == sent.len() {
            // Every record damaged: nothing passes, which is what a lost key looks like too;
            // the open refuses and changes nothing, or (no whole record left) keeps nothing.
            match try_open_despite_forks(dir.path()) {
                Err(error) => {
                    prop_assert!(error.to_string().contains("fail their check"), "{}", error);
                    prop_assert_eq!(std::fs::read(&path).unwrap(), bytes);
                }
                Ok((_, recovered)) => prop_assert!(recovered.is_empty()),
            }
            return Ok(());
        }
        let (spool, recovered) = open_despite_forks(dir.path());
        let want: Vec<u64> = sent
            .iter()
            .enumerate()
            .filter(|(n, _)| !touched.contains(n))
            .map(|(_, &id)| id)
            .collect();
        prop_assert_eq!(ids(&recovered), want);
        let report = spool.recovery_report();
        let last_touched = touched.contains(&(sent.len() - 1));
        if !last_touched {
            // A good last record: nothing is a torn tail, every damaged byte is kept.
            prop_assert_eq!(report.segment_bytes_cut, 0);
            prop_assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
    }
}

/// A new spool gets its key (`DIR/key`, 0600, the CRC seed) before any record; a spool with
/// records and no key is one made before keys, read with the legacy plain CRC; a key that
/// does not read stops the open with a clear error.
#[test]
fn a_spool_keeps_its_key_and_old_spools_read_without_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("key");
    let (mut spool, _) = Spool::open(dir.path()).unwrap();
    let id = spool.append(&sample_envelope(1), &body(1)).unwrap();
    spool.commit().unwrap();
    drop(spool);
    let key = std::fs::read_to_string(dir.path().join("key")).unwrap();
    assert_eq!(key.len(), 9, "{key:?}");
    let mode = std::fs::metadata(dir.path().join("key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (_spool, recovered) = Spool::open(dir.path()).unwrap();
    assert_eq!(ids(&recovered), [id.0]);
    drop(_spool);

    // Made before keys: one record with the plain CRC, no key file.
    let old = TempDir::new("key-legacy");
    std::fs::create_dir_all(old.path().join("seg")).unwrap();
    let mut record = Vec::new();
    segment::message_record_into(
        &mut record,
        frame::Seed::LEGACY,
        5,
        &sample_envelope(2),
        b"old\r\n",
    )
    .unwrap();
    std::fs::write(old.path().join("seg").join("0000000000000001.seg"), &record).unwrap();
    let (spool, recovered) = Spool::open(old.path()).unwrap();
    assert_eq!(ids(&recovered), [5]);
    assert!(
        !old.path().join("key").exists(),
        "an old spool stays keyless"
    );
    assert_eq!(
        spool.read_body(&recovered[0].spool_ref).unwrap(),
        b"old\r\n"
    );
    drop(spool);

    std::fs::write(dir.path().join("key"), "not a key\n").unwrap();
    let error = Spool::open(dir.path()).unwrap_err();
    assert!(error.to_string().contains("not a spool key"), "{error}");
}

/// The fresh review's lost key: with `DIR/key` deleted or replaced, the records of the spool
/// (and a record quoted in a body, made with the plain CRC, that would pass without the key)
/// are not cut or deleted as torn or damaged: the open refuses and changes nothing; with the
/// key back it opens whole.
#[test]
fn a_lost_or_wrong_key_refuses_the_open_and_changes_nothing() {
    let dir = TempDir::new("lost-key");
    let (_sent, _ends, _bytes, _quoted_at) = three_records_one_quoting(dir.path(), 1000);
    let seg = dir.path().join("seg").join(&segment_files(dir.path())[0]);
    let segment_before = std::fs::read(&seg).unwrap();
    let key = std::fs::read(dir.path().join("key")).unwrap();
    for change in ["delete", "replace"] {
        // (Each clean open and close adds its closing entry: taken again each round.)
        let journal_before = std::fs::read(dir.path().join("journal")).unwrap_or_default();
        match change {
            "delete" => std::fs::remove_file(dir.path().join("key")).unwrap(),
            _ => std::fs::write(dir.path().join("key"), "11111111\n").unwrap(),
        }
        let error = try_open_despite_forks(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("fail their check"),
            "{change}: {error}"
        );
        assert_eq!(std::fs::read(&seg).unwrap(), segment_before, "{change}");
        assert_eq!(
            std::fs::read(dir.path().join("journal")).unwrap_or_default(),
            journal_before,
            "{change}"
        );
        std::fs::write(dir.path().join("key"), &key).unwrap();
        let (_spool, recovered) = open_despite_forks(dir.path());
        assert_eq!(recovered.len(), 3, "{change}: whole again with the key");
    }
}

/// A segment with damage is never deleted by the spool, even when every message it still
/// holds is done: the damaged bytes (a message that got its 250 and cannot be read) stay for
/// an operator, and every open says so again.
#[test]
fn a_damaged_segment_is_kept_after_its_good_messages_are_done() {
    let dir = TempDir::new("damaged-kept");
    let (sent, ends, bytes) = three_records(dir.path());
    let name = segment_files(dir.path())[0].clone();
    let mut damaged = bytes.clone();
    damaged[ends[0] as usize + 30] ^= 0x01;
    let (found, _) = reopen_with_segment(dir.path(), &name, &damaged);
    assert_eq!(found, [sent[0], sent[2]]);
    let (mut spool, recovered) = open_despite_forks(dir.path());
    for message in &recovered {
        spool.mark_done(message.spool_ref.id).unwrap();
    }
    drop(spool);
    assert_eq!(
        segment_files(dir.path()),
        std::slice::from_ref(&name),
        "kept"
    );
    let (spool, recovered) = open_despite_forks(dir.path());
    assert!(recovered.is_empty());
    assert!(spool
        .recovery_report()
        .repairs()
        .unwrap()
        .contains("DAMAGE"));
    assert_eq!(segment_files(dir.path()), [name], "still kept");
}
