//! DSN's parameters (RFC 3461) cost the session no allocation: thousands of pipelined
//! transactions with `RET`, `ENVID`, `NOTIFY` and `ORCPT` through a session that offers DSN
//! (as a relay's does), counted by a global allocator after a warm-up. The envelope keeps them
//! in the same reused buffers as the recipients (`proto::envelope`).
//!
//! Sans I/O, as `proto` is: the session is driven directly, with a sink that reads every
//! parameter from the envelope without keeping any. (The server's own zero-allocation test,
//! `zero_alloc.rs`, runs a sink that does not relay, so DSN is not offered there.) This file
//! holds a single test: the counter sees every thread of the process.

mod alloc_counter;

use alloc_counter::{CountingAllocator, Tracing, ALLOCATIONS};
use fastsmtpd::proto::envelope::Envelope;
use fastsmtpd::proto::gate::Open;
use fastsmtpd::proto::reply::{Advertised, Banner, Replies, ReplyTally};
use fastsmtpd::proto::session::{BareLfPolicy, SecurityPolicy, Session, SessionConfig};
use fastsmtpd::proto::sink::{MessageSink, Verdict};
use std::sync::atomic::Ordering;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Transactions per batch.
const BATCH: usize = 100;
/// Batches before counting.
const WARMUP_BATCHES: usize = 5;
/// Batches counted.
const MEASURED_BATCHES: usize = 20;

/// Reads the DSN parameters of every message, keeping only sums.
#[derive(Debug, Default)]
struct DsnReader {
    /// Messages ended.
    messages: u64,
    /// Octets of `ENVID` and `ORCPT` values seen, and `NOTIFY` bits.
    seen: u64,
}

impl MessageSink for DsnReader {
    fn on_message_start(&mut self, _envelope: &Envelope<'_>) {}

    fn on_message_data(&mut self, _piece: &[u8]) {}

    fn on_message_end(&mut self, envelope: &Envelope<'_>) -> Verdict {
        self.messages += 1;
        self.seen += envelope.envid.map_or(0, |envid| envid.len() as u64);
        self.seen += u64::from(envelope.params.ret.is_some());
        for params in envelope.recipients.dsn() {
            self.seen += u64::from(params.notify.bits());
            self.seen += params.orcpt.map_or(0, |orcpt| orcpt.len() as u64);
        }
        Verdict::Stored
    }

    fn on_message_abort(&mut self) {}
}

#[test]
fn dsn_parameters_allocate_nothing_per_transaction_after_warmup() {
    let config = SessionConfig {
        banner: Banner::with(
            "mx.test",
            1 << 20,
            Advertised {
                dsn: true,
                ..SecurityPolicy::default().advertised()
            },
        ),
        max_line_len: 2048,
        max_message_size: 1 << 20,
        max_recipients: 100,
        max_errors: 20,
        max_junk_commands: 100,
        bare_lf: BareLfPolicy::Reject,
        security: SecurityPolicy::default(),
        dsn: true,
    };
    let transaction = b"MAIL FROM:<sender@client.test> RET=FULL ENVID=QQ+2B314159-abcdefgh\r\n\
RCPT TO:<one@far.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;One+2Bx@far.test\r\n\
RCPT TO:<two@far.test> NOTIFY=NEVER\r\n\
RCPT TO:<three@far.test> ORCPT=rfc822;three@far.test\r\n\
RCPT TO:<four@far.test>\r\n\
DATA\r\nSubject: dsn\r\n\r\nbody\r\n.\r\n";
    let mut batch = Vec::new();
    for _ in 0..BATCH {
        batch.extend_from_slice(transaction);
    }
    let mut session = Session::new();
    let mut sink = DsnReader::default();
    let mut out = Vec::with_capacity(1 << 16);
    let mut tally = ReplyTally::default();
    session.on_connect(
        &config,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut Open,
    );
    let greet = session.on_input(
        &config,
        b"EHLO client.test\r\n",
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut Open,
    );
    assert_eq!(greet.consumed, 18);
    assert!(
        String::from_utf8_lossy(&out).contains("250-DSN\r\n"),
        "DSN offered"
    );
    let mut run_batch = |session: &mut Session, sink: &mut DsnReader, out: &mut Vec<u8>| {
        out.clear();
        let mut input: &[u8] = &batch;
        while !input.is_empty() {
            let progress = session.on_input(
                &config,
                input,
                &mut Replies::new(out, &mut tally),
                sink,
                &mut Open,
            );
            assert!(progress.consumed > 0, "the session takes the batch");
            input = &input[progress.consumed..];
        }
    };
    for _ in 0..WARMUP_BATCHES {
        run_batch(&mut session, &mut sink, &mut out);
    }
    let accepted = out
        .windows(b"250 2.0.0 Ok".len())
        .filter(|w| w == b"250 2.0.0 Ok")
        .count();
    assert_eq!(accepted, BATCH, "{}", String::from_utf8_lossy(&out));
    let tracing = Tracing::start();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(before > 0, "the counting allocator is not installed");
    for _ in 0..MEASURED_BATCHES {
        run_batch(&mut session, &mut sink, &mut out);
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    tracing.finish();
    let messages = ((WARMUP_BATCHES + MEASURED_BATCHES) * BATCH) as u64;
    assert_eq!(sink.messages, messages);
    // ENVID 20 + RET 1 + NOTIFY 14 + 1 + ORCPT 23 + 21 octets, per message.
    assert_eq!(sink.seen, messages * (20 + 1 + 14 + 1 + 23 + 21));
    assert_eq!(
        allocations,
        0,
        "heap allocations during {} transactions with DSN parameters",
        MEASURED_BATCHES * BATCH
    );
}
