//! Keeping mail: Maildir, `.eml` files and JSON lines, written durably on storage threads.
//!
//! What it does: [`StoreSink`] is the sink every connection uses. With no store configured it
//! discards (and allocates nothing). With stores, it collects the message content (already
//! dot-unstuffed; BDAT octets as they came), and at the end hands the message to the storage
//! threads as a [`Job`] and answers [`Verdict::Pending`]: the session holds the `250` until
//! the storage thread reports that every store has the message on disk (RFC 5321 §4.1.1.4:
//! `250` means we took responsibility). The thread reports through the worker's
//! [`Completions`] queue and wakes its event loop; disk I/O never runs on an event loop.
//!
//! Group commit: a storage thread takes every job that is waiting (up to `--store-batch`,
//! [`DEFAULT_MAX_BATCH`]) and makes them durable together: for Maildir and `.eml`, one
//! `syncfs` for the batch's files (see `sync_files`) and one directory `fsync` for their
//! names; for JSON lines, one write and one `fdatasync`. With several threads, one batch syncs while the next
//! gathers.
//!
//! What it does not do: decide replies (the session does) or retry: a failed store is
//! `451 4.3.0` and the client retries.
//!
//! Memory: a message being received with stores configured is held whole in its
//! connection's buffer (up to `--max-message-size`) until its job is written.

mod commit;
pub mod eml;
pub mod jsonl;
pub mod maildir;
pub mod record;

use crate::metrics::StoreLatency;
use crate::proto::envelope::Envelope;
use crate::proto::sink::{MessageSink, Verdict};
use mio::Waker;
use record::MessageMeta;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Most jobs one storage thread makes durable together, by default (`--store-batch`).
pub const DEFAULT_MAX_BATCH: usize = 256;
/// A message buffer that grew past this is given back after the message, so an idle
/// connection does not keep a large allocation.
const BODY_KEEP_CAPACITY: usize = 256 * 1024;

/// Where to keep messages (`--store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `maildir:DIR`.
    Maildir(PathBuf),
    /// `eml:DIR`.
    Eml(PathBuf),
    /// `jsonl:FILE`.
    Jsonl(PathBuf),
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<StoreSpec, String> {
        let (kind, path) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: expected maildir:DIR, eml:DIR or jsonl:FILE"))?;
        if path.is_empty() {
            return Err(format!("{text:?}: the path is empty"));
        }
        let path = PathBuf::from(path);
        match kind {
            "maildir" => Ok(StoreSpec::Maildir(path)),
            "eml" => Ok(StoreSpec::Eml(path)),
            "jsonl" => Ok(StoreSpec::Jsonl(path)),
            _ => Err(format!(
                "{text:?}: unknown store {kind:?} (maildir, eml or jsonl)"
            )),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Maildir(p) => write!(f, "maildir:{}", p.display()),
            StoreSpec::Eml(p) => write!(f, "eml:{}", p.display()),
            StoreSpec::Jsonl(p) => write!(f, "jsonl:{}", p.display()),
        }
    }
}

/// An opened store.
#[derive(Debug)]
enum Target {
    Maildir(maildir::Maildir),
    Eml(eml::EmlDir),
    Jsonl(jsonl::JsonLines),
}

impl Target {
    fn open(spec: &StoreSpec, hostname: &str) -> io::Result<Target> {
        let opened = match spec {
            StoreSpec::Maildir(dir) => maildir::Maildir::open(dir, hostname).map(Target::Maildir),
            StoreSpec::Eml(dir) => eml::EmlDir::open(dir).map(Target::Eml),
            StoreSpec::Jsonl(file) => jsonl::JsonLines::open(file).map(Target::Jsonl),
        };
        opened.map_err(|e| io::Error::new(e.kind(), format!("--store {spec}: {e}")))
    }

    fn store_batch(&self, jobs: &[Job], ok: &mut [bool]) {
        match self {
            Target::Maildir(t) => t.store_batch(jobs, ok),
            Target::Eml(t) => t.store_batch(jobs, ok),
            Target::Jsonl(t) => t.store_batch(jobs, ok),
        }
    }

    /// Opens again what the store keeps open by path (log rotation): only a JSON-lines file;
    /// Maildir and `.eml` open each file by name as they write it. Whether there was one.
    fn reopen(&self) -> io::Result<bool> {
        match self {
            Target::Jsonl(t) => t.reopen().map(|()| true),
            Target::Maildir(_) | Target::Eml(_) => Ok(false),
        }
    }
}

/// `fsync` a directory, making the entries created in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes the contents of `files` (all on one filesystem: a store's own directory) durable.
///
/// One `syncfs` flushes them all with a single journal commit, where an `fdatasync` per
/// file costs one commit each: this is where group commit pays most for Maildir and `.eml`
/// (new files, so every `fdatasync` has metadata to commit). If `syncfs` is refused, each
/// file is synced on its own.
#[allow(unsafe_code)]
pub(crate) fn sync_files(files: &[&File]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let Some(first) = files.first() else {
        return Ok(());
    };
    if files.len() > 1 {
        // SAFETY: syncfs takes a file descriptor and touches no memory of ours; `first` is
        // an open file for the duration of the call.
        if unsafe { libc::syncfs(first.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    files.iter().try_for_each(|file| file.sync_data())
}

/// Outcomes for one worker, and the waker of its event loop.
#[derive(Debug)]
pub struct Completions {
    /// `(connection key, connection id, stored)` not yet picked up by the worker.
    done: Mutex<Vec<(usize, u64, bool)>>,
    /// Wakes the worker's `poll`.
    waker: Arc<Waker>,
}

impl Completions {
    /// A queue that wakes the loop behind `waker`.
    pub fn new(waker: Arc<Waker>) -> Completions {
        Completions {
            done: Mutex::new(Vec::new()),
            waker,
        }
    }

    /// Reports one outcome; wakes the worker if it was not already due to look.
    fn report(&self, key: usize, id: u64, stored: bool) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        let was_empty = done.is_empty();
        done.push((key, id, stored));
        drop(done);
        if was_empty {
            // A failed wake means the worker is gone; its connections are gone too.
            let _ = self.waker.wake();
        }
    }

    /// Moves every reported outcome into `into` (which the worker reuses).
    pub fn take_into(&self, into: &mut Vec<(usize, u64, bool)>) {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        into.append(&mut done);
    }
}

/// Whom to tell when a job is done.
#[derive(Debug, Clone)]
pub struct Notify {
    /// The worker's queue.
    pub completions: Arc<Completions>,
    /// The connection's slab key.
    pub key: usize,
    /// The connection's id (keys are reused; ids are not).
    pub id: u64,
}

/// One message for the storage threads.
#[derive(Debug)]
pub struct Job {
    /// The envelope and identity.
    pub meta: MessageMeta,
    /// The content, exactly as received after dot-unstuffing.
    pub body: Vec<u8>,
    /// Whom to tell.
    pub notify: Notify,
    /// When the session handed it over (for the store-latency metric).
    pub submitted: std::time::Instant,
}

/// The storage threads and the stores they write.
#[derive(Debug)]
pub struct StoreHub {
    /// Where sinks send jobs (taken at [`StoreHub::finish`]).
    sender: Mutex<Option<Sender<Job>>>,
    /// The threads.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Time from hand-over to verdict, and failures.
    pub latency: Arc<StoreLatency>,
    /// The stores the threads write (kept here too for [`StoreHub::reopen`]).
    targets: Arc<Vec<Target>>,
}

impl StoreHub {
    /// Opens every store (creating directories and files; an error names the store) and
    /// starts `threads` storage threads. `None` when there is nothing to store.
    pub fn start(
        specs: &[StoreSpec],
        threads: usize,
        max_batch: usize,
        hostname: &str,
    ) -> io::Result<Option<Arc<StoreHub>>> {
        if specs.is_empty() {
            return Ok(None);
        }
        let targets: Arc<Vec<Target>> = Arc::new(
            specs
                .iter()
                .map(|spec| Target::open(spec, hostname))
                .collect::<io::Result<_>>()?,
        );
        let latency = Arc::new(StoreLatency::default());
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads.max(1) {
            let targets = Arc::clone(&targets);
            let receiver = Arc::clone(&receiver);
            let latency = Arc::clone(&latency);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("fastsmtpd-store-{index}"))
                    .spawn(move || {
                        storage_thread(&receiver, &targets, max_batch.max(1), &latency)
                    })?,
            );
        }
        Ok(Some(Arc::new(StoreHub {
            sender: Mutex::new(Some(sender)),
            threads: Mutex::new(handles),
            latency,
            targets,
        })))
    }

    /// A sender for a new connection's sink (`None` once finishing).
    fn sender(&self) -> Option<Sender<Job>> {
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Opens every JSON-lines file again (log rotation: SIGHUP), creating it if missing;
    /// Maildir and `.eml` need nothing. Tries them all; returns how many were reopened, or
    /// the first error (a store that failed answers `451 4.3.0` until a batch can open it).
    pub fn reopen(&self) -> io::Result<usize> {
        let mut reopened = 0;
        let mut first_error = None;
        for target in self.targets.iter() {
            match target.reopen() {
                Ok(was_open) => reopened += usize::from(was_open),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(reopened), Err)
    }

    /// After the workers are gone: lets the threads store what is queued, then joins them.
    pub fn finish(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

/// Takes batches of jobs until every sender is gone, stores them, reports the outcomes.
fn storage_thread(
    receiver: &Mutex<Receiver<Job>>,
    targets: &[Target],
    max_batch: usize,
    latency: &StoreLatency,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut ok: Vec<bool> = Vec::with_capacity(max_batch);
    loop {
        {
            // Holding the lock while waiting is fine: the other threads would wait anyway.
            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
            match receiver.recv() {
                Ok(job) => batch.push(job),
                Err(_) => return, // every sender is gone and the queue is empty
            }
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        ok.clear();
        ok.resize(batch.len(), true);
        for target in targets {
            target.store_batch(&batch, &mut ok);
        }
        let done = std::time::Instant::now();
        for (job, stored) in batch.drain(..).zip(&ok) {
            latency.observe(done.saturating_duration_since(job.submitted), *stored);
            job.notify
                .completions
                .report(job.notify.key, job.notify.id, *stored);
        }
    }
}

/// The sink of one connection: discards, or buffers each message and sends it to the
/// storage threads. Discarding costs one pointer per connection (idle connections are
/// counted in the thousands); the storing state lives behind it.
#[derive(Debug)]
pub struct StoreSink {
    /// `None` to discard.
    storing: Option<Box<Storing>>,
}

/// What a storing connection keeps.
#[derive(Debug)]
struct Storing {
    /// Where jobs go (`None` once the storage threads are finishing).
    jobs: Option<Sender<Job>>,
    /// Whom the storage thread tells.
    notify: Notify,
    /// The client's address, for the records.
    client: SocketAddr,
    /// The content of the message being received.
    body: Vec<u8>,
}

impl StoreSink {
    /// A sink that keeps nothing.
    pub fn discard() -> StoreSink {
        StoreSink { storing: None }
    }

    /// A sink that stores through `hub`, reporting to `notify`.
    pub fn storing(hub: &StoreHub, notify: Notify, client: SocketAddr) -> StoreSink {
        StoreSink {
            storing: Some(Box::new(Storing {
                jobs: hub.sender(),
                notify,
                client,
                body: Vec::new(),
            })),
        }
    }
}

impl MessageSink for StoreSink {
    fn on_message_start(&mut self, _envelope: &Envelope<'_>) {
        if let Some(storing) = &mut self.storing {
            storing.body.clear();
        }
    }

    fn on_message_data(&mut self, piece: &[u8]) {
        if let Some(storing) = &mut self.storing {
            storing.body.extend_from_slice(piece);
        }
    }

    fn on_message_end(&mut self, envelope: &Envelope<'_>) -> Verdict {
        let Some(storing) = &mut self.storing else {
            return Verdict::Stored; // discard
        };
        let Some(jobs) = &storing.jobs else {
            return Verdict::Failed;
        };
        let job = Job {
            meta: MessageMeta::new(envelope, storing.client),
            body: std::mem::take(&mut storing.body),
            notify: storing.notify.clone(),
            submitted: std::time::Instant::now(),
        };
        match jobs.send(job) {
            Ok(()) => Verdict::Pending,
            // The storage threads are gone (shutting down): not stored.
            Err(_) => Verdict::Failed,
        }
    }

    fn on_message_abort(&mut self) {
        if let Some(storing) = &mut self.storing {
            storing.body.clear();
            if storing.body.capacity() > BODY_KEEP_CAPACITY {
                storing.body.shrink_to(BODY_KEEP_CAPACITY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_parse() {
        assert_eq!(
            "maildir:/var/mail/x".parse::<StoreSpec>(),
            Ok(StoreSpec::Maildir("/var/mail/x".into()))
        );
        assert_eq!(
            "jsonl:out.jsonl".parse::<StoreSpec>(),
            Ok(StoreSpec::Jsonl("out.jsonl".into()))
        );
        assert_eq!("eml:d".parse::<StoreSpec>(), Ok(StoreSpec::Eml("d".into())));
        assert!("mbox:x"
            .parse::<StoreSpec>()
            .unwrap_err()
            .contains("unknown store"));
        assert!("maildir:"
            .parse::<StoreSpec>()
            .unwrap_err()
            .contains("empty"));
        assert!("maildir".parse::<StoreSpec>().is_err());
        assert_eq!(
            "maildir:a:b".parse::<StoreSpec>().unwrap().to_string(),
            "maildir:a:b"
        );
    }
}
