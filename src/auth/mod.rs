//! SMTP AUTH's back end: who may log in (`--auth any` or `--auth file:PATH`), and checking a
//! password off the event loop, within bounds a hostile client cannot stretch.
//!
//! What it does: answer [`Authenticator::check`] for the credentials a session collected
//! (`crate::proto::sasl` decodes them). `--auth any` accepts every user and password (a
//! sink that records who logged in). `--auth file:PATH` looks the user up in a password file
//! ([`passwords`]); a `{PLAIN}` entry is compared at once, while Argon2 and bcrypt hashes,
//! slow on purpose, are checked on verifier threads so that a login never stalls the other
//! connections of a worker: the answer comes back through the worker's mailbox
//! (`crate::wake`), like a stored message's. The file is read again on SIGHUP
//! ([`Authenticator::reload`]); a file that no longer parses keeps the old users.
//!
//! Bounds (a password check is the most expensive thing a client can ask for). A client is
//! its key ([`ClientKey`]: an IPv4 address, or an IPv6 /64).
//! * **Failures, not attempts, are what is bounded**: at most [`AuthLimits::failures`] per
//!   client and window (`--auth-max-failures-per-ip`, `--auth-failure-window`; default
//!   [`DEFAULT_MAX_FAILURES`] per [`DEFAULT_FAILURE_WINDOW`], a burst of that many and then
//!   one more per window ÷ N, see `crate::peer::RateBook`). Past it every attempt of that
//!   client is answered [`Verdict::Limited`] (`454 4.7.0`) at once, without a check, whatever
//!   the password, until the window lets one more through; a check already queued when the
//!   limit is reached is answered the same when its turn comes. So guesses per client are
//!   bounded by the window, however many connections it opens, while a pool of correct
//!   logins from one host never fails and is never slowed.
//! * **The answer's time does not depend on the password**: `235` and `535` are both sent
//!   when the check is done (a hash takes as long whether it matches or not; an unknown user
//!   is checked against a dummy hash made like the file's own, same algorithm and cost).
//!   There is no extra delay on failures any more: it told a client that hears nothing
//!   within a fraction of a second that its guess was wrong, and it held the connection (and
//!   its per-address slot) for nothing. The failure bound above replaces it.
//! * **Checks are shared fairly**: the queue is a `crate::peer::FairQueue`, one lane per
//!   client served in turn, and a client without a failure within about the window goes
//!   before clients with one. A correct login therefore waits for the checks running now
//!   and, at worst, one check of each other client without failures: once a guessing
//!   client has failed, its flood, from one address or many, no longer delays it (a
//!   first-come queue of 128 made it wait for all of them). What remains is the first
//!   round of an attack from fresh addresses: before each has failed once, they are
//!   indistinguishable from honest clients and share the turns with them.
//! * **Pending checks are bounded**: at most [`AuthLimits::pending_per_client`] queued or
//!   running per client (`--auth-max-pending-per-ip`, default
//!   [`DEFAULT_MAX_PENDING_PER_CLIENT`]: above the pools real senders open from one host)
//!   and [`MAX_PENDING`] in all; past the first [`Verdict::Busy`] (`454 4.7.0`) at once.
//!   When the whole queue is full, a client with fewer checks queued (or without recent
//!   failures) takes the place of the newest check of the client with the most queued (or of
//!   one that failed recently), which is answered `Busy`: a flood from many clients cannot
//!   shut others out.
//! * A check whose connection has gone is taken out of the queue at once ([`Ticket`]'s drop);
//!   one already running still counts its failure.
//!
//! What it does not do: speak SASL (the session does), choose replies, or log a password
//! (nothing here prints one; `Secret`'s `Debug` hides it).

pub mod passwords;

use crate::lock::{lock, read, wait, write};
use crate::peer::{ClientKey, FairQueue, RateBook, RateLimit};
use crate::wake::{Notify, Wake};
use passwords::{Secret, Users};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Checks queued or running at once per client, by default (`--auth-max-pending-per-ip`):
/// well above the connection pools senders open from one host (Nodemailer's is 5, a
/// benchmark's a few dozen at most share one address), so a pool logging in at once never
/// gets `454`, while one client still cannot fill the queue alone.
pub const DEFAULT_MAX_PENDING_PER_CLIENT: u32 = 20;
/// Checks queued or running at once over all clients; more get `454 4.7.0` (or take the
/// place of a flooding client's newest check, see the module docs).
pub const MAX_PENDING: usize = 1024;
/// Failed attempts per client and window, by default (`--auth-max-failures-per-ip`).
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// The window of [`DEFAULT_MAX_FAILURES`] (`--auth-failure-window`; Postfix's anvil counts
/// in windows of 60 s, `anvil_rate_time_unit`).
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Verifier threads, by default (`--auth-threads`): enough that one slow hash does not hold
/// every login up, few enough that hashing cannot take the event loops' cores. A bcrypt of
/// cost 12 takes about 0.25 s of one core, so 20 logins at once are answered within about
/// 2.5 s on two threads.
pub const DEFAULT_THREADS: usize = 2;
/// The most verifier threads (`--auth-threads`).
pub const MAX_THREADS: usize = 64;
/// Clients whose failures are remembered at most (past it the ones that would be forgiven
/// first are forgotten).
const MAX_REMEMBERED: usize = 65_536;

/// Where the users come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// `--auth any`: every credential is accepted (the user is recorded).
    Any,
    /// `--auth file:PATH`: a password file (see [`passwords`]).
    File(PathBuf),
}

impl std::str::FromStr for AuthSource {
    type Err = String;

    fn from_str(text: &str) -> Result<AuthSource, String> {
        match text {
            "any" => Ok(AuthSource::Any),
            _ => match text.strip_prefix("file:") {
                Some(path) if !path.is_empty() => Ok(AuthSource::File(PathBuf::from(path))),
                _ => Err(format!(
                    "{text:?}: expected `any` or `file:PATH` (a file of user:hash lines)"
                )),
            },
        }
    }
}

/// What one client may ask of the checkers (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Checks queued or running at once per client (`--auth-max-pending-per-ip`).
    pub pending_per_client: u32,
    /// Failed attempts per client and window (`--auth-max-failures-per-ip`,
    /// `--auth-failure-window`); `events == 0`: no limit.
    pub failures: RateLimit,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            pending_per_client: DEFAULT_MAX_PENDING_PER_CLIENT,
            failures: RateLimit {
                events: DEFAULT_MAX_FAILURES,
                window: DEFAULT_FAILURE_WINDOW,
            },
        }
    }
}

/// What became of an attempt: [`CheckVerdict`](crate::wake::CheckVerdict), defined beside the
/// mailbox that carries it to the worker.
pub use crate::wake::CheckVerdict as Verdict;

/// The answer to [`Authenticator::check`].
#[derive(Debug)]
pub enum Check {
    /// Decided at once.
    Now(Verdict),
    /// A hash is being checked on a verifier thread; the verdict arrives through the
    /// [`Notify`] given. Dropping the ticket (the connection closed) cancels the check.
    Pending(Ticket),
}

/// A queued check's handle: dropping it takes the check out of the queue if it has not
/// started, and silences its verdict if it has.
#[derive(Debug)]
pub struct Ticket {
    /// The checkers' shared state.
    shared: Arc<Shared>,
    /// The client the check is queued under.
    client: ClientKey,
    /// The check's id in the queue.
    id: u64,
    /// Set when the connection no longer wants the verdict.
    cancelled: Arc<AtomicBool>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        let removed = lock(&self.shared.state).queue.remove(self.client, self.id);
        if let Some(mut job) = removed {
            crate::proto::sasl::wipe(&mut job.password);
        }
    }
}

/// One hash check for a verifier thread.
struct Job {
    /// The user's secret (or the dummy one for an unknown user).
    secret: Secret,
    /// Whether the user exists (a dummy check always fails).
    known: bool,
    /// The password, wiped after the check.
    password: Vec<u8>,
    /// Set when the connection went away: nobody hears the verdict.
    cancelled: Arc<AtomicBool>,
    /// Whom to tell.
    notify: Notify,
}

/// What the verifier threads and the workers share.
struct Shared {
    /// The queue and the failure book, under one lock (held for microseconds: never while
    /// hashing).
    state: Mutex<State>,
    /// Wakes a verifier thread when a check is queued (or all are told to stop).
    work: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The checkers' state.
struct State {
    /// Checks waiting, per client, served in turn.
    queue: FairQueue<Job>,
    /// Recent failures per client.
    failures: RateBook,
    /// The id of the next check.
    next_id: u64,
    /// Set when the [`Authenticator`] is gone: the verifier threads end.
    closed: bool,
}

impl State {
    /// A client's rank in the queue: one without a failure within about the window goes
    /// first (`RateBook::is_quiet`: a client pacing its failures just slower than they drain
    /// still counts as failing).
    fn rank(&self, client: ClientKey, now: Instant) -> u8 {
        u8::from(!self.failures.is_quiet(client, now))
    }

    /// The queue is full: picks whose newest queued check gives way to `client`'s, if any
    /// should (see the module docs), and takes it out.
    fn make_room_for(&mut self, client: ClientKey, now: Instant) -> Option<Job> {
        let mine = (self.rank(client, now), self.queue.pending(client) as usize);
        let victim = self
            .queue
            .waiting_clients()
            .filter(|other| *other != client)
            .map(|other| (self.rank(other, now), self.queue.queued_of(other), other))
            .max()?;
        let (victim_rank, victim_queued, victim) = victim;
        let gives_way = victim_rank > mine.0 || victim_queued > mine.1 + 1;
        if !gives_way {
            return None;
        }
        self.queue.remove_newest(victim).map(|(_, job)| job)
    }
}

/// Tells a check's connection its verdict (unless it went away).
fn report(job: Job, verdict: Verdict) {
    if job.cancelled.load(Ordering::Relaxed) {
        return;
    }
    job.notify.send(Wake::Auth(verdict));
}

/// Checks credentials for every worker.
pub struct Authenticator {
    /// Where the users come from.
    source: AuthSource,
    /// What one client may ask.
    limits: AuthLimits,
    /// The users of the password file (empty for `any`), and the dummy secret for unknown
    /// users, made like their hashes.
    users: RwLock<Arc<(Users, Secret)>>,
    /// The queue, the failure book and the verifier threads' wake-up.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("source", &self.source)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.work.notify_all();
    }
}

impl Authenticator {
    /// Loads the users (for a file) and starts `threads` verifier threads (for a file only;
    /// see [`DEFAULT_THREADS`]).
    pub fn start(
        source: AuthSource,
        limits: AuthLimits,
        threads: usize,
    ) -> Result<Arc<Authenticator>, String> {
        let (users, dummy) = match &source {
            AuthSource::Any => (Users::default(), Secret::Plain(Vec::new())),
            AuthSource::File(path) => {
                let users = Users::load(path)?;
                let dummy = users.dummy_like_most();
                (users, dummy)
            }
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: FairQueue::new(),
                failures: RateBook::new(limits.failures, MAX_REMEMBERED),
                next_id: 0,
                closed: false,
            }),
            work: Condvar::new(),
        });
        if let AuthSource::File(_) = source {
            for i in 0..threads.max(1) {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("auth-verifier-{i}"))
                    .spawn(move || verify_loop(&shared))
                    .map_err(|e| format!("--auth: cannot start a verifier thread: {e}"))?;
            }
        }
        Ok(Arc::new(Authenticator {
            source,
            limits,
            users: RwLock::new(Arc::new((users, dummy))),
            shared,
        }))
    }

    /// Checks `user` and `password` for a client at `client`: at once (`--auth any`, a
    /// `{PLAIN}` entry, a client past its failure limit, a full queue), or on a verifier
    /// thread, which reports through `notify` ([`Check::Pending`]).
    pub fn check(
        &self,
        client: IpAddr,
        user: &[u8],
        password: &[u8],
        notify: impl FnOnce() -> Notify,
    ) -> Check {
        if self.source == AuthSource::Any {
            return Check::Now(Verdict::Accepted);
        }
        let client = ClientKey::of(client);
        let now = Instant::now();
        if lock(&self.shared.state).failures.is_over(client, now) {
            return Check::Now(Verdict::Limited);
        }
        let users = Arc::clone(&read(&self.users));
        let (users, dummy) = &*users;
        let (secret, known) = match users.get(user) {
            Some(secret) if secret.is_cheap() => {
                if secret.matches(password) {
                    return Check::Now(Verdict::Accepted);
                }
                lock(&self.shared.state).failures.record(client, now);
                return Check::Now(Verdict::Rejected);
            }
            Some(secret) => (secret.clone(), true),
            None if dummy.is_cheap() => {
                lock(&self.shared.state).failures.record(client, now);
                return Check::Now(Verdict::Rejected);
            }
            None => (dummy.clone(), false),
        };
        let mut state = lock(&self.shared.state);
        if state.closed || state.queue.pending(client) >= self.limits.pending_per_client {
            return Check::Now(Verdict::Busy);
        }
        let mut displaced = None;
        if state.queue.queued() >= MAX_PENDING {
            displaced = state.make_room_for(client, now);
            if displaced.is_none() {
                return Check::Now(Verdict::Busy);
            }
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let id = state.next_id;
        state.next_id += 1;
        state.queue.push(
            client,
            id,
            Job {
                secret,
                known,
                password: password.to_vec(),
                cancelled: Arc::clone(&cancelled),
                notify: notify(),
            },
        );
        drop(state);
        self.shared.work.notify_one();
        if let Some(mut job) = displaced {
            crate::proto::sasl::wipe(&mut job.password);
            report(job, Verdict::Busy);
        }
        Check::Pending(Ticket {
            shared: Arc::clone(&self.shared),
            client,
            id,
            cancelled,
        })
    }

    /// When the password file's entries differ in algorithm or cost, a warning naming the
    /// users by group ([`Users::mixed_costs`]); the server prints it at start and after each
    /// reload.
    pub fn mixed_costs(&self) -> Option<String> {
        let users = Arc::clone(&read(&self.users));
        users.0.mixed_costs()
    }

    /// Reads the password file again (SIGHUP): `Ok(users)` with the new count, or the error
    /// (the old users stay). Nothing to do for `--auth any`.
    pub fn reload(&self) -> Result<Option<usize>, String> {
        let AuthSource::File(path) = &self.source else {
            return Ok(None);
        };
        let users = Users::load(path)?;
        let count = users.len();
        let dummy = users.dummy_like_most();
        *write(&self.users) = Arc::new((users, dummy));
        Ok(Some(count))
    }
}

/// A verifier thread: takes the next check in fair order (see the module docs), checks the
/// hash (without the lock), counts a failure, and reports, until the [`Authenticator`] is
/// gone. A check whose client went past its failure limit while it waited is answered
/// [`Verdict::Limited`] without hashing.
fn verify_loop(shared: &Shared) {
    loop {
        let (client, mut job, limited) = {
            let mut state = lock(&shared.state);
            loop {
                let now = Instant::now();
                let picked = {
                    let State {
                        queue, failures, ..
                    } = &mut *state;
                    queue.pop(|client| Some(u8::from(!failures.is_quiet(client, now))))
                };
                if let Some((client, _, job)) = picked {
                    let limited = state.failures.is_over(client, now);
                    break (client, job, limited);
                }
                if state.closed {
                    return;
                }
                state = wait(&shared.work, state);
            }
        };
        let matched = !limited && job.secret.matches(&job.password) && job.known;
        crate::proto::sasl::wipe(&mut job.password);
        {
            let mut state = lock(&shared.state);
            state.queue.finish(client);
            if !limited && !matched {
                state.failures.record(client, Instant::now());
            }
        }
        let verdict = match (limited, matched) {
            (true, _) => Verdict::Limited,
            (false, true) => Verdict::Accepted,
            (false, false) => Verdict::Rejected,
        };
        report(job, verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn key(text: &str) -> ClientKey {
        ClientKey::of(ip(text))
    }

    /// A state whose failure limit is `failures` per minute.
    fn state(failures: u32) -> State {
        State {
            queue: FairQueue::new(),
            failures: RateBook::new(
                RateLimit {
                    events: failures,
                    window: Duration::from_secs(60),
                },
                100,
            ),
            next_id: 0,
            closed: false,
        }
    }

    /// A job nobody waits for (its notify goes to a mailbox without a worker).
    fn job() -> Job {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        Job {
            secret: Secret::Plain(b"x".to_vec()),
            known: true,
            password: b"x".to_vec(),
            cancelled: Arc::new(AtomicBool::new(false)),
            notify: Notify {
                mailbox: Arc::new(crate::wake::Mailbox::new(waker)),
                key: 0,
                id: 0,
            },
        }
    }

    #[test]
    fn a_clean_client_is_checked_before_clients_that_failed_recently() {
        let mut state = state(10);
        let now = Instant::now();
        let (guesser, other_guesser, user) = (key("192.0.2.1"), key("192.0.2.2"), key("192.0.2.9"));
        state.failures.record(guesser, now);
        state.failures.record(other_guesser, now);
        for id in 0..5 {
            state.queue.push(guesser, id, job());
            state.queue.push(other_guesser, 10 + id, job());
        }
        state.queue.push(user, 99, job());
        let first = {
            let State {
                queue, failures, ..
            } = &mut state;
            queue.pop(|c| Some(u8::from(!failures.is_quiet(c, now))))
        };
        assert_eq!(first.map(|(c, id, _)| (c, id)), Some((user, 99)));
        assert_eq!(state.rank(user, now), 0);
        assert_eq!(state.rank(guesser, now), 1);
    }

    #[test]
    fn a_full_queue_makes_room_for_a_client_with_less_queued_or_no_failures() {
        let mut state = state(10);
        let now = Instant::now();
        let (flood, user) = (key("192.0.2.1"), key("192.0.2.9"));
        for id in 0..3 {
            state.queue.push(flood, id, job());
        }
        // The flood's newest gives way to a client with nothing queued...
        assert!(state.make_room_for(user, now).is_some());
        assert_eq!(state.queue.queued_of(flood), 2);
        state.queue.push(user, 50, job());
        // ... but not to a client holding as many (or one fewer).
        state.queue.push(user, 51, job());
        assert!(state.make_room_for(user, now).is_none());
        // Equal counts: the one that failed recently gives way to the one that did not.
        state.failures.record(flood, now);
        assert!(state.make_room_for(user, now).is_some());
        assert!(
            state.make_room_for(flood, now).is_none(),
            "a client that failed recently takes no clean client's place"
        );
    }

    #[test]
    fn the_failure_limit_is_per_client_and_an_ipv6_64_counts_as_one() {
        let auth = Authenticator::start(
            AuthSource::Any,
            AuthLimits {
                pending_per_client: 1,
                failures: RateLimit {
                    events: 2,
                    window: Duration::from_secs(60),
                },
            },
            DEFAULT_THREADS,
        )
        .unwrap();
        let now = Instant::now();
        let mut state = lock(&auth.shared.state);
        state.failures.record(ClientKey::of(ip("2001:db8::1")), now);
        state.failures.record(ClientKey::of(ip("2001:db8::2")), now);
        assert!(state
            .failures
            .is_over(ClientKey::of(ip("2001:db8::ffff")), now));
        assert!(!state
            .failures
            .is_over(ClientKey::of(ip("2001:db8:0:1::1")), now));
        assert!(!state.failures.is_over(ClientKey::of(ip("192.0.2.9")), now));
    }

    #[test]
    fn sources_parse_and_say_what_is_expected() {
        assert_eq!("any".parse::<AuthSource>(), Ok(AuthSource::Any));
        assert_eq!(
            "file:/etc/users".parse::<AuthSource>(),
            Ok(AuthSource::File("/etc/users".into()))
        );
        for bad in ["", "file:", "ldap://x", "ANY"] {
            let error = bad.parse::<AuthSource>().unwrap_err();
            assert!(error.contains("`any` or `file:PATH`"), "{error}");
        }
    }
}
