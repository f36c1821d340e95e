//! One storage thread: takes whole messages and its streams' steps from the queues, writes
//! each message's files as its content comes, and commits what became complete as a batch.
//!
//! What it does: [`StorageThread::run`] waits for work, takes up to `--store-batch` whole
//! messages and up to [`STREAM_OPS_PER_TURN`] steps of its own streams per turn (so a small
//! message waits behind at most that much writing), writes them through [`Writing`] (the
//! digest for the JSON record, LF line ends for Maildir, one part per store), then has
//! `commit::commit_batch` make the batch durable in every store or none, and posts each
//! message's outcome to its connection's worker (`crate::wake`). Idle after streams, it gives
//! freed memory back to the system.
//!
//! What it does not do: decide replies, read sockets, or choose which thread a stream goes to
//! (the sink does, in turn).

use super::commit::{self, Finished};
use super::durable::Staged;
use super::queues::{Shared, StreamOp, Whole};
use super::record::{self, ContentDigest, MessageMeta};
use super::target::Target;
use super::{maildir, STREAM_OPS_PER_TURN};
use crate::lock::{lock, wait};
use crate::metrics::StoreLatency;
use crate::wake::{Notify, Wake};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// One store's part of a message being written.
#[derive(Debug)]
enum Part {
    /// The message's file (Maildir, `.eml`), under its temporary name.
    File(Staged),
    /// Nothing written before the end (JSON lines), or nothing left (after a failure).
    Nothing,
    /// The relay's spool: the message gathered in memory (its `Received:` line first), to
    /// be appended to the spool at the batch's commit (`Spool::append` takes it whole).
    Body(Vec<u8>),
}

/// A message on its storage thread: its files being written, its digest being computed.
#[derive(Debug)]
struct Writing {
    /// The envelope and identity.
    pub(super) meta: MessageMeta,
    /// One part per store, in the stores' order.
    pub(super) parts: Vec<Part>,
    /// Size, hash and header fields for the records, when a store writes one.
    pub(super) digest: Option<ContentDigest>,
    /// CR LF to LF for the Maildir files, when a Maildir store is configured.
    pub(super) lf: Option<maildir::LfConverter>,
    /// A write failed: everything was removed, the message will be refused.
    pub(super) failed: bool,
}

impl Writing {
    /// Starts the files of a message in every store.
    fn begin(targets: &[Target], meta: MessageMeta) -> Writing {
        let digest = targets
            .iter()
            .any(Target::needs_record)
            .then(ContentDigest::new);
        let lf = targets
            .iter()
            .any(|t| matches!(t, Target::Maildir(_)))
            .then(maildir::LfConverter::default);
        let mut writing = Writing {
            meta,
            parts: Vec::with_capacity(targets.len()),
            digest,
            lf,
            failed: false,
        };
        for target in targets {
            let begun = match target {
                Target::Maildir(t) => t.begin(&writing.meta).map_err(|e| target.report(&e)),
                Target::Eml(t) => t.begin(&writing.meta).map_err(|e| target.report(&e)),
                Target::Jsonl(_) => {
                    writing.parts.push(Part::Nothing);
                    continue;
                }
                Target::Spool(t) => {
                    // `--relay-domains`: a message with no recipient to relay is not
                    // spooled at all.
                    let relayed =
                        writing.meta.relays && writing.meta.recipients.iter().any(|r| t.relays(r));
                    writing.parts.push(if relayed {
                        Part::Body(commit::received_line(&writing.meta, &t.hostname))
                    } else {
                        Part::Nothing
                    });
                    continue;
                }
            };
            match begun {
                Ok(file) => writing.parts.push(Part::File(file)),
                Err(()) => {
                    writing.fail(targets);
                    break;
                }
            }
        }
        writing
    }

    /// Appends the next piece of content to every file (and the digest): as it came to the
    /// `.eml` files, with LF line ends to the Maildir files (converted once into `scratch`,
    /// the storage thread's buffer).
    fn write(&mut self, targets: &[Target], piece: &[u8], scratch: &mut Vec<u8>) {
        if self.failed || piece.is_empty() {
            return;
        }
        if let Some(digest) = &mut self.digest {
            digest.update(piece);
        }
        if let Some(lf) = &mut self.lf {
            lf.convert(piece, scratch);
        }
        self.append(targets, piece, scratch);
    }

    /// Appends `piece` to the `.eml` files and `lf_piece` to the Maildir files.
    fn append(&mut self, targets: &[Target], piece: &[u8], lf_piece: &[u8]) {
        for (target, part) in targets.iter().zip(&mut self.parts) {
            let file = match part {
                Part::File(file) => file,
                Part::Body(body) => {
                    // As received, CR LF kept: the spool relays the bytes it was given.
                    body.extend_from_slice(piece);
                    continue;
                }
                Part::Nothing => continue,
            };
            let bytes = match target {
                Target::Maildir(_) => lf_piece,
                Target::Eml(_) | Target::Jsonl(_) | Target::Spool(_) => piece,
            };
            if let Err(e) = file.append(bytes) {
                target.report(&e);
                self.fail(targets);
                return;
            }
        }
    }

    /// Removes everything written: the message will not be kept.
    fn fail(&mut self, targets: &[Target]) {
        self.failed = true;
        for (part, target) in self.parts.drain(..).zip(targets) {
            if let Part::File(file) = part {
                commit::remove_all(&[file], target);
            }
        }
    }

    /// The content is complete: the last files (sidecars) are written, and the message
    /// waits for its batch's commit.
    fn finish(mut self, targets: &[Target], notify: Notify, submitted: Instant) -> Finished {
        let mut finished = Finished {
            notify,
            submitted,
            files: Vec::with_capacity(targets.len()),
            record: None,
            spooled: None,
            refusal: None,
            ok: false,
        };
        if let Some(held) = self.lf.as_mut().map(maildir::LfConverter::finish) {
            if !held.is_empty() && !self.failed {
                self.append(targets, b"", held); // a CR that ended the content
            }
        }
        if self.failed {
            return finished;
        }
        if let Some(digest) = self.digest.take() {
            let mut line = Vec::with_capacity(512);
            // serde_json writes into a Vec without failing.
            let _ = serde_json::to_writer(&mut line, &record::json_record_of(&self.meta, digest));
            line.push(b'\n');
            finished.record = Some(line);
        }
        let parts = std::mem::take(&mut self.parts);
        let mut failed = false;
        for (target, part) in targets.iter().zip(parts) {
            let files = match (target, part) {
                (_, Part::File(file)) if failed => {
                    commit::remove_all(&[file], target);
                    continue;
                }
                (Target::Maildir(t), Part::File(file)) => t.finish(&self.meta, file),
                (Target::Spool(t), Part::Body(body)) => {
                    let mut envelope = commit::spool_envelope(&self.meta);
                    // Only the recipients `--relay-domains` names go to the next hops.
                    envelope.recipients.retain(|r| t.relays(&r.address));
                    finished.spooled = Some(commit::Spooled { envelope, body });
                    Vec::new()
                }
                (Target::Eml(t), Part::File(file)) => {
                    let record = finished.record.as_deref().unwrap_or_default();
                    match t.finish(&self.meta, file, record) {
                        Ok(files) => files,
                        Err(e) => {
                            target.report(&e);
                            failed = true;
                            Vec::new()
                        }
                    }
                }
                (_, _) => Vec::new(),
            };
            finished.files.push(files);
        }
        if failed {
            for (files, target) in finished.files.iter().zip(targets) {
                commit::remove_all(files, target);
            }
            finished.files.clear();
        } else {
            finished.ok = true;
        }
        finished
    }
}

/// Returns the allocator's free memory to the system (glibc keeps freed chunks of this size
/// in its heaps otherwise: after a burst of large messages the process would stay at its
/// peak). Elsewhere, nothing.
#[allow(unsafe_code)]
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One storage thread: what it needs to run.
#[derive(Debug)]
pub(super) struct StorageThread {
    /// Which of the stream queues is this thread's.
    pub(super) index: usize,
    /// The queues, budget and pool.
    pub(super) shared: Arc<Shared>,
    /// The stores.
    pub(super) targets: Arc<Vec<Target>>,
    /// Most whole messages taken at once.
    pub(super) max_batch: usize,
    /// Where store latencies go.
    pub(super) latency: Arc<StoreLatency>,
}

impl StorageThread {
    /// Takes work until the queues close and are empty: whole messages first, then up to
    /// [`STREAM_OPS_PER_TURN`] stream steps; commits every message that became complete.
    pub(super) fn run(self) {
        let targets: &[Target] = &self.targets;
        let mut wholes: Vec<Whole> = Vec::with_capacity(self.max_batch);
        let mut ops: Vec<StreamOp> = Vec::with_capacity(STREAM_OPS_PER_TURN);
        let mut streams: HashMap<u64, Writing> = HashMap::new();
        let mut finished: Vec<Finished> = Vec::with_capacity(self.max_batch);
        // Content converted for the Maildir files (LF line ends), one chunk at a time.
        let mut scratch: Vec<u8> = Vec::new();
        // Stream chunks were handled since memory was last given back.
        let mut streamed = false;
        loop {
            {
                let mut queues = lock(&self.shared.queues);
                while queues.whole.is_empty() && queues.streams[self.index].is_empty() {
                    if streamed && self.shared.open_streams.load(Ordering::SeqCst) == 0 {
                        // Idle after large messages: give their freed chunks back to the
                        // system, so the memory they took does not stay with the process.
                        streamed = false;
                        drop(queues);
                        release_free_memory();
                        queues = lock(&self.shared.queues);
                        continue;
                    }
                    if queues.closing {
                        drop(queues);
                        // Streams never ended (their connections went without a word).
                        streams.values_mut().for_each(|w| w.fail(targets));
                        return;
                    }
                    queues.idle += 1;
                    queues = wait(&self.shared.work, queues);
                    queues.idle -= 1;
                }
                while wholes.len() < self.max_batch {
                    let Some(whole) = queues.whole.pop_front() else {
                        break;
                    };
                    wholes.push(whole);
                }
                let mine = &mut queues.streams[self.index];
                let take = mine.len().min(STREAM_OPS_PER_TURN);
                ops.extend(mine.drain(..take));
                streamed |= take > 0;
            }
            for whole in wholes.drain(..) {
                let mut writing = Writing::begin(targets, whole.meta);
                writing.write(targets, &whole.body, &mut scratch);
                self.shared.give_back(whole.body);
                finished.push(writing.finish(targets, whole.notify, whole.submitted));
            }
            for op in ops.drain(..) {
                self.on_op(op, &mut streams, &mut finished, &mut scratch);
            }
            if !finished.is_empty() {
                self.commit(&mut finished);
            }
        }
    }

    /// Carries out one step of a stream.
    fn on_op(
        &self,
        op: StreamOp,
        streams: &mut HashMap<u64, Writing>,
        finished: &mut Vec<Finished>,
        scratch: &mut Vec<u8>,
    ) {
        let targets: &[Target] = &self.targets;
        match op {
            StreamOp::Start { stream, meta } => {
                self.shared.open_streams.fetch_add(1, Ordering::SeqCst);
                streams.insert(stream, Writing::begin(targets, *meta));
            }
            StreamOp::Data { stream, chunk } => {
                if let Some(writing) = streams.get_mut(&stream) {
                    writing.write(targets, &chunk, scratch);
                }
                self.shared.give_back(chunk);
            }
            StreamOp::End {
                stream,
                chunk,
                notify,
                submitted,
            } => {
                let writing = streams.remove(&stream);
                match writing {
                    Some(mut writing) => {
                        writing.write(targets, &chunk, scratch);
                        finished.push(writing.finish(targets, notify, submitted));
                        self.shared.open_streams.fetch_sub(1, Ordering::SeqCst);
                    }
                    // Cannot happen (a stream ends once, on the thread that started it);
                    // refused rather than confirmed.
                    None => notify.send(Wake::Stored(false)),
                }
                self.shared.give_back(chunk);
            }
            StreamOp::Abort { stream } => {
                if let Some(mut writing) = streams.remove(&stream) {
                    writing.fail(targets);
                    self.shared.open_streams.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Makes `finished` durable in every store or in none (`commit::commit_batch`: the
    /// stores' contents synced, then the renames, directory syncs, JSON-lines appends and
    /// last the stream, each undone for a message a later step refuses), then reports each
    /// outcome.
    fn commit(&self, finished: &mut Vec<Finished>) {
        let mut ok: Vec<bool> = finished.iter().map(|f| f.ok).collect();
        // `syncfs` would also wait for the data of streams still being written.
        let whole_fs = self.shared.open_streams.load(Ordering::SeqCst) == 0;
        commit::commit_batch(&self.targets, finished, &mut ok, whole_fs);
        let done = Instant::now();
        for (message, stored) in finished.drain(..).zip(ok) {
            self.latency
                .observe(done.saturating_duration_since(message.submitted), stored);
            message.notify.send(match message.refusal {
                Some(reply) if !stored => Wake::Refused(reply),
                _ => Wake::Stored(stored),
            });
        }
    }
}
