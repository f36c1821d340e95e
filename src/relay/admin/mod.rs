//! The queue tools: `fastsmtpd queue list|show|shape|retry|bounce|delete` (Postfix's
//! `postqueue -p`, `postsuper -r/-d` and `qshape` are the models), on a running relay and on
//! a stopped one's spool alike.
//!
//! How the tool reaches the queue:
//! - **A running relay** owns its spool (the spool's `flock`) and is the only one that
//!   knows which messages its connections have taken. It serves a Unix-domain socket in the
//!   spool directory, [`CONTROL_SOCKET`], from its delivery loop (the design, and why, is in
//!   `deliver::run::control`): one request line ([`request`]), answered with JSON lines
//!   ([`model::Reply`]). `retry`, `delete` and `bounce` take effect in the loop's next turn
//!   (within a second).
//! - **A stopped spool** (no socket, or a socket a `kill -9` left that nobody answers) is
//!   opened directly ([`offline`]): the tool takes the spool's lock, so no server starts
//!   meanwhile, and answers with the same lines.
//!
//! Both paths give [`model::MessageInfo`] records, which [`tool`] prints as text
//! ([`render`]) or as JSON lines (`--json`, documented in docs/relay.md, "Queue tools").
//!
//! | module | job |
//! |---|---|
//! | [`model`] | the records: a message and its recipients' states, the answer lines |
//! | [`request`] | the request line: framing, parsing, writing (no I/O) |
//! | [`render`] | `postqueue -p`-style list, `show`, `qshape`'s age buckets (pure) |
//! | [`offline`] | the requests on a stopped spool |
//! | [`tool`] | the command: reach the queue, print, exit codes |
//!
//! What it does not do: hold or release messages (Postfix's `hold` queue has no
//! counterpart), requeue to other next hops, or export metrics (the delivery loop's
//! counters, `deliver::DeliveryStats`, are what `--metrics` reads).

pub mod model;
pub mod offline;
pub mod render;
pub mod request;
pub mod tool;

/// The control socket's file name in the spool directory.
pub const CONTROL_SOCKET: &str = "control.sock";
