//! The capture target of one connection's sink (`--store memory`, or `--api`): each
//! accepted message goes into the capture store ([`crate::capture::Capture`]) before its
//! `250` is written, so a client told `250 ... queued as <id>` can read `<id>` at once.
//!
//! What it does: gather the message's content (already dot-unstuffed) in one `Vec<u8>`,
//! reserved from the `SIZE=` the client declared (RFC 1870; at most `--max-message-size` and
//! at most [`RESERVE_MAX`], so a client cannot make the server reserve much by declaring much
//! and sending little), else grown as the content comes; at the end of the data make the
//! [`Arrival`] from it (the id is the one the `250` names) and either:
//!
//! - insert it at once (the capture store is the only store): its verdict is the reply,
//!   `250`, `452 4.3.1` (full, `--on-full tempfail`; RFC 3463 4.3.1 "mail system full"),
//!   `552 5.3.4` (larger than the whole budget; RFC 3463 5.3.4) or `451 4.3.0` (an id used
//!   twice: a bug); or
//! - hold it while the file stores write the message, and insert it when the storage thread
//!   reports success, before the session is resumed (so again before the `250` is queued);
//!   on failure it is dropped (the client gets `451` and retries: nothing was kept).
//!
//! With `--store eml:DIR` (and no `--store memory`; the server picks, `CaptureTarget::with_files`)
//! the `.eml` files are the bodies: a connection keeps only the first `HEADER_SCAN_MAX`
//! octets of the message (the header block the capture scans; only they count in flight)
//! and the whole length, and the held message is a `capture::Body::File` naming
//! `DIR/<id>.eml`, inserted once the files are durable. No body is ever buffered whole.
//!
//! With file stores the `250` is what they say: the files are the message's durable home and
//! the capture keeps a copy under its budget. A copy the capture refuses (full under
//! `--on-full tempfail`, or larger than its budget) is counted in its statistics
//! (`refused_full`, `refused_too_large`) and the client still gets `250`: the message is on
//! disk, and a `4yz` now would make the client send it again into the files. Checking the
//! capture's room before handing the message to the stores would not make this exact
//! (another connection can fill it meanwhile), so it is not done.
//!
//! Memory honesty: the budget charges the raw length, not the `Vec`'s capacity. So the
//! buffer is shrunk to its length before it becomes the `Bytes` (`Vec::shrink_to_fit`, which
//! the allocator does in place for a shrink, no copy; an exact-length `Vec` also becomes a
//! `Bytes` without a further allocation), and what the budget counts is what the heap holds.
//! Measured in `docs/benchmarks/2026-12-06-capture-ingest.md`.
//!
//! Memory in flight: a message being received costs its whole content on its connection
//! until its end (the capture keeps no chunked form). All connections together may hold at
//! most as much as the capture's budget ([`CaptureTarget`] counts it, one atomic add per
//! piece): a piece that would go beyond drops that message's buffer, and its end is answered
//! `452 4.3.1` ([`reply::CAPTURE_BUSY`]; the content is still read, as for an oversized
//! message), or `552 5.3.4` if the message alone is larger than the budget (it could never
//! be kept). These refusals are counted with the replies, not in the store's statistics. So hostile senders (many connections, each sending a large message slowly)
//! cannot make the server hold more than twice the budget, plus one read per connection.
//! Beside file stores such a message is stored in the files and answered by them; the
//! capture does not get its copy.
//!
//! What it does not do: write files (the storage threads do), choose the reply text (the
//! session does, from the [`Verdict`]) or evict (the capture store does, at insert).

use crate::capture::headers::HEADER_SCAN_MAX;
use crate::capture::transcript::Marks;
use crate::capture::{Arrival, Capture, ClientText, Inserted, Refused};
use crate::proto::envelope::Envelope;
use crate::proto::reply;
use crate::proto::sink::{QueueId, Verdict};
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The most a message's buffer reserves up front from its declared `SIZE=`: 1 MiB. Beyond,
/// it grows as content arrives (a declared size is a client's word, not yet bytes).
pub const RESERVE_MAX: u64 = 1 << 20;

/// The capture store as the connections feeding it see it: the store, and the octets of
/// messages still being received for it (bounded; see the module doc).
#[derive(Debug)]
pub struct CaptureTarget {
    /// The store.
    capture: Arc<Capture>,
    /// Octets held in the buffers of messages being received (or held for the file stores'
    /// word).
    in_flight: AtomicU64,
    /// The most they may hold together.
    max_in_flight: u64,
    /// `Some(DIR)`: the messages' bodies are the files `DIR/<id>.eml` of `--store eml:DIR`,
    /// and the capture keeps only their header blocks (see the module doc).
    files: Option<PathBuf>,
}

impl CaptureTarget {
    /// The target for `capture`, whose connections may hold `max_in_flight` octets of
    /// messages being received (the server gives the store's budget).
    pub fn new(capture: Arc<Capture>, max_in_flight: u64) -> CaptureTarget {
        CaptureTarget {
            capture,
            in_flight: AtomicU64::new(0),
            max_in_flight,
            files: None,
        }
    }

    /// This target, keeping of each message only its header block and the name of its file
    /// in `dir`, the directory of `--store eml:DIR` (see the module doc).
    pub fn with_files(self, dir: PathBuf) -> CaptureTarget {
        CaptureTarget {
            files: Some(dir),
            ..self
        }
    }

    /// The directory whose `.eml` files hold the messages' bodies, if they are there.
    pub fn files(&self) -> Option<&Path> {
        self.files.as_deref()
    }

    /// The store.
    pub fn capture(&self) -> &Arc<Capture> {
        &self.capture
    }

    /// Octets of messages being received for it now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Takes `len` octets of room in flight; `false` (nothing taken) if there is none.
    fn take(&self, len: u64) -> bool {
        let before = self.in_flight.fetch_add(len, Ordering::Relaxed);
        if before + len > self.max_in_flight {
            self.in_flight.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives back `len` octets taken.
    fn give_back(&self, len: u64) {
        self.in_flight.fetch_sub(len, Ordering::Relaxed);
    }
}

/// What a connection with a capture store keeps.
#[derive(Debug)]
pub(super) struct Capturing {
    /// The store and the count of octets in flight.
    target: Arc<CaptureTarget>,
    /// Octets this connection holds of that count (its buffer, or its held message).
    taken: u64,
    /// The message being received went beyond the room in flight: its content is dropped
    /// and its end answered with this (`452 4.3.1`; `552 5.3.4` if it alone is larger than
    /// the whole budget).
    over: Option<&'static [u8]>,
    /// The client's address as the envelope keeps it (made once per connection).
    client: ClientText,
    /// `--max-message-size`, bounding the reservation.
    max_message_size: u64,
    /// The content of the message being received (with file bodies: its first
    /// `HEADER_SCAN_MAX` octets).
    content: Vec<u8>,
    /// The octets of the message being received (all of them, kept or not).
    len: u64,
    /// A complete message waiting for the file stores' word.
    pending: Option<Arrival>,
    /// For the connection's transcript recorder (`crate::capture::transcript::Marks`).
    pub(super) marks: Marks,
}

impl Capturing {
    /// A connection from `client` keeping messages in `capture`.
    pub(super) fn new(
        target: Arc<CaptureTarget>,
        client: SocketAddr,
        max_message_size: u64,
    ) -> Capturing {
        Capturing {
            target,
            taken: 0,
            over: None,
            client: ClientText::new(client),
            max_message_size,
            content: Vec::new(),
            len: 0,
            pending: None,
            marks: Marks::default(),
        }
    }

    /// The store.
    pub(super) fn capture(&self) -> &Arc<Capture> {
        self.target.capture()
    }

    /// A message begins: reserve for its declared size (none declared: nothing yet).
    pub(super) fn start(&mut self, envelope: &Envelope<'_>) {
        self.abandon();
        let reserve = envelope
            .params
            .size
            .unwrap_or(0)
            .min(self.max_message_size)
            .min(RESERVE_MAX)
            .min(self.keep_max());
        self.content = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
    }

    /// The most octets of a message this connection keeps: all, or the header block when
    /// the bodies are in files.
    fn keep_max(&self) -> u64 {
        match self.target.files {
            Some(_) => HEADER_SCAN_MAX as u64,
            None => u64::MAX,
        }
    }

    /// The next piece of content.
    pub(super) fn data(&mut self, piece: &[u8]) {
        self.len += piece.len() as u64;
        if self.over.is_some() {
            return;
        }
        // With file bodies only the header block is kept (and counted in flight).
        let room = self.keep_max().saturating_sub(self.content.len() as u64);
        let piece = &piece[..piece.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        if piece.is_empty() {
            return;
        }
        let len = piece.len() as u64;
        let refusal = if self.taken + len > self.target.max_in_flight {
            // It alone is larger than the budget: it could never be kept.
            Some(reply::CAPTURE_TOO_BIG)
        } else if !self.target.take(len) {
            Some(reply::CAPTURE_BUSY)
        } else {
            None
        };
        if refusal.is_some() {
            // This message is dropped here (module doc).
            self.abandon();
            self.over = refusal;
            return;
        }
        self.taken += len;
        self.content.extend_from_slice(piece);
    }

    /// The message will not be kept: its buffer, or its held message, and its room in
    /// flight go.
    pub(super) fn abandon(&mut self) {
        self.content = Vec::new();
        self.len = 0;
        self.pending = None;
        self.over = None;
        self.target.give_back(std::mem::take(&mut self.taken));
    }

    /// The content is complete and the capture is the only store: keep it now.
    pub(super) fn keep(&mut self, id: QueueId, envelope: &Envelope<'_>) -> Verdict {
        if let Some(refusal) = self.over {
            self.abandon();
            return Verdict::Refused(refusal);
        }
        let arrival = self.arrival(id, envelope);
        let inserted = self.target.capture.insert(arrival);
        if let Ok(inserted) = &inserted {
            self.marks.kept.push((inserted.id, inserted.seq));
        }
        // Kept (now under the store's budget) or refused: no longer in flight.
        self.abandon();
        verdict(inserted)
    }

    /// The content is complete and file stores write it too: hold it for their word (a
    /// message that went beyond the room in flight is not held: the files answer for it).
    pub(super) fn hold(&mut self, id: QueueId, envelope: &Envelope<'_>) {
        if self.over.is_some() {
            self.abandon();
            return;
        }
        let len = self.len;
        let arrival = self.arrival(id, envelope);
        self.pending = Some(match &self.target.files {
            // The name `crate::store::eml` gives the message's file.
            Some(dir) => arrival.in_file(dir.join(format!("{id}.eml")), len),
            None => arrival,
        });
    }

    /// The file stores reported on the held message: keep it if they stored it (a refusal
    /// by the capture is counted in its statistics; see the module doc), else drop it.
    pub(super) fn on_stores_done(&mut self, stored: bool) {
        if let Some(arrival) = self.pending.take() {
            if stored {
                if let Ok(inserted) = self.target.capture.insert(arrival) {
                    self.marks.kept.push((inserted.id, inserted.seq));
                }
            }
        }
        self.abandon();
    }

    /// The arrival made from the complete content, which it takes.
    fn arrival(&mut self, id: QueueId, envelope: &Envelope<'_>) -> Arrival {
        let mut content = std::mem::take(&mut self.content);
        // The budget charges the length: let the heap hold no more (module doc).
        content.shrink_to_fit();
        Arrival::from_connection(
            id,
            SystemTime::now(),
            Bytes::from(content),
            envelope,
            Some(&self.client),
        )
    }
}

impl Drop for Capturing {
    /// A connection gone mid-message gives its room in flight back.
    fn drop(&mut self) {
        self.abandon();
    }
}

/// The reply an insert's outcome asks for.
fn verdict(inserted: Result<Inserted, Refused>) -> Verdict {
    match inserted {
        Ok(_) => Verdict::Stored,
        Err(Refused::Full) => Verdict::Refused(reply::CAPTURE_FULL),
        Err(Refused::TooLarge) => Verdict::Refused(reply::CAPTURE_TOO_BIG),
        // Ids are never reused (`record::next_queue_id`): a bug, answered as a failed store.
        Err(Refused::DuplicateId) => Verdict::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::super::StoreSink;
    use super::*;
    use crate::capture::{Limits, Lookup, OnFull};
    use crate::proto::command::MailParams;
    use crate::proto::envelope::{EnvelopeBuf, Transfer};
    use crate::proto::sink::MessageSink;

    /// An envelope from `s@x` to `a@x`, declaring `size`.
    fn envelope_buf(size: Option<u64>) -> EnvelopeBuf {
        let mut buf = EnvelopeBuf::default();
        buf.set_helo(b"client.example", true);
        let params = MailParams {
            size,
            any: size.is_some(),
            ..MailParams::default()
        };
        buf.set_sender(b"s@x", params, None);
        buf.add_recipient(b"a@x", Default::default());
        buf
    }

    fn store(max_bytes: u64, on_full: OnFull) -> Arc<CaptureTarget> {
        let limits = Limits {
            max_bytes,
            ..Limits::default()
        };
        Arc::new(CaptureTarget::new(
            Arc::new(Capture::new(limits, on_full)),
            max_bytes,
        ))
    }

    /// Sends `content` in pieces of 7 octets through `sink`; the verdict and the id.
    fn send(sink: &mut StoreSink, buf: &EnvelopeBuf, content: &[u8]) -> (Verdict, QueueId) {
        let envelope = buf.view(Transfer::Data);
        sink.on_message_start(&envelope);
        for piece in content.chunks(7) {
            sink.on_message_data(piece);
        }
        let verdict = sink.on_message_end(&envelope);
        (verdict, sink.queue_id().unwrap())
    }

    const CLIENT: &str = "192.0.2.7:4000";

    #[test]
    fn a_message_is_in_the_capture_when_the_sink_answers_stored() {
        let target = store(1 << 20, OnFull::EvictOldest);
        let capture = target.capture();
        let mut sink = StoreSink::discard().capturing(&target, CLIENT.parse().unwrap(), 1 << 20);
        let buf = envelope_buf(None);
        let content = b"Subject: hi\r\n\r\n.leading dot kept as unstuffed\r\nbody\r\n";
        let (verdict, id) = send(&mut sink, &buf, content);
        assert_eq!(verdict, Verdict::Stored);
        let Lookup::Found(kept) = capture.get(&id) else {
            panic!("not kept");
        };
        assert_eq!(&kept.body.in_memory()[..], content);
        assert_eq!(kept.envelope().sender, b"s@x");
        assert_eq!(kept.envelope().client, Some(CLIENT.as_bytes()));
        // A second message gets a new id and a new entry.
        let (_, second) = send(&mut sink, &buf, b"x\r\n");
        assert_ne!(second, id);
        assert_eq!(capture.stats().messages, 2);
    }

    #[test]
    fn refusals_of_the_capture_are_the_replies() {
        // Room for one 40 KiB message, not two.
        let target = store(64 << 10, OnFull::Refuse);
        let capture = target.capture();
        // Room in flight beyond the budget, so the store's own refusals are seen here.
        let target = Arc::new(CaptureTarget::new(Arc::clone(capture), 1 << 20));
        let mut sink = StoreSink::discard().capturing(&target, CLIENT.parse().unwrap(), 1 << 20);
        let buf = envelope_buf(None);
        let big = vec![b'x'; 40 << 10];
        assert_eq!(send(&mut sink, &buf, &big).0, Verdict::Stored);
        let (verdict, refused) = send(&mut sink, &buf, &big);
        assert_eq!(verdict, Verdict::Refused(reply::CAPTURE_FULL));
        assert!(matches!(capture.get(&refused), Lookup::Unknown));
        let huge = vec![b'x'; 65 << 10];
        assert_eq!(
            send(&mut sink, &buf, &huge).0,
            Verdict::Refused(reply::CAPTURE_TOO_BIG)
        );
        let stats = capture.stats();
        assert_eq!((stats.refused_full, stats.refused_too_large), (1, 1));
    }

    #[test]
    fn an_aborted_message_is_not_kept() {
        let target = store(1 << 20, OnFull::EvictOldest);
        let capture = target.capture();
        let mut sink = StoreSink::discard().capturing(&target, CLIENT.parse().unwrap(), 1 << 20);
        let buf = envelope_buf(None);
        sink.on_message_start(&buf.view(Transfer::Data));
        sink.on_message_data(b"half a mess");
        sink.on_message_abort();
        assert_eq!(capture.stats().messages, 0);
        let (_, id) = send(&mut sink, &buf, b"whole\r\n");
        let Lookup::Found(kept) = capture.get(&id) else {
            panic!("not kept");
        };
        assert_eq!(
            &kept.body.in_memory()[..],
            b"whole\r\n",
            "nothing of the aborted one"
        );
    }

    #[test]
    fn the_buffer_reserves_the_declared_size_within_bounds_and_ends_exact() {
        let target = store(64 << 20, OnFull::EvictOldest);
        let client = CLIENT.parse().unwrap();
        let mut capturing = Capturing::new(Arc::clone(&target), client, 32 << 20);
        let declared = envelope_buf(Some(5000));
        capturing.start(&declared.view(Transfer::Data));
        assert!(capturing.content.capacity() >= 5000);
        let lying = envelope_buf(Some(30 << 20));
        capturing.start(&lying.view(Transfer::Data));
        assert!(capturing.content.capacity() <= RESERVE_MAX as usize);
        let small_limit = Capturing::new(Arc::clone(&target), client, 100);
        let mut small_limit = small_limit;
        small_limit.start(&lying.view(Transfer::Data));
        assert!(small_limit.content.capacity() <= 100);
        let none = envelope_buf(None);
        capturing.start(&none.view(Transfer::Data));
        assert_eq!(
            capturing.content.capacity(),
            0,
            "nothing reserved undeclared"
        );
        // Grown by doubling, then made exact: the budget's charge is what the heap holds.
        for _ in 0..100 {
            capturing.data(&[b'y'; 1000]);
        }
        assert!(capturing.content.capacity() > 100_000);
        let id = QueueId::new(b"exact").unwrap();
        let arrival = capturing.arrival(id, &none.view(Transfer::Data));
        assert_eq!(capturing.content.capacity(), 0);
        assert!(arrival.charge() > 100_000);
    }

    #[test]
    fn a_held_message_is_kept_only_when_the_file_stores_stored_it() {
        let target = store(1 << 20, OnFull::EvictOldest);
        let capture = target.capture();
        let client = CLIENT.parse().unwrap();
        let mut capturing = Capturing::new(Arc::clone(&target), client, 1 << 20);
        let buf = envelope_buf(None);
        let envelope = buf.view(Transfer::Data);
        for (name, stored) in [(&b"failed"[..], false), (b"stored", true)] {
            capturing.start(&envelope);
            capturing.data(b"content\r\n");
            let id = QueueId::new(name).unwrap();
            capturing.hold(id, &envelope);
            assert!(matches!(capture.get(&id), Lookup::Unknown), "not before");
            capturing.on_stores_done(stored);
            assert_eq!(matches!(capture.get(&id), Lookup::Found(_)), stored);
        }
        // Nothing held: nothing happens.
        capturing.on_stores_done(true);
        assert_eq!(capture.stats().messages, 1);
    }

    #[test]
    fn with_file_bodies_only_the_header_block_is_held_and_kept() {
        let capture = Arc::new(Capture::new(Limits::default(), OnFull::EvictOldest));
        let dir = std::path::PathBuf::from("/var/mail/sink");
        let target = Arc::new(CaptureTarget::new(Arc::clone(&capture), 1 << 20).with_files(dir));
        let client = CLIENT.parse().unwrap();
        let mut capturing = Capturing::new(Arc::clone(&target), client, 64 << 20);
        let buf = envelope_buf(Some(10 << 20));
        let envelope = buf.view(Transfer::Data);
        capturing.start(&envelope);
        assert!(capturing.content.capacity() <= HEADER_SCAN_MAX);
        capturing.data(b"Subject: big\r\n\r\n");
        // 3 MiB of body: more than the room in flight (1 MiB), none of it held.
        for _ in 0..48 {
            capturing.data(&[b'z'; 64 << 10]);
        }
        assert_eq!(target.in_flight(), HEADER_SCAN_MAX as u64);
        let id = QueueId::new(b"filed").unwrap();
        capturing.hold(id, &envelope);
        capturing.on_stores_done(true);
        assert_eq!(target.in_flight(), 0);
        let Lookup::Found(kept) = capture.get(&id) else {
            panic!("not kept");
        };
        let file = kept.body.file().expect("a file body");
        assert_eq!(
            file.path(),
            std::path::Path::new("/var/mail/sink/filed.eml")
        );
        assert_eq!(file.len(), 16 + (3 << 20));
        assert_eq!(
            &kept.body.in_memory()[..],
            b"Subject: big\r\n\r\n",
            "the header block"
        );
        assert_eq!(
            kept.header(crate::capture::Field::Subject),
            Some(&b"big"[..])
        );
        assert!(kept.charge() < HEADER_SCAN_MAX as u64 + 1024);
    }

    #[test]
    fn messages_in_flight_hold_at_most_the_budget_together() {
        let target = store(64 << 10, OnFull::EvictOldest);
        let client: SocketAddr = CLIENT.parse().unwrap();
        let buf = envelope_buf(None);
        let envelope = buf.view(Transfer::Data);
        let mut first = StoreSink::discard().capturing(&target, client, 1 << 20);
        let mut second = StoreSink::discard().capturing(&target, client, 1 << 20);
        first.on_message_start(&envelope);
        second.on_message_start(&envelope);
        first.on_message_data(&[b'a'; 40 << 10]);
        assert_eq!(target.in_flight(), 40 << 10);
        // The second goes beyond: its content is dropped, its end refused, and the first
        // is untouched.
        second.on_message_data(&[b'b'; 20 << 10]);
        second.on_message_data(&[b'b'; 20 << 10]);
        assert_eq!(target.in_flight(), 40 << 10);
        assert_eq!(
            second.on_message_end(&envelope),
            Verdict::Refused(reply::CAPTURE_BUSY)
        );
        assert_eq!(first.on_message_end(&envelope), Verdict::Stored);
        assert_eq!(target.in_flight(), 0, "kept: out of flight");
        // The room is back: the second connection's next message goes in.
        assert_eq!(
            send(&mut second, &buf, &[b'c'; 30 << 10]).0,
            Verdict::Stored
        );
        // A message larger than the whole budget is refused for good, in flight already.
        let huge = vec![b'e'; 65 << 10];
        assert_eq!(
            send(&mut second, &buf, &huge).0,
            Verdict::Refused(reply::CAPTURE_TOO_BIG)
        );
        assert_eq!(target.in_flight(), 0);
        // A connection dropped mid-message gives its room back.
        first.on_message_start(&envelope);
        first.on_message_data(&[b'd'; 1000]);
        assert_eq!(target.in_flight(), 1000);
        drop(first);
        assert_eq!(target.in_flight(), 0);
    }
}
