//! The seam between the two halves of the relay: the side that accepts mail into the spool
//! (the SMTP sessions, through a storage thread's group commit) and the side that delivers
//! it (the delivery loop). One [`RelayQueue`] per server, shared as `Arc<RelayQueue>`.
//!
//! What it does: owns the open [`Spool`] behind a mutex (its API takes `&mut self`: one
//! caller at a time), and carries the ids of newly committed messages from the accepting
//! side to the delivering side, waking the delivery loop (a [`mio::Waker`] it registers) when
//! the list goes from empty to non-empty.
//!
//! The protocol, for both halves:
//! - accepting: `let mut spool = queue.spool(); let id = spool.append(..)?; ...;
//!   spool.commit()?; drop(spool); queue.committed(&ids);` and only then the `250`s. A failed
//!   commit keeps nothing (the spool's rule): answer `452 4.3.1` and do not call
//!   [`RelayQueue::committed`].
//! - delivering: register a waker once ([`RelayQueue::set_waker`]); on each wake (and at
//!   start, for what [`RelayQueue::open`] recovered) take the new ids
//!   ([`RelayQueue::take_committed`]); lock [`RelayQueue::spool`] briefly to read a message
//!   or record a recipient's state, never across a network wait.
//!
//! What it does not do: schedule, deliver or accept anything itself, or hold the lock across
//! I/O other than the spool's own file I/O (a commit's `fdatasync` holds it: the delivery
//! side's state updates wait for it, which is the price of one spool file set; measure before
//! splitting it).

use super::spool::{Recovered, Spool, SpoolId, SpoolLimits};
use crate::lock::lock;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The shared spool and the list of messages committed since the delivery side last looked.
#[derive(Debug)]
pub struct RelayQueue {
    /// The spool (one caller at a time).
    spool: Mutex<Spool>,
    /// Ids committed and not yet taken by the delivery side, in commit order.
    committed: Mutex<Vec<SpoolId>>,
    /// The delivery loop's waker, once it registered one.
    waker: OnceLock<Arc<mio::Waker>>,
}

impl RelayQueue {
    /// Opens (or creates) the spool at `dir` (see [`Spool::open_with`]); the messages it
    /// recovered are returned for the delivery side to schedule, not put on the committed
    /// list.
    pub fn open(dir: &Path, limits: SpoolLimits) -> io::Result<(Arc<RelayQueue>, Vec<Recovered>)> {
        let (spool, recovered) = Spool::open_with(dir, limits)?;
        let queue = RelayQueue {
            spool: Mutex::new(spool),
            committed: Mutex::new(Vec::new()),
            waker: OnceLock::new(),
        };
        Ok((Arc::new(queue), recovered))
    }

    /// The spool, locked (see the module doc for what may be done while holding it).
    pub fn spool(&self) -> MutexGuard<'_, Spool> {
        lock(&self.spool)
    }

    /// Tells the delivery side that `ids` are committed (call after [`Spool::commit`]
    /// returned `Ok`, before the `250`s). Wakes its loop if it had nothing waiting.
    pub fn committed(&self, ids: &[SpoolId]) {
        if ids.is_empty() {
            return;
        }
        let was_empty = {
            let mut committed = lock(&self.committed);
            let was_empty = committed.is_empty();
            committed.extend_from_slice(ids);
            was_empty
        };
        if was_empty {
            if let Some(waker) = self.waker.get() {
                // A failed wake means the loop is gone (shutting down): the messages stay in
                // the spool and a restart recovers them.
                let _ = waker.wake();
            }
        }
    }

    /// The ids committed since the last call, in commit order (the delivery side).
    pub fn take_committed(&self) -> Vec<SpoolId> {
        std::mem::take(&mut *lock(&self.committed))
    }

    /// Registers the delivery loop's waker (once; a second call is refused with `false`).
    pub fn set_waker(&self, waker: Arc<mio::Waker>) -> bool {
        self.waker.set(waker).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dsn::Notify;
    use crate::relay::spool::{Envelope, Recipient};
    use std::time::Duration;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "fastsmtpd-relay-queue-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn committed_ids_reach_the_delivery_side_once_and_wake_it() {
        let dir = temp_dir("wake");
        let (queue, recovered) = RelayQueue::open(&dir, SpoolLimits::default()).unwrap();
        assert!(recovered.is_empty());
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(7)).unwrap());
        assert!(queue.set_waker(Arc::clone(&waker)));
        assert!(!queue.set_waker(waker));
        let envelope = Envelope {
            reverse_path: b"s@x".to_vec(),
            recipients: vec![Recipient {
                address: b"r@y".to_vec(),
                notify: Notify::default(),
                orcpt: None,
            }],
            ..Envelope::default()
        };
        let id = {
            let mut spool = queue.spool();
            let id = spool
                .append(&envelope, b"Subject: t\r\n\r\nhi\r\n")
                .unwrap();
            spool.commit().unwrap();
            id
        };
        queue.committed(&[id]);
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        assert_eq!(queue.take_committed(), [id]);
        assert!(queue.take_committed().is_empty());
        let place = queue.spool().get(id).unwrap().spool_ref;
        let (read, body) = queue.spool().read_message(&place).unwrap();
        assert_eq!(read.recipients[0].address, b"r@y");
        assert_eq!(body, b"Subject: t\r\n\r\nhi\r\n");
        drop(queue);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
