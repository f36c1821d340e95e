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
//! What exists now: the first piece of [`client`], the parsing a client needs and no more:
//! framing the next hop's replies ([`client::reply`]) and reading its EHLO extensions
//! ([`client::capabilities`]); and the queue's order without a clock ([`schedule`]: the retry
//! policy and queue lifetime, the due-time heap, the next hops' back-off and connection
//! limits, the ready queue); and delivery status notifications ([`dsn`]), written by a pure
//! function: given a message's envelope, its recipients' outcomes and its bytes, the RFC 3464
//! report to send its sender. Nothing here opens a socket, reads a clock or keeps a message,
//! and nothing in the server calls it yet.

pub mod client;
pub mod dsn;
pub mod schedule;
