//! The delivery loop itself (see the parent module for what it decides).
//!
//! # The loop, in order
//!
//! 1. Stop if asked. Take the ids committed since the last turn; admit messages into the
//!    active set while there is room (reading each envelope from the spool).
//! 2. Move the messages whose time has come from the due heap to the ready queue.
//! 3. Open connections while messages are ready and [`Hops::pick`] names a hop.
//! 4. `poll`, with the timeout set by the nearest of: a due message, a connection's
//!    deadline, a backed-off hop's end, the journal's sync.
//! 5. For each connection event (every event is a hint): complete a connect, read into the
//!    session, act on its events, write.
//! 6. Expire the deadlines that are due (a connect that takes too long, a session waiting
//!    past its limit); reap the connections that ended; sync the journal if it is time.
//!
//! What it does not do: parse SMTP (the session does), or block on anything but `poll` and
//! the spool's own file I/O under its lock.

mod control;
mod gauges;

use super::conn::{Conn, InFlight};
use super::convert;
use super::notify::{self, Which};
use super::plan::{self, Samples};
use super::tls::Connector;
use super::{DeliveryConfig, DeliveryStats, JOURNAL_SYNC_INTERVAL};
use crate::relay::client::session::{
    ClientConfig, ClientSession, Event, LocalReason, Reason, TlsPolicy, UsageError, Verdict, Wait,
};
use crate::relay::queue::RelayQueue;
use crate::relay::schedule::{DueQueue, Hops, Pick, ReadyQueue};
use crate::relay::spool::{Envelope, RecipientState, Recovered, SpoolId, SpoolRef};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The token of the loop's waker (the queue's committed ids, and stop).
pub const WAKER: Token = Token(usize::MAX);
/// The scratch read buffer shared by the loop's connections.
const SCRATCH_LEN: usize = 64 * 1024;
/// The longest `poll` wait, whatever is due: the clock is the wall clock (the spool's
/// times are Unix times), which can step.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);
/// How long a message whose notification could not be spooled waits before the next try.
const NOTIFICATION_RETRY: Duration = Duration::from_secs(5);
/// How long a next hop whose TLS handshake failed under `--relay-tls opportunistic` is then
/// reached in plain text (Postfix's TLS_README: "rather than give up on mail delivery, the
/// Postfix SMTP client retries the transaction with TLS disabled"), before TLS is tried
/// again: an hour, so a next hop with a TLS stack we cannot talk to costs one failed
/// handshake an hour, not one per connection.
const PLAIN_FALLBACK: Duration = Duration::from_secs(3600);
/// The reason kept for recipients deferred because no next hop took a connection.
const NO_HOP_REPLY: &[u8] = b"4.4.1 no next hop answered";
/// How long a connection with nothing to carry stays open for the next ready message
/// before its `QUIT` (Postfix's `smtp_connection_cache_time_limit` is 2 s too). Without it,
/// mail arriving at a steady few hundred messages a second found every connection gone
/// and paid a connect, greeting, `EHLO` and `QUIT` per message
/// (docs/benchmarks/2026-12-07-relay-speed.md).
const CONNECTION_IDLE_LIMIT: Duration = Duration::from_secs(2);

/// What a session that ended before it was ready leaves as its messages' last reply: the
/// reason it gives (a refused greeting, TLS required and not offered, AUTH refused...), or
/// `None` for a connection lost or never made (then [`NO_HOP_REPLY`]).
fn failure_text(error: Option<&Reason>) -> Option<Vec<u8>> {
    match error {
        None | Some(Reason::Local(LocalReason::ConnectionLost)) => None,
        Some(reason) => Some(convert::reason_text(reason)),
    }
}

/// Now, as a [`Duration`] since the Unix epoch (the spool's clock).
fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// One message in memory.
#[derive(Debug)]
struct Active {
    /// Where it is in the spool.
    place: SpoolRef,
    /// Its envelope.
    envelope: Envelope,
    /// Its recipients' states (as the spool has them).
    states: Vec<RecipientState>,
    /// Taken by a connection (in its batch or in flight): not scheduled meanwhile.
    busy: bool,
    /// Its delay warning was spooled (at most one per message and run: `notify`'s docs).
    delay_warned: bool,
}

/// The loop's state.
pub struct Loop {
    /// The shared spool and committed ids.
    queue: Arc<RelayQueue>,
    /// The configuration.
    config: DeliveryConfig,
    /// What every session is given.
    client: ClientConfig,
    /// TLS toward the next hops (`None` with `--relay-tls off`).
    tls: Option<Connector>,
    /// `client` without TLS: for a next hop in its plain-text fallback.
    client_plain: ClientConfig,
    /// Until when each next hop is reached without TLS after a failed opportunistic
    /// handshake ([`PLAIN_FALLBACK`]); zero: not in fallback.
    plain_until: Vec<Duration>,
    /// The poll.
    poll: Poll,
    /// Set by the handle to end the loop.
    stop: Arc<AtomicBool>,
    /// Counters.
    stats: Arc<DeliveryStats>,
    /// The active set.
    active: HashMap<SpoolId, Active>,
    /// The recipients of the messages in `active`, counted.
    active_recipients: usize,
    /// Ids not admitted yet (no room, or just committed).
    backlog: VecDeque<SpoolId>,
    /// Messages waiting for their time.
    due: DueQueue<SpoolId>,
    /// Messages due, waiting for a connection.
    ready: ReadyQueue<SpoolId>,
    /// The next hops.
    hops: Hops,
    /// Each next hop's name as kept with its replies (`Remote-MTA`): as given in
    /// `--relay-to`, or its IP address ([`DeliveryConfig::hop_names`]).
    hop_names: Vec<String>,
    /// Open connections.
    conns: Slab<Conn>,
    /// The jitter's samples.
    samples: Samples,
    /// The journal has entries not synced yet.
    journal_dirty: bool,
    /// The journal has entries staged and not written yet (written at the end of the turn).
    journal_staged: bool,
    /// When the journal was last synced.
    journal_synced: Duration,
    /// The scratch read buffer.
    scratch: Vec<u8>,
    /// The control socket of the queue tools (`control`).
    control: control::Control,
    /// When the gauges were last published (`gauges`).
    gauges_published: Duration,
}

impl Loop {
    /// A loop that has admitted nothing yet.
    pub fn new(
        queue: Arc<RelayQueue>,
        config: DeliveryConfig,
        client: ClientConfig,
        tls: Option<Connector>,
        poll: Poll,
        stop: Arc<AtomicBool>,
        stats: Arc<DeliveryStats>,
    ) -> Loop {
        let hops = Hops::new(
            config.hops.len(),
            config.connections_per_hop,
            config.hop_order,
        );
        let seed = now().as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32);
        let mut client_plain = client.clone();
        client_plain.tls = TlsPolicy::Off;
        let plain_until = vec![Duration::ZERO; config.hops.len()];
        let hop_names = config.names();
        let control = {
            let dir = queue.spool().dir().to_path_buf();
            control::Control::bind(&dir, poll.registry())
        };
        Loop {
            queue,
            config,
            client,
            tls,
            client_plain,
            plain_until,
            poll,
            stop,
            stats,
            active: HashMap::new(),
            active_recipients: 0,
            backlog: VecDeque::new(),
            due: DueQueue::new(),
            ready: ReadyQueue::new(),
            hops,
            hop_names,
            conns: Slab::new(),
            samples: Samples::new(seed),
            journal_dirty: false,
            journal_staged: false,
            journal_synced: now(),
            scratch: vec![0; SCRATCH_LEN],
            control,
            gauges_published: Duration::ZERO,
        }
    }

    /// Takes what the spool recovered: into the active set while there is room, the rest
    /// as ids (read again when admitted).
    pub fn admit_recovered(&mut self, recovered: Vec<Recovered>) {
        for message in recovered {
            let id = message.spool_ref.id;
            if self.has_room(message.envelope.recipients.len()) {
                self.insert(id, message.spool_ref, message.envelope, message.recipients);
            } else {
                self.backlog.push_back(id);
            }
        }
    }

    /// Runs until stopped.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let now = now();
            self.backlog.extend(self.queue.take_committed());
            self.admit_backlog();
            self.promote_due(now);
            self.open_connections(now);
            let timeout = self.poll_timeout(now);
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() != std::io::ErrorKind::Interrupted {
                    eprintln!("fastsmtpd: relay: poll failed: {error}");
                    break;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    control::LISTENER => self.on_control_accept(self::now()),
                    token if control::is_connection(token) => {
                        self.on_control_event(token, self::now())
                    }
                    token => self.on_conn_event(token.0),
                }
            }
            let now = self::now();
            self.expire(now);
            self.reap(now);
            self.control_turn(now);
            self.publish_gauges(now, false);
            self.sync_journal(now, false);
        }
        self.sync_journal(now(), true);
        self.control.close(self.poll.registry());
        for (_, mut conn) in std::mem::take(&mut self.conns) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    /// Adds a message to the active set and schedules it.
    fn insert(
        &mut self,
        id: SpoolId,
        place: SpoolRef,
        envelope: Envelope,
        mut states: Vec<RecipientState>,
    ) {
        // A spool always gives one state per recipient; be safe if not.
        states.resize(envelope.recipients.len(), RecipientState::Pending);
        self.active_recipients += envelope.recipients.len();
        if let Some(replaced) = self.active.insert(
            id,
            Active {
                place,
                envelope,
                states,
                busy: false,
                delay_warned: false,
            },
        ) {
            self.active_recipients -= replaced.envelope.recipients.len();
        }
        self.schedule(id, now());
    }

    /// Takes message `id` out of the active set.
    fn remove_active(&mut self, id: SpoolId) {
        if let Some(gone) = self.active.remove(&id) {
            self.active_recipients -= gone.envelope.recipients.len();
        }
    }

    /// Whether a message with `recipients` recipients fits in the active set (its bounds of
    /// messages and of recipients; an empty set takes any one message).
    fn has_room(&self, recipients: usize) -> bool {
        self.active.is_empty()
            || (self.active.len() < self.config.active_max.max(1)
                && self.active_recipients.saturating_add(recipients)
                    <= self.config.active_recipients_max)
    }

    /// Admits ids from the backlog while the active set has room.
    fn admit_backlog(&mut self) {
        while let Some(&id) = self.backlog.front() {
            if self.active.contains_key(&id) {
                self.backlog.pop_front();
                continue;
            }
            let recipients = self.queue.spool().get(id).map(|l| l.recipients.len());
            if recipients.is_some_and(|count| !self.has_room(count)) {
                break;
            }
            self.backlog.pop_front();
            let read = {
                let spool = self.queue.spool();
                spool.get(id).map(|listed| {
                    let place = listed.spool_ref;
                    let states = listed.recipients.to_vec();
                    (place, states, spool.read_message(&place))
                })
            };
            match read {
                None => {} // done meanwhile (or never committed): nothing to do
                Some((place, states, Ok((envelope, _body)))) => {
                    self.insert(id, place, envelope, states);
                }
                Some((_, _, Err(error))) => {
                    // It stays in the spool; a restart tries to read it again.
                    eprintln!("fastsmtpd: relay: cannot read spool message {id}: {error}");
                }
            }
        }
    }

    /// Puts a message where its states say: finished, due later, or ready now.
    fn schedule(&mut self, id: SpoolId, now: Duration) {
        let Some(active) = self.active.get(&id) else {
            return;
        };
        match plan::due_at(&active.states, plan::unix_ms(now)) {
            None => self.finish(id, now),
            Some(at) if at <= plan::unix_ms(now) => self.ready.push(id),
            Some(at) => self.due.push(Duration::from_millis(at), id),
        }
    }

    /// Moves due messages to the ready queue (skipping stale entries).
    fn promote_due(&mut self, now: Duration) {
        while let Some((_, id)) = self.due.pop_due(now) {
            let Some(active) = self.active.get(&id) else {
                continue;
            };
            if active.busy {
                continue;
            }
            match plan::due_at(&active.states, plan::unix_ms(now)) {
                None => self.finish(id, now),
                Some(at) if at <= plan::unix_ms(now) => self.ready.push(id),
                Some(at) => self.due.push(Duration::from_millis(at), id),
            }
        }
    }

    /// Opens connections while messages are ready and a hop has room.
    fn open_connections(&mut self, now: Duration) {
        // Connections kept open with nothing to carry take ready messages first.
        if !self.ready.is_empty() {
            let idle: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, conn)| conn.idle && !conn.done)
                .map(|(key, _)| key)
                .collect();
            for key in idle {
                if self.ready.is_empty() {
                    break;
                }
                self.conns[key].idle = false;
                self.start_next(key, now);
                self.drive(key, now);
            }
        }
        while !self.ready.is_empty() {
            let Pick::Hop(hop) = self.hops.pick(now) else {
                return;
            };
            let mut batch = VecDeque::new();
            while batch.len() < self.config.messages_per_connection.max(1) {
                let taken = self.ready.take_batch(1);
                let Some(&id) = taken.first() else {
                    break;
                };
                if let Some(active) = self.active.get_mut(&id) {
                    if !active.busy {
                        active.busy = true;
                        batch.push_back(id);
                    }
                }
            }
            if batch.is_empty() {
                return;
            }
            self.open(hop, batch, now);
        }
    }

    /// Opens one connection to `hop` for `batch`.
    fn open(&mut self, hop: usize, batch: VecDeque<SpoolId>, now: Duration) {
        let address = self.config.hops[hop];
        self.hops.on_opened(hop);
        DeliveryStats::add(&self.stats.connections, 1);
        // The configuration was checked at start, so the session cannot be refused here;
        // if it were, the connection fails like any other.
        let plain = self.plain_until.get(hop).is_some_and(|&until| now < until);
        let client = if plain {
            &self.client_plain
        } else {
            &self.client
        };
        let opened = ClientSession::new(client)
            .ok()
            .and_then(|session| Some((session, TcpStream::connect(address).ok()?)));
        if let Some((_, stream)) = &opened {
            // Commands and content go out in whole groups, never a byte at a time: Nagle's
            // algorithm could only hold a group back until the next hop acknowledged the
            // one before (up to a delayed ACK's 40 ms). The server's sockets do the same.
            let _ = stream.set_nodelay(true);
        }
        let (session, stream) = match opened {
            Some(opened) => opened,
            None => {
                self.connection_failed(hop, batch, now, None, false);
                return;
            }
        };
        let deadline = now.saturating_add(self.config.connect_timeout);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Conn::new(hop, stream, session, batch, deadline);
        if self
            .poll
            .registry()
            .register(
                &mut conn.stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            let batch = std::mem::take(&mut conn.batch);
            self.connection_failed(hop, batch, now, None, false);
            return;
        }
        entry.insert(conn);
    }

    /// A connection to `hop` failed before its session was ready: back the hop off; its
    /// messages go back to the ready queue without an attempt, unless every hop is now
    /// backed off (then each counts an attempt with `reason`, or [`NO_HOP_REPLY`] without
    /// one: see the parent module's decision). `replied`: the hop sent at least one reply
    /// (a greeting), so `reason` is kept with its name (`Remote-MTA`); a hop never heard
    /// from is not named.
    fn connection_failed(
        &mut self,
        hop: usize,
        batch: VecDeque<SpoolId>,
        now: Duration,
        reason: Option<Vec<u8>>,
        replied: bool,
    ) {
        DeliveryStats::add(&self.stats.connect_failures, 1);
        self.hops.on_closed(hop);
        let sample = self.samples.next_sample();
        if let Some(health) = self.hops.health_mut(hop) {
            health.on_connect_failed(now, &self.config.retry, sample);
        }
        let all_down = self.hops.health().iter().all(|health| !health.is_open(now));
        if all_down {
            let remote_mta = match (&reason, replied) {
                (Some(_), true) => self.remote_mta(hop),
                _ => Vec::new(),
            };
            let reason = reason.unwrap_or_else(|| NO_HOP_REPLY.to_vec());
            for id in batch {
                self.defer_untried(id, now, &reason, &remote_mta);
            }
        } else {
            for &id in batch.iter().rev() {
                if let Some(active) = self.active.get_mut(&id) {
                    active.busy = false;
                    self.ready.push_front(id);
                }
            }
        }
    }

    /// The name kept for next hop `hop` with the replies it gave (`Remote-MTA`): as given in
    /// `--relay-to`, or its IP address.
    fn remote_mta(&self, hop: usize) -> Vec<u8> {
        self.hop_names
            .get(hop)
            .map(|name| name.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// Every recipient of `id` not final is deferred with `reason` (an attempt), said in a
    /// session with `remote_mta` (empty: none).
    fn defer_untried(&mut self, id: SpoolId, now: Duration, reason: &[u8], remote_mta: &[u8]) {
        let Some(active) = self.active.get(&id) else {
            return;
        };
        let indexes = plan::to_send(&active.states);
        let outcomes: Vec<(usize, Verdict, Vec<u8>)> = indexes
            .into_iter()
            .map(|index| (index, Verdict::Deferred, reason.to_vec()))
            .collect();
        self.apply(id, outcomes, remote_mta, now);
    }

    /// Records outcomes `(recipient index, verdict, reply)` of message `id`, said in a
    /// session with the next hop `remote_mta` (empty: none reached, or our own reason before
    /// any session), then schedules it again (or finishes it).
    fn apply(
        &mut self,
        id: SpoolId,
        outcomes: Vec<(usize, Verdict, Vec<u8>)>,
        remote_mta: &[u8],
        now: Duration,
    ) {
        let Some(active) = self.active.get_mut(&id) else {
            return;
        };
        active.busy = false;
        let arrived = Duration::from_millis(active.envelope.arrival_unix_ms);
        let mut updates = Vec::with_capacity(outcomes.len());
        for (index, verdict, reply) in outcomes {
            let Some(previous) = active.states.get(index) else {
                continue;
            };
            if previous.is_final() {
                continue;
            }
            let sample = self.samples.next_sample();
            let state = plan::state_after(
                previous,
                verdict,
                reply,
                remote_mta,
                arrived,
                now,
                &self.config.retry,
                sample,
            );
            let counter = match &state {
                RecipientState::Delivered { .. } => &self.stats.delivered,
                RecipientState::Failed { .. } => &self.stats.failed,
                _ => &self.stats.deferred,
            };
            DeliveryStats::add(counter, 1);
            if let RecipientState::Delivered { .. } = state {
                self.stats
                    .delivered_latency
                    .observe(now.saturating_sub(arrived));
            }
            active.states[index] = state.clone();
            updates.push((index, state));
        }
        if !updates.is_empty() {
            let mut spool = self.queue.spool();
            for (index, state) in updates {
                if let Err(error) = spool.set_recipient_state(id, index, state) {
                    eprintln!("fastsmtpd: relay: spool message {id}: {error}");
                }
            }
            drop(spool);
            self.journal_dirty = true;
            self.journal_staged = true;
        }
        self.warn_delay(id, now);
        self.schedule(id, now);
    }

    /// Records the outcomes of a transaction as [`Loop::apply`] does, after spooling the
    /// `relayed` notification its delivered recipients asked for when the next hop does not
    /// offer DSN (`notify::relayed_recipients`, RFC 3461 §5.2.2). The notification goes
    /// first: should the process die between the two, the recipients are sent again and so
    /// is the notification (duplicates, never a loss). One that cannot be spooled is logged
    /// and not tried again (a success report, not mail: §6.1's duty is the failure one).
    fn apply_transaction(
        &mut self,
        id: SpoolId,
        outcomes: Vec<(usize, Verdict, Vec<u8>)>,
        hop: usize,
        hop_offers_dsn: bool,
        now: Duration,
    ) {
        let remote_mta = self.remote_mta(hop);
        if let (true, Some(active)) = (self.config.dsn, self.active.get(&id)) {
            let relayed = notify::relayed_recipients(&active.envelope, &outcomes, hop_offers_dsn);
            if !relayed.is_empty() {
                let mut states = active.states.clone();
                for (index, _, reply) in outcomes.iter().filter(|o| relayed.contains(&o.0)) {
                    if let Some(state) = states.get_mut(*index) {
                        *state = RecipientState::Delivered {
                            reply: reply.clone(),
                            remote_mta: remote_mta.clone(),
                        };
                    }
                }
                let spooled = notify::spool_notification(
                    &self.queue,
                    &self.config.hostname,
                    id,
                    &active.place,
                    &active.envelope,
                    &states,
                    Which::Relayed(&relayed),
                    plan::unix_ms(now),
                );
                self.notification_spooled(id, "relayed", spooled);
            }
        }
        self.apply(id, outcomes, &remote_mta, now);
    }

    /// Spools the delay warning of `id` when it is due (`--delay-warning`,
    /// `notify::delay_warning_due`) and was not sent yet. One that cannot be spooled is
    /// tried again at the next deferral.
    fn warn_delay(&mut self, id: SpoolId, now: Duration) {
        let Some(active) = self.active.get(&id) else {
            return;
        };
        let arrived = Duration::from_millis(active.envelope.arrival_unix_ms);
        if !self.config.dsn
            || active.delay_warned
            || !notify::delay_warning_due(
                &active.envelope,
                &active.states,
                arrived,
                now,
                self.config.delay_warning,
            )
        {
            return;
        }
        let retry_until = arrived.saturating_add(self.config.retry.lifetime());
        let spooled = notify::spool_notification(
            &self.queue,
            &self.config.hostname,
            id,
            &active.place,
            &active.envelope,
            &active.states,
            Which::Delay {
                retry_until_unix_ms: plan::unix_ms(retry_until),
            },
            plan::unix_ms(now),
        );
        if spooled.is_ok() {
            if let Some(active) = self.active.get_mut(&id) {
                active.delay_warned = true;
            }
        }
        self.notification_spooled(id, "delay", spooled);
    }

    /// Counts and schedules a spooled notification, or logs why it could not be.
    fn notification_spooled(
        &mut self,
        id: SpoolId,
        what: &str,
        spooled: std::io::Result<Option<SpoolId>>,
    ) {
        match spooled {
            Ok(Some(new_id)) => {
                DeliveryStats::add(&self.stats.notifications, 1);
                self.backlog.push_back(new_id);
            }
            Ok(None) => {}
            Err(error) => {
                eprintln!(
                    "fastsmtpd: relay: cannot spool the {what} notification for message {id}: \
                     {error}"
                );
            }
        }
    }

    /// Every recipient of `id` is final: spool the failure notification if one is due, then
    /// mark the message done (RFC 5321 §6.1: in that order).
    fn finish(&mut self, id: SpoolId, now: Duration) {
        let Some(active) = self.active.get(&id) else {
            return;
        };
        if self.config.dsn
            && !active.envelope.reverse_path.is_empty()
            && plan::any_failed(&active.states)
        {
            let spooled = notify::spool_notification(
                &self.queue,
                &self.config.hostname,
                id,
                &active.place,
                &active.envelope,
                &active.states,
                Which::Failure,
                plan::unix_ms(now),
            );
            match spooled {
                Ok(Some(new_id)) => {
                    DeliveryStats::add(&self.stats.notifications, 1);
                    self.backlog.push_back(new_id);
                }
                Ok(None) => {}
                Err(error) => {
                    eprintln!(
                        "fastsmtpd: relay: cannot spool the notification for message {id}: \
                         {error}; trying again"
                    );
                    self.due.push(now.saturating_add(NOTIFICATION_RETRY), id);
                    return;
                }
            }
        }
        if let Err(error) = self.queue.spool().mark_done(id) {
            eprintln!("fastsmtpd: relay: spool message {id}: {error}");
        }
        self.journal_dirty = true;
        self.journal_staged = true;
        self.remove_active(id);
        DeliveryStats::add(&self.stats.messages_done, 1);
    }

    /// The poll's timeout: until the nearest thing due (at most [`MAX_POLL_WAIT`]).
    fn poll_timeout(&self, now: Duration) -> Duration {
        if self.control.has_work() {
            return Duration::ZERO;
        }
        let mut next = now.saturating_add(MAX_POLL_WAIT);
        if let Some(due) = self.due.next_due() {
            next = next.min(due);
        }
        for (_, conn) in self.conns.iter() {
            next = next.min(conn.deadline);
        }
        if !self.ready.is_empty() {
            for health in self.hops.health() {
                if health.not_before() > now {
                    next = next.min(health.not_before());
                }
            }
        }
        if self.journal_dirty {
            next = next.min(self.journal_synced.saturating_add(JOURNAL_SYNC_INTERVAL));
        }
        next.saturating_sub(now)
    }

    /// A connection's event: connect completion, reads, the session's events, writes.
    fn on_conn_event(&mut self, key: usize) {
        let now = now();
        let override_limit = self.config.session_timeout;
        let Some(conn) = self.conns.get_mut(key) else {
            return; // stale token
        };
        if conn.done {
            return;
        }
        if !conn.connected {
            match conn.check_connected() {
                Ok(true) => conn.arm(now, override_limit),
                Ok(false) => return,
                Err(_) => {
                    conn.session.on_disconnect();
                }
            }
        }
        if conn.connected && conn.read_into_session(&mut self.scratch) {
            conn.arm(now, override_limit);
        }
        self.drive(key, now);
    }

    /// Acts on the session's events, then writes.
    fn drive(&mut self, key: usize, now: Duration) {
        let override_limit = self.config.session_timeout;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let Some(event) = conn.session.next_event() else {
                break;
            };
            match event {
                Event::Ready => {
                    if !conn.greeted {
                        conn.greeted = true;
                        let hop = conn.hop;
                        if let Some(health) = self.hops.health_mut(hop) {
                            health.on_connected();
                        }
                    }
                    self.start_next(key, now);
                }
                Event::Content => {
                    let conn = &mut self.conns[key];
                    if let Some(current) = &conn.current {
                        if conn.session.accepts_content() {
                            let _ = conn
                                .session
                                .content_into(&current.body, true, &mut conn.out);
                        }
                    }
                }
                Event::TransactionDone(report) => {
                    conn.reported += 1;
                    let hop = conn.hop;
                    let hop_offers_dsn = conn.session.capabilities().dsn;
                    if let Some(current) = conn.current.take() {
                        let outcomes = current
                            .recipients
                            .iter()
                            .zip(&report.recipients)
                            .map(|(&index, outcome)| {
                                let reply = match (outcome.verdict, &report.message) {
                                    // Delivered: the message reply is the one that decided.
                                    (Verdict::Delivered, Some(reply)) => {
                                        reply.to_string().into_bytes()
                                    }
                                    _ => convert::reason_text(&outcome.reason),
                                };
                                (index, outcome.verdict, reply)
                            })
                            .collect();
                        self.apply_transaction(current.id, outcomes, hop, hop_offers_dsn, now);
                    }
                }
                Event::StartTls => {
                    // `220` to STARTTLS: the handshake starts with the next flush, unless the
                    // same read already ended the session (octets behind the `220`). Without
                    // a connector (`--relay-tls off` never asks) the session is ended.
                    if conn.session.waiting_for() == Some(Wait::Handshake) {
                        let hop = conn.hop;
                        match self.tls.as_ref().and_then(|tls| tls.connect(hop)) {
                            Some(tls) => self.conns[key].start_tls(tls),
                            None => self.conns[key].session.on_disconnect(),
                        }
                    }
                }
                Event::Closed { error } => {
                    conn.done = true;
                    // Before its first report a session that ends in error is a failed
                    // connection, greeted or not (see `reap`).
                    if conn.reported == 0 && conn.failure.is_none() {
                        conn.failure = failure_text(error.as_ref());
                    }
                }
            }
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.flush() {
            conn.arm(now, override_limit);
        }
        if conn.write_failed && !conn.done {
            // The failed write told the session the connection is gone: act on the reports
            // and the end it queued. Nothing more is written, so this recurses once.
            conn.done = true;
            self.drive(key, now);
        }
    }

    /// Takes a message from the ready queue for a connection that has room (marked busy).
    fn take_ready(&mut self) -> Option<SpoolId> {
        loop {
            let id = *self.ready.take_batch(1).first()?;
            if let Some(active) = self.active.get_mut(&id) {
                if !active.busy {
                    active.busy = true;
                    return Some(id);
                }
            }
        }
    }

    /// Starts the next message of connection `key`: from its batch, else from the ready
    /// queue while it may carry more; with none, the connection stays open
    /// ([`CONNECTION_IDLE_LIMIT`]) unless it carried its most, then `QUIT`.
    fn start_next(&mut self, key: usize, now: Duration) {
        let limit = self.config.messages_per_connection.max(1);
        loop {
            let next = match self.conns[key].batch.pop_front() {
                Some(id) => Some(id),
                None if self.conns[key].carried < limit => self.take_ready(),
                None => None,
            };
            let Some(id) = next else {
                let conn = &mut self.conns[key];
                if conn.carried < limit {
                    conn.idle = true;
                    conn.deadline = now.saturating_add(CONNECTION_IDLE_LIMIT);
                } else {
                    let _ = conn.session.finish();
                }
                return;
            };
            let Some(active) = self.active.get(&id) else {
                continue;
            };
            let recipients = plan::to_send(&active.states);
            if recipients.is_empty() {
                self.apply(id, Vec::new(), &[], now);
                continue;
            }
            let read = self.queue.spool().read_body(&active.place);
            let body = match read {
                Ok(body) => body,
                Err(error) => {
                    eprintln!("fastsmtpd: relay: cannot read spool message {id}: {error}");
                    let outcomes = recipients
                        .iter()
                        .map(|&index| {
                            (
                                index,
                                Verdict::Deferred,
                                b"4.3.0 spool read failed".to_vec(),
                            )
                        })
                        .collect();
                    self.apply(id, outcomes, &[], now);
                    continue;
                }
            };
            let envid = convert::envid_xtext(&active.envelope);
            let sent = convert::client_recipients(&active.envelope, &recipients);
            let envelope =
                convert::client_envelope(&active.envelope, &sent, &body, envid.as_deref());
            let conn = &mut self.conns[key];
            match conn.session.start_transaction(&envelope) {
                Ok(()) => {
                    conn.carried += 1;
                    conn.idle = false;
                    conn.current = Some(InFlight {
                        id,
                        recipients,
                        body,
                    });
                    return;
                }
                Err(UsageError::NotNow) => {
                    // The session ended under us (its Closed event follows): keep it.
                    conn.batch.push_front(id);
                    return;
                }
                Err(error) => {
                    // An envelope the client cannot send (a line break in an address, a
                    // bad parameter): it never will be, so its recipients fail.
                    let reply = format!("5.1.3 cannot be sent: {error}").into_bytes();
                    let outcomes = recipients
                        .iter()
                        .map(|&index| (index, Verdict::Failed, reply.clone()))
                        .collect();
                    self.apply(id, outcomes, &[], now);
                }
            }
        }
    }

    /// Ends the waits that ran out.
    fn expire(&mut self, now: Duration) {
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| !conn.done && conn.deadline <= now)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            let conn = &mut self.conns[key];
            if conn.idle {
                // Nothing came for it in time: close it politely.
                conn.idle = false;
                let _ = conn.session.finish();
                conn.arm(now, self.config.session_timeout);
            } else if conn.connected {
                conn.session.on_timeout();
            } else {
                conn.session.on_disconnect();
            }
            self.drive(key, now);
        }
    }

    /// Removes the connections that ended; their unstarted messages go back.
    fn reap(&mut self, now: Duration) {
        let ended: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.done)
            .map(|(key, _)| key)
            .collect();
        for key in ended {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            if let Some(current) = conn.current.take() {
                // No report came for it (should not happen: the session reports every
                // transaction): defer what it carried.
                let outcomes = current
                    .recipients
                    .iter()
                    .map(|&index| (index, Verdict::Deferred, b"4.4.2 connection lost".to_vec()))
                    .collect();
                let remote_mta = self.remote_mta(conn.hop);
                self.apply(current.id, outcomes, &remote_mta, now);
            }
            let batch = std::mem::take(&mut conn.batch);
            // A session that was ready but ended in error before reporting any transaction
            // (out of sync right after its EHLO, a `421` before the first MAIL): the next hop
            // misbehaves, so it is backed off like a connection that failed; putting the
            // messages straight back would reconnect to it without end (found by the fresh
            // review: 18 000 connections in 12 s to a hop with one extra EHLO reply line).
            let failed_early = conn.reported == 0 && conn.failure.is_some();
            if conn.greeted && !failed_early {
                self.hops.on_closed(conn.hop);
                for &id in batch.iter().rev() {
                    if let Some(active) = self.active.get_mut(&id) {
                        active.busy = false;
                        self.ready.push_front(id);
                    }
                }
            } else if conn.handshaking && self.client.tls == TlsPolicy::Opportunistic {
                // The TLS handshake failed (an error, an alert, a hang-up or a timeout):
                // opportunistic TLS then goes on in plain text, as Postfix does, on a new
                // connection at once, the messages using no attempt and the hop not backed
                // off (it answered).
                if let Some(until) = self.plain_until.get_mut(conn.hop) {
                    *until = now.saturating_add(PLAIN_FALLBACK);
                }
                self.hops.on_closed(conn.hop);
                for &id in batch.iter().rev() {
                    if let Some(active) = self.active.get_mut(&id) {
                        active.busy = false;
                        self.ready.push_front(id);
                    }
                }
            } else {
                let failure = conn.failure.take();
                self.connection_failed(conn.hop, batch, now, failure, conn.replied);
            }
        }
    }

    /// Writes the turn's staged journal entries (one write for every state the turn
    /// recorded), and syncs the journal when it has news and it is time (or `force`).
    fn sync_journal(&mut self, now: Duration, force: bool) {
        if self.journal_staged {
            self.journal_staged = false;
            if let Err(error) = self.queue.spool().flush_journal() {
                eprintln!("fastsmtpd: relay: cannot write the spool journal: {error}");
            }
        }
        if !self.journal_dirty {
            return;
        }
        if !force && now < self.journal_synced.saturating_add(JOURNAL_SYNC_INTERVAL) {
            return;
        }
        if let Err(error) = self.queue.spool().sync_journal() {
            eprintln!("fastsmtpd: relay: cannot sync the spool journal: {error}");
        }
        self.journal_dirty = false;
        self.journal_synced = now;
    }
}
