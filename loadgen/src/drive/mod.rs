//! The measuring wing: what sends load and measures it, one thread's worth at a time.
//!
//! What it does: the [`engine`] (one mio loop per thread) opens connections, moves bytes
//! through each connection's [`transport`] (plain or [`tls`]) to its sans-I/O [`client`]
//! (which parses replies with [`reply`] and writes commands into its [`output`], the content
//! the [`workload`] names, generated or streamed from the [`corpus`]), waits with its
//! [`pacer`], accounts connections in [`slots`], and hands a [`record`] per interval to the
//! reporter.
//!
//! What it does not do: merge, judge or show figures (the `report` wing), or read the
//! command line (`cli`, `settings`). Nothing here imports `report`: the two wings meet in
//! [`record`] (and [`slots`]'s figures and [`client::Stage`]), which `report` reads.
//!
//! # Layout
//! * [`engine`]: one mio event loop per thread, driving many connections; its rooms are the
//!   turn's schedule (`engine::schedule`), a connection's life (`engine::connections`) and
//!   its bytes (`engine::wire`).
//! * [`pacer`]: the engine's clock: a timer finer than the poll's milliseconds.
//! * [`slots`]: the connections asked for and how many of them were alive, over time.
//! * [`client`]: one connection's SMTP client state machine, sans I/O.
//! * [`tls`]: the TLS client configuration every connection shares, and the server name.
//! * [`transport`]: a connection's bytes, plain or through rustls.
//! * [`reply`]: the generator's own SMTP reply parser.
//! * [`workload`]: what is sent: commands and message content (generated, or which corpus
//!   message), recipients.
//! * [`output`]: a connection's outgoing stream, sans I/O: bytes, and corpus messages to stream.
//! * [`corpus`]: real messages (`--message-dir`, `--mbox`): indexed once, streamed in wire
//!   form (line ends, dot-stuffing, mboxrd un-quoting) as they are sent.
//! * [`record`]: histograms and counters of one thread and interval.
//! * [`delivered`]: the end-to-end mode: the far sink's event stream (HTTP and server-sent
//!   events, sans I/O) and the awaited messages; [`tag`]: the tag in each message's subject;
//!   [`watch`]: the watcher thread that reads the stream.

pub mod client;
pub mod corpus;
pub mod delivered;
pub mod engine;
pub mod output;
pub mod pacer;
pub mod record;
pub mod reply;
pub mod slots;
pub mod tag;
pub mod tls;
pub mod transport;
pub mod watch;
pub mod workload;
