//! The work waiting for the storage threads, and what the sinks and the threads share:
//! the queue of whole messages, each thread's queue of stream steps, the budget of bytes in
//! flight, and the pool of chunk buffers.
//!
//! What it does: [`Shared`] holds the queues under one lock with a condition variable the
//! idle threads wait on; a sink pushes a whole message (any thread takes it) or a stream step
//! (only the stream's thread); a thread gives each chunk back (budget released, buffer
//! recycled). [`Budget`] counts the bytes in flight against `--store-buffer` and wakes the
//! connections that waited for room, through their workers' mailboxes (`crate::wake`), once
//! the bytes in flight are down to three quarters of it (a quarter free).
//!
//! What it does not do: write anything (the storage thread does) or decide when a
//! connection reads (the sink asks [`Budget::has_room`]).

use super::record::MessageMeta;
use super::CHUNK_LEN;
use crate::lock::lock;
use crate::wake::{Notify, Wake};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Most free chunk buffers the pool keeps for reuse (4 MiB); more are freed.
const POOL_KEEP: usize = 64;

/// The bytes of message content in flight to the storage threads, against `--store-buffer`.
#[derive(Debug)]
pub(super) struct Budget {
    /// The most bytes in flight before readers stop.
    pub(super) limit: usize,
    /// Bytes (chunk buffer capacity) handed to the storage threads and not yet given back.
    pub(super) in_flight: AtomicUsize,
    /// Connections that found the budget spent, to be woken when it has room.
    pub(super) waiting: Mutex<Vec<Notify>>,
    /// Whether `waiting` may hold anyone (so a release looks at it only then).
    pub(super) anyone_waiting: AtomicBool,
}

impl Budget {
    /// Whether a reader may go on.
    pub(super) fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) < self.limit
    }

    /// `bytes` were handed to the storage threads.
    pub(super) fn charge(&self, bytes: usize) {
        self.in_flight.fetch_add(bytes, Ordering::SeqCst);
    }

    /// `bytes` were written (or dropped): once at most three quarters of the budget are in
    /// flight, every waiting connection is woken (not at every chunk: each wake-up then
    /// finds room for a quarter of the budget).
    pub(super) fn release(&self, bytes: usize) {
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
    pub(super) fn wait(&self, notify: &Notify) -> bool {
        let mut waiting = lock(&self.waiting);
        waiting.push(notify.clone());
        self.anyone_waiting.store(true, Ordering::SeqCst);
        drop(waiting);
        self.has_room()
    }
}

/// A message that ended within its first chunk, handed over whole.
#[derive(Debug)]
pub(super) struct Whole {
    /// The envelope and identity.
    pub(super) meta: MessageMeta,
    /// The content, exactly as received after dot-unstuffing (a pool buffer).
    pub(super) body: Vec<u8>,
    /// Whom to tell.
    pub(super) notify: Notify,
    /// When the session handed it over (for the store-latency metric).
    pub(super) submitted: Instant,
}

/// One step of a streamed message, for the storage thread that owns the stream.
#[derive(Debug)]
pub(super) enum StreamOp {
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
pub(super) struct Queues {
    /// Whole messages: any thread takes them, before stream chunks.
    pub(super) whole: VecDeque<Whole>,
    /// Each thread's streams, in order.
    pub(super) streams: Vec<VecDeque<StreamOp>>,
    /// No more work will come (the workers are gone): finish what is queued, then exit.
    pub(super) closing: bool,
    /// Storage threads waiting for work (so a push wakes one only if one sleeps).
    pub(super) idle: usize,
}

/// What sinks and storage threads share.
#[derive(Debug)]
pub(super) struct Shared {
    /// The work.
    pub(super) queues: Mutex<Queues>,
    /// Signalled when work is queued (or closing begins).
    pub(super) work: Condvar,
    /// Bytes in flight.
    pub(super) budget: Budget,
    /// Free chunk buffers.
    pub(super) pool: Mutex<Vec<Vec<u8>>>,
    /// Streams being written now (so a batch's sync knows whether `syncfs` would wait for
    /// their data).
    pub(super) open_streams: AtomicUsize,
    /// Id of the next stream.
    pub(super) next_stream: AtomicU64,
    /// The thread for the next stream (taken in turn).
    pub(super) next_thread: AtomicUsize,
    /// How many storage threads there are.
    pub(super) threads: usize,
    /// Messages go to the relay's spool too: the sinks count `Received:` fields (RFC 5321
    /// §6.3) and refuse a loop.
    pub(super) relay: bool,
}

impl Shared {
    /// A chunk buffer: a free one, or a new one.
    pub(super) fn take_buffer(&self) -> Vec<u8> {
        lock(&self.pool)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_LEN))
    }

    /// Gives a chunk buffer back: to the pool, or freed if the pool is full.
    pub(super) fn recycle(&self, mut buffer: Vec<u8>) {
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
    pub(super) fn give_back(&self, buffer: Vec<u8>) {
        self.budget.release(buffer.capacity());
        self.recycle(buffer);
    }

    /// Queues a whole message. `false` if the storage threads are finishing.
    pub(super) fn push_whole(&self, whole: Whole) -> bool {
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
    pub(super) fn push_op(&self, thread: usize, op: StreamOp) -> bool {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::wake::{Letter, Mailbox};
    use std::sync::Arc;

    pub(in crate::store) fn mailbox() -> (mio::Poll, Arc<Mailbox>) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        (poll, Arc::new(Mailbox::new(waker)))
    }

    /// The connections woken for budget room, as `(key, id)`.
    pub(in crate::store) fn budget_room(mailbox: &Mailbox) -> Vec<(usize, u64)> {
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
        budget.release(50); // 350 in flight: room, but not yet down to three quarters
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
}
