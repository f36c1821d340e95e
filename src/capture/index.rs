//! The store behind [`super::Capture`]'s lock: the kept entries in sequence order, the id
//! and recipient indexes, the tombstone ring and the counters.
//!
//! Entries sit in a `VecDeque` in ascending `seq` (inserts push at the back, so it stays
//! sorted): the oldest is at the front (eviction and expiry pop it), a seq is found by binary
//! search. Ids and addresses are indexed by a keyed 64-bit hash (SipHash with the store's
//! random keys, so a sender cannot make them collide on purpose): the id index maps a hash to
//! one seq, verified against the entry's id (a rare true collision goes to a small side map);
//! the recipient index maps an address hash to the ascending seqs of the messages with that
//! recipient, candidates that every read checks against the envelope. Tombstones are found
//! by id hash alone (a false "gone" needs a 64-bit keyed collision).

use super::address::address_hash;
use super::envelope::Packed;
use super::filter::Filter;
use super::headers::HeaderRanges;
use super::mailbox::{
    record_charge, MailboxFilter, MailboxGoneReason, MailboxId, MailboxInfo, Mailboxes, Route,
    TooManyMailboxes, MAILBOX_OVERHEAD,
};
use super::removals::RemovalPage;
use super::seqs::Seqs;
use super::transcript::{self, Transcript};
use super::{
    charge_of, nanos, time, Body, Direction, Gone, GoneReason, Inserted, Limits, Lookup, OnFull,
    Refused, Removed, Snapshot, Stats,
};
use bytes::Bytes;
use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// A hasher for keys that are hashes already (the store's keyed SipHash): passes a `u64`
/// through.
#[derive(Debug, Default)]
pub(super) struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A `HashMap` keyed by a hash already taken.
type ByHash<V> = HashMap<u64, V, BuildHasherDefault<Passthrough>>;

/// The keyed hash of an id: the octet 1, then the id, in one `write` from the stack (a
/// queue id has at most [`crate::proto::sink::QueueId::MAX_LEN`] octets; SipHash is a byte
/// stream, so this is the hash of two writes at half the calls).
fn id_hash(keys: &RandomState, id: &[u8]) -> u64 {
    let mut hasher = keys.build_hasher();
    let mut key = [1u8; 64];
    match key.get_mut(1..1 + id.len()) {
        Some(rest) => {
            rest.copy_from_slice(id);
            hasher.write(&key[..1 + id.len()]);
        }
        None => {
            hasher.write_u8(1);
            hasher.write(id);
        }
    }
    hasher.finish()
}

/// One kept message (112 octets; see the module doc of [`super`] for what it costs in all).
///
/// It keeps the keyed hashes of its id and first recipient and its recipient count, so that
/// eviction unindexes it without reading the packed envelope or hashing again (only the
/// recipients after the first are read back from the envelope).
pub(super) struct Entry {
    /// Its sequence number.
    seq: u64,
    /// When its content was complete, in nanoseconds since the Unix epoch.
    received_ns: u64,
    /// The keyed hash of its id (its key in the id index and the tombstone ring).
    id_hash: u64,
    /// The keyed hash of its first recipient (0 without recipients).
    first_recipient: u64,
    /// How many recipients its envelope has.
    recipients: u32,
    /// The message as received, or where it is.
    body: Body,
    /// The id and envelope.
    envelope: Packed,
    /// The located header fields.
    headers: HeaderRanges,
}

impl Entry {
    /// Its sequence number.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    /// A copy for a reader (the raw bytes are shared).
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            seq: self.seq,
            received_at: time(self.received_ns),
            body: self.body.clone(),
            envelope: self.envelope.clone(),
            headers: self.headers,
            mailboxes: Vec::new(),
        }
    }

    /// What the budget charged for it (the same sum as `charge_of`, from the recipient
    /// count it keeps).
    fn charge(&self) -> u64 {
        charge_of(
            self.body.charged(),
            self.envelope.len(),
            self.recipients as usize,
        )
    }

    /// The keyed hashes of its recipients, in RCPT order (repeats kept).
    fn recipient_hashes<'a>(&'a self, keys: &'a RandomState) -> impl Iterator<Item = u64> + 'a {
        let rest = (self.recipients > 1).then(|| {
            self.envelope
                .view()
                .recipients
                .iter()
                .skip(1)
                .map(|r| address_hash(keys, r))
        });
        (self.recipients > 0)
            .then_some(self.first_recipient)
            .into_iter()
            .chain(rest.into_iter().flatten())
    }

    /// Whether `filter` matches it.
    fn matches(&self, filter: &Filter) -> bool {
        filter.matches(
            &self.envelope.view(),
            self.body.in_memory(),
            &self.headers,
            time(self.received_ns),
        )
    }
}

/// The bounded ring of tombstones.
struct Tombstones {
    /// Id hashes, oldest removal first.
    order: VecDeque<u64>,
    /// The tombstones by id hash.
    gone: ByHash<Gone>,
    /// The most kept.
    cap: usize,
    /// Removals since the start: the number of the newest, the oldest in `order` being
    /// `pushed - order.len() + 1` (the event stream reads removals by these numbers).
    pushed: u64,
}

impl Tombstones {
    /// Remembers a removal, forgetting the oldest past the bound.
    fn push(&mut self, id_hash: u64, gone: Gone) {
        self.pushed += 1;
        if self.cap == 0 {
            return;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.gone.remove(&old);
            }
        }
        self.order.push_back(id_hash);
        self.gone.insert(id_hash, gone);
    }
}

/// How a bounded [`Index::scan`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// Every candidate was examined.
    Done,
    /// The callback asked to stop.
    Stopped,
    /// The budget ran out: go on from this cursor (exclusive, in the same direction).
    Paused(u64),
}

/// The kept messages, their indexes and counters.
pub(super) struct Index {
    /// The limits.
    limits: Limits,
    /// What an insert does when full.
    on_full: OnFull,
    /// The hash keys (the same as the waiters').
    keys: RandomState,
    /// The kept messages, ascending seq.
    entries: VecDeque<Entry>,
    /// The next seq to give.
    next_seq: u64,
    /// Octets charged.
    bytes: u64,
    /// Id hash -> seq.
    ids: ByHash<u64>,
    /// Ids whose hash collided with a kept one's -> seq (almost always empty).
    id_collisions: HashMap<Box<[u8]>, u64>,
    /// Address hash -> seqs.
    recipients: ByHash<Seqs>,
    /// Removed ids.
    tombs: Tombstones,
    /// The SMTP transcripts of kept messages, by seq, and their shared preambles.
    transcripts: transcript::Kept,
    /// The per-test mailboxes and their memberships.
    mailboxes: Mailboxes,
    /// Mailboxes ended (deleted or expired) since the store last took this list, to wake
    /// their waiters once the lock is released (empty, unallocated, almost always).
    ended: Vec<MailboxId>,
    /// The greatest seq removed by the store's limits (eviction or expiry, never a delete):
    /// a wait after a smaller cursor may have missed a message (`Capture::last_evicted`).
    last_evicted: u64,
    /// The counters (`messages`, `bytes`, `head`, `tombstones` filled when read).
    stats: Stats,
}

impl Index {
    /// An empty store.
    pub(super) fn new(limits: Limits, on_full: OnFull, keys: RandomState) -> Index {
        Index {
            limits,
            on_full,
            keys: keys.clone(),
            entries: VecDeque::new(),
            next_seq: 1,
            bytes: 0,
            ids: ByHash::default(),
            id_collisions: HashMap::new(),
            recipients: ByHash::default(),
            tombs: Tombstones {
                order: VecDeque::new(),
                gone: ByHash::default(),
                cap: limits.max_tombstones,
                pushed: 0,
            },
            transcripts: transcript::Kept::default(),
            mailboxes: Mailboxes::new(keys.clone(), limits.max_mailboxes),
            ended: Vec::new(),
            last_evicted: 0,
            stats: Stats {
                max_bytes: limits.max_bytes,
                ..Stats::default()
            },
        }
    }

    /// The position of `seq` in `entries`.
    fn position(&self, seq: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    /// The position of the entry named `id`.
    fn find_id(&self, id: &[u8]) -> Option<usize> {
        self.find_id_hashed(id, id_hash(&self.keys, id))
    }

    /// The position of the entry named `id`, whose keyed hash is `hash`.
    fn find_id_hashed(&self, id: &[u8], hash: u64) -> Option<usize> {
        if let Some(pos) = self.ids.get(&hash).and_then(|&seq| self.position(seq)) {
            if self.entries[pos].envelope.view().id == id {
                return Some(pos);
            }
        }
        self.id_collisions
            .get(id)
            .and_then(|&seq| self.position(seq))
    }

    /// Keeps `arrival`, evicting or refusing as the limits and policy say.
    pub(super) fn insert(&mut self, arrival: super::Arrival) -> Result<Inserted, Refused> {
        let now = nanos(arrival.received_at);
        let mut evicted = self.expire(now);
        // One read of the packed envelope serves the charge and the indexes.
        let view = arrival.envelope.view();
        // With no mailbox live this is one check of an empty table (and `Vec::new` does not
        // allocate): the insert costs what it did before mailboxes.
        let joins = if self.mailboxes.is_empty() {
            Vec::new()
        } else {
            self.mailboxes.route(
                view.recipients.iter(),
                view.auth_user,
                arrival.body.in_memory(),
            )
        };
        let charge = charge_of(
            arrival.body.charged(),
            arrival.envelope.len(),
            view.recipients.len(),
        ) + (MAILBOX_OVERHEAD * joins.len()) as u64;
        if charge > self.limits.max_bytes || self.limits.max_messages == 0 {
            self.stats.refused_too_large += 1;
            return Err(Refused::TooLarge);
        }
        let id = arrival.id;
        let hash = id_hash(&self.keys, id.as_bytes());
        if self.find_id_hashed(id.as_bytes(), hash).is_some() || self.tombs.gone.contains_key(&hash)
        {
            self.stats.refused_duplicate += 1;
            return Err(Refused::DuplicateId);
        }
        while self.bytes + charge > self.limits.max_bytes
            || self.entries.len() >= self.limits.max_messages
        {
            // No message left to evict: the mailboxes' records hold the budget.
            if self.on_full == OnFull::Refuse || self.entries.is_empty() {
                self.stats.refused_full += 1;
                return Err(Refused::Full);
            }
            let reason = if self.entries.len() >= self.limits.max_messages {
                GoneReason::EvictedCount
            } else {
                GoneReason::EvictedBytes
            };
            self.remove_at(0, reason, now);
            evicted += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(kept) = self.ids.insert(hash, seq) {
            // A true 64-bit collision with a kept id: that one keeps the main slot.
            self.ids.insert(hash, kept);
            self.id_collisions.insert(id.as_bytes().into(), seq);
        }
        let mut first_recipient = 0;
        for (i, recipient) in view.recipients.iter().enumerate() {
            let hash = address_hash(&self.keys, recipient);
            if i == 0 {
                first_recipient = hash;
            }
            self.recipients
                .entry(hash)
                .and_modify(|seqs| seqs.push(seq))
                .or_insert(Seqs::One(seq));
        }
        let recipients = u32::try_from(view.recipients.len()).unwrap_or(u32::MAX);
        self.mailboxes.join(seq, joins);
        self.bytes += charge;
        self.stats.inserted += 1;
        self.entries.push_back(Entry {
            seq,
            received_ns: now,
            id_hash: hash,
            first_recipient,
            recipients,
            body: arrival.body,
            envelope: arrival.envelope,
            headers: arrival.headers,
        });
        Ok(Inserted { seq, id, evicted })
    }

    /// Removes the entry at `pos` for `reason` at `now` (nanoseconds); its charge.
    fn remove_at(&mut self, pos: usize, reason: GoneReason, now: u64) -> u64 {
        match self.entries.remove(pos) {
            Some(entry) => self.retire(&entry, reason, now),
            None => 0,
        }
    }

    /// Unindexes a removed entry, leaves its tombstone and counts it; its charge.
    fn retire(&mut self, entry: &Entry, reason: GoneReason, now: u64) -> u64 {
        let hash = entry.id_hash;
        if self.ids.get(&hash) == Some(&entry.seq) {
            self.ids.remove(&hash);
        } else {
            self.id_collisions.remove(entry.envelope.view().id);
        }
        for key in entry.recipient_hashes(&self.keys) {
            // One lookup finds the list and, when it empties, removes it.
            if let Slot::Occupied(mut seqs) = self.recipients.entry(key) {
                if seqs.get_mut().remove(entry.seq) {
                    seqs.remove();
                }
            }
        }
        let mut charge = entry.charge();
        charge += self.transcripts.remove(entry.seq);
        if !self.mailboxes.no_members() {
            charge += (MAILBOX_OVERHEAD * self.mailboxes.leave(entry.seq)) as u64;
        }
        self.bytes -= charge;
        self.tombs.push(
            hash,
            Gone {
                seq: entry.seq,
                at: time(now),
                reason,
            },
        );
        if reason != GoneReason::Deleted {
            self.last_evicted = self.last_evicted.max(entry.seq);
        }
        match reason {
            GoneReason::EvictedBytes => self.stats.evicted_bytes += 1,
            GoneReason::EvictedCount => self.stats.evicted_count += 1,
            GoneReason::Expired | GoneReason::MailboxExpired => self.stats.expired += 1,
            GoneReason::Deleted => self.stats.deleted += 1,
        }
        charge
    }

    /// Keeps `transcript` with the message named `id` (at most once), charged to the budget:
    /// under [`OnFull::EvictOldest`] older messages are evicted to make room (never the
    /// message itself); under [`OnFull::Refuse`], or when only the message itself is left,
    /// a transcript that does not fit is not kept. Whether it was kept, and how many
    /// messages were evicted.
    pub(super) fn attach_transcript(
        &mut self,
        id: &[u8],
        transcript: Transcript,
        now: u64,
    ) -> (bool, usize) {
        let Some(pos) = self.find_id(id) else {
            return (false, 0);
        };
        let seq = self.entries[pos].seq;
        self.attach_transcript_at(seq, transcript, now)
    }

    /// [`Index::attach_transcript`] for the message numbered `seq` (no id lookup: the
    /// newest entry is tried first, where a transcript's message almost always is).
    pub(super) fn attach_transcript_at(
        &mut self,
        seq: u64,
        transcript: Transcript,
        now: u64,
    ) -> (bool, usize) {
        let kept =
            self.entries.back().is_some_and(|e| e.seq == seq) || self.position(seq).is_some();
        if !kept || self.transcripts.contains(seq) {
            return (false, 0);
        }
        let mut evicted = 0;
        // The charge is asked again after each eviction: evicting the last other message
        // sharing its preamble makes the preamble its to pay.
        while self.bytes + self.transcripts.charge_of(&transcript) > self.limits.max_bytes {
            let oldest_is_it = self.entries.front().is_none_or(|e| e.seq == seq);
            if self.on_full == OnFull::Refuse || oldest_is_it {
                return (false, evicted);
            }
            self.remove_at(0, GoneReason::EvictedBytes, now);
            evicted += 1;
        }
        self.bytes += self.transcripts.insert(seq, transcript);
        (true, evicted)
    }

    /// The transcript of the message named `id`, if it is kept and has one.
    pub(super) fn transcript(&self, id: &[u8]) -> Option<Bytes> {
        let pos = self.find_id(id)?;
        self.transcripts.text(self.entries[pos].seq)
    }

    /// Drops the entries older than `max_age` at `now` (nanoseconds), oldest first, stopping
    /// at the first one young enough (ages follow insertion order); how many.
    pub(super) fn expire(&mut self, now: u64) -> usize {
        let mut dropped = 0;
        let expired = self.mailboxes.expired(now);
        if !expired.is_empty() {
            dropped += self
                .end_mailboxes(&expired, MailboxGoneReason::Expired, now)
                .seqs
                .len();
        }
        let Some(max_age) = self.limits.max_age else {
            return dropped;
        };
        let max_age = u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX);
        while self
            .entries
            .front()
            .is_some_and(|e| e.received_ns.saturating_add(max_age) < now)
        {
            self.remove_at(0, GoneReason::Expired, now);
            dropped += 1;
        }
        dropped
    }

    /// The message named `id`, or its tombstone.
    pub(super) fn get(&self, id: &crate::proto::sink::QueueId) -> Lookup {
        if let Some(pos) = self.find_id(id.as_bytes()) {
            return Lookup::Found(self.snapshot(&self.entries[pos]));
        }
        match self.tombs.gone.get(&id_hash(&self.keys, id.as_bytes())) {
            Some(gone) => Lookup::Gone(*gone),
            None => Lookup::Unknown,
        }
    }

    /// The message numbered `seq`.
    pub(super) fn get_seq(&self, seq: u64) -> Option<Snapshot> {
        self.position(seq)
            .map(|pos| self.snapshot(&self.entries[pos]))
    }

    /// The greatest seq removed by the limits (0: none yet).
    pub(super) fn last_evicted(&self) -> u64 {
        self.last_evicted
    }

    /// The last seq given.
    pub(super) fn head(&self) -> u64 {
        self.next_seq - 1
    }

    /// The oldest kept seq.
    pub(super) fn oldest(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// The candidate entries for `filter` beyond `cursor` in `direction`, in that order:
    /// through the mailbox or recipient index when the filter names one, else every entry.
    /// Not yet filtered ([`Index::admits`] decides).
    fn candidates<'a>(
        &'a self,
        cursor: Option<u64>,
        direction: Direction,
        filter: &'a Filter,
    ) -> Box<dyn Iterator<Item = &'a Entry> + 'a> {
        match (filter.mailbox_hint(), filter.recipient_hint()) {
            (Some(id), _) => Box::new(
                self.mailboxes
                    .seqs(id, cursor, direction)
                    .filter_map(|seq| self.position(seq).map(|pos| &self.entries[pos])),
            ),
            (None, Some(address)) => {
                match self.recipients.get(&address_hash(&self.keys, address)) {
                    None => Box::new(std::iter::empty()),
                    Some(seqs) => Box::new(
                        seqs.range(cursor, direction)
                            .filter_map(|seq| self.position(seq).map(|pos| &self.entries[pos])),
                    ),
                }
            }
            (None, None) => match direction {
                Direction::Older => {
                    let end = cursor.map_or(self.entries.len(), |c| {
                        self.entries.partition_point(|e| e.seq < c)
                    });
                    Box::new(self.entries.range(..end).rev())
                }
                Direction::Newer => {
                    let start = cursor.map_or(0, |c| self.entries.partition_point(|e| e.seq <= c));
                    Box::new(self.entries.range(start..))
                }
            },
        }
    }

    /// Whether `entry` matches `filter` (no terms: every entry, without reading its
    /// envelope: an event stream pages every message so).
    fn admits(&self, entry: &Entry, filter: &Filter) -> bool {
        filter.is_all()
            || entry.matches(filter)
                && filter
                    .mailboxes()
                    .all(|id| self.mailboxes.holds(id, entry.seq))
    }

    /// Examines at most `budget` candidates for `filter` beyond `cursor` in `direction`
    /// (see [`Index::candidates`]), handing each match to `found` until it returns false.
    /// [`Scan::Paused`] gives the cursor to go on from when the budget ran out (the next
    /// candidate not yet examined is the first beyond it): the caller releases the lock in
    /// between, so no long scan holds the lock an SMTP worker's insert waits for
    /// (`super::Capture::page`).
    pub(super) fn scan(
        &self,
        cursor: Option<u64>,
        direction: Direction,
        filter: &Filter,
        budget: usize,
        mut found: impl FnMut(&Entry) -> bool,
    ) -> Scan {
        for (examined, entry) in self.candidates(cursor, direction, filter).enumerate() {
            if examined == budget {
                // This one is examined again next time: resume just before it.
                return match direction {
                    Direction::Older => Scan::Paused(entry.seq + 1),
                    Direction::Newer => Scan::Paused(entry.seq - 1),
                };
            }
            if self.admits(entry, filter) && !found(entry) {
                return Scan::Stopped;
            }
        }
        Scan::Done
    }

    /// How many kept messages match `filter` without a scan, when the indexes know: every
    /// message, one mailbox's, or one recipient's (by the recipient index, keyed by a 64-bit
    /// hash random per store: two addresses sharing one is a 2^-64 chance, accepted here).
    pub(super) fn quick_count(&self, filter: &Filter) -> Option<usize> {
        match filter.terms() {
            [] => Some(self.entries.len()),
            [super::filter::Term::Mailbox(id)] => Some(self.mailboxes.count(id)),
            [super::filter::Term::Recipient(address)] => Some(
                self.recipients
                    .get(&address_hash(&self.keys, address))
                    .map_or(0, Seqs::len),
            ),
            _ => None,
        }
    }

    /// A reader's copy of `entry`, with the mailboxes it is in (for a page).
    pub(super) fn snapshot_of(&self, entry: &Entry) -> Snapshot {
        self.snapshot(entry)
    }

    /// Removes the kept messages among `seqs` (ascending; those already gone are skipped)
    /// for `reason`: a chunk of a long delete, so one lock hold stays short. Only the
    /// entries between the first and the last of them are moved (the kept ones close up in
    /// order), then the removed ones are drained out from the shorter side: a delete of the
    /// oldest messages (a delete of everything) moves nothing else. The removed entries go to
    /// `dropped`, for the caller to free once the lock is released. The seqs removed
    /// (ascending) and the octets freed.
    pub(super) fn remove_chunk(
        &mut self,
        seqs: &[u64],
        reason: GoneReason,
        now: u64,
        dropped: &mut Vec<Entry>,
    ) -> Removed {
        let mut removed = Removed::default();
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return removed;
        };
        let lo = self.entries.partition_point(|e| e.seq < first);
        let hi = self.entries.partition_point(|e| e.seq <= last);
        // A stable partition of [lo, hi): kept entries to the front, in order.
        let mut next = seqs.iter().peekable();
        let mut write = lo;
        for read in lo..hi {
            let seq = self.entries[read].seq;
            while next.peek().is_some_and(|&&s| s < seq) {
                next.next(); // gone already
            }
            if next.peek() == Some(&&seq) {
                next.next();
            } else {
                self.entries.swap(write, read);
                write += 1;
            }
        }
        let start = dropped.len();
        dropped.extend(self.entries.drain(write..hi));
        dropped[start..].sort_unstable_by_key(|e| e.seq);
        for entry in &dropped[start..] {
            removed.bytes += self.retire(entry, reason, now);
            removed.seqs.push(entry.seq);
        }
        removed
    }

    /// Deletes the message named `id`.
    pub(super) fn delete_id(&mut self, id: &crate::proto::sink::QueueId, now: u64) -> Removed {
        let Some(pos) = self.find_id(id.as_bytes()) else {
            return Removed::default();
        };
        let seq = self.entries[pos].seq;
        let bytes = self.remove_at(pos, GoneReason::Deleted, now);
        Removed {
            seqs: vec![seq],
            bytes,
        }
    }

    /// Removes the kept messages numbered `seqs` (ascending) for `reason`, in one pass over
    /// the entries.
    fn remove_seqs(&mut self, seqs: Vec<u64>, reason: GoneReason, now: u64) -> Removed {
        if seqs.is_empty() {
            return Removed::default();
        }
        let kept = VecDeque::with_capacity(self.entries.len() - seqs.len());
        let old = std::mem::replace(&mut self.entries, kept);
        let mut bytes = 0;
        let mut next = seqs.iter().peekable();
        for entry in old {
            if next.peek() == Some(&&entry.seq) {
                next.next();
                bytes += self.retire(&entry, reason, now);
            } else {
                self.entries.push_back(entry);
            }
        }
        Removed { seqs, bytes }
    }

    /// A reader's copy of `entry`, with the mailboxes it is in.
    fn snapshot(&self, entry: &Entry) -> Snapshot {
        let mut snapshot = entry.snapshot();
        if !self.mailboxes.no_members() {
            snapshot.mailboxes = self.mailboxes.of(entry.seq);
        }
        snapshot
    }

    /// The per-test mailboxes.
    pub(super) fn mailboxes(&self) -> &Mailboxes {
        &self.mailboxes
    }

    /// Creates a mailbox (see [`Mailboxes::create`]) once its record's charge fits the
    /// budget: under [`OnFull::EvictOldest`] the oldest messages are evicted for it, as for
    /// an insert; under [`OnFull::Refuse`], or with no message left to evict, it is refused
    /// ([`TooManyMailboxes::Full`]). Also how many messages were evicted.
    pub(super) fn create_mailbox(
        &mut self,
        route: Option<Route>,
        label: String,
        now: u64,
        ttl_ns: u64,
    ) -> (Result<MailboxInfo, TooManyMailboxes>, usize) {
        if let Err(refused) = self.mailboxes.may_create(route.as_ref()) {
            return (Err(refused), 0);
        }
        let charge = record_charge(route.as_ref(), &label);
        let mut evicted = 0;
        while self.bytes + charge > self.limits.max_bytes {
            if self.on_full == OnFull::Refuse || self.entries.is_empty() {
                return (Err(TooManyMailboxes::Full(charge)), evicted);
            }
            self.remove_at(0, GoneReason::EvictedBytes, now);
            evicted += 1;
        }
        let created = self.mailboxes.create(route, label, now, ttl_ns);
        if created.is_ok() {
            self.bytes += charge;
        }
        (created, evicted)
    }

    /// Ends mailbox `id` (deleted or expired) at `now`: removes its messages that are in no
    /// other mailbox, unindexes the rest from it (their charge drops by
    /// [`MAILBOX_OVERHEAD`]), gives back its record's charge; `None` if it is not live.
    pub(super) fn end_mailbox(
        &mut self,
        id: &MailboxId,
        reason: MailboxGoneReason,
        now: u64,
    ) -> Option<Removed> {
        self.mailboxes
            .is_live(id)
            .then(|| self.end_mailboxes(&[*id], reason, now))
    }

    /// Ends the mailboxes `ids` (those live) at `now`, with one pass over the kept messages
    /// for all their orphans (see [`Index::end_mailbox`]).
    pub(super) fn end_mailboxes(
        &mut self,
        ids: &[MailboxId],
        reason: MailboxGoneReason,
        now: u64,
    ) -> Removed {
        let mut orphans = Vec::new();
        let mut charged = 0;
        for id in ids {
            if let Some(charge) = self.mailboxes.end(id, reason, now, &mut orphans) {
                charged += charge;
                self.ended.push(*id);
            }
        }
        // The records and the memberships are gone with the mailboxes: charge them off
        // here, the orphaned messages' own charges when they are removed below.
        self.bytes -= charged;
        orphans.sort_unstable();
        let reason = match reason {
            MailboxGoneReason::Expired => GoneReason::MailboxExpired,
            MailboxGoneReason::Deleted => GoneReason::Deleted,
        };
        let mut removed = self.remove_seqs(orphans, reason, now);
        removed.bytes += charged;
        removed
    }

    /// Ends (deletes) the live mailboxes `filter` admits at `now`; their ids and what went.
    pub(super) fn delete_mailboxes(
        &mut self,
        filter: &MailboxFilter,
        now: u64,
    ) -> (Vec<MailboxId>, Removed) {
        let ids = self.mailboxes.matching(filter);
        let removed = self.end_mailboxes(&ids, MailboxGoneReason::Deleted, now);
        (ids, removed)
    }

    /// The mailboxes ended since the last call (for waking their waiters).
    pub(super) fn take_ended(&mut self) -> Vec<MailboxId> {
        std::mem::take(&mut self.ended)
    }

    /// The mailboxes message `seq` is in (for waking their waiters).
    pub(super) fn memberships(&self, seq: u64) -> Vec<MailboxId> {
        self.mailboxes.of(seq)
    }

    /// The distinct address hashes of the recipients of message `seq` (for waking waiters).
    pub(super) fn recipient_hashes(&self, seq: u64) -> Vec<u64> {
        let Some(pos) = self.position(seq) else {
            return Vec::new();
        };
        let mut hashes: Vec<u64> = self.entries[pos].recipient_hashes(&self.keys).collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    /// The counters.
    /// Up to `limit` removals numbered after `after`, oldest first (see
    /// [`super::removals`]).
    pub(super) fn removals_after(&self, after: u64, limit: usize) -> RemovalPage {
        let tombs = &self.tombs;
        let first = tombs.pushed - tombs.order.len() as u64 + 1;
        let from = after.saturating_add(1).max(first);
        let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
        let items = tombs
            .order
            .range(skip.min(tombs.order.len())..)
            .take(limit)
            .zip(from..)
            .filter_map(|(hash, number)| tombs.gone.get(hash).map(|gone| (number, *gone)))
            .collect();
        RemovalPage {
            items,
            missed: (from > after.saturating_add(1)).then(|| (after + 1, from - 1)),
            head: tombs.pushed,
        }
    }

    pub(super) fn stats(&self) -> Stats {
        Stats {
            messages: self.entries.len(),
            bytes: self.bytes,
            head: self.head(),
            tombstones: self.tombs.order.len(),
            mailboxes: self.mailboxes.live_count(),
            mailbox_bytes: self.mailboxes.charged(),
            mailbox_tombstones: self.mailboxes.tombstones(),
            ..self.stats
        }
    }

    /// Every invariant the tests rely on, checked the slow way: entries ascending, the
    /// charged bytes their sum and within budget, the id index naming exactly the kept
    /// entries, the recipient index holding exactly each kept (recipient, seq) pair, and the
    /// tombstone ring within its bound.
    #[cfg(test)]
    pub(super) fn check(&self) -> Result<(), String> {
        use std::collections::{BTreeSet, HashSet};
        let seqs: Vec<u64> = self.entries.iter().map(|e| e.seq).collect();
        if !seqs.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!("entries out of order: {seqs:?}"));
        }
        let sum: u64 = self
            .entries
            .iter()
            .map(Entry::charge)
            .sum::<u64>()
            // The records and every membership (which `Mailboxes::check` ties to the entries).
            + self.mailboxes.charged()
            + self.transcripts.charged()?;
        if !self
            .transcripts
            .seqs()
            .all(|seq| self.position(seq).is_some())
        {
            return Err("a transcript of a message not kept".into());
        }
        self.mailboxes.check(&|seq| self.position(seq).is_some())?;
        if sum != self.bytes || self.bytes > self.limits.max_bytes {
            return Err(format!(
                "bytes {} sum {sum} max {}",
                self.bytes, self.limits.max_bytes
            ));
        }
        if self.entries.len() > self.limits.max_messages {
            return Err("too many messages".into());
        }
        if self.ids.len() + self.id_collisions.len() != self.entries.len() {
            return Err("id index size".into());
        }
        for e in &self.entries {
            if self.find_id(e.envelope.view().id) != self.position(e.seq) {
                return Err(format!("id of seq {} not found", e.seq));
            }
        }
        let mut want: HashMap<u64, BTreeSet<u64>> = HashMap::new();
        for e in &self.entries {
            for r in e.envelope.view().recipients.iter() {
                want.entry(address_hash(&self.keys, r))
                    .or_default()
                    .insert(e.seq);
            }
        }
        let mut have: HashMap<u64, BTreeSet<u64>> = HashMap::new();
        for (hash, s) in &self.recipients {
            let list: Vec<u64> = s.range(None, Direction::Newer).collect();
            if !list.windows(2).all(|w| w[0] < w[1]) || list.is_empty() {
                return Err(format!("recipient list not ascending or empty: {list:?}"));
            }
            have.insert(*hash, list.into_iter().collect());
        }
        if want != have {
            return Err(format!("recipient index {have:?} != {want:?}"));
        }
        let ring: HashSet<&u64> = self.tombs.order.iter().collect();
        if self.tombs.order.len() > self.tombs.cap
            || ring.len() != self.tombs.gone.len()
            || !self.tombs.gone.keys().all(|k| ring.contains(k))
        {
            return Err("tombstone ring".into());
        }
        Ok(())
    }
}
