//! Criterion benches of the sans-I/O core: framing, command parsing, the DATA scanner (against
//! a naive byte loop, side by side), and whole pipelined sessions in memory. No sockets:
//! socket-level throughput is smtp-loadgen's job.
//!
//! Run: `cargo bench --bench proto` (add `-- data_scan` to pick a group).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fastsmtpd::config::Config;
use fastsmtpd::proto::command::parse_command;
use fastsmtpd::proto::data::DataScanner;
use fastsmtpd::proto::gate::Open;
use fastsmtpd::proto::line::next_line;
use fastsmtpd::proto::reply::{Replies, ReplyTally};
use fastsmtpd::proto::session::Session;
use fastsmtpd::proto::sink::Discard;
use std::hint::black_box;

const COMMANDS: &[(&str, &[u8])] = &[
    ("ehlo", b"EHLO client.example.org\r\n"),
    (
        "mail",
        b"MAIL FROM:<sender.name@example.org> SIZE=10240 BODY=8BITMIME\r\n",
    ),
    ("rcpt", b"RCPT TO:<recipient.name@example.net>\r\n"),
    ("data", b"DATA\r\n"),
    ("bdat", b"BDAT 65536 LAST\r\n"),
    ("noop", b"NOOP\r\n"),
];

fn framing_and_parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("command");
    for &(name, line) in COMMANDS {
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_with_input(BenchmarkId::new("frame", name), line, |b, line| {
            b.iter(|| next_line(black_box(line), 2048))
        });
        group.bench_with_input(BenchmarkId::new("frame+parse", name), line, |b, line| {
            b.iter(|| match next_line(black_box(line), 2048) {
                Ok(fastsmtpd::proto::line::Status::Complete { line, .. }) => {
                    parse_command(line).is_ok()
                }
                _ => false,
            })
        });
    }
    group.finish();
}

/// A message body of about `size` bytes in 78-byte lines; `dotty` starts every line with a
/// dot (stuffed), the worst case for unstuffing. Ends with the terminator.
fn body(size: usize, dotty: bool) -> Vec<u8> {
    let line: &[u8] = if dotty {
        b"..dotted line of text that keeps going until seventy-six characters xxxxxx\r\n"
    } else {
        b"A plain line of message text, as most mail is, seventy-eight bytes long xx\r\n"
    };
    let mut body = Vec::with_capacity(size + line.len() + 3);
    while body.len() < size {
        body.extend_from_slice(line);
    }
    body.extend_from_slice(b".\r\n");
    body
}

/// The naive reference: one byte at a time, a state machine with the same rules.
fn naive_scan(input: &[u8], out_len: &mut usize) -> Option<usize> {
    // 0 line start, 1 text, 2 cr, 3 dot at line start, 4 dot cr
    let mut state = 0u8;
    for (i, &b) in input.iter().enumerate() {
        state = match (state, b) {
            (0, b'.') => 3,
            (3, b'\r') => 4,
            (4, b'\n') => return Some(i + 1),
            (_, b'\r') => {
                *out_len += 1;
                2
            }
            (2, b'\n') => {
                *out_len += 1;
                0
            }
            _ => {
                *out_len += 1;
                1
            }
        };
    }
    None
}

fn data_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("data_scan");
    for &(label, size) in &[("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        for dotty in [false, true] {
            let input = body(size, dotty);
            let kind = if dotty { "dotty" } else { "plain" };
            group.throughput(Throughput::Bytes(input.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("scanner/{kind}"), label),
                &input,
                |b, input| {
                    b.iter(|| {
                        let mut scanner = DataScanner::new();
                        let mut content = 0usize;
                        let scan = scanner.scan(black_box(input), |piece| content += piece.len());
                        (scan, content)
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("naive/{kind}"), label),
                &input,
                |b, input| {
                    b.iter(|| {
                        let mut content = 0usize;
                        (naive_scan(black_box(input), &mut content), content)
                    })
                },
            );
        }
    }
    group.finish();
}

/// EHLO, then `messages` pipelined transactions of a 1 KiB message, by DATA or by BDAT.
fn pipelined_session(messages: usize, bdat: bool) -> Vec<u8> {
    let content = body(1024, false);
    let content = &content[..content.len() - 3];
    let mut input = b"EHLO bench.example\r\n".to_vec();
    for i in 0..messages {
        input.extend_from_slice(
            format!("MAIL FROM:<s{i}@example.org>\r\nRCPT TO:<r@example.net>\r\n").as_bytes(),
        );
        if bdat {
            input.extend_from_slice(format!("BDAT {} LAST\r\n", content.len()).as_bytes());
            input.extend_from_slice(content);
        } else {
            input.extend_from_slice(b"DATA\r\n");
            input.extend_from_slice(content);
            input.extend_from_slice(b".\r\n");
        }
    }
    input
}

fn session(c: &mut Criterion) {
    const MESSAGES: usize = 100;
    let config = Config::default().session_config();
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    for bdat in [false, true] {
        let input = pipelined_session(MESSAGES, bdat);
        let name = if bdat { "bdat_1KiB" } else { "data_1KiB" };
        let mut out = Vec::with_capacity(64 * 1024);
        let mut tally = ReplyTally::default();
        group.bench_function(BenchmarkId::new("pipelined", name), |b| {
            b.iter(|| {
                let mut session = Session::new();
                out.clear();
                let progress = session.on_input(
                    &config,
                    black_box(&input),
                    &mut Replies::new(&mut out, &mut tally),
                    &mut Discard,
                    &mut Open,
                );
                assert_eq!(session.take_accepted().0, MESSAGES as u64);
                progress.consumed
            })
        });
        // The server's own discarding sink: it names every message (a clock read, a shared
        // counter, the id formatted), and the `250` says `queued as <id>`.
        let mut sink = fastsmtpd::store::StoreSink::discard();
        group.bench_function(BenchmarkId::new("pipelined_named", name), |b| {
            b.iter(|| {
                let mut session = Session::new();
                out.clear();
                let progress = session.on_input(
                    &config,
                    black_box(&input),
                    &mut Replies::new(&mut out, &mut tally),
                    &mut sink,
                    &mut Open,
                );
                assert_eq!(session.take_accepted().0, MESSAGES as u64);
                progress.consumed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, framing_and_parsing, data_scan, session);
criterion_main!(benches);
