//! `smtp-loadgen`: measure sustained messages/second and reply latency of any SMTP server.
//!
//! A load run goes command line -> [`settings`] -> [`runner`] (the [`drive::engine`]
//! threads) -> [`report`]. The `report` and `merge` subcommands read interval logs back.
//! The binary (`src/main.rs`) only parses the command line and calls
//! [`commands::execute`]; tests and benches use this library directly.
//!
//! # Layout: two wings and the hall between them
//! * [`drive`], the measuring wing: the engine, the SMTP client, replies, transport and TLS,
//!   the workload and corpus, the pacer, the connection account, and [`drive::record`] (the
//!   figures of one thread and interval).
//! * [`report`], the report wing: results merged, rendered as text and JSON, interval logs
//!   (their histogram encoding in [`report::codec`]), SLOs, charts (SVG, PNG, HTML) and the
//!   sweep's table.
//! * The hall: [`cli`] and [`cli_charts`] (the command line), [`settings`] (checked as a
//!   whole; per-thread plans), [`runner`] (starts the engine threads and merges their
//!   reports), [`progress`] (the progress line), [`sweep`] (the rate sweep), [`commands`]
//!   (each command's steps and exit code).
//! * Shared below everything: [`units`] (durations and sizes with units, the grammar
//!   fastsmtpd's flags share) and [`stdout`] (standard output that a closed pipe does not
//!   crash).
//!
//! # The rule between the rooms (checked by `tests/architecture.rs`)
//! * No import cycle between modules of `src/`.
//! * Layers, lowest first: `units`, `stdout`; `drive`; `report`; the hall. A module imports
//!   only from its own layer or lower ones.
//! * `drive` never imports `report`. `report` reads `drive` only through the record types:
//!   [`drive::record`], [`drive::slots`] (its figures) and [`drive::client::Stage`]; never the
//!   engine, client state, transport or TLS.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(clippy::missing_docs_in_private_items)]
// Docs link private items (constants, helpers) for readers of the source and of
// `cargo doc --document-private-items`, as the binary's docs did.
#![allow(rustdoc::private_intra_doc_links)]

pub mod cli;
pub mod cli_charts;
pub mod commands;
pub mod drive;
pub mod progress;
pub mod report;
pub mod runner;
pub mod settings;
pub mod stdout;
pub mod sweep;
pub mod units;
