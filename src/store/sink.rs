//! The sink of one connection ([`StoreSink`]): discards, or streams each message to the
//! storage threads and answers `Pending` until they report, and/or keeps it in the capture
//! store (`super::memory`).
//!
//! What it does: name every message as it begins (`record::next_queue_id`); with stores,
//! fill a chunk buffer from the pool with the content as it comes and hand it over: whole
//! (a message that ends within its first chunk) or as a stream to one storage thread;
//! [`StoreSink::may_read`] says whether the budget of bytes in flight lets the connection
//! read more content (and registers it to be woken when it does not). With a capture store,
//! hand the content to its target too (`super::memory::Capturing`): alone, its insert is the
//! verdict; beside file stores, the message is inserted when they report success
//! ([`StoreSink::on_stores_done`], called before the session resumes).
//!
//! What it does not do: write files (the storage threads do) or choose replies (the session
//! does).

use super::memory::{CaptureTarget, Capturing};
use super::queues::{Shared, StreamOp, Whole};
use super::record::{self, MessageMeta};
use super::{StoreHub, CHUNK_LEN};
use crate::proto::envelope::Envelope;
use crate::proto::sink::{MessageSink, QueueId, Verdict};
use crate::relay::received::{ReceivedCounter, LOOP_REFUSAL};
use crate::wake::Notify;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The sink of one connection: discards, or streams each message to the storage threads.
/// Discarding costs one pointer per connection (idle connections are counted in the
/// thousands); the storing state lives behind it.
#[derive(Debug)]
pub struct StoreSink {
    /// `None`: no file store.
    storing: Option<Box<Storing>>,
    /// `None`: no capture store (with no file store either: discard).
    capturing: Option<Box<Capturing>>,
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
    /// Whether its mail may be relayed (`--relay-listen`).
    relays: bool,
    /// The message being received, until its stream starts.
    meta: Option<MessageMeta>,
    /// The chunk being filled (no capacity when none is held).
    chunk: Vec<u8>,
    /// `(stream, thread)` once the message's first full chunk went out.
    stream: Option<(u64, usize)>,
    /// Registered with the budget to be woken (until [`StoreSink::on_budget`]).
    waiting_for_budget: Cell<bool>,
    /// With the relay's spool: the `Received:` fields of the message's header block, counted
    /// as its content passes (RFC 5321 §6.3; more than 50 is refused `554 5.4.6`).
    received: Option<ReceivedCounter>,
}

impl StoreSink {
    /// A sink that keeps nothing.
    pub fn discard() -> StoreSink {
        StoreSink {
            storing: None,
            capturing: None,
            id: None,
        }
    }

    /// A sink that stores through `hub`, reporting to `notify`; with a relay, `relays` says
    /// whether the connection's mail may be relayed (its listener's, `--relay-listen`).
    pub fn storing(hub: &StoreHub, notify: Notify, client: SocketAddr, relays: bool) -> StoreSink {
        StoreSink {
            storing: Some(Box::new(Storing {
                shared: Arc::clone(&hub.shared),
                notify,
                client,
                relays,
                meta: None,
                chunk: Vec::new(),
                stream: None,
                waiting_for_budget: Cell::new(false),
                received: (hub.shared.relay && relays).then(ReceivedCounter::new),
            })),
            capturing: None,
            id: None,
        }
    }

    /// This sink, keeping every message in the capture store too (before its `250`; see
    /// `super::memory`), for a connection from `client` whose messages are at most
    /// `max_message_size` octets.
    pub fn capturing(
        mut self,
        target: &Arc<CaptureTarget>,
        client: SocketAddr,
        max_message_size: u64,
    ) -> StoreSink {
        self.capturing = Some(Box::new(Capturing::new(
            Arc::clone(target),
            client,
            max_message_size,
        )));
        self
    }

    /// The capture store this sink keeps messages in, if any (the connection records
    /// transcripts for it).
    pub fn capture(&self) -> Option<&std::sync::Arc<crate::capture::Capture>> {
        self.capturing.as_ref().map(|capturing| capturing.capture())
    }

    /// What the sink saw for the connection's transcript recorder in the last call into the
    /// session, if it keeps messages in a capture store (the recorder clears them).
    pub fn transcript_marks(&mut self) -> Option<&mut crate::capture::transcript::Marks> {
        self.capturing
            .as_mut()
            .map(|capturing| &mut capturing.marks)
    }

    /// The storage threads reported on the message this sink answered `Pending` for: with a
    /// capture store, the message goes into it now if `stored` (before the session is
    /// resumed, so before its `250` is queued), else it is dropped.
    pub fn on_stores_done(&mut self, stored: bool) {
        if let Some(capturing) = &mut self.capturing {
            capturing.on_stores_done(stored);
        }
    }

    /// Whether the connection may read more message content now: always when discarding;
    /// with stores, while the budget of bytes in flight has room. When it has none, the
    /// connection is registered to be woken (through its worker's mailbox, `crate::wake`) once the
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

    /// The wake-up for a budget wait arrived (a `Wake::BudgetRoom`): a
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
            storing.meta = Some(MessageMeta::new(
                envelope,
                storing.client,
                id,
                received_at,
                storing.relays,
            ));
            if let Some(received) = &mut storing.received {
                *received = ReceivedCounter::new();
            }
        }
        if let Some(capturing) = &mut self.capturing {
            capturing.start(envelope);
        }
    }

    fn on_message_data(&mut self, mut piece: &[u8]) {
        if let Some(capturing) = &mut self.capturing {
            capturing.data(piece);
        }
        let Some(storing) = &mut self.storing else {
            return;
        };
        if let Some(received) = &mut storing.received {
            received.on_data(piece);
        }
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
            return match (&mut self.capturing, self.id) {
                (Some(capturing), Some(id)) => capturing.keep(id, envelope),
                (Some(capturing), None) => {
                    // Cannot happen (every message starts first); named anew all the same.
                    let id = record::next_queue_id(SystemTime::now());
                    self.id = Some(id);
                    capturing.keep(id, envelope)
                }
                (None, _) => Verdict::Stored, // discard
            };
        };
        if storing.received.is_some_and(|received| received.is_loop()) {
            // RFC 5321 §6.3: a message that passed this many hosts is in a loop; refused
            // before anything is kept.
            storing.abandon();
            if let Some(capturing) = &mut self.capturing {
                capturing.abandon();
            }
            return Verdict::Refused(LOOP_REFUSAL);
        }
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
                    MessageMeta::new(envelope, storing.client, id, now, storing.relays)
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
        if !queued {
            if let Some(capturing) = &mut self.capturing {
                capturing.abandon();
            }
            return Verdict::Failed;
        }
        if let (Some(capturing), Some(id)) = (&mut self.capturing, self.id) {
            capturing.hold(id, envelope);
        }
        Verdict::Pending
    }

    fn on_content_end(&mut self, input_end: usize, octets: u64) {
        if let Some(capturing) = &mut self.capturing {
            capturing.marks.content_ends.push((input_end, octets));
        }
    }

    fn on_message_abort(&mut self) {
        if let Some(storing) = &mut self.storing {
            storing.abandon();
        }
        if let Some(capturing) = &mut self.capturing {
            capturing.abandon();
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
    use super::super::queues::tests::{budget_room, mailbox};
    use super::super::{StoreSpec, MIN_STORE_BUFFER};
    use super::*;
    use crate::lock::lock;

    #[test]
    fn a_sink_registers_once_per_wait_and_reads_again_after_the_wake_up() {
        let dir = std::env::temp_dir().join(format!("fastsmtpd-budget-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let specs = [StoreSpec::Jsonl(dir.join("m.jsonl"))];
        let hub = StoreHub::start(&specs, 1, 16, MIN_STORE_BUFFER, "h", None)
            .unwrap()
            .unwrap();
        let (_poll, mailbox) = mailbox();
        let notify = Notify {
            mailbox: Arc::clone(&mailbox),
            key: 3,
            id: 4,
        };
        let sink = StoreSink::storing(&hub, notify, "127.0.0.1:25".parse().unwrap(), true);
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
}
