//! Per-test mailboxes (issue 18): named views of the capture store that a test creates, sends
//! to and reads, so parallel tests never see each other's mail.
//!
//! # What it does
//!
//! - A mailbox has an opaque id ([`MailboxId`]: 12 characters `a-z 0-9`, from the store's
//!   random keys, never reused, usable as a plus-tag), a [`Route`] saying which arriving
//!   messages join it, a label, and a time to live.
//! - Routes: [`Route::PlusTag`] (a recipient whose local part's first `+`-separated segment
//!   after the base is the id, ASCII case-insensitively: `anyone+ID@any.domain`,
//!   `anyone+ID+more@any.domain`; see [`plus_tag`]), [`Route::Recipient`] (an
//!   envelope recipient is the address, compared as the recipient index compares:
//!   [`super::same_address`]), [`Route::Domain`] (a recipient's domain is it, ASCII
//!   case-insensitively, exactly: not its subdomains), [`Route::AuthUser`] (the session's
//!   AUTH user is it, octet for octet), [`Route::Header`] (the FIRST top-level field of that
//!   name, found by the bounded scan of [`super::headers::first_field`], unfolded and
//!   trimmed, is the value octet for octet).
//! - Routing happens once, at insert: a message joins every live mailbox whose route holds
//!   (a message to two recipients may join two mailboxes). It is kept ONCE and indexed in
//!   each: every mailbox keeps the ascending seqs of its messages, and a side map from seq to
//!   mailboxes (only for messages in any mailbox) lets eviction unindex a message in
//!   `O(memberships)`. Each route kind has its own table (by recipient hash, by domain hash,
//!   by AUTH user hash, by header name), so routing costs a few lookups per recipient whatever
//!   the number of mailboxes; header fields are scanned only when a header route exists, once
//!   per distinct field name. A mailbox created after a message arrived does not take it in.
//! - Deleting a mailbox, or its expiry, removes the messages that are in no other mailbox
//!   and unindexes the rest from it. Both leave a tombstone ([`MailboxGone`]) in a bounded
//!   ring, so a lookup tells "expired/deleted at T" (HTTP 410) from "never existed" (404).
//!
//! # Bounds and memory
//!
//! At most [`Limits::max_mailboxes`](super::Limits) live mailboxes (default
//! [`MAILBOXES_MAX`]): past it creation is refused ([`TooManyMailboxes`], HTTP 429). At most
//! [`MAILBOX_TOMBSTONES_MAX`] mailbox tombstones. Header routes name at most
//! [`HEADER_NAMES_MAX`] distinct header fields (each is looked for in every message; many
//! mailboxes may share a name with a value each). Each membership (a message in a mailbox) is
//! charged [`MAILBOX_OVERHEAD`] octets to the store's budget while it lasts (see the module
//! doc of [`super`]). A live mailbox's own record is charged too, while it lives
//! ([`record_charge`]): [`MAILBOX_RECORD_OVERHEAD`] + the octets of its label + the octets of
//! its route's text (an address, domain or user; a header route's name and value twice, as
//! its routing table keeps a copy; a plus-tag route has none). Mailbox tombstones (at most
//! [`MAILBOX_TOMBSTONES_MAX`], about 60 octets each with their two tables: ≤ 4 MiB) are
//! outside the budget, as the messages' tombstones are.
//!
//! Listing pages newest first ([`MailboxPage`], by creation order: a page never shifts when
//! mailboxes are created), optionally filtered ([`MailboxFilter`]): a page reads only its
//! own mailboxes, a filtered count reads every live one's label and route (10 000 at most).
//!
//! # What it does not do
//!
//! No HTTP or JSON (the API's `mailboxes` route), no fault plans (a mailbox's fault plan
//! lives in `crate::fault`; [`Route::covers`] is what it asks at RCPT time), no clock of its
//! own (times are given by the caller).

mod list;

pub use list::{MailboxFilter, MailboxPage};

use super::address::address_hash;
use super::address::Address;
use super::headers::{first_field, unfold};
use super::seqs::Seqs;
use super::Direction;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::SystemTime;

/// The default bound on live mailboxes.
pub const MAILBOXES_MAX: usize = 10_000;

/// The bound of the ring of mailbox tombstones.
pub const MAILBOX_TOMBSTONES_MAX: usize = 65_536;

/// What the budget charges per membership (a kept message indexed in one mailbox): its seq
/// in the mailbox's list (8 octets; a `VecDeque` that grows by doubling), its mailbox id in
/// the message's member list (12: a boxed slice of exactly its ids) and the side map's entry
/// for the message (a `BTreeMap` entry of 24, in nodes about half full after in-order
/// inserts: ~48): 72 in all. `tests/capture_memory.rs` measures 71 allocated per message in
/// one mailbox beyond the same message in none (100 000 messages).
pub const MAILBOX_OVERHEAD: usize = 72;

/// What the budget charges per live mailbox beyond its label and route text
/// ([`record_charge`]): its slot in the table of live mailboxes (the id and the record
/// below, at a hash table's load: ~230), its place in the expiry order and in the creation
/// order (two B-tree entries of 24 and 20 octets in nodes about half full: ~90), and a slot
/// in its route's table with the list of ids it starts (~100; none for a plus-tag route).
/// `tests/capture_memory.rs` measures what 10 000 mailboxes with 10-octet labels allocate:
/// 339 octets each with plus-tag routes (charged 430), 468 with `rcpt` routes of 17 octets
/// (charged 447).
pub const MAILBOX_RECORD_OVERHEAD: usize = 420;

/// The longest label, in octets.
pub const LABEL_MAX: usize = 256;

/// The longest text in a route (an address, domain, user, header name or value), in octets.
pub const ROUTE_TEXT_MAX: usize = 998;

/// The length of a mailbox id.
pub const ID_LEN: usize = 12;

/// A mailbox's id: [`ID_LEN`] characters `a-z 0-9` (lower case: a plus-tag matches it
/// ASCII case-insensitively).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId([u8; ID_LEN]);

impl MailboxId {
    /// The id spelled by `text` (ASCII case-insensitive), if it is one.
    pub fn parse(text: &[u8]) -> Option<MailboxId> {
        let bytes: [u8; ID_LEN] = text.try_into().ok()?;
        if !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        Some(MailboxId(bytes.map(|b| b.to_ascii_lowercase())))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The id of `n` (below 36^12) in base 36.
    fn from_number(mut n: u64) -> MailboxId {
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut out = [b'0'; ID_LEN];
        for slot in out.iter_mut().rev() {
            *slot = DIGITS[(n % 36) as usize];
            n /= 36;
        }
        MailboxId(out)
    }
}

impl std::fmt::Display for MailboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MailboxId({})", self.as_str())
    }
}

/// Which arriving messages join a mailbox (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A recipient `user+TAG@domain` (or `user+TAG+more@domain`) whose TAG ([`plus_tag`])
    /// is this id, ASCII case-insensitively; any user, any domain. A mailbox created with a
    /// plus-tag route is routed by its own id (the store sets it).
    PlusTag(MailboxId),
    /// An envelope recipient is this address ([`super::same_address`]).
    Recipient(Vec<u8>),
    /// A recipient's domain is this one, ASCII case-insensitively (not its subdomains).
    Domain(Vec<u8>),
    /// The session's AUTH user is this one, octet for octet.
    AuthUser(Vec<u8>),
    /// The first top-level header field `name` (ASCII case-insensitive), unfolded and
    /// trimmed, is `value`, octet for octet.
    Header {
        /// The field name.
        name: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
}

impl Route {
    /// Whether the recipient `recipient` (as RCPT TO gave it) is one of this route's: what a
    /// per-mailbox fault plan asks at RCPT time. AUTH-user and header routes answer false:
    /// they do not depend on the recipient.
    pub fn covers_recipient(&self, recipient: &[u8]) -> bool {
        match self {
            Route::PlusTag(id) => {
                plus_tag(recipient).is_some_and(|tag| tag.eq_ignore_ascii_case(&id.0))
            }
            Route::Recipient(address) => super::same_address(recipient, address),
            Route::Domain(domain) => Address::parse(recipient)
                .domain()
                .eq_ignore_ascii_case(domain),
            Route::AuthUser(_) | Route::Header { .. } => false,
        }
    }

    /// Whether a recipient given in a session authenticated as `auth_user` is one of this
    /// route's (header routes: never, the message is not known at RCPT time).
    pub fn covers(&self, recipient: &[u8], auth_user: Option<&[u8]>) -> bool {
        match self {
            Route::AuthUser(user) => auth_user == Some(&user[..]),
            _ => self.covers_recipient(recipient),
        }
    }

    /// The route's kind, as the API names it: `plus_tag`, `rcpt`, `domain`, `auth_user`,
    /// `header`.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::PlusTag(_) => "plus_tag",
            Route::Recipient(_) => "rcpt",
            Route::Domain(_) => "domain",
            Route::AuthUser(_) => "auth_user",
            Route::Header { .. } => "header",
        }
    }
}

/// The plus-tag of a recipient's local part: the first `+`-separated segment after the base
/// (`a+b@x` → `b`, `a+b+retry@x` → `b`: a sender may add its own tag after the mailbox's);
/// `None` without a `+`.
pub fn plus_tag(recipient: &[u8]) -> Option<&[u8]> {
    let local = Address::parse(recipient).local();
    let detail = &local[memchr::memchr(b'+', local)? + 1..];
    Some(memchr::memchr(b'+', detail).map_or(detail, |end| &detail[..end]))
}

/// A live mailbox, as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Its id.
    pub id: MailboxId,
    /// Its route.
    pub route: Route,
    /// Its label (may be empty).
    pub label: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it expires.
    pub expires_at: SystemTime,
    /// How many kept messages it holds.
    pub count: usize,
}

/// Why a mailbox is no longer live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxGoneReason {
    /// Its time to live ran out.
    Expired,
    /// A client deleted it.
    Deleted,
}

/// A mailbox tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxGone {
    /// When it went.
    pub at: SystemTime,
    /// Why.
    pub reason: MailboxGoneReason,
}

/// What a lookup of a mailbox found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxLookup {
    /// It is live.
    Found(MailboxInfo),
    /// It was, and no longer is (HTTP 410).
    Gone(MailboxGone),
    /// No such mailbox (HTTP 404).
    Unknown,
}

/// The most distinct header field names header routes may name at once.
pub const HEADER_NAMES_MAX: usize = 16;

/// Creation refused: a bound is reached (HTTP 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooManyMailboxes {
    /// This many mailboxes are live already (the bound).
    Live(usize),
    /// Header routes already name this many distinct header fields (the bound:
    /// [`HEADER_NAMES_MAX`]); a route on one of them is still taken.
    HeaderNames(usize),
    /// The capture budget has no room for the mailbox's record, this many octets
    /// ([`record_charge`]): the store refuses rather than evicts (`--on-full tempfail`), or
    /// no message is left to evict (HTTP 507).
    Full(u64),
}

impl std::fmt::Display for TooManyMailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TooManyMailboxes::Live(max) => write!(
                f,
                "{max} mailboxes are live already (the bound): delete some \
                 (DELETE /api/v1/mailboxes/ID) or wait for them to expire"
            ),
            TooManyMailboxes::HeaderNames(max) => write!(
                f,
                "header routes already name {max} distinct header fields (the bound: each \
                 one is looked for in every message); route on one of those names, with a \
                 value per test"
            ),
            TooManyMailboxes::Full(charge) => write!(
                f,
                "the capture budget (--capture-memory) has no room for a mailbox's record \
                 ({charge} octets): the store keeps its mail rather than evicting it \
                 (--on-full tempfail), or holds no mail to evict; delete mail or mailboxes"
            ),
        }
    }
}

impl std::error::Error for TooManyMailboxes {}

/// One live mailbox.
struct Live {
    /// Its route.
    route: Route,
    /// Its label.
    label: String,
    /// Creation time (ns).
    created_ns: u64,
    /// Expiry time (ns).
    expires_ns: u64,
    /// Creation order.
    serial: u64,
    /// Its messages' seqs, ascending.
    seqs: Seqs,
}

/// The live mailboxes, their routing tables, memberships and tombstones (under the store's
/// lock, inside its index).
pub(super) struct Mailboxes {
    /// The hash keys (random per store; the ids come from them too).
    keys: RandomState,
    /// Ids made so far (the input of the next id).
    made: u64,
    /// The most live at once.
    max: usize,
    /// Live mailboxes.
    live: HashMap<MailboxId, Live>,
    /// How many live mailboxes have a plus-tag route.
    plus_tags: usize,
    /// Recipient routes by the keyed hash of the normalised address.
    by_recipient: HashMap<u64, Vec<MailboxId>>,
    /// Domain routes by the keyed hash of the lower-cased domain.
    by_domain: HashMap<u64, Vec<MailboxId>>,
    /// AUTH-user routes by the keyed hash of the user.
    by_auth: HashMap<u64, Vec<MailboxId>>,
    /// Header routes by lower-cased field name: (value, mailbox).
    by_header: HashMap<Vec<u8>, Vec<(Vec<u8>, MailboxId)>>,
    /// Expiry order.
    expiry: BTreeSet<(u64, MailboxId)>,
    /// seq -> the mailboxes a kept message is in (only messages in any).
    members: BTreeMap<u64, Box<[MailboxId]>>,
    /// Creation order: serial -> id (the listing's order and cursor).
    order: BTreeMap<u64, MailboxId>,
    /// The live mailboxes' records' charges ([`record_charge`]), summed.
    record_bytes: u64,
    /// Memberships now (each charged [`MAILBOX_OVERHEAD`]).
    memberships: usize,
    /// Tombstones, oldest first.
    gone_order: VecDeque<MailboxId>,
    /// Tombstones by id.
    gone: HashMap<MailboxId, MailboxGone>,
}

/// The keyed hash of `text` with its ASCII letters lower-cased (`lower`) or as is, under a
/// domain-separating `tag`.
fn text_hash(keys: &RandomState, tag: u8, text: &[u8], lower: bool) -> u64 {
    let mut hasher = keys.build_hasher();
    hasher.write_u8(tag);
    for &b in text {
        hasher.write_u8(if lower { b.to_ascii_lowercase() } else { b });
    }
    hasher.finish()
}

impl Mailboxes {
    /// None yet, at most `max` live.
    pub(super) fn new(keys: RandomState, max: usize) -> Mailboxes {
        Mailboxes {
            keys,
            made: 0,
            max,
            live: HashMap::new(),
            plus_tags: 0,
            by_recipient: HashMap::new(),
            by_domain: HashMap::new(),
            by_auth: HashMap::new(),
            by_header: HashMap::new(),
            expiry: BTreeSet::new(),
            members: BTreeMap::new(),
            order: BTreeMap::new(),
            record_bytes: 0,
            memberships: 0,
            gone_order: VecDeque::new(),
            gone: HashMap::new(),
        }
    }

    /// Whether no mailbox is live (then an insert routes nothing).
    pub(super) fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Whether no kept message is in any mailbox (then a removal unindexes nothing here).
    pub(super) fn no_members(&self) -> bool {
        self.members.is_empty()
    }

    /// A fresh id: the keyed hash of a counter and the time, never one live or tombstoned.
    fn fresh_id(&mut self, now: u64) -> MailboxId {
        const SPACE: u64 = 36u64.pow(ID_LEN as u32);
        loop {
            self.made += 1;
            let mut hasher = self.keys.build_hasher();
            hasher.write_u8(3);
            hasher.write_u64(self.made);
            hasher.write_u64(now);
            let id = MailboxId::from_number(hasher.finish() % SPACE);
            if !self.live.contains_key(&id) && !self.gone.contains_key(&id) {
                return id;
            }
        }
    }

    /// Whether a mailbox with `route` may be created now (the bounds on live mailboxes and
    /// header names; not the budget, which the store checks).
    pub(super) fn may_create(&self, route: Option<&Route>) -> Result<(), TooManyMailboxes> {
        if self.live.len() >= self.max {
            return Err(TooManyMailboxes::Live(self.max));
        }
        // Every distinct header name is looked for in every message: bound them, so that
        // header routes cannot make each insert scan thousands of names.
        if let Some(Route::Header { name, .. }) = route {
            if self.by_header.len() >= HEADER_NAMES_MAX
                && !self.by_header.contains_key(&name.to_ascii_lowercase())
            {
                return Err(TooManyMailboxes::HeaderNames(HEADER_NAMES_MAX));
            }
        }
        Ok(())
    }

    /// Creates a mailbox (`route` `None`: a plus-tag route on its own id) living `ttl_ns`
    /// from `now`; its record's charge is added to [`Mailboxes::record_bytes`] (the store
    /// made room for it first).
    pub(super) fn create(
        &mut self,
        route: Option<Route>,
        label: String,
        now: u64,
        ttl_ns: u64,
    ) -> Result<MailboxInfo, TooManyMailboxes> {
        self.may_create(route.as_ref())?;
        let id = self.fresh_id(now);
        let route = match route {
            None | Some(Route::PlusTag(_)) => Route::PlusTag(id),
            Some(route) => route,
        };
        match &route {
            Route::PlusTag(_) => self.plus_tags += 1,
            Route::Recipient(a) => self
                .by_recipient
                .entry(address_hash(&self.keys, a))
                .or_default()
                .push(id),
            Route::Domain(d) => self
                .by_domain
                .entry(text_hash(&self.keys, 4, d, true))
                .or_default()
                .push(id),
            Route::AuthUser(u) => self
                .by_auth
                .entry(text_hash(&self.keys, 5, u, false))
                .or_default()
                .push(id),
            Route::Header { name, value } => self
                .by_header
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push((value.clone(), id)),
        }
        let expires_ns = now.saturating_add(ttl_ns);
        self.expiry.insert((expires_ns, id));
        self.order.insert(self.made, id);
        self.record_bytes += record_charge(Some(&route), &label);
        let live = Live {
            route,
            label,
            created_ns: now,
            expires_ns,
            serial: self.made,
            seqs: Seqs::Many(VecDeque::new()),
        };
        let info = info(id, &live);
        self.live.insert(id, live);
        Ok(info)
    }

    /// Whether mailbox `id` is live.
    pub(super) fn is_live(&self, id: &MailboxId) -> bool {
        self.live.contains_key(id)
    }

    /// How many mailboxes are live.
    pub(super) fn live_count(&self) -> usize {
        self.live.len()
    }

    /// What the live mailboxes cost the budget: their records and their memberships.
    pub(super) fn charged(&self) -> u64 {
        self.record_bytes + (MAILBOX_OVERHEAD * self.memberships) as u64
    }

    /// How many mailbox tombstones are kept (at most [`MAILBOX_TOMBSTONES_MAX`]).
    pub(super) fn tombstones(&self) -> usize {
        self.gone_order.len()
    }

    /// The mailbox `id`, or its tombstone.
    pub(super) fn lookup(&self, id: &MailboxId) -> MailboxLookup {
        match (self.live.get(id), self.gone.get(id)) {
            (Some(live), _) => MailboxLookup::Found(info(*id, live)),
            (None, Some(gone)) => MailboxLookup::Gone(*gone),
            (None, None) => MailboxLookup::Unknown,
        }
    }

    /// The mailboxes a message with these recipients, AUTH user and raw bytes joins, sorted,
    /// each once.
    pub(super) fn route<'r>(
        &self,
        recipients: impl Iterator<Item = &'r [u8]>,
        auth_user: Option<&[u8]>,
        raw: &[u8],
    ) -> Vec<MailboxId> {
        let mut joins = Vec::new();
        let by_domain = !self.by_domain.is_empty();
        let by_recipient = !self.by_recipient.is_empty();
        for recipient in recipients {
            if self.plus_tags > 0 {
                if let Some(id) = plus_tag(recipient).and_then(MailboxId::parse) {
                    if self
                        .live
                        .get(&id)
                        .is_some_and(|l| matches!(l.route, Route::PlusTag(_)))
                    {
                        joins.push(id);
                    }
                }
            }
            if by_recipient {
                let hash = address_hash(&self.keys, recipient);
                self.join_checked(&self.by_recipient, hash, recipient, &mut joins);
            }
            if by_domain {
                let domain = Address::parse(recipient).domain();
                let hash = text_hash(&self.keys, 4, domain, true);
                self.join_checked(&self.by_domain, hash, recipient, &mut joins);
            }
        }
        if let Some(user) = auth_user.filter(|_| !self.by_auth.is_empty()) {
            let hash = text_hash(&self.keys, 5, user, false);
            for id in self.by_auth.get(&hash).into_iter().flatten() {
                if self
                    .live
                    .get(id)
                    .is_some_and(|l| l.route.covers(b"", Some(user)))
                {
                    joins.push(*id);
                }
            }
        }
        for (name, routes) in &self.by_header {
            if let Some(value) = first_field(raw, name) {
                let value = unfold(value);
                let value = value.trim_ascii();
                joins.extend(routes.iter().filter(|(v, _)| v == value).map(|(_, id)| *id));
            }
        }
        joins.sort_unstable();
        joins.dedup();
        joins
    }

    /// Adds the mailboxes of `table[hash]` whose route covers `recipient` (a hash collision
    /// never routes a message to the wrong mailbox).
    fn join_checked(
        &self,
        table: &HashMap<u64, Vec<MailboxId>>,
        hash: u64,
        recipient: &[u8],
        joins: &mut Vec<MailboxId>,
    ) {
        for id in table.get(&hash).into_iter().flatten() {
            if self
                .live
                .get(id)
                .is_some_and(|l| l.route.covers_recipient(recipient))
            {
                joins.push(*id);
            }
        }
    }

    /// Indexes message `seq` (the newest) in `joins`.
    pub(super) fn join(&mut self, seq: u64, joins: Vec<MailboxId>) {
        if joins.is_empty() {
            return;
        }
        for id in &joins {
            if let Some(live) = self.live.get_mut(id) {
                live.seqs.push(seq);
            }
        }
        self.memberships += joins.len();
        // Boxed: exactly the ids, no spare capacity (a `Vec` of pushes keeps room for 4).
        self.members.insert(seq, joins.into_boxed_slice());
    }

    /// Unindexes a removed message `seq` from its mailboxes; how many it was in.
    pub(super) fn leave(&mut self, seq: u64) -> usize {
        let Some(ids) = self.members.remove(&seq) else {
            return 0;
        };
        for id in &ids {
            if let Some(live) = self.live.get_mut(id) {
                live.seqs.remove(seq);
            }
        }
        self.memberships -= ids.len();
        ids.len()
    }

    /// The mailboxes message `seq` is in.
    pub(super) fn of(&self, seq: u64) -> Vec<MailboxId> {
        self.members
            .get(&seq)
            .map(|ids| ids.to_vec())
            .unwrap_or_default()
    }

    /// Whether message `seq` is in mailbox `id`.
    pub(super) fn holds(&self, id: &MailboxId, seq: u64) -> bool {
        self.members.get(&seq).is_some_and(|ids| ids.contains(id))
    }

    /// The seqs of mailbox `id` beyond `cursor` in `direction` (none for a mailbox not live).
    pub(super) fn seqs(
        &self,
        id: &MailboxId,
        cursor: Option<u64>,
        direction: Direction,
    ) -> Box<dyn Iterator<Item = u64> + '_> {
        match self.live.get(id) {
            Some(live) => live.seqs.range(cursor, direction),
            None => Box::new(std::iter::empty()),
        }
    }

    /// How many messages mailbox `id` holds.
    pub(super) fn count(&self, id: &MailboxId) -> usize {
        self.live.get(id).map_or(0, |l| l.seqs.len())
    }

    /// The ids of the mailboxes expired at `now`.
    pub(super) fn expired(&self, now: u64) -> Vec<MailboxId> {
        self.expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect()
    }

    /// Ends mailbox `id` for `reason` at `now`: unlinks it from its routes and from its
    /// messages, leaves its tombstone. Returns the seqs of its messages that are now in no
    /// mailbox (for the store to remove; appended to `orphans`), and the octets its record
    /// and its ended memberships were charged; `None` if it was not live.
    pub(super) fn end(
        &mut self,
        id: &MailboxId,
        reason: MailboxGoneReason,
        now: u64,
        orphans: &mut Vec<u64>,
    ) -> Option<u64> {
        let live = self.live.remove(id)?;
        self.expiry.remove(&(live.expires_ns, *id));
        self.order.remove(&live.serial);
        let record = record_charge(Some(&live.route), &live.label);
        self.record_bytes -= record;
        let unlink = |table: &mut HashMap<u64, Vec<MailboxId>>, hash: u64| {
            if let Some(list) = table.get_mut(&hash) {
                list.retain(|m| m != id);
                if list.is_empty() {
                    table.remove(&hash);
                }
            }
        };
        match &live.route {
            Route::PlusTag(_) => self.plus_tags -= 1,
            Route::Recipient(a) => {
                let hash = address_hash(&self.keys, a);
                unlink(&mut self.by_recipient, hash);
            }
            Route::Domain(d) => {
                let hash = text_hash(&self.keys, 4, d, true);
                unlink(&mut self.by_domain, hash);
            }
            Route::AuthUser(u) => {
                let hash = text_hash(&self.keys, 5, u, false);
                unlink(&mut self.by_auth, hash);
            }
            Route::Header { name, .. } => {
                let name = name.to_ascii_lowercase();
                if let Some(list) = self.by_header.get_mut(&name) {
                    list.retain(|(_, m)| m != id);
                    if list.is_empty() {
                        self.by_header.remove(&name);
                    }
                }
            }
        }
        let mut ended = 0;
        for seq in live.seqs.range(None, Direction::Newer) {
            if let Some(ids) = self.members.get_mut(&seq) {
                *ids = ids.iter().filter(|m| *m != id).copied().collect();
                ended += 1;
                if ids.is_empty() {
                    self.members.remove(&seq);
                    orphans.push(seq);
                }
            }
        }
        if self.gone_order.len() >= MAILBOX_TOMBSTONES_MAX {
            if let Some(old) = self.gone_order.pop_front() {
                self.gone.remove(&old);
            }
        }
        self.gone_order.push_back(*id);
        self.gone.insert(
            *id,
            MailboxGone {
                at: super::time(now),
                reason,
            },
        );
        self.memberships -= ended;
        Some(record + (MAILBOX_OVERHEAD * ended) as u64)
    }

    /// The invariants, checked the slow way: every membership in both directions, each
    /// mailbox's list ascending, the route tables naming exactly the live mailboxes.
    #[cfg(test)]
    pub(super) fn check(&self, kept: &dyn Fn(u64) -> bool) -> Result<(), String> {
        let mut from_lists: BTreeMap<u64, Vec<MailboxId>> = BTreeMap::new();
        for (id, live) in &self.live {
            let seqs: Vec<u64> = live.seqs.range(None, Direction::Newer).collect();
            if !seqs.windows(2).all(|w| w[0] < w[1]) {
                return Err(format!("mailbox {id} list not ascending: {seqs:?}"));
            }
            for seq in seqs {
                if !kept(seq) {
                    return Err(format!("mailbox {id} lists seq {seq}, not kept"));
                }
                from_lists.entry(seq).or_default().push(*id);
            }
        }
        let mut members: BTreeMap<u64, Vec<MailboxId>> = self
            .members
            .iter()
            .map(|(seq, ids)| (*seq, ids.to_vec()))
            .collect();
        for ids in members.values_mut() {
            ids.sort_unstable();
        }
        for ids in from_lists.values_mut() {
            ids.sort_unstable();
        }
        if members != from_lists {
            return Err(format!("members {members:?} != lists {from_lists:?}"));
        }
        let routed = self.plus_tags
            + self.by_recipient.values().map(Vec::len).sum::<usize>()
            + self.by_domain.values().map(Vec::len).sum::<usize>()
            + self.by_auth.values().map(Vec::len).sum::<usize>()
            + self.by_header.values().map(Vec::len).sum::<usize>();
        if routed != self.live.len()
            || self.expiry.len() != self.live.len()
            || self.order.len() != self.live.len()
        {
            return Err("route tables, expiry or order out of step".into());
        }
        let records: u64 = self
            .live
            .values()
            .map(|l| record_charge(Some(&l.route), &l.label))
            .sum();
        if records != self.record_bytes
            || self.memberships != self.members.values().map(|m| m.len()).sum::<usize>()
        {
            return Err(format!(
                "record bytes {} (sum {records}) or memberships {} out of step",
                self.record_bytes, self.memberships
            ));
        }
        if self.gone_order.len() > MAILBOX_TOMBSTONES_MAX
            || self.gone.len() != self.gone_order.len()
        {
            return Err("mailbox tombstone ring".into());
        }
        Ok(())
    }
}

/// A live mailbox's public record.
fn info(id: MailboxId, live: &Live) -> MailboxInfo {
    MailboxInfo {
        id,
        route: live.route.clone(),
        label: live.label.clone(),
        created_at: super::time(live.created_ns),
        expires_at: super::time(live.expires_ns),
        count: live.seqs.len(),
    }
}

/// What the budget charges for a live mailbox's record with `route` (`None`: plus-tag) and
/// `label` (see the module doc).
pub fn record_charge(route: Option<&Route>, label: &str) -> u64 {
    let text = match route {
        None | Some(Route::PlusTag(_)) => 0,
        Some(Route::Recipient(t) | Route::Domain(t) | Route::AuthUser(t)) => t.len(),
        Some(Route::Header { name, value }) => 2 * (name.len() + value.len()),
    };
    (MAILBOX_RECORD_OVERHEAD + label.len() + text) as u64
}
