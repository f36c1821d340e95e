//! SMTP AUTH's back end: who may log in (`--auth any` or `--auth file:PATH`), and checking a
//! password off the event loop, within bounds a hostile client cannot stretch.
//!
//! What it does: answer [`Authenticator::check`] for the credentials a session collected
//! (`crate::proto::sasl` decodes them). `--auth any` accepts every user and password (a
//! sink that records who logged in). `--auth file:PATH` looks the user up in a password file
//! ([`passwords`]); a `{PLAIN}` entry is compared at once, while Argon2 and bcrypt hashes,
//! slow on purpose, are checked on verifier threads so that a login never stalls the other
//! connections of a worker: the answer comes back through the worker's completion queue like
//! a stored message's. The file is read again on SIGHUP ([`Authenticator::reload`]); a file
//! that no longer parses keeps the old users.
//!
//! Bounds (a password check is the most expensive thing a client can ask for):
//! * at most [`MAX_PENDING_PER_ADDRESS`] checks queued per client address (IPv4, or IPv6 /64)
//!   and [`MAX_PENDING`] in all; past either the attempt gets `454 4.7.0` at once
//!   ([`Check::Busy`]), so one client cannot make everyone else's logins wait;
//! * a check whose connection has gone is dropped before it runs ([`Ticket`]);
//! * failures are remembered per address for [`FAILURE_MEMORY`] ([`Authenticator::
//!   record_failure`]): the connection slows the `535`s of an address that keeps failing,
//!   across connections, not only within one session;
//! * an unknown user is checked against a dummy hash made like the file's own hashes (same
//!   algorithm and cost as the most common entry), so the time taken does not tell which
//!   users exist.
//!
//! What it does not do: speak SASL (the session does), choose replies, hold the `535` (the
//! connection does, see `server::conn`), or log a password (nothing here prints one;
//! `Secret`'s `Debug` hides it).

pub mod passwords;

use crate::store::Notify;
use passwords::{Secret, Users};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Password checks queued at most per client address; more get `454 4.7.0`.
pub const MAX_PENDING_PER_ADDRESS: u32 = 2;
/// Password checks queued at most over all clients; more get `454 4.7.0`.
pub const MAX_PENDING: u32 = 128;
/// How long failed attempts of an address are remembered (each new failure restarts it).
pub const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// Addresses whose failures are remembered at most (the oldest half is forgotten past it).
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

/// The answer to [`Authenticator::check`].
#[derive(Debug)]
pub enum Check {
    /// The credentials are good.
    Accepted,
    /// They are not.
    Rejected,
    /// A hash is being checked on a verifier thread; the answer arrives through the
    /// [`Notify`] given. Dropping the ticket (the connection closed) cancels the check.
    Pending(Ticket),
    /// Too many checks are queued (for this address, or in all): answer `454 4.7.0`.
    Busy,
}

/// A queued check's handle: dropping it cancels the check if it has not run yet.
#[derive(Debug)]
pub struct Ticket {
    /// Set when the connection no longer wants the answer.
    cancelled: Arc<AtomicBool>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
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
    /// The client's address (as counted), to release its place in the queue.
    client: IpAddr,
    /// Set when the connection went away: skip the work.
    cancelled: Arc<AtomicBool>,
    /// Whom to tell.
    notify: Notify,
}

/// Checks queued, per client address and in all.
#[derive(Debug, Default)]
struct Queued {
    /// Per counted address.
    by_address: HashMap<IpAddr, u32>,
    /// In all.
    total: u32,
}

impl Queued {
    /// Takes a place for `client`, if there is one.
    fn take(&mut self, client: IpAddr) -> bool {
        let mine = self.by_address.entry(client).or_insert(0);
        if *mine >= MAX_PENDING_PER_ADDRESS || self.total >= MAX_PENDING {
            if *mine == 0 {
                self.by_address.remove(&client);
            }
            return false;
        }
        *mine += 1;
        self.total += 1;
        true
    }

    /// Gives `client`'s place back.
    fn release(&mut self, client: IpAddr) {
        if let Some(mine) = self.by_address.get_mut(&client) {
            *mine -= 1;
            if *mine == 0 {
                self.by_address.remove(&client);
            }
            self.total = self.total.saturating_sub(1);
        }
    }
}

/// Locks `mutex`, taking over its data if a panicking thread left it poisoned.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks credentials for every worker.
pub struct Authenticator {
    /// Where the users come from.
    source: AuthSource,
    /// The users of the password file (empty for `any`), and the dummy secret for unknown
    /// users, made like their hashes.
    users: RwLock<Arc<(Users, Secret)>>,
    /// Work for the verifier threads (`None` for `any`).
    jobs: Option<Mutex<mpsc::Sender<Job>>>,
    /// Checks queued, shared with the verifier threads.
    queued: Arc<Mutex<Queued>>,
    /// Recent failures per counted address: how many, and when the last was.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads the users (for a file) and starts the verifier threads (two, or one on a
    /// machine with one core: enough that one slow hash does not hold every login up, few
    /// enough that hashing cannot take the event loops' cores).
    pub fn start(source: AuthSource) -> Result<Arc<Authenticator>, String> {
        let (users, dummy) = match &source {
            AuthSource::Any => (Users::default(), Secret::Plain(Vec::new())),
            AuthSource::File(path) => {
                let users = Users::load(path)?;
                let dummy = users.dummy_like_most();
                (users, dummy)
            }
        };
        let queued = Arc::new(Mutex::new(Queued::default()));
        let jobs = match source {
            AuthSource::Any => None,
            AuthSource::File(_) => {
                let (sender, receiver) = mpsc::channel::<Job>();
                let receiver = Arc::new(Mutex::new(receiver));
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
                for i in 0..threads {
                    let receiver = Arc::clone(&receiver);
                    let queued = Arc::clone(&queued);
                    std::thread::Builder::new()
                        .name(format!("auth-verifier-{i}"))
                        .spawn(move || verify_loop(&receiver, &queued))
                        .map_err(|e| format!("--auth: cannot start a verifier thread: {e}"))?;
                }
                Some(Mutex::new(sender))
            }
        };
        Ok(Arc::new(Authenticator {
            source,
            users: RwLock::new(Arc::new((users, dummy))),
            jobs,
            queued,
            failures: Mutex::new(HashMap::new()),
        }))
    }

    /// Checks `user` and `password` for a client at `client`. A hash check is handed to a
    /// verifier thread, which reports through `notify` ([`Check::Pending`]), unless too many
    /// are queued ([`Check::Busy`]).
    pub fn check(
        &self,
        client: IpAddr,
        user: &[u8],
        password: &[u8],
        notify: impl FnOnce() -> Notify,
    ) -> Check {
        let Some(jobs) = &self.jobs else {
            return Check::Accepted; // --auth any
        };
        let users = Arc::clone(&self.users.read().unwrap_or_else(|e| e.into_inner()));
        let (users, dummy) = &*users;
        let (secret, known) = match users.get(user) {
            Some(secret) if secret.is_cheap() => {
                return if secret.matches(password) {
                    Check::Accepted
                } else {
                    Check::Rejected
                };
            }
            Some(secret) => (secret.clone(), true),
            None if dummy.is_cheap() => return Check::Rejected,
            None => (dummy.clone(), false),
        };
        let client = crate::server::per_client::counted_as(client);
        if !lock(&self.queued).take(client) {
            return Check::Busy;
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let job = Job {
            secret,
            known,
            password: password.to_vec(),
            client,
            cancelled: Arc::clone(&cancelled),
            notify: notify(),
        };
        match lock(jobs).send(job) {
            Ok(()) => Check::Pending(Ticket { cancelled }),
            Err(_) => {
                // The verifier threads are gone: fail closed.
                lock(&self.queued).release(client);
                Check::Rejected
            }
        }
    }

    /// Records a failed attempt from `client`; returns how many failures that address had
    /// within [`FAILURE_MEMORY`] (this one included), for the connection's delay.
    pub fn record_failure(&self, client: IpAddr) -> u32 {
        let client = crate::server::per_client::counted_as(client);
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_REMEMBERED {
            // Forget the addresses whose last failure is oldest (a flood of addresses must
            // not grow this without bound).
            let mut lasts: Vec<Instant> = failures.values().map(|(_, last)| *last).collect();
            lasts.sort_unstable();
            let cut = lasts[lasts.len() / 2];
            failures.retain(|_, (_, last)| *last > cut);
        }
        let entry = failures.entry(client).or_insert((0, now));
        if now.duration_since(entry.1) > FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        entry.0
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
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new((users, dummy));
        Ok(Some(count))
    }
}

/// A verifier thread: checks hashes in arrival order, skipping those whose connection has
/// gone, until every worker is gone.
fn verify_loop(jobs: &Mutex<mpsc::Receiver<Job>>, queued: &Mutex<Queued>) {
    loop {
        let job = lock(jobs).recv();
        let Ok(mut job) = job else {
            return;
        };
        let matched = !job.cancelled.load(Ordering::Relaxed)
            && job.secret.matches(&job.password)
            && job.known;
        crate::proto::sasl::wipe(&mut job.password);
        lock(queued).release(job.client);
        if job.cancelled.load(Ordering::Relaxed) {
            continue;
        }
        let Notify {
            completions,
            key,
            id,
        } = job.notify;
        completions.report_auth(key, id, matched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_per_address_and_in_all() {
        let mut queued = Queued::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..MAX_PENDING_PER_ADDRESS {
            assert!(queued.take(a));
        }
        assert!(!queued.take(a), "past the per-address bound");
        assert!(queued.take(b), "another address still gets a place");
        queued.release(a);
        assert!(queued.take(a));
        for i in 0..MAX_PENDING {
            queued.take(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]));
        }
        assert_eq!(queued.total, MAX_PENDING);
        assert!(
            !queued.take("192.0.2.3".parse().unwrap()),
            "past the total bound"
        );
        queued.release(b);
        queued.release(b); // a second release of nothing changes nothing
        assert_eq!(queued.total, MAX_PENDING - 1);
    }

    #[test]
    fn failures_are_counted_per_address() {
        let auth = Authenticator::start(AuthSource::Any).unwrap();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(auth.record_failure(a), 1);
        assert_eq!(
            auth.record_failure(same_64),
            2,
            "an IPv6 /64 counts as one address"
        );
        assert_eq!(auth.record_failure("192.0.2.9".parse().unwrap()), 1);
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
