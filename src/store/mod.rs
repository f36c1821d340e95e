//! Keeping mail: Maildir, `.eml` files and JSON lines, written durably on storage threads.
//!
//! What it does: [`StoreSink`] is the sink every connection uses. It names every message as
//! it begins (`record::next_queue_id`: the id the `250` reply, the records and the file
//! names carry), kept or not. With no store configured it discards (and allocates nothing). With stores, it streams the message content (already
//! dot-unstuffed; BDAT octets as they came) to the storage threads in chunks of
//! [`CHUNK_LEN`] bytes as it arrives, in buffers recycled through a pool; at the end it
//! answers [`Verdict::Pending`](crate::proto::sink::Verdict::Pending): the session holds the `250` until the storage thread
//! reports that every store has the message on disk (RFC 5321 §4.1.1.4: `250` means we took
//! responsibility). The thread posts the outcome to the worker's mailbox (`crate::wake`),
//! which wakes its event loop; disk I/O never runs on an event loop.
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
//! see `jsonl`). With several threads, one batch syncs while the next gathers. With the
//! relay's spool (`--spool`, [`crate::relay::queue`]), each message is gathered on its
//! thread with the relay's `Received:` line in front, and the batch is appended to the spool
//! and committed once, after the other durable stores (`commit`); a message the spool cannot
//! keep gets `452 4.3.1` (`crate::wake::Wake::Refused`) and is taken back from the others.
//! The sinks then also count each message's `Received:` fields and refuse a loop (`554
//! 5.4.6`, RFC 5321 §6.3) before anything is kept. Maildir files
//! get LF line ends, converted chunk by chunk as the content is written (`maildir`).
//!
//! The budget (`--store-buffer`, [`DEFAULT_STORE_BUFFER`]): chunks handed to the storage
//! threads and not yet written count against one budget for the whole server. While it is
//! spent, a connection receiving message content reads nothing more ([`StoreSink::may_read`]):
//! TCP flow control holds the sender back, and no client is ever failed for it. The storage
//! thread that frees enough of it (down to three quarters) wakes the waiting connections'
//! workers through the same mailbox and waker as store outcomes.
//!
//! What it does not do: decide replies (the session does) or retry: a failed store is
//! `451 4.3.0` and the client retries.
//!
//! Memory: chunks in flight stay under the budget, plus at most one read (the worker's
//! scratch buffer, 64 KiB) per worker, since every worker checks the budget before each read
//! of message content (and input a connection had already read and kept while its previous
//! message's reply was pending, at most one read each, goes on without a second check). Besides, a connection receiving a message keeps the one chunk it is
//! filling ([`CHUNK_LEN`]), and a stream on its storage thread keeps the start of its header
//! section for the records (`record::MAX_HEADER_KEEP`). The storage threads never hold a message whole (the
//! capture store does: `memory`, with its budget). When
//! no stream is open any more, an idle storage thread gives freed memory back to the system
//! (`malloc_trim`), so a burst of large messages does not leave the process at its peak.
//!
//! # Parts
//!
//! | module | job |
//! |---|---|
//! | `durable` | the filesystem steps every store shares: a staged file, syncing files and directories |
//! | `target` | what a store is: [`StoreSpec`], opening it |
//! | `queues` | the work for the storage threads, the budget of bytes in flight, the chunk pool |
//! | `thread` | one storage thread: writing each message's files, then the batch's commit |
//! | `sink` | [`StoreSink`], one connection's end: chunks out, `Pending`, the budget check |
//! | `memory` | the capture target (`--store memory`, `--api`): the content gathered, inserted into [`crate::capture::Capture`] before the `250` |
//! | `commit` | a batch made durable in every store or in none |
//! | [`reindex`] | at start, with `--api` over an `eml:DIR`: the messages already in `DIR` put into the capture (read back from sidecars and header blocks) |
//! | [`maildir`], [`eml`], [`jsonl`], [`record`] | each store's own format, and the JSON record |
//!
//! This file holds the [`StoreHub`]: it opens the stores and starts the threads.

mod commit;
mod durable;
pub mod eml;
pub mod jsonl;
pub mod maildir;
mod memory;
mod queues;
pub mod record;
pub mod reindex;
pub mod rfc2047;
mod sink;
mod target;
mod thread;

pub use memory::CaptureTarget;
pub use sink::StoreSink;
pub use target::StoreSpec;

use crate::lock::lock;
use crate::metrics::StoreLatency;
use queues::{Budget, Queues, Shared};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use target::Target;
use thread::StorageThread;

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

/// Where relayed mail goes: the relay's queue, and which recipients are relayed
/// (`--relay-domains`; `None`: every one).
#[derive(Debug)]
pub struct RelayInto {
    /// The spool shared with the delivery loop.
    pub queue: Arc<crate::relay::queue::RelayQueue>,
    /// The domains whose recipients are relayed.
    pub domains: Option<crate::relay::domains::RelayDomains>,
}

impl StoreHub {
    /// Opens every store (creating directories and files; an error names the store) and
    /// starts `threads` storage threads, with `buffer` bytes of content in flight at most
    /// (`--store-buffer`). With `spool` (the relay's, `--spool DIR`), every message with a
    /// recipient to relay is also appended to it (with those recipients only), in the same
    /// batch and under the same "every store or none" rule. `None` when there is nothing to
    /// store.
    pub fn start(
        specs: &[StoreSpec],
        threads: usize,
        max_batch: usize,
        buffer: usize,
        hostname: &str,
        spool: Option<RelayInto>,
    ) -> io::Result<Option<Arc<StoreHub>>> {
        // The capture store (`memory`) is kept by the sinks, not by these threads.
        let specs: Vec<&StoreSpec> = specs.iter().filter(|spec| spec.is_file()).collect();
        if specs.is_empty() && spool.is_none() {
            return Ok(None);
        }
        let mut targets: Vec<Target> = specs
            .iter()
            .copied()
            .map(|spec| Target::open(spec, hostname))
            .collect::<io::Result<_>>()?;
        let relay = spool.is_some();
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
        if relay && !streams.is_empty() {
            // A line written to a stream cannot be taken back when the spool's commit fails
            // after it (or the other way round): the "every store or none" rule would break.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--store {} with --spool: a stream (standard output, a FIFO or a device) cannot be kept beside the relay's spool; write the records to a file",
                    streams.join(", --store ")
                ),
            ));
        }
        if let Some(RelayInto { queue, domains }) = spool {
            let dir = queue.spool().dir().to_path_buf();
            targets.push(Target::Spool(target::SpoolTarget {
                queue,
                hostname: hostname.to_string(),
                dir,
                domains,
                said: std::sync::Mutex::new((None, 0)),
            }));
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
            relay,
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
