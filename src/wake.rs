//! The worker's mailbox: what other threads tell a worker's connections, and the wake-up of
//! its event loop.
//!
//! What it does: a storage thread (a message is on disk, or not), the stores' budget (it has
//! room again for a connection that stopped reading for it) and an AUTH verifier thread (a
//! password was checked) each post one [`Wake`] for one connection to that connection's
//! worker's [`Mailbox`], through the [`Notify`] the connection handed them. The first letter
//! into an empty mailbox wakes the worker's `poll` (a `mio::Waker`); the worker takes every
//! letter in one step ([`Mailbox::take_into`]) and hands each to its connection in one loop,
//! in the order they were posted.
//!
//! What it does not do: decide what a letter means to a connection (the worker and the
//! connection do), know who posts (the stores and AUTH sit above it and speak to it, never
//! the other way round), or keep letters for a connection that has gone (the worker drops
//! them: a letter names the connection by slab key and id, and ids are never reused).

use crate::lock::lock;
use mio::Waker;
use std::sync::{Arc, Mutex};

/// The AUTH back end's verdict on one check of credentials (RFC 4954 §6 for the replies the
/// connection makes of it; the session's own `AuthVerdict` is that reply-level view).
/// Defined here, beside the mailbox that carries it, so `crate::auth` (which decides it, and
/// names it `auth::Verdict`) and the worker (which delivers it) both stand above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckVerdict {
    /// The credentials are good: `235`.
    Accepted,
    /// They are not: `535`.
    Rejected,
    /// Not checked: too many checks are pending (for this client, or in all): `454`.
    Busy,
    /// Not checked: the client failed too often within the window: `454`.
    Limited,
}

/// One thing a connection waited for, arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The message the session answered `Pending` for was stored in every store (`true`) or
    /// in none (`false`).
    Stored(bool),
    /// The message the session answered `Pending` for was refused by a store with a reply of
    /// its own (the relay's spool: `452 4.3.1`), and kept by none.
    Refused(&'static [u8]),
    /// The stores' budget has room again: a connection that stopped reading message content
    /// for it may read on.
    BudgetRoom,
    /// The verdict on the credentials the connection sent.
    Auth(CheckVerdict),
}

/// One letter: a [`Wake`] for the connection with slab key `key` and id `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Letter {
    /// The connection's slab key (reused after it closes).
    pub key: usize,
    /// The connection's id (never reused: a letter for a closed connection is dropped).
    pub id: u64,
    /// What arrived.
    pub wake: Wake,
}

/// One worker's mailbox, and the waker of its event loop.
#[derive(Debug)]
pub struct Mailbox {
    /// Letters posted and not yet taken, in order.
    letters: Mutex<Vec<Letter>>,
    /// Wakes the worker's `poll`.
    waker: Arc<Waker>,
}

impl Mailbox {
    /// A mailbox that wakes the loop behind `waker`.
    pub fn new(waker: Arc<Waker>) -> Mailbox {
        Mailbox {
            letters: Mutex::new(Vec::new()),
            waker,
        }
    }

    /// Posts `wake` for connection `key`/`id`; wakes the worker if the mailbox was empty (a
    /// non-empty one has a wake-up on its way already).
    pub fn post(&self, key: usize, id: u64, wake: Wake) {
        let mut letters = lock(&self.letters);
        let was_empty = letters.is_empty();
        letters.push(Letter { key, id, wake });
        drop(letters);
        if was_empty {
            // A failed wake means the worker is gone; its connections are gone too.
            let _ = self.waker.wake();
        }
    }

    /// Moves every letter into `into` (kept by the worker for its capacity), in the order
    /// they were posted.
    ///
    /// All of them, under one lock, in one step: `post` wakes the worker only when it finds
    /// the mailbox empty, so a mailbox left part full would take a letter posted after this
    /// without a wake-up, and it would wait for ever.
    pub fn take_into(&self, into: &mut Vec<Letter>) {
        into.append(&mut lock(&self.letters));
    }
}

/// Whom to tell: a connection's worker's mailbox and the connection's key and id. Handed to
/// the stores and to AUTH, who post through it.
#[derive(Debug, Clone)]
pub struct Notify {
    /// The worker's mailbox.
    pub mailbox: Arc<Mailbox>,
    /// The connection's slab key.
    pub key: usize,
    /// The connection's id (keys are reused; ids are not).
    pub id: u64,
}

impl Notify {
    /// Posts `wake` to the connection.
    pub fn send(&self, wake: Wake) {
        self.mailbox.post(self.key, self.id, wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox() -> (mio::Poll, Arc<Mailbox>) {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        (poll, Arc::new(Mailbox::new(waker)))
    }

    /// Whether the poll has a wake-up waiting (and takes it).
    fn woken(poll: &mut mio::Poll) -> bool {
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::ZERO))
            .unwrap();
        !events.is_empty()
    }

    #[test]
    fn letters_come_out_in_the_order_posted_and_only_the_first_wakes() {
        let (mut poll, mailbox) = mailbox();
        let notify = Notify {
            mailbox: Arc::clone(&mailbox),
            key: 3,
            id: 30,
        };
        notify.send(Wake::BudgetRoom);
        mailbox.post(1, 10, Wake::Stored(true));
        notify.send(Wake::Auth(CheckVerdict::Rejected));
        assert!(woken(&mut poll));
        assert!(
            !woken(&mut poll),
            "one wake-up for a mailbox that was empty"
        );
        let mut taken = Vec::new();
        mailbox.take_into(&mut taken);
        let wakes: Vec<_> = taken.iter().map(|l| (l.key, l.id, l.wake)).collect();
        assert_eq!(
            wakes,
            [
                (3, 30, Wake::BudgetRoom),
                (1, 10, Wake::Stored(true)),
                (3, 30, Wake::Auth(CheckVerdict::Rejected)),
            ]
        );
    }

    /// Bug (found in review, moved here from `store`): the worker emptied the outcome list
    /// and the budget list one after the other; a report made in between found the other list
    /// non-empty, woke nobody, and every later report did the same: stored messages never got
    /// their `250`. Now there is one list, taken in one step, so after a take the next letter
    /// always wakes.
    #[test]
    fn a_report_after_the_worker_took_everything_always_wakes_it() {
        let (mut poll, mailbox) = mailbox();
        mailbox.post(1, 1, Wake::Stored(true));
        mailbox.post(2, 2, Wake::BudgetRoom);
        assert!(woken(&mut poll), "the first report wakes");
        let mut taken = Vec::new();
        mailbox.take_into(&mut taken);
        assert_eq!(taken.len(), 2);
        mailbox.post(3, 3, Wake::Stored(true));
        assert!(woken(&mut poll), "a report after a take wakes again");
        mailbox.take_into(&mut taken);
        mailbox.post(4, 4, Wake::BudgetRoom);
        assert!(woken(&mut poll));
    }
}
