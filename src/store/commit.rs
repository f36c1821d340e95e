//! Committing a batch of messages to every store at once: all stores keep a message, or none
//! does.
//!
//! What it does: [`commit_batch`] takes a batch of messages whose content is complete in
//! every store and decides, per message, kept everywhere or kept nowhere, in two phases:
//!
//! 1. Prepare, where nothing is visible yet and a failure costs nothing to undo: one
//!    `durable::sync_files` per file store for the contents of every staged file (group commit).
//! 2. Commit, each step undoable: the renames into place (each message's files in the order
//!    staged, so its last file is its commit point); one `fsync` per file store's directory;
//!    then each regular JSON-lines file gets the batch's lines in one write and one
//!    `fdatasync`, remembering its length before; then the relay's spool (every message
//!    appended, one commit, the delivery side told; a failed commit keeps nothing, and its
//!    messages get `452 4.3.1`); then, last, the stream (standard output, a FIFO, a device),
//!    the only step that cannot be taken back (never configured beside the spool).
//!
//! A message that fails at any step is undone in every store that already has it: its files
//! are removed (under either name) and their directories synced again, and the JSON-lines
//! files are cut back to where its line began (each is held, locked, until the batch is
//! decided, so no other batch's lines come after). A stream that stops part way keeps the
//! lines it wrote whole (their messages are kept everywhere: a `250`); the messages after
//! them are undone. So a `250` means every durable store has the message on disk and the
//! stream has its line; a `451` means no store kept any of it, and the client's retry makes
//! no second copy. The syncs stay one per store and batch: undoing costs I/O only on failure.
//!
//! What it does not do: decide names or contents (the stores do), or retry (a failed message
//! is `451 4.3.0` and the client retries). A crash (no reply at all) between two stores'
//! steps can leave a message in some stores only; its sender, told nothing, sends it again
//! (RFC 5321 §6.1: at least once).

use super::durable::{sync_dir, sync_files, Staged};
use super::jsonl::Appended;
use super::record::MessageMeta;
use super::target::{SpoolTarget, Target};
use crate::proto::command::Body;
use crate::proto::dsn::{decode_xtext, Notify};
use crate::relay::received::{protocol_word, received_line_into, Trace, SPOOL_REFUSAL};
use crate::relay::spool::{
    BodyType, ClientIdentity, Envelope as SpoolEnvelope, MailParams, Recipient,
};
use crate::wake::Notify as WakeNotify;
use std::fs::File;
use std::io;
use std::time::{Instant, UNIX_EPOCH};

/// A message whose content is all written, waiting for its batch's commit.
#[derive(Debug)]
pub(super) struct Finished {
    /// Whom to tell.
    pub(super) notify: WakeNotify,
    /// When the session handed it over.
    pub(super) submitted: Instant,
    /// The files to commit, per store (empty for JSON lines).
    pub(super) files: Vec<Vec<Staged>>,
    /// The JSON record and its newline, when a store writes one.
    pub(super) record: Option<Vec<u8>>,
    /// What goes to the relay's spool, when there is one.
    pub(super) spooled: Option<Spooled>,
    /// The reply when the message is refused for a reason of its own (the spool's `452
    /// 4.3.1`); `None`: the stores' `451 4.3.0`.
    pub(super) refusal: Option<&'static [u8]>,
    /// Still on its way to being stored.
    pub(super) ok: bool,
}

/// A message for the relay's spool: its envelope and its bytes (the relay's `Received:`
/// line, then the content as received).
#[derive(Debug)]
pub(super) struct Spooled {
    /// The envelope as the spool keeps it.
    pub(super) envelope: SpoolEnvelope,
    /// The bytes to relay.
    pub(super) body: Vec<u8>,
}

/// The spool's envelope of a message (RFC 5321 §2.3.1), DSN's parameters with it (RFC 3461
/// §5.2.1: kept to be passed on unchanged, or to decide the notifications the relay owes):
/// `RET`, `ENVID` (decoded from xtext, as the spool keeps it), and each recipient's `NOTIFY`
/// and `ORCPT` (as given).
pub(super) fn spool_envelope(meta: &MessageMeta) -> SpoolEnvelope {
    let arrival_unix_ms = meta
        .received_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    SpoolEnvelope {
        arrival_unix_ms,
        reverse_path: meta.sender.clone(),
        params: MailParams {
            ret: meta.params.ret,
            // The session accepted only xtext (`dsn::parse_envid`), so it decodes.
            envid: meta.envid.as_deref().and_then(decode_xtext),
            body: match meta.params.body {
                None => BodyType::Unspecified,
                Some(Body::SevenBit) => BodyType::SevenBit,
                Some(Body::EightBitMime) => BodyType::EightBitMime,
                Some(Body::BinaryMime) => BodyType::BinaryMime,
            },
            smtputf8: meta.params.smtputf8,
            size: meta.params.size,
        },
        client: ClientIdentity {
            helo: meta.helo.clone(),
            address: meta.client.ip().to_string().into_bytes(),
            protocol: protocol(meta).as_bytes().to_vec(),
        },
        recipients: meta
            .recipients
            .iter()
            .enumerate()
            .map(|(index, address)| {
                let (notify, orcpt) = meta
                    .recipient_dsn
                    .get(index)
                    .cloned()
                    .unwrap_or((Notify::ABSENT, None));
                Recipient {
                    address: address.clone(),
                    notify,
                    orcpt,
                }
            })
            .collect(),
    }
}

/// The `with` word of the trace field ([`protocol_word`]).
fn protocol(meta: &MessageMeta) -> &'static str {
    protocol_word(
        meta.esmtp,
        meta.params.smtputf8,
        meta.tls.is_some(),
        meta.auth_user.is_some(),
    )
}

/// The relay's `Received:` line for a message (RFC 5321 §4.4), `by` `hostname`, the start
/// of what the spool keeps of it.
pub(super) fn received_line(meta: &MessageMeta, hostname: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    let unix_seconds = meta
        .received_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    received_line_into(
        &mut line,
        &Trace {
            helo: &meta.helo,
            address: meta.client.ip(),
            by: hostname,
            with: protocol(meta),
            id: meta.id.as_str(),
            for_recipient: match meta.recipients.as_slice() {
                [only] => Some(only),
                _ => None,
            },
            unix_seconds,
        },
    );
    line
}

/// Says what went wrong with the spool (without its lock: the caller may hold it; rate
/// limited: a full disk fails every batch).
fn report_spool(target: &SpoolTarget, error: &io::Error) {
    target.say_failure(error);
}

/// Removes every staged file of a message, under either name; says what could not be removed
/// (a file that is already gone is fine).
pub(super) fn remove_all(staged: &[Staged], target: &Target) {
    for file in staged {
        if let Err(e) = file.remove() {
            target.report(&io::Error::new(
                e.kind(),
                format!("could not remove a refused message's file: {e}"),
            ));
        }
    }
}

/// Commits a batch to every store (see the module docs): `ok[i]` says whether message `i`
/// is still on its way to being kept; on return it says whether it was kept, by every store.
/// `whole_fs_sync`: the contents may be synced with one `syncfs` per store (no stream of a
/// large message is being written meanwhile).
pub(super) fn commit_batch(
    targets: &[Target],
    finished: &mut [Finished],
    ok: &mut [bool],
    whole_fs_sync: bool,
) {
    let mut batch = Batch {
        targets,
        finished,
        ok,
        resync: vec![false; targets.len()],
    };
    batch.prepare(whole_fs_sync);
    batch.rename();
    batch.sync_dirs();
    let mut appended: Vec<Appended<'_>> = Vec::new();
    for target in targets {
        let Target::Jsonl(jsonl) = target else {
            continue;
        };
        if jsonl.is_stream() {
            continue;
        }
        let (lines, members) = batch.lines();
        if members.is_empty() {
            continue;
        }
        match jsonl.append(&lines, members) {
            Ok(held) => appended.push(held),
            Err(members) => {
                // Nothing of the batch is in this file: none of its messages is kept.
                for (i, _) in members {
                    batch.ok[i] = false;
                }
                batch.undo(&mut appended);
            }
        }
    }
    // The relay's spool, after every store that can take a message back: a failed commit
    // keeps nothing (the spool's own rule), and the messages it refused are taken back from
    // the stores before it. (A stream, which could not take its line back, is never
    // configured beside it: `StoreHub::start` refuses that.)
    if let Some(spool) = targets.iter().find_map(|t| match t {
        Target::Spool(spool) => Some(spool),
        _ => None,
    }) {
        if batch.spool(spool) {
            batch.undo(&mut appended);
        }
    }
    if let Some(stream) = targets.iter().find_map(|t| match t {
        Target::Jsonl(jsonl) if jsonl.is_stream() => Some(jsonl),
        _ => None,
    }) {
        let (lines, members) = batch.lines();
        if !members.is_empty() {
            let emitted = stream.emit(&lines);
            // The lines written whole are out: those messages are kept. The rest are not.
            for &(i, end) in &members {
                if end > emitted {
                    batch.ok[i] = false;
                }
            }
            batch.undo(&mut appended);
        }
    }
    drop(appended);
    batch.resync_dirs();
}

/// A batch being committed.
struct Batch<'t, 'f> {
    /// The stores.
    targets: &'t [Target],
    /// The messages (their staged files are taken as they are committed or removed).
    finished: &'f mut [Finished],
    /// Per message: still on its way to being kept.
    ok: &'f mut [bool],
    /// Per store: files were removed from its directory after it was synced.
    resync: Vec<bool>,
}

impl Batch<'_, '_> {
    /// Phase 1: the contents of every staged file are made durable, one sync per store. A
    /// store whose sync fails refuses every message with files in it. Messages refused
    /// before or here have their temporary files removed in every store.
    fn prepare(&mut self, whole_fs_sync: bool) {
        for (index, target) in self.targets.iter().enumerate() {
            if target.final_dir().is_none() {
                continue;
            }
            let files: Vec<&File> = self
                .finished
                .iter()
                .zip(self.ok.iter())
                .filter(|(_, ok)| **ok)
                .filter_map(|(message, _)| message.files.get(index))
                .flat_map(|files| files.iter().map(Staged::file))
                .collect();
            if let Err(e) = sync_files(&files, whole_fs_sync) {
                target.report(&e);
                for (message, ok) in self.finished.iter().zip(self.ok.iter_mut()) {
                    if message.files.get(index).is_some_and(|f| !f.is_empty()) {
                        *ok = false;
                    }
                }
            }
        }
        for i in 0..self.finished.len() {
            if !self.ok[i] {
                self.remove_files(i, false);
            }
        }
    }

    /// Phase 2: every message's files are renamed into place, store by store. A message
    /// whose rename fails is removed from every store (renamed or not yet).
    fn rename(&mut self) {
        for i in 0..self.finished.len() {
            if !self.ok[i] {
                continue;
            }
            let renamed = self
                .targets
                .iter()
                .enumerate()
                .try_for_each(|(index, target)| {
                    let files = self.finished[i]
                        .files
                        .get(index)
                        .map_or(&[][..], |f| &f[..]);
                    files
                        .iter()
                        .try_for_each(Staged::rename)
                        .map_err(|e| target.report(&e))
                });
            if renamed.is_err() {
                self.ok[i] = false;
                self.remove_files(i, false);
            }
        }
    }

    /// Phase 2, continued: each file store's directory is synced once, so the new names
    /// survive a crash. A store whose sync fails cannot vouch for any of them: those
    /// messages are removed from every store.
    fn sync_dirs(&mut self) {
        for (index, target) in self.targets.iter().enumerate() {
            let Some(dir) = target.final_dir() else {
                continue;
            };
            if !self.holds_any(index) {
                continue;
            }
            if let Err(e) = sync_dir(dir) {
                target.report(&e);
                for i in 0..self.finished.len() {
                    if self.ok[i]
                        && self.finished[i]
                            .files
                            .get(index)
                            .is_some_and(|f| !f.is_empty())
                    {
                        self.ok[i] = false;
                        self.remove_files(i, true);
                    }
                }
            }
        }
    }

    /// Appends every message still on its way to the relay's spool and commits them with
    /// one `commit` (write, `fdatasync`, directory `fsync` when the segment is new), then
    /// tells the delivery side (`RelayQueue::committed`), all before any `250`. A message the
    /// spool cannot take, or a failed commit (which keeps nothing of the batch), refuses
    /// those messages with [`SPOOL_REFUSAL`]. Whether any message was refused here.
    fn spool(&mut self, target: &SpoolTarget) -> bool {
        let mut refused = false;
        let mut ids = Vec::with_capacity(self.finished.len());
        let mut members = Vec::with_capacity(self.finished.len());
        let mut spool = target.queue.spool();
        for i in 0..self.finished.len() {
            if !self.ok[i] {
                continue;
            }
            let Some(message) = &self.finished[i].spooled else {
                continue;
            };
            match spool.append(&message.envelope, &message.body) {
                Ok(id) => {
                    ids.push(id);
                    members.push(i);
                }
                Err(e) => {
                    report_spool(target, &e);
                    self.refuse(i);
                    refused = true;
                }
            }
        }
        if ids.is_empty() {
            return refused;
        }
        let committed = spool.commit();
        drop(spool);
        match committed {
            Ok(()) => target.queue.committed(&ids),
            Err(e) => {
                report_spool(target, &e);
                for i in members {
                    self.refuse(i);
                }
                refused = true;
            }
        }
        // The bodies are no longer needed (a batch holds up to `--store-batch` of them).
        for message in self.finished.iter_mut() {
            message.spooled = None;
        }
        refused
    }

    /// Message `i` is refused by the spool: `452 4.3.1`, and it is taken back from every
    /// store (at the next `undo`).
    fn refuse(&mut self, i: usize) {
        self.ok[i] = false;
        self.finished[i].refusal = Some(SPOOL_REFUSAL);
    }

    /// Whether a message still on its way has files in store `index`.
    fn holds_any(&self, index: usize) -> bool {
        self.finished
            .iter()
            .zip(self.ok.iter())
            .any(|(message, ok)| *ok && message.files.get(index).is_some_and(|f| !f.is_empty()))
    }

    /// The JSON lines of the messages still on their way, and for each `(message, offset
    /// just past its line)`.
    fn lines(&self) -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut lines = Vec::with_capacity(self.finished.len() * 400);
        let mut members = Vec::with_capacity(self.finished.len());
        for (i, message) in self.finished.iter().enumerate() {
            if self.ok[i] {
                lines.extend_from_slice(message.record.as_deref().unwrap_or_default());
                members.push((i, lines.len()));
            }
        }
        (lines, members)
    }

    /// Takes back every message no longer on its way from the stores that committed it:
    /// its files (every store's directory was synced by now: synced again at the end) and its
    /// lines in the JSON-lines files held.
    fn undo(&mut self, appended: &mut [Appended<'_>]) {
        for i in 0..self.finished.len() {
            if !self.ok[i] {
                self.remove_files(i, true);
            }
        }
        for held in appended {
            held.take_back(self.ok);
        }
    }

    /// Removes message `i`'s files from every store, under either name (`renamed`: they may
    /// be in synced directories, which are synced again at the end).
    fn remove_files(&mut self, i: usize, renamed: bool) {
        for (index, target) in self.targets.iter().enumerate() {
            let Some(files) = self.finished[i].files.get_mut(index) else {
                continue;
            };
            if files.is_empty() {
                continue;
            }
            remove_all(files, target);
            files.clear();
            self.resync[index] |= renamed;
        }
    }

    /// After an undo: the directories that lost names are synced, so a removal survives a
    /// crash as the names it removed would have.
    fn resync_dirs(&self) {
        for (target, resync) in self.targets.iter().zip(&self.resync) {
            if let (Some(dir), true) = (target.final_dir(), resync) {
                if let Err(e) = sync_dir(dir) {
                    target.report(&e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::command::MailParams as SessionParams;
    use crate::proto::dsn::Ret;
    use crate::proto::envelope::Transfer;
    use crate::proto::sink::QueueId;

    fn meta() -> MessageMeta {
        MessageMeta {
            id: QueueId::new(b"1.M0P2Q3").unwrap(),
            received_at: UNIX_EPOCH + std::time::Duration::from_millis(1_800_000_000_123),
            client: "192.0.2.7:2525".parse().unwrap(),
            helo: b"client.test".to_vec(),
            esmtp: true,
            sender: b"a@x.test".to_vec(),
            params: SessionParams {
                ret: Some(Ret::Full),
                body: Some(Body::EightBitMime),
                any: true,
                ..SessionParams::default()
            },
            recipients: vec![b"r@y.test".to_vec(), b"s@y.test".to_vec()],
            envid: Some(b"ENV+2B1".to_vec()),
            recipient_dsn: vec![
                (Notify::SUCCESS, Some(b"rfc822;R+2Bx@y.test".to_vec())),
                (Notify::NEVER, None),
            ],
            transfer: Transfer::Data,
            tls: None,
            auth_user: None,
            relays: true,
        }
    }

    /// RFC 3461's parameters reach the spool: `RET`, `ENVID` decoded from xtext, each
    /// recipient's `NOTIFY` and `ORCPT` as given; without any, the recipients ask nothing.
    #[test]
    fn the_spool_envelope_keeps_the_dsn_parameters() {
        let envelope = spool_envelope(&meta());
        assert_eq!(envelope.arrival_unix_ms, 1_800_000_000_123);
        assert_eq!(envelope.params.ret, Some(Ret::Full));
        assert_eq!(envelope.params.envid.as_deref(), Some(&b"ENV+1"[..]));
        assert_eq!(envelope.params.body, BodyType::EightBitMime);
        let recipients: Vec<_> = envelope
            .recipients
            .iter()
            .map(|r| (r.address.as_slice(), r.notify, r.orcpt.as_deref()))
            .collect();
        assert_eq!(
            recipients,
            [
                (
                    &b"r@y.test"[..],
                    Notify::SUCCESS,
                    Some(&b"rfc822;R+2Bx@y.test"[..])
                ),
                (&b"s@y.test"[..], Notify::NEVER, None),
            ]
        );
        let plain = MessageMeta {
            envid: None,
            recipient_dsn: Vec::new(),
            params: SessionParams::default(),
            ..meta()
        };
        let envelope = spool_envelope(&plain);
        assert_eq!(envelope.params.ret, None);
        assert_eq!(envelope.params.envid, None);
        assert!(envelope
            .recipients
            .iter()
            .all(|r| r.notify == Notify::ABSENT && r.orcpt.is_none()));
    }
}
