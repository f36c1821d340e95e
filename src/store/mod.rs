//! Keeping mail: Maildir, `.eml` files and JSON lines, written durably on storage threads.
//!
//! What it does: [`StoreSink`] is the sink every connection uses. It names every message as
//! it begins (`record::next_queue_id`: the id the `250` reply, the records and the file
//! names carry), kept or not. With no store configured it discards (and allocates nothing). With stores, it streams the message content (already
//! dot-unstuffed; BDAT octets as they came) to the storage threads in chunks of
//! [`CHUNK_LEN`] bytes as it arrives, in buffers recycled through a pool; at the end it
//! answers [`Verdict::Pending`]: the session holds the `250` until the storage thread
//! reports that every store has the message on disk (RFC 5321 §4.1.1.4: `250` means we took
//! responsibility). The thread reports through the worker's [`Mailbox`](crate::wake::Mailbox) queue and wakes
//! its event loop; disk I/O never runs on an event loop.
//!
//! How chunks flow: a message that ends within its first chunk (most mail) goes to the
//! storage threads whole, on a queue every thread serves first. A longer message becomes a
//! stream: its chunks go, in order, to the queue of one storage thread (chosen in turn when
//! it starts), which writes each to the message's temporary files as it comes (and hashes it,
//! for the records) and gives the buffer back. A thread looks at the queue of whole messages
//! between every [`STREAM_OPS_PER_TURN`] chunks, so a small message waits behind at most
//! that much writing, never behind a whole large message.
//!
//! Group commit: when messages are complete (whole ones written, streams ended), the thread
//! makes all of them durable together (up to `--store-batch`, [`DEFAULT_MAX_BATCH`], whole
//! messages taken at once): for Maildir and `.eml`, one `syncfs` for the batch's files (one
//! `fdatasync` each while streams are being written, so a small message does not wait for
//! other messages' unfinished data; see `sync_files`) and one directory `fsync` for their
//! names; for JSON lines, one write and one `fdatasync` (none for a stream: standard output,
//! a FIFO, a device, which cannot be made durable and are committed after every other store,
//! see `jsonl`). With several threads, one batch syncs while the next gathers. Maildir files
//! get LF line ends, converted chunk by chunk as the content is written (`maildir`).
//!
//! The budget (`--store-buffer`, [`DEFAULT_STORE_BUFFER`]): chunks handed to the storage
//! threads and not yet written count against one budget for the whole server. While it is
//! spent, a connection receiving message content reads nothing more ([`StoreSink::may_read`]):
//! TCP flow control holds the sender back, and no client is ever failed for it. The storage
//! thread that frees enough of it (down to three quarters) wakes the waiting connections'
//! workers through the same [`Mailbox`](crate::wake::Mailbox) queue and waker as store outcomes.
//!
//! What it does not do: decide replies (the session does) or retry: a failed store is
//! `451 4.3.0` and the client retries.
//!
//! Memory: chunks in flight stay under the budget, plus at most one read (the worker's
//! scratch buffer, 64 KiB) per worker, since every worker checks the budget before each read
//! of message content (and input a connection had already read and kept while its previous
//! message's reply was pending, at most one read each, goes on without a second check). Besides, a connection receiving a message keeps the one chunk it is
//! filling ([`CHUNK_LEN`]), and a stream on its storage thread keeps the start of its header
//! section for the records (`record::MAX_HEADER_KEEP`). No message is ever held whole. When
//! no stream is open any more, an idle storage thread gives freed memory back to the system
//! (`malloc_trim`), so a burst of large messages does not leave the process at its peak.

mod commit;
pub mod eml;
pub mod jsonl;
pub mod maildir;
pub mod record;
mod rfc2047;

use crate::lock::{lock, wait};
use crate::metrics::StoreLatency;
use crate::proto::envelope::Envelope;
use crate::proto::sink::{MessageSink, QueueId, Verdict};
use crate::wake::{Notify, Wake};
use commit::Staged;
use record::{ContentDigest, MessageMeta};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

/// Most messages one storage thread makes durable together, by default (`--store-batch`).
pub const DEFAULT_MAX_BATCH: usize = 256;
/// Bytes of message content in flight to the storage threads, by default (`--store-buffer`).
pub const DEFAULT_STORE_BUFFER: usize = 64 * 1024 * 1024;
/// The smallest `--store-buffer`: one chunk.
pub const MIN_STORE_BUFFER: usize = CHUNK_LEN;
/// The size of the buffers message content travels in to the storage threads.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Chunks of streamed messages a storage thread writes between looks at the queue of whole
/// (small) messages: a small message waits behind at most this much writing.
pub const STREAM_OPS_PER_TURN: usize = 16;
/// Most free chunk buffers the pool keeps for reuse (4 MiB); more are freed.
const POOL_KEEP: usize = 64;

/// Where to keep messages (`--store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `maildir:DIR`.
    Maildir(PathBuf),
    /// `eml:DIR`.
    Eml(PathBuf),
    /// `jsonl:FILE`.
    Jsonl(PathBuf),
    /// `jsonl:-`: standard output (a stream, not durable; a file named `-` is `jsonl:./-`).
    JsonlStdout,
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
        if kind == "jsonl" && path == "-" {
            return Ok(StoreSpec::JsonlStdout);
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
            StoreSpec::JsonlStdout => f.write_str("jsonl:-"),
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
            StoreSpec::JsonlStdout => jsonl::JsonLines::stdout().map(Target::Jsonl),
        };
        opened.map_err(|e| io::Error::new(e.kind(), format!("--store {spec}: {e}")))
    }

    /// Whether the store writes a JSON record (and so needs the content's digest).
    fn needs_record(&self) -> bool {
        matches!(self, Target::Eml(_) | Target::Jsonl(_))
    }

    /// Opens again what the store keeps open by path (log rotation): only a JSON-lines file;
    /// Maildir and `.eml` open each file by name as they write it. Whether there was one.
    fn reopen(&self) -> io::Result<bool> {
        match self {
            Target::Jsonl(t) => t.reopen(),
            Target::Maildir(_) | Target::Eml(_) => Ok(false),
        }
    }

    /// Whether the store writes to a stream (standard output, a FIFO, a device): nothing it
    /// wrote can be taken back or made durable.
    fn is_stream(&self) -> bool {
        matches!(self, Target::Jsonl(t) if t.is_stream())
    }

    /// For a store of one file per message (Maildir, `.eml`): the directory its messages are
    /// renamed into (synced once per batch).
    fn final_dir(&self) -> Option<&Path> {
        match self {
            Target::Maildir(t) => Some(t.final_dir()),
            Target::Eml(t) => Some(t.final_dir()),
            Target::Jsonl(_) => None,
        }
    }

    /// Says what went wrong, naming the store; the client sees only `451 4.3.0`.
    fn report(&self, error: &io::Error) {
        match self {
            Target::Maildir(t) => t.report(error),
            Target::Eml(t) => t.report(error),
            Target::Jsonl(t) => t.report(error),
        }
    }
}

/// `fsync` a directory, making the entries created in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory that holds `path` (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates `dir` and every missing parent (as `mkdir -p` does), then syncs the parent of
/// each directory it created, so their names survive a crash before anything in them is
/// confirmed. Every store does this at start (`maildir:` and `eml:` for their directories,
/// `jsonl:` for its file's), and only then: a directory removed while the server runs is a
/// failure (`451 4.3.0`), not something to create again.
pub(crate) fn create_dir_all_durably(dir: &Path) -> io::Result<()> {
    refuse_non_directory_ancestor(dir)?;
    let mut created = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at {
        if path.as_os_str().is_empty() || path.exists() {
            break;
        }
        created.push(path);
        at = path.parent();
    }
    std::fs::create_dir_all(dir)?;
    created
        .iter()
        .try_for_each(|path| sync_dir(parent_dir(path)))
}

/// Refuses `dir` when it, or one of its parents, exists but is not a directory, naming that
/// path: the same clear error for every store, where `mkdir -p` would say `File exists` or
/// `Not a directory` depending on where the file sits.
fn refuse_non_directory_ancestor(dir: &Path) -> io::Result<()> {
    let mut ancestors: Vec<&Path> = dir
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    ancestors.reverse();
    for path in ancestors {
        // Follows symbolic links, as creating and opening beneath the path does.
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                let kind = describe_file_type(&meta.file_type());
                return Err(io::Error::new(
                    io::Error::from_raw_os_error(libc::ENOTDIR).kind(),
                    format!("{} is {kind}, not a directory", path.display()),
                ));
            }
            // Missing (created next), or not for us to judge here: creating says why.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// What a file that is not a directory is, for messages.
fn describe_file_type(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "neither a file nor a directory"
    }
}

/// Makes the contents of `files` (all on one filesystem: a store's own directory) durable.
///
/// With `whole_fs`, one `syncfs` flushes them all with a single journal commit, where an
/// `fdatasync` per file costs one commit each: this is where group commit pays most for
/// Maildir and `.eml` (new files, so every `fdatasync` has metadata to commit). But `syncfs`
/// also waits for every other dirty file on the filesystem, so while large messages are being
/// streamed to disk the caller asks for one `fdatasync` per file instead. If `syncfs` is
/// refused, each file is synced on its own.
#[allow(unsafe_code)]
pub(crate) fn sync_files(files: &[&File], whole_fs: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let Some(first) = files.first() else {
        return Ok(());
    };
    if whole_fs && files.len() > 1 {
        // SAFETY: syncfs takes a file descriptor and touches no memory of ours; `first` is
        // an open file for the duration of the call.
        if unsafe { libc::syncfs(first.as_raw_fd()) } == 0 {
            return Ok(());
        }
    }
    files.iter().try_for_each(|file| file.sync_data())
}

/// The bytes of message content in flight to the storage threads, against `--store-buffer`.
#[derive(Debug)]
struct Budget {
    /// The most bytes in flight before readers stop.
    limit: usize,
    /// Bytes (chunk buffer capacity) handed to the storage threads and not yet given back.
    in_flight: AtomicUsize,
    /// Connections that found the budget spent, to be woken when it has room.
    waiting: Mutex<Vec<Notify>>,
    /// Whether `waiting` may hold anyone (so a release looks at it only then).
    anyone_waiting: AtomicBool,
}

impl Budget {
    /// Whether a reader may go on.
    fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) < self.limit
    }

    /// `bytes` were handed to the storage threads.
    fn charge(&self, bytes: usize) {
        self.in_flight.fetch_add(bytes, Ordering::SeqCst);
    }

    /// `bytes` were written (or dropped): once at most three quarters of the budget are in
    /// flight, every waiting connection is woken (not at every chunk: each wake-up then
    /// finds room for a quarter of the budget).
    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let now = self.in_flight.fetch_sub(bytes, Ordering::SeqCst) - bytes;
        if now <= self.limit - self.limit / 4 && self.anyone_waiting.load(Ordering::SeqCst) {
            let mut waiting = lock(&self.waiting);
            self.anyone_waiting.store(false, Ordering::SeqCst);
            for notify in waiting.drain(..) {
                notify.send(Wake::BudgetRoom);
            }
        }
    }

    /// Registers `notify` to be woken, then looks again: `true` if there is room after all.
    /// (All sequentially consistent: a release either sees `anyone_waiting`, set after the
    /// registration, or its decrement came before the second look.)
    fn wait(&self, notify: &Notify) -> bool {
        let mut waiting = lock(&self.waiting);
        waiting.push(notify.clone());
        self.anyone_waiting.store(true, Ordering::SeqCst);
        drop(waiting);
        self.has_room()
    }
}

/// A message that ended within its first chunk, handed over whole.
#[derive(Debug)]
struct Whole {
    /// The envelope and identity.
    meta: MessageMeta,
    /// The content, exactly as received after dot-unstuffing (a pool buffer).
    body: Vec<u8>,
    /// Whom to tell.
    notify: Notify,
    /// When the session handed it over (for the store-latency metric).
    submitted: Instant,
}

/// One step of a streamed message, for the storage thread that owns the stream.
#[derive(Debug)]
enum StreamOp {
    /// A message begins: open its files.
    Start {
        /// The stream.
        stream: u64,
        /// The envelope and identity.
        meta: Box<MessageMeta>,
    },
    /// The next chunk of content (a pool buffer).
    Data {
        /// The stream.
        stream: u64,
        /// The bytes.
        chunk: Vec<u8>,
    },
    /// The last chunk (possibly empty): finish and commit, then tell `notify`.
    End {
        /// The stream.
        stream: u64,
        /// The bytes.
        chunk: Vec<u8>,
        /// Whom to tell.
        notify: Notify,
        /// When the session handed it over.
        submitted: Instant,
    },
    /// The message will not be kept: remove what was written.
    Abort {
        /// The stream.
        stream: u64,
    },
}

/// The work waiting for the storage threads.
#[derive(Debug)]
struct Queues {
    /// Whole messages: any thread takes them, before stream chunks.
    whole: VecDeque<Whole>,
    /// Each thread's streams, in order.
    streams: Vec<VecDeque<StreamOp>>,
    /// No more work will come (the workers are gone): finish what is queued, then exit.
    closing: bool,
    /// Storage threads waiting for work (so a push wakes one only if one sleeps).
    idle: usize,
}

/// What sinks and storage threads share.
#[derive(Debug)]
struct Shared {
    /// The work.
    queues: Mutex<Queues>,
    /// Signalled when work is queued (or closing begins).
    work: Condvar,
    /// Bytes in flight.
    budget: Budget,
    /// Free chunk buffers.
    pool: Mutex<Vec<Vec<u8>>>,
    /// Streams being written now (so a batch's sync knows whether `syncfs` would wait for
    /// their data).
    open_streams: AtomicUsize,
    /// Id of the next stream.
    next_stream: AtomicU64,
    /// The thread for the next stream (taken in turn).
    next_thread: AtomicUsize,
    /// How many storage threads there are.
    threads: usize,
}

impl Shared {
    /// A chunk buffer: a free one, or a new one.
    fn take_buffer(&self) -> Vec<u8> {
        lock(&self.pool)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_LEN))
    }

    /// Gives a chunk buffer back: to the pool, or freed if the pool is full.
    fn recycle(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() != CHUNK_LEN {
            return;
        }
        buffer.clear();
        let mut pool = lock(&self.pool);
        if pool.len() < POOL_KEEP {
            pool.push(buffer);
        }
    }

    /// A chunk buffer was handed to a storage thread and is done with: its budget is freed
    /// and the buffer recycled.
    fn give_back(&self, buffer: Vec<u8>) {
        self.budget.release(buffer.capacity());
        self.recycle(buffer);
    }

    /// Queues a whole message. `false` if the storage threads are finishing.
    fn push_whole(&self, whole: Whole) -> bool {
        let mut queues = lock(&self.queues);
        if queues.closing {
            return false;
        }
        self.budget.charge(whole.body.capacity());
        queues.whole.push_back(whole);
        let idle = queues.idle > 0;
        drop(queues);
        if idle {
            // Any thread may take it.
            self.work.notify_one();
        }
        true
    }

    /// Queues a stream step for `thread`. `false` if the storage threads are finishing.
    fn push_op(&self, thread: usize, op: StreamOp) -> bool {
        let mut queues = lock(&self.queues);
        if queues.closing {
            return false;
        }
        if let StreamOp::Data { chunk, .. } | StreamOp::End { chunk, .. } = &op {
            self.budget.charge(chunk.capacity());
        }
        queues.streams[thread].push_back(op);
        let idle = queues.idle > 0;
        drop(queues);
        if idle {
            // Only `thread` may take it, and the threads share one condition variable.
            self.work.notify_all();
        }
        true
    }
}

/// The storage threads and the stores they write.
#[derive(Debug)]
pub struct StoreHub {
    /// The queues, budget and pool shared with the sinks.
    shared: Arc<Shared>,
    /// The threads.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Time from hand-over to verdict, and failures.
    pub latency: Arc<StoreLatency>,
    /// The stores the threads write (kept here too for [`StoreHub::reopen`]).
    targets: Arc<Vec<Target>>,
    /// The stores that write to a stream, as given (see [`StoreHub::not_durable`]).
    not_durable: Vec<String>,
}

impl StoreHub {
    /// Opens every store (creating directories and files; an error names the store) and
    /// starts `threads` storage threads, with `buffer` bytes of content in flight at most
    /// (`--store-buffer`). `None` when there is nothing to store.
    pub fn start(
        specs: &[StoreSpec],
        threads: usize,
        max_batch: usize,
        buffer: usize,
        hostname: &str,
    ) -> io::Result<Option<Arc<StoreHub>>> {
        if specs.is_empty() {
            return Ok(None);
        }
        let targets: Vec<Target> = specs
            .iter()
            .map(|spec| Target::open(spec, hostname))
            .collect::<io::Result<_>>()?;
        let streams: Vec<String> = specs
            .iter()
            .zip(&targets)
            .filter(|(_, target)| target.is_stream())
            .map(|(spec, _)| spec.to_string())
            .collect();
        if streams.len() > 1 {
            // A stream cannot take a line back: had a second stream refused a message whose
            // line the first had emitted, the client would be told 451 for a record it can
            // see (and its retry would show it twice).
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--store {}: at most one store may write to a stream (standard output, a FIFO or a device)",
                    streams.join(", --store ")
                ),
            ));
        }
        let not_durable = streams;
        let targets = Arc::new(targets);
        let threads = threads.max(1);
        let latency = Arc::new(StoreLatency::default());
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues {
                whole: VecDeque::new(),
                streams: (0..threads).map(|_| VecDeque::new()).collect(),
                closing: false,
                idle: 0,
            }),
            work: Condvar::new(),
            budget: Budget {
                limit: buffer.max(MIN_STORE_BUFFER),
                in_flight: AtomicUsize::new(0),
                waiting: Mutex::new(Vec::new()),
                anyone_waiting: AtomicBool::new(false),
            },
            pool: Mutex::new(Vec::new()),
            open_streams: AtomicUsize::new(0),
            next_stream: AtomicU64::new(0),
            next_thread: AtomicUsize::new(0),
            threads,
        });
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let thread = StorageThread {
                index,
                shared: Arc::clone(&shared),
                targets: Arc::clone(&targets),
                max_batch: max_batch.max(1),
                latency: Arc::clone(&latency),
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("fastsmtpd-store-{index}"))
                    .spawn(move || thread.run())?,
            );
        }
        Ok(Some(Arc::new(StoreHub {
            shared,
            threads: Mutex::new(handles),
            latency,
            targets,
            not_durable,
        })))
    }

    /// The stores that write to a stream (`jsonl:-`, a FIFO, a device), as given: not
    /// durable (a `250` means the line was written to the stream), for the start line.
    pub fn not_durable(&self) -> &[String] {
        &self.not_durable
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

    /// From `at` on (the end of the shutdown grace period), a write to a stream store that
    /// finds no room gives up instead of waiting for its reader (see [`jsonl`]): the
    /// messages whose lines were not written get `451 4.3.0` and the storage threads can
    /// finish.
    pub fn give_up_streams_at(&self, at: std::time::Instant) {
        for target in self.targets.iter() {
            if let Target::Jsonl(jsonl) = target {
                jsonl.give_up_at(at);
            }
        }
    }

    /// Bytes of message content handed to the storage threads and not yet written.
    pub fn in_flight(&self) -> usize {
        self.shared.budget.in_flight.load(Ordering::SeqCst)
    }

    /// After the workers are gone: lets the threads store what is queued, then joins them.
    pub fn finish(&self) {
        lock(&self.shared.queues).closing = true;
        self.shared.work.notify_all();
        let handles = std::mem::take(&mut *lock(&self.threads));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

/// One store's part of a message being written.
#[derive(Debug)]
enum Part {
    /// The message's file (Maildir, `.eml`), under its temporary name.
    File(Staged),
    /// Nothing written before the end (JSON lines), or nothing left (after a failure).
    Nothing,
}

/// A message on its storage thread: its files being written, its digest being computed.
#[derive(Debug)]
struct Writing {
    /// The envelope and identity.
    meta: MessageMeta,
    /// One part per store, in the stores' order.
    parts: Vec<Part>,
    /// Size, hash and header fields for the records, when a store writes one.
    digest: Option<ContentDigest>,
    /// CR LF to LF for the Maildir files, when a Maildir store is configured.
    lf: Option<maildir::LfConverter>,
    /// A write failed: everything was removed, the message will be refused.
    failed: bool,
}

/// A message whose content is all written, waiting for its batch's commit.
#[derive(Debug)]
struct Finished {
    /// Whom to tell.
    notify: Notify,
    /// When the session handed it over.
    submitted: Instant,
    /// The files to commit, per store (empty for JSON lines).
    files: Vec<Vec<Staged>>,
    /// The JSON record and its newline, when a store writes one.
    record: Option<Vec<u8>>,
    /// Still on its way to being stored.
    ok: bool,
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
            let Part::File(file) = part else { continue };
            let bytes = match target {
                Target::Maildir(_) => lf_piece,
                Target::Eml(_) | Target::Jsonl(_) => piece,
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
struct StorageThread {
    /// Which of the stream queues is this thread's.
    index: usize,
    /// The queues, budget and pool.
    shared: Arc<Shared>,
    /// The stores.
    targets: Arc<Vec<Target>>,
    /// Most whole messages taken at once.
    max_batch: usize,
    /// Where store latencies go.
    latency: Arc<StoreLatency>,
}

impl StorageThread {
    /// Takes work until the queues close and are empty: whole messages first, then up to
    /// [`STREAM_OPS_PER_TURN`] stream steps; commits every message that became complete.
    fn run(self) {
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
            message.notify.send(Wake::Stored(stored));
        }
    }
}

/// The sink of one connection: discards, or streams each message to the storage threads.
/// Discarding costs one pointer per connection (idle connections are counted in the
/// thousands); the storing state lives behind it.
#[derive(Debug)]
pub struct StoreSink {
    /// `None` to discard.
    storing: Option<Box<Storing>>,
    /// The id of the message begun last (every message gets one, discarded or kept: the
    /// `250` names it, and `--log-sessions` shows that reply).
    id: Option<QueueId>,
}

/// What a storing connection keeps.
#[derive(Debug)]
struct Storing {
    /// The queues, budget and pool.
    shared: Arc<Shared>,
    /// Whom the storage thread tells.
    notify: Notify,
    /// The client's address, for the records.
    client: SocketAddr,
    /// The message being received, until its stream starts.
    meta: Option<MessageMeta>,
    /// The chunk being filled (no capacity when none is held).
    chunk: Vec<u8>,
    /// `(stream, thread)` once the message's first full chunk went out.
    stream: Option<(u64, usize)>,
    /// Registered with the budget to be woken (until [`StoreSink::on_budget`]).
    waiting_for_budget: Cell<bool>,
}

impl StoreSink {
    /// A sink that keeps nothing.
    pub fn discard() -> StoreSink {
        StoreSink {
            storing: None,
            id: None,
        }
    }

    /// A sink that stores through `hub`, reporting to `notify`.
    pub fn storing(hub: &StoreHub, notify: Notify, client: SocketAddr) -> StoreSink {
        StoreSink {
            storing: Some(Box::new(Storing {
                shared: Arc::clone(&hub.shared),
                notify,
                client,
                meta: None,
                chunk: Vec::new(),
                stream: None,
                waiting_for_budget: Cell::new(false),
            })),
            id: None,
        }
    }

    /// Whether the connection may read more message content now: always when discarding;
    /// with stores, while the budget of bytes in flight has room. When it has none, the
    /// connection is registered to be woken (through its worker's [`Mailbox`](crate::wake::Mailbox)) once the
    /// storage threads free enough of it; until then it should leave its input unread, so
    /// TCP flow control holds the sender back.
    pub fn may_read(&self) -> bool {
        let Some(storing) = &self.storing else {
            return true;
        };
        let budget = &storing.shared.budget;
        if budget.has_room() {
            return true;
        }
        if storing.waiting_for_budget.get() {
            return false; // a wake-up is registered or on its way
        }
        storing.waiting_for_budget.set(true);
        budget.wait(&storing.notify)
    }

    /// The wake-up for a budget wait arrived (a [`Wake::BudgetRoom`]): a
    /// later wait registers again.
    pub fn on_budget(&self) {
        if let Some(storing) = &self.storing {
            storing.waiting_for_budget.set(false);
        }
    }
}

impl Storing {
    /// Sends the full chunk: the first one starts the message's stream.
    fn send_chunk(&mut self) {
        let chunk = std::mem::take(&mut self.chunk);
        let (stream, thread) = match self.stream {
            Some(started) => started,
            None => {
                let stream = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
                let thread =
                    self.shared.next_thread.fetch_add(1, Ordering::Relaxed) % self.shared.threads;
                let Some(meta) = self.meta.take() else {
                    return self.shared.recycle(chunk); // no message started: nothing to keep
                };
                let meta = Box::new(meta);
                // If the threads are finishing, the end of the message will say so.
                let _ = self
                    .shared
                    .push_op(thread, StreamOp::Start { stream, meta });
                self.stream = Some((stream, thread));
                (stream, thread)
            }
        };
        if !self
            .shared
            .push_op(thread, StreamOp::Data { stream, chunk })
        {
            // Finishing: the buffer was not handed over (the message will be refused).
        }
    }

    /// Drops the message in progress: its chunk goes back to the pool, and a started
    /// stream is told to remove what it wrote.
    fn abandon(&mut self) {
        self.meta = None;
        if self.chunk.capacity() > 0 {
            self.shared.recycle(std::mem::take(&mut self.chunk));
        }
        if let Some((stream, thread)) = self.stream.take() {
            let _ = self.shared.push_op(thread, StreamOp::Abort { stream });
        }
    }
}

impl MessageSink for StoreSink {
    fn on_message_start(&mut self, envelope: &Envelope<'_>) {
        let received_at = SystemTime::now();
        let id = record::next_queue_id(received_at);
        self.id = Some(id);
        if let Some(storing) = &mut self.storing {
            storing.abandon(); // nothing, unless a message was left without an end
            storing.meta = Some(MessageMeta::new(envelope, storing.client, id, received_at));
        }
    }

    fn on_message_data(&mut self, mut piece: &[u8]) {
        let Some(storing) = &mut self.storing else {
            return;
        };
        while !piece.is_empty() {
            if storing.chunk.capacity() == 0 {
                storing.chunk = storing.shared.take_buffer();
            }
            let room = CHUNK_LEN - storing.chunk.len();
            let (now, later) = piece.split_at(room.min(piece.len()));
            storing.chunk.extend_from_slice(now);
            piece = later;
            if storing.chunk.len() == CHUNK_LEN {
                storing.send_chunk();
            }
        }
    }

    fn on_message_end(&mut self, envelope: &Envelope<'_>) -> Verdict {
        let Some(storing) = &mut self.storing else {
            return Verdict::Stored; // discard
        };
        let notify = storing.notify.clone();
        let submitted = Instant::now();
        let chunk = std::mem::take(&mut storing.chunk);
        let queued = match storing.stream.take() {
            // The whole message fits in one chunk: it goes whole, on the queue served first.
            None => {
                let meta = storing.meta.take().unwrap_or_else(|| {
                    // Cannot happen (every message starts first); named anew all the same.
                    let now = SystemTime::now();
                    let id = record::next_queue_id(now);
                    self.id = Some(id);
                    MessageMeta::new(envelope, storing.client, id, now)
                });
                storing.shared.push_whole(Whole {
                    meta,
                    body: chunk,
                    notify,
                    submitted,
                })
            }
            Some((stream, thread)) => storing.shared.push_op(
                thread,
                StreamOp::End {
                    stream,
                    chunk,
                    notify,
                    submitted,
                },
            ),
        };
        // RFC 5321 §4.1.1.4: the `250` waits for the storage thread's word that the message
        // is on disk; a message the threads will never see is refused now.
        if queued {
            Verdict::Pending
        } else {
            Verdict::Failed
        }
    }

    fn on_message_abort(&mut self) {
        if let Some(storing) = &mut self.storing {
            storing.abandon();
        }
    }

    fn queue_id(&self) -> Option<QueueId> {
        self.id
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        // A connection dropped mid-message leaves no temporary files behind.
        if let Some(storing) = &mut self.storing {
            storing.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wake::{Letter, Mailbox};

    fn mailbox() -> (mio::Poll, Arc<Mailbox>) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        (poll, Arc::new(Mailbox::new(waker)))
    }

    /// The connections woken for budget room, as `(key, id)`.
    fn budget_room(mailbox: &Mailbox) -> Vec<(usize, u64)> {
        let mut letters = Vec::new();
        mailbox.take_into(&mut letters);
        letters
            .iter()
            .map(|&Letter { key, id, wake }| {
                assert_eq!(wake, Wake::BudgetRoom);
                (key, id)
            })
            .collect()
    }

    #[test]
    fn a_spent_budget_stops_readers_until_three_quarters_are_free_then_wakes_each_once() {
        let (mut poll, mailbox) = mailbox();
        let notify = |key| Notify {
            mailbox: Arc::clone(&mailbox),
            key,
            id: key as u64 + 100,
        };
        let budget = Budget {
            limit: 400,
            in_flight: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
            anyone_waiting: AtomicBool::new(false),
        };
        budget.charge(399);
        assert!(budget.has_room());
        budget.charge(1);
        assert!(!budget.has_room());
        assert!(!budget.wait(&notify(1)));
        assert!(!budget.wait(&notify(2)));
        budget.release(50); // 350 in flight: room, but not yet three quarters free
        assert!(budget.has_room());
        assert!(budget_room(&mailbox).is_empty());
        budget.release(50); // 300: wake them all, once
        assert_eq!(budget_room(&mailbox), [(1, 101), (2, 102)]);
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "the worker's waker fired");
        budget.release(300);
        assert!(budget_room(&mailbox).is_empty(), "nobody waits any more");
    }

    #[test]
    fn a_sink_registers_once_per_wait_and_reads_again_after_the_wake_up() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-budget-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let specs = [StoreSpec::Jsonl(dir.join("m.jsonl"))];
        let hub = StoreHub::start(&specs, 1, 16, MIN_STORE_BUFFER, "h")
            .unwrap()
            .unwrap();
        let (_poll, mailbox) = mailbox();
        let notify = Notify {
            mailbox: Arc::clone(&mailbox),
            key: 3,
            id: 4,
        };
        let sink = StoreSink::storing(&hub, notify, "127.0.0.1:25".parse().unwrap());
        assert!(sink.may_read());
        assert!(StoreSink::discard().may_read());
        // The budget spent (as if chunks were on their way).
        hub.shared.budget.charge(MIN_STORE_BUFFER);
        assert!(!sink.may_read());
        assert!(!sink.may_read());
        assert_eq!(lock(&hub.shared.budget.waiting).len(), 1, "registered once");
        hub.shared.budget.release(MIN_STORE_BUFFER);
        assert_eq!(budget_room(&mailbox), [(3, 4)]);
        sink.on_budget();
        assert!(sink.may_read());
        hub.shared.budget.charge(MIN_STORE_BUFFER);
        assert!(!sink.may_read());
        assert_eq!(
            lock(&hub.shared.budget.waiting).len(),
            1,
            "registered again"
        );
        hub.shared.budget.release(MIN_STORE_BUFFER);
        drop(sink);
        hub.finish();
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
