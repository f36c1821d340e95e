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
//! What exists now: the first piece, [`client`], the sans-I/O SMTP client that a delivery loop
//! will drive: framing the next hop's replies ([`client::reply`]), reading its EHLO extensions
//! ([`client::capabilities`]), dot-stuffing and `BDAT` framing of content ([`client::content`]),
//! and the session itself ([`client::session`]: greeting, STARTTLS, AUTH inside TLS,
//! transactions with PIPELINING and CHUNKING, per-recipient outcomes, timeouts as data, QUIT).
//! Nothing here opens a socket, reads a clock or keeps a message, and nothing in the server
//! calls it yet.

pub mod client;
