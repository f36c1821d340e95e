//! The SMTP protocol, sans I/O: pure functions and a state machine over byte slices.
//!
//! Nothing here touches a socket, a clock or a thread, nothing allocates per command, and
//! nothing depends on the rest of the crate: the server (the `server` module) moves bytes between
//! sockets and [`session::Session`], and the rest of the crate plugs in through the two
//! traits defined here in protocol terms, [`sink::MessageSink`] (where message content goes)
//! and [`gate::Gate`] (whether a command may proceed). Everything here is tested with plain
//! byte strings, at every split point of the input.
//!
//! | module | job |
//! |---|---|
//! | [`line`](mod@line) | find the `CR LF` that ends a command line; bound its length |
//! | [`command`] | parse one command line into a [`command::Command`] borrowing from it |
//! | [`reply`] | the exact reply bytes, encoders for the few with values, and the reply tally |
//! | [`data`] | resumable `CR LF . CR LF` detection and dot-unstuffing for DATA |
//! | [`dsn`] | RFC 3461's parameters: `NOTIFY`, `RET`, `ENVID`, `ORCPT` and xtext, the one definition the relay shares |
//! | [`envelope`] | the transaction's envelope: reused buffers and the borrowed view sinks get |
//! | [`sink`] | the [`sink::MessageSink`] trait: message start, content, end (the verdict), outcome |
//! | [`gate`] | the [`gate::Gate`] trait: proceed, refuse, close, or pause before a command |
//! | [`sasl`] | SMTP AUTH's SASL mechanisms (PLAIN, LOGIN): response decoding, the credentials buffer |
//! | [`session`] | the state machine: sequence rules, DATA and BDAT framing, limits |
//! | `testkit` | (tests, and the `testkit` feature) the one recording sink that drivers of a session check it with |

pub mod command;
pub mod data;
pub mod dsn;
pub mod envelope;
pub mod gate;
pub mod line;
pub mod reply;
pub mod sasl;
pub mod session;
pub mod sink;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
