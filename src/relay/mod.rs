//! The relay: the second hop, where fastsmtpd is the client MTA that keeps a message and hands
//! it to the next hop (RFC 5321 §2.3.3 and §6.1: after the `250` the message must not be lost,
//! and a final failure must produce a notification).
//!
//! What the room will hold, in the order it is built (issue 19's plan): a sans-I/O SMTP client
//! state machine ([`client`]); a spool that owns durability (append-only segments and a state
//! journal, group-committed like the stores); a scheduler that owns the queue's order (due-time
//! heap, ready queue and connection pool per next hop, retry and back-off); the delivery loops
//! that own sockets, TLS and time; delivery status notifications (RFC 3464); the queue tools.
//!
//! What exists now, each piece tested alone and none called by the server yet:
//! - [`client`], the sans-I/O SMTP client that a delivery loop will drive: framing the next
//!   hop's replies ([`client::reply`]), reading its EHLO extensions ([`client::capabilities`]),
//!   dot-stuffing and `BDAT` framing of content ([`client::content`]), and the session itself
//!   ([`client::session`]: greeting, STARTTLS, AUTH inside TLS, transactions with PIPELINING
//!   and CHUNKING, per-recipient outcomes, timeouts as data, QUIT);
//! - [`schedule`], the queue's order without a clock: the retry policy and queue lifetime,
//!   the due-time heap, the next hops' back-off and connection limits, the ready queue;
//! - [`dsn`], delivery status notifications written by a pure function: given a message's
//!   envelope, its recipients' outcomes and its bytes, the RFC 3464 report to send its sender;
//! - [`spool`], a standalone storage engine: append-only segments with group commit, a state
//!   journal, recovery after a crash, a lock so one server owns it. It does file I/O only, on
//!   the thread that calls it, and keeps no body in memory.
//!
//! - [`queue`], the seam between accepting and delivering: the shared spool and the ids of
//!   newly committed messages, with a wake-up for the delivery loop.
//!
//! - [`deliver`], the delivery loop: its own thread and mio `Poll`, taking what the spool
//!   recovered and what [`queue`] says was committed, scheduling it ([`schedule`]), carrying
//!   it to the next hops over plain TCP ([`client`]), recording each recipient's outcome in
//!   the spool, and spooling the failure notification ([`dsn`]) before a message is done.
//!   Not yet: TLS and AUTH toward the next hop.
//! - [`domains`], `--relay-domains`: which recipients are relayed (the others are kept or
//!   discarded as the server's stores say).
//! - [`received`], the relay's `Received:` line and the count of a message's `Received:`
//!   fields (RFC 5321 §6.3: more than 50 is a loop, `554 5.4.6`).
//!
//! Wired (`--spool DIR --relay-to ...`): a storage thread appends each message, with its
//! `Received:` line in front, to the spool through [`queue`] and commits the batch once
//! (`crate::store`); the `250`s go out only after that commit (`452 4.3.1` when it fails);
//! the server starts [`deliver::Deliverer`] on the same queue. The spool stays outside
//! [`client`]: the client is sans-I/O
//! (checked by `tests/architecture.rs`), the spool is the room's one owner of files.

pub mod client;
pub mod deliver;
pub mod domains;
pub mod dsn;
pub mod queue;
pub mod received;
pub mod schedule;
pub mod spool;
