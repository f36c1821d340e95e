//! A whole `Session` driven like the server drives it: input arrives in fuzzer-chosen pieces,
//! unconsumed bytes are carried and presented again with the next piece.
//!
//! Input: `[line] [size lo] [size hi] [recipients] [errors] [flags] [cut count] [cuts]...
//! [splice: u8, u16 LE if flag bit 4] payload`. Flags: bit 0 bare-LF policy Keep, bit 1 the
//! sink fails to store, bit 2 shutdown after the input, bit 3 also feed the payload one byte
//! at a time, bit 4 insert one of the SMTP smuggling vectors of
//! `fastsmtpd::proto::data::reference` into the payload (`fastsmtpd_fuzz::Splice`).
//!
//! Checks: the sink sees start/data/end/abort properly paired; the carry stays shorter than
//! `max_line_len`; output, stored messages and counters do not depend on the split points;
//! every reply line ends in CR LF and is printable ASCII; accepted counts agree with the
//! `250 ... queued` replies.
#![no_main]

use fastsmtpd::proto::envelope::Envelope;
use fastsmtpd::proto::gate::Open;
use fastsmtpd::proto::reply::{Banner, Replies, ReplyTally, MESSAGE_ACCEPTED};
use fastsmtpd::proto::session::{BareLfPolicy, Session, SessionConfig};
use fastsmtpd::proto::sink::{MessageSink, Verdict};
use fastsmtpd_fuzz::{cut_bounds, hex, Header, Splice};
use libfuzzer_sys::fuzz_target;

/// (sender, recipients, content) of a stored message.
type Stored = (Vec<u8>, Vec<Vec<u8>>, Vec<u8>);

#[derive(Default, Debug, PartialEq)]
struct RecordingSink {
    messages: Vec<Stored>,
    current: Vec<u8>,
    open: bool,
    started: usize,
    ended: usize,
    aborted: usize,
    fail_store: bool,
}

impl MessageSink for RecordingSink {
    fn on_message_start(&mut self, envelope: &Envelope<'_>) {
        assert!(!self.open, "message started while one is open");
        assert!(
            envelope.recipient_count() >= 1,
            "message without recipients"
        );
        self.open = true;
        self.started += 1;
        self.current.clear();
    }
    fn on_message_data(&mut self, piece: &[u8]) {
        assert!(self.open, "data outside a message");
        self.current.extend_from_slice(piece);
    }
    fn on_message_end(&mut self, envelope: &Envelope<'_>) -> Verdict {
        assert!(self.open, "end without a message");
        assert!(
            envelope.recipient_count() >= 1,
            "message without recipients"
        );
        self.open = false;
        self.ended += 1;
        if self.fail_store {
            self.current.clear();
            return Verdict::Failed;
        }
        self.messages.push((
            envelope.sender.to_vec(),
            envelope.recipients().map(<[u8]>::to_vec).collect(),
            std::mem::take(&mut self.current),
        ));
        Verdict::Stored
    }
    fn on_message_abort(&mut self) {
        assert!(self.open, "abort without a message");
        self.open = false;
        self.aborted += 1;
        self.current.clear();
    }
}

/// Everything observable after a run, compared across split points.
#[derive(Debug, PartialEq)]
struct Observed {
    out: Vec<u8>,
    sink: RecordingSink,
    carry: Vec<u8>,
    closed: bool,
    commands: u64,
    errors: u32,
    accepted: (u64, u64),
}

struct Plan {
    shutdown: bool,
    fail_store: bool,
}

fuzz_target!(|data: &[u8]| {
    let mut header = Header::new(data);
    let line = header.u8();
    let size = header.u16();
    let recipients = header.u8();
    let errors = header.u8();
    let flags = header.u8();
    let raw_cuts = header.cuts();
    let splice = (flags & 16 != 0).then(|| Splice::read(&mut header));
    let payload = header.rest();
    let spliced = splice.map(|s| s.apply(payload));
    let input = spliced.as_deref().unwrap_or(payload);

    let max_message_size = 1 + u64::from(size % 4096);
    let config = SessionConfig {
        banner: Banner::new("mx.test", max_message_size),
        // Mostly tiny limits so that they are hit; sometimes the RFC minimum.
        max_line_len: if line < 0xc0 {
            1 + usize::from(line % 0x80)
        } else {
            512
        },
        max_message_size,
        max_recipients: 1 + usize::from(recipients % 4),
        max_errors: 1 + u32::from(errors % 24),
        max_junk_commands: 100,
        bare_lf: if flags & 1 == 1 {
            BareLfPolicy::Keep
        } else {
            BareLfPolicy::Reject
        },
    };
    let plan = Plan {
        fail_store: flags & 2 != 0,
        shutdown: flags & 4 != 0,
    };

    let whole = run(&config, &plan, input, &[input.len()]);
    check_output(&whole, &plan, input);
    let split = run(&config, &plan, input, &cut_bounds(&raw_cuts, input.len()));
    assert!(
        whole == split,
        "split {raw_cuts:?} changed the result\nwhole {whole:?}\nsplit {split:?}\ninput {}",
        hex(input)
    );
    if flags & 8 != 0 {
        let every: Vec<usize> = (0..=input.len()).collect();
        let bytewise = run(&config, &plan, input, &every);
        assert!(
            whole == bytewise,
            "bytewise changed the result\nwhole {whole:?}\nbytewise {bytewise:?}\ninput {}",
            hex(input)
        );
    }
});

/// Feeds `input[prev..end]` for each `end` of `ends` (ascending, last = len) like the server:
/// the unconsumed tail of each call is presented again, followed by the next piece.
fn run(config: &SessionConfig, plan: &Plan, input: &[u8], ends: &[usize]) -> Observed {
    let mut session = Session::new();
    let mut sink = RecordingSink {
        fail_store: plan.fail_store,
        ..RecordingSink::default()
    };
    let mut out = Vec::new();
    let mut tally = ReplyTally::default();
    session.on_connect(
        config,
        &mut Replies::new(&mut out, &mut tally),
        &mut sink,
        &mut Open,
    );
    let mut commands = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    let mut start = 0;
    for &end in ends {
        carry.extend_from_slice(&input[start..end]);
        let progress = session.on_input(
            config,
            &carry,
            &mut Replies::new(&mut out, &mut tally),
            &mut sink,
            &mut Open,
        );
        assert!(progress.pause_at.is_none(), "paused without a gate asking");
        commands += u64::from(progress.completed);
        let consumed = progress.consumed;
        assert!(consumed <= carry.len(), "consumed more than given");
        let left = carry.len() - consumed;
        assert!(
            left < config.max_line_len,
            "carry of {left} bytes, max_line_len {}: {}",
            config.max_line_len,
            hex(input)
        );
        if session.is_closed() {
            assert_eq!(left, 0, "a closed session leaves input unconsumed");
        }
        carry.drain(..consumed);
        start = end;
    }
    if plan.shutdown {
        session.on_shutdown(&mut Replies::new(&mut out, &mut tally), &mut sink);
    }
    let closed = session.is_closed();
    let errors = session.errors();
    let accepted = session.take_accepted();
    assert_eq!(session.take_accepted(), (0, 0));
    session.on_disconnect(&mut sink);
    assert!(session.is_closed());
    assert!(!sink.open, "message left open after disconnect");
    assert_eq!(
        sink.started,
        sink.ended + sink.aborted,
        "start/end/abort unpaired"
    );
    Observed {
        out,
        sink,
        carry,
        closed,
        commands,
        errors,
        accepted,
    }
}

fn check_output(observed: &Observed, plan: &Plan, input: &[u8]) {
    let out = &observed.out;
    assert!(
        out.ends_with(b"\r\n"),
        "output does not end in CRLF: {}",
        hex(input)
    );
    for line in out.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r\n").unwrap_or_else(|| {
            panic!(
                "reply line without CRLF in {:?}: {}",
                String::from_utf8_lossy(out),
                hex(input)
            )
        });
        assert!(
            line.iter().all(|&b| (0x20..=0x7e).contains(&b)),
            "non-printable reply line {line:?}: {}",
            hex(input)
        );
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "{line:?}"
        );
    }
    // Every `250 ... queued` is one stored message, and the counters agree.
    let queued = out
        .windows(MESSAGE_ACCEPTED.len())
        .filter(|w| *w == MESSAGE_ACCEPTED)
        .count();
    let stored = &observed.sink.messages;
    assert_eq!(
        queued,
        stored.len(),
        "queued replies vs stored: {}",
        hex(input)
    );
    if plan.fail_store {
        assert!(stored.is_empty());
    }
    let bytes: u64 = stored.iter().map(|m| m.2.len() as u64).sum();
    assert_eq!(
        observed.accepted,
        (stored.len() as u64, bytes),
        "{}",
        hex(input)
    );
}
