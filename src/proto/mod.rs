//! The SMTP protocol, sans I/O: pure functions and a state machine over byte slices.
//!
//! Nothing here touches a socket, a clock or a thread, and nothing allocates per command; the
//! server (`crate::server`) moves bytes between sockets and [`session::Session`]. Everything
//! here is tested with plain byte strings, at every split point of the input.
//!
//! | module | job |
//! |---|---|
//! | [`line`] | find the `CR LF` that ends a command line; bound its length |
//! | [`command`] | parse one command line into a [`command::Command`] borrowing from it |
//! | [`reply`] | the exact reply bytes, and encoders for the few with values |
//! | [`data`] | resumable `CR LF . CR LF` detection and dot-unstuffing for DATA |
//! | [`session`] | the state machine: sequence rules, DATA and BDAT framing, limits |
//!
//! BDAT framing (RFC 3030: read exactly n octets) is a dozen lines of counting, so it lives in
//! [`session`] beside DATA rather than in a module of its own.

pub mod command;
pub mod data;
pub mod line;
pub mod reply;
pub mod session;
