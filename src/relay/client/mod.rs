//! The relay's SMTP client, sans I/O: bytes from the next hop in, commands out, tested without
//! sockets (the server's `proto` mirrored, with the roles swapped).
//!
//! What it does now: frame the next hop's replies ([`reply`], RFC 5321 §4.2), read the
//! extensions its EHLO reply offers ([`capabilities`], RFC 5321 §4.1.1.1), dot-stuff content and
//! frame `BDAT` chunks ([`content`], RFC 5321 §4.5.2, RFC 3030), and hold a whole client
//! session ([`session`]): greeting, `EHLO` (or `HELO`), STARTTLS, AUTH inside TLS, transactions
//! with PIPELINING and CHUNKING when offered, per-recipient outcomes, the timeouts of RFC 5321
//! §4.5.3.2 as data, `QUIT`.
//!
//! What it does not do: touch a socket, a clock or the spool, or decide what to do with an
//! outcome (retry, bounce, notify: the scheduler's and the notifications' job). It shares no
//! framing or reply-parsing code with the server's parser or with the load generator's (a
//! framing bug shared between the two ends of a test would hide); it shares only the values
//! of DSN's parameters (`crate::proto::dsn`'s `Notify` and `Ret`), which it writes itself.

pub mod capabilities;
pub mod content;
pub mod reply;
pub mod session;
#[cfg(test)]
mod tests;
