//! The relay's SMTP client, sans I/O: bytes from the next hop in, commands out, tested without
//! sockets (the server's `proto` mirrored, with the roles swapped).
//!
//! What it does now: frame the next hop's replies ([`reply`], RFC 5321 §4.2) and read the
//! extensions its EHLO reply offers ([`capabilities`], RFC 5321 §4.1.1.1).
//!
//! What it does not do (yet): hold a state machine, write commands, dot-stuff content, keep
//! per-recipient outcomes or time anything; those come with the next increments. It never
//! touches a socket or a clock, and it shares no code with the server's parser or with the
//! load generator's (a framing bug shared between the two ends of a test would hide).

pub mod capabilities;
pub mod reply;
