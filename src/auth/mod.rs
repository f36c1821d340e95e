//! SMTP AUTH's back end: who may log in (`--auth any` or `--auth file:PATH`), and checking a
//! password off the event loop.
//!
//! What it does: answer [`Authenticator::check`] for the credentials a session collected
//! (`crate::proto::sasl` decodes them). `--auth any` accepts every user and password (a
//! sink that records who logged in). `--auth file:PATH` looks the user up in a password file
//! ([`passwords`]); a `{PLAIN}` entry is compared at once, while Argon2 and bcrypt hashes,
//! slow on purpose (tens of milliseconds), are checked on a verifier thread so that one
//! login never stalls the other connections of a worker: the answer comes back through the
//! worker's completion queue like a stored message's. An unknown user is checked against a
//! dummy hash, so the time taken does not tell which users exist. The file is read again
//! on SIGHUP ([`Authenticator::reload`]); a file that no longer parses keeps the old users.
//!
//! What it does not do: speak SASL (the session does), choose replies, slow down repeated
//! failures (the connection holds the `535`, see `server::conn`), or log a password (nothing
//! here prints one; `Secret`'s `Debug` hides it).

pub mod passwords;

use crate::store::Notify;
use passwords::{Secret, Users};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The credentials are good.
    Accepted,
    /// They are not.
    Rejected,
    /// A hash is being checked on the verifier thread; the answer arrives through the
    /// [`Notify`] given.
    Pending,
}

/// One hash check for the verifier thread.
struct Job {
    /// The user's secret (or the dummy one for an unknown user).
    secret: Secret,
    /// Whether the user exists (a dummy check always fails).
    known: bool,
    /// The password, wiped after the check.
    password: Vec<u8>,
    /// Whom to tell.
    notify: Notify,
}

/// Checks credentials for every worker.
pub struct Authenticator {
    /// Where the users come from.
    source: AuthSource,
    /// The users of the password file (empty for `any`).
    users: RwLock<Arc<Users>>,
    /// Work for the verifier thread (`None` for `any`).
    jobs: Option<Mutex<mpsc::Sender<Job>>>,
    /// A hash checked for unknown users, so they take as long as known ones.
    dummy: Secret,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads the users (for a file) and starts the verifier thread.
    pub fn start(source: AuthSource) -> Result<Arc<Authenticator>, String> {
        let users = match &source {
            AuthSource::Any => Users::default(),
            AuthSource::File(path) => Users::load(path)?,
        };
        let dummy = dummy_secret();
        let jobs = match source {
            AuthSource::Any => None,
            AuthSource::File(_) => {
                let (sender, receiver) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name("auth-verifier".into())
                    .spawn(move || verify_loop(receiver))
                    .map_err(|e| format!("--auth: cannot start the verifier thread: {e}"))?;
                Some(Mutex::new(sender))
            }
        };
        Ok(Arc::new(Authenticator {
            source,
            users: RwLock::new(Arc::new(users)),
            jobs,
            dummy,
        }))
    }

    /// Checks `user` and `password`. A hash check is handed to the verifier thread, which
    /// reports through `notify` ([`Check::Pending`]).
    pub fn check(&self, user: &[u8], password: &[u8], notify: impl FnOnce() -> Notify) -> Check {
        let Some(jobs) = &self.jobs else {
            return Check::Accepted; // --auth any
        };
        let users = Arc::clone(&self.users.read().unwrap_or_else(|e| e.into_inner()));
        let (secret, known) = match users.get(user) {
            Some(secret) if secret.is_cheap() => {
                return if secret.matches(password) {
                    Check::Accepted
                } else {
                    Check::Rejected
                };
            }
            Some(secret) => (secret.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let job = Job {
            secret,
            known,
            password: password.to_vec(),
            notify: notify(),
        };
        let sent = jobs.lock().unwrap_or_else(|e| e.into_inner()).send(job);
        match sent {
            Ok(()) => Check::Pending,
            Err(_) => Check::Rejected, // the verifier thread is gone: fail closed
        }
    }

    /// Reads the password file again (SIGHUP): `Ok(users)` with the new count, or the error
    /// (the old users stay). Nothing to do for `--auth any`.
    pub fn reload(&self) -> Result<Option<usize>, String> {
        let AuthSource::File(path) = &self.source else {
            return Ok(None);
        };
        let users = Users::load(path)?;
        let count = users.len();
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
        Ok(Some(count))
    }
}

/// The verifier thread: checks hashes one at a time, in arrival order, until every worker
/// is gone.
fn verify_loop(jobs: mpsc::Receiver<Job>) {
    for mut job in jobs {
        let matched = job.secret.matches(&job.password) && job.known;
        crate::proto::sasl::wipe(&mut job.password);
        let Notify {
            completions,
            key,
            id,
        } = job.notify;
        completions.report_auth(key, id, matched);
    }
}

/// An Argon2id hash (the argon2 crate's default cost, as a real entry would have) of a random
/// password nobody knows.
fn dummy_secret() -> Secret {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    // The system's random source, through the TLS provider we link anyway.
    let random = rustls::crypto::ring::default_provider().secure_random;
    let mut password = [0u8; 32];
    let mut salt = [0u8; 16];
    if random.fill(&mut password).is_err() || random.fill(&mut salt).is_err() {
        // No randomness: a secret no password of the form clients send can match.
        return Secret::Plain(vec![0; 4096]);
    }
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    match argon2::Argon2::default().hash_password(&password, &salt) {
        Ok(hash) => Secret::Argon2(hash.to_string()),
        // Cannot happen with default parameters; an unmatchable secret all the same.
        Err(_) => Secret::Plain(password.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
