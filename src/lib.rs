//! fastsmtpd: a fast, correct, event-driven SMTP receiver (RFC 5321 + ESMTP).
//!
//! # Layout
//!
//! | module | job |
//! |---|---|
//! | [`proto`] | the protocol, sans I/O: framing, parsing, replies, DATA scanning, the session state machine |
//! | [`txlog`] | `--log-sessions`: one line per message attempt, written off the event loop |
//! | [`store`] | keeping messages (Maildir, `.eml`, JSON lines) durably on storage threads |
//! | [`server`] | sockets and time: listeners, one mio event loop per worker thread, timers, shutdown |
//! | [`wake`] | a worker's mailbox: store outcomes, budget room and AUTH verdicts as one `Wake`, and the waker of its loop |
//! | [`peer`] | one client as the limits see it: its key (IPv4 address, IPv6 /64), work shared round-robin between clients, events per client and window |
//! | [`auth`] | SMTP AUTH's back end: `--auth any` or a password file, hashes checked off the loop |
//! | [`fault`] | fault-injection rules: which command fails, hangs up or answers late |
//! | [`metrics`] | the `--metrics` HTTP endpoint (Prometheus text) and the counters only it needs |
//! | [`console`] | the server's own lines on stdout and stderr, never a panic when nobody reads them |
//! | [`config`] | the server's settings grouped by job, their defaults with the RFC sections behind them, checked once (`ConfigError` or a `ValidConfig`) |
//! | [`lock`] | taking a lock whose holder panicked: the one poison-tolerant `lock`, `read`, `write` and `wait` |
//! | [`named_file`] | reading a file a flag names (`--fault-file`, `--auth file:`): a regular file only, of bounded size |
//! | [`units`] | the one grammar of durations (`30s`, `1.5m`) and sizes (`10M`) for flags and fault rules |
//! | [`stats`] | per-worker counters, merged for reports |
//! | [`capture`] | the capture store: kept messages in memory under a byte budget, their index, tombstones and waiters, and the search grammar (no HTTP, no MIME, no disk) |
//! | [`view`] | a kept message parsed for reading (headers, text, HTML, parts, links, codes), a byte-bounded cache of views, and search with the decoded terms |
//! | [`control`] | the control plane's HTTP serving for `--metrics` and `--api`: hyper on its own thread, request deadlines, a connection cap |
//! | [`api`] | `--api`: the HTTP API over the capture store (await, messages, raw, delete, server-sent events) |
//! | [`probe`] | `fastsmtpd await` and `fastsmtpd ready`: the API and the SMTP greeting asked from a shell, a blocking HTTP/1.1 client |
//! | [`relay`] | the second hop: its SMTP client (reply framing, EHLO capabilities, dot-stuffing and BDAT framing, the client session with per-recipient outcomes) and the queue's order (retry, lifetime, next hops' back-off), sans I/O; delivery status notifications (RFC 3464), pure; the spool (durable segments, state journal, recovery) and the queue shared by the accepting side (`store`'s storage threads append and group-commit relayed mail to it) and the delivery loop (its own mio thread: spool → next hops, per-recipient outcomes, retry, failure notifications spooled before a message is done); the relay's `Received:` line and loop count; the queue tools (`fastsmtpd queue`: list, show, shape, retry, bounce, delete, through a control socket the delivery loop serves, or on a stopped spool directly) |
//!
//! The one rule: `proto` never does I/O and never allocates per command; `server` owns every
//! socket and the clock, and only moves bytes between sockets and [`proto::session::Session`].
//!
//! # Layers
//!
//! A room imports only rooms in lower layers, never one beside or above it, so each can be
//! read, tested and replaced with only what is below it in mind (`tests/architecture.rs`
//! reads this table and checks every `crate::` path against it, and that no modules anywhere
//! in `src/` import each other around a circle):
//!
//! | layer | rooms |
//! |---|---|
//! | 6 | `server` |
//! | 5 | `api` |
//! | 4 | `config`, `txlog`, `view` |
//! | 3 | `store`, `auth` |
//! | 2 | `metrics` |
//! | 1 | `wake`, `stats`, `fault`, `capture`, `relay` |
//! | 0 | `proto`, `peer`, `lock`, `units`, `console`, `named_file`, `control`, `probe` |
//!
//! Read upward: `proto` is the protocol alone; `wake` is a worker's mailbox, which the stores
//! and AUTH post to without knowing the server; `metrics` sits below `store` because the
//! store-latency histogram it exports is filled by the storage threads; `config` holds every
//! setting (stores, AUTH, faults) and `server` builds the running server from it.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
// Every `unsafe` block says why it is sound, in a `// SAFETY:` comment just above it.
#![deny(clippy::undocumented_unsafe_blocks)]
// A few libc calls with no safe std equivalent are the crate's only `unsafe`: `syncfs`,
// `sync_file_range`, `malloc_trim` and `fcntl` (a FIFO made blocking again) in `store`,
// `getrlimit`/`setrlimit` in `server::descriptors`, `mallopt` in `server::heap`, `flock` (the
// spool's lock) in `relay::spool`; each is allowed where it is, with its SAFETY note.
#![deny(unsafe_code)]

pub mod api;
pub mod auth;
pub mod capture;
pub mod config;
pub mod console;
pub mod control;
pub mod fault;
pub mod lock;
pub mod metrics;
pub mod named_file;
pub mod peer;
pub mod probe;
pub mod proto;
pub mod relay;
pub mod server;
pub mod stats;
pub mod store;
pub mod txlog;
pub mod units;
pub mod view;
pub mod wake;
