//! The relay's SMTP client against the server's own session, in memory: the two ends of SMTP
//! written apart (they share no code), made to talk with no socket in between. What the
//! client's dot-stuffing and BDAT framing send must arrive byte for byte in the server's sink,
//! with and without PIPELINING and CHUNKING (removed from the server's EHLO reply on the way,
//! as a next hop that does not offer them), and per-recipient refusals must come back as the
//! client's outcomes.

use fastsmtpd::config::Config;
use fastsmtpd::proto::dsn::Notify;
use fastsmtpd::proto::envelope::Envelope as ServerEnvelope;
use fastsmtpd::proto::gate::{Checkpoint, Decision, Gate, GateContext, GateReply};
use fastsmtpd::proto::reply::{Replies, ReplyTally};
use fastsmtpd::proto::session::{Session, SessionConfig};
use fastsmtpd::proto::sink::{MessageSink, Verdict as SinkVerdict};
use fastsmtpd::relay::client::session::{
    ClientConfig, ClientSession, Envelope, Event, Reason, Recipient, TlsPolicy, TransactionReport,
    Verdict,
};
use proptest::prelude::*;

/// The server's sink: every message's content as it arrived.
#[derive(Debug, Default)]
struct Kept {
    messages: Vec<Vec<u8>>,
    current: Vec<u8>,
}

impl MessageSink for Kept {
    fn on_message_start(&mut self, _envelope: &ServerEnvelope<'_>) {
        self.current.clear();
    }

    fn on_message_data(&mut self, piece: &[u8]) {
        self.current.extend_from_slice(piece);
    }

    fn on_message_end(&mut self, _envelope: &ServerEnvelope<'_>) -> SinkVerdict {
        self.messages.push(std::mem::take(&mut self.current));
        SinkVerdict::Stored
    }

    fn on_message_abort(&mut self) {
        self.current.clear();
    }
}

/// The server's gate: a recipient whose address holds `refuse` gets `550`, one that holds
/// `later` gets `450`.
#[derive(Debug)]
struct RefuseSome;

impl Gate for RefuseSome {
    fn check(&mut self, checkpoint: Checkpoint, context: &GateContext<'_>) -> Decision {
        let holds = |word: &[u8]| context.recipient.windows(word.len()).any(|w| w == word);
        if checkpoint != Checkpoint::Rcpt {
            Decision::Proceed
        } else if holds(b"refuse") {
            Decision::Refuse(GateReply::Fixed(b"550 5.1.1 refused here\r\n"))
        } else if holds(b"later") {
            Decision::Refuse(GateReply::Fixed(b"450 4.2.1 try later\r\n"))
        } else {
            Decision::Proceed
        }
    }

    fn kept_text(&self, _n: usize) -> &[u8] {
        &[]
    }
}

/// What the next hop offers.
#[derive(Debug, Clone, Copy)]
struct Offer {
    pipelining: bool,
    chunking: bool,
}

/// One message: its recipients and its body.
type Message = (Vec<&'static str>, Vec<u8>);

/// What a conversation left: the client's reports, the server's kept messages, how the
/// client's session ended.
struct Outcome {
    reports: Vec<TransactionReport>,
    kept: Vec<Vec<u8>>,
    closed: Option<Option<Reason>>,
    /// Everything the client wrote.
    wire: Vec<u8>,
}

/// Runs a whole connection: the client sends `messages` (content in chunks of `chunk`
/// octets), then QUITs; the server answers as fastsmtpd does, minus what `offer` removes.
fn converse(offer: Offer, messages: &[Message], chunk: usize) -> Outcome {
    let config: SessionConfig = Config::default().session_config();
    let mut server = Session::new();
    let mut sink = Kept::default();
    let mut gate = RefuseSome;
    let mut tally = ReplyTally::default();
    let mut to_client = Vec::new();
    server.on_connect(
        &config,
        &mut Replies::new(&mut to_client, &mut tally),
        &mut sink,
        &mut gate,
    );
    let mut client = ClientSession::new(&ClientConfig {
        tls: TlsPolicy::Off,
        ..ClientConfig::new("relay.test")
    })
    .unwrap();
    let mut to_server = Vec::new();
    let mut wire = Vec::new();
    let mut queue = messages.iter();
    let mut body: &[u8] = &[];
    let mut sent = 0;
    let mut reports = Vec::new();
    let mut closed = None;
    for _round in 0..10_000 {
        if !offer.pipelining {
            strip(&mut to_client, b"250-PIPELINING\r\n");
        }
        if !offer.chunking {
            strip(&mut to_client, b"250-CHUNKING\r\n");
        }
        let used = client.on_input(&to_client);
        to_client.drain(..used);
        while let Some(event) = client.next_event() {
            match event {
                Event::Ready => match queue.next() {
                    Some((to, content)) => {
                        let recipients: Vec<Recipient<'_>> = to
                            .iter()
                            .map(|to| Recipient {
                                forward_path: to.as_bytes(),
                                notify: Notify::ABSENT,
                                orcpt: None,
                            })
                            .collect();
                        client
                            .start_transaction(&Envelope {
                                reverse_path: b"sender@relay.test",
                                recipients: &recipients,
                                size: content.len() as u64,
                                eight_bit: false,
                                binary: false,
                                smtputf8: false,
                                ret: None,
                                envid: None,
                            })
                            .unwrap();
                        body = content;
                        sent = 0;
                    }
                    None => client.finish().unwrap(),
                },
                Event::Content => {
                    client.commands_into(&mut to_server);
                    while client.accepts_content() {
                        let end = (sent + chunk).min(body.len());
                        let last = end == body.len();
                        client
                            .content_into(&body[sent..end], last, &mut to_server)
                            .unwrap();
                        sent = end;
                        if last {
                            break;
                        }
                    }
                }
                Event::TransactionDone(report) => reports.push(report),
                Event::Closed { error } => closed = Some(error),
                Event::StartTls => panic!("STARTTLS was not offered"),
            }
        }
        client.commands_into(&mut to_server);
        if closed.is_some() || (to_server.is_empty() && to_client.is_empty()) {
            break;
        }
        wire.extend_from_slice(&to_server);
        let progress = server.on_input(
            &config,
            &to_server,
            &mut Replies::new(&mut to_client, &mut tally),
            &mut sink,
            &mut gate,
        );
        to_server.drain(..progress.consumed);
    }
    Outcome {
        reports,
        kept: sink.messages,
        closed,
        wire,
    }
}

/// Removes every `line` from the server's output (a capability the next hop does not offer).
fn strip(buf: &mut Vec<u8>, line: &[u8]) {
    while let Some(at) = buf.windows(line.len()).position(|w| w == line) {
        buf.drain(at..at + line.len());
    }
}

/// What the server's sink should hold for a body: after DATA, the body with a line end added
/// if it lacked one (the dots unstuffed again); after BDAT, the body itself.
fn expected_content(body: &[u8], chunking: bool) -> Vec<u8> {
    let mut expected = body.to_vec();
    if !chunking && !body.is_empty() && !body.ends_with(b"\r\n") {
        expected.extend_from_slice(b"\r\n");
    }
    expected
}

const OFFERS: [Offer; 4] = [
    Offer {
        pipelining: false,
        chunking: false,
    },
    Offer {
        pipelining: true,
        chunking: false,
    },
    Offer {
        pipelining: false,
        chunking: true,
    },
    Offer {
        pipelining: true,
        chunking: true,
    },
];

/// Bodies with dots at line starts, a lone dot line, no final line end, an empty body: each
/// arrives as sent, under every offer and chunk size, several messages per connection.
#[test]
fn bodies_arrive_byte_for_byte_under_every_offer() {
    let bodies: [&[u8]; 5] = [
        b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nend\r\n",
        b".\r\n",
        b"no final line end\r\n.x",
        b"",
        b"plain\r\n",
    ];
    for offer in OFFERS {
        for chunk in [1, 3, 7, 1000] {
            let messages: Vec<Message> = bodies
                .iter()
                .map(|body| (vec!["rcpt@next.test"], body.to_vec()))
                .collect();
            let outcome = converse(offer, &messages, chunk);
            let context = format!("{offer:?} chunk {chunk}");
            assert_eq!(outcome.closed, Some(None), "{context}: QUIT ended it");
            assert_eq!(outcome.reports.len(), bodies.len(), "{context}");
            for report in &outcome.reports {
                assert_eq!(report.recipients.len(), 1);
                assert_eq!(
                    report.recipients[0].verdict,
                    Verdict::Delivered,
                    "{context}"
                );
            }
            let expected: Vec<Vec<u8>> = bodies
                .iter()
                .map(|body| expected_content(body, offer.chunking))
                .collect();
            assert_eq!(outcome.kept, expected, "{context}");
            let says = |word: &[u8]| outcome.wire.windows(word.len()).any(|w| w == word);
            assert_eq!(says(b"BDAT "), offer.chunking, "{context}");
            assert_eq!(says(b"DATA\r\n"), !offer.chunking, "{context}");
            // No RSET: every transaction ended on its message reply.
            assert!(
                !outcome.wire.windows(6).any(|w| w == b"RSET\r\n"),
                "{context}"
            );
        }
    }
}

/// Refused and deferred recipients come back as such; the accepted ones get the message; a
/// transaction whose every recipient is refused sends no content and is reset, and the next
/// one goes through on the same connection.
#[test]
fn refusals_by_the_server_become_the_clients_outcomes() {
    for offer in OFFERS {
        let messages: Vec<Message> = vec![
            (
                vec!["a@next.test", "refuse@next.test", "later@next.test"],
                b"one\r\n".to_vec(),
            ),
            (
                vec!["refuse1@next.test", "refuse2@next.test"],
                b"never sent\r\n".to_vec(),
            ),
            (vec!["b@next.test"], b"three\r\n".to_vec()),
        ];
        let outcome = converse(offer, &messages, 4);
        let verdicts: Vec<Vec<(Verdict, u16)>> = outcome
            .reports
            .iter()
            .map(|report| {
                report
                    .recipients
                    .iter()
                    .map(|outcome| match &outcome.reason {
                        Reason::Remote(reply) => (outcome.verdict, reply.code),
                        Reason::Local(local) => panic!("{offer:?}: {local:?}"),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            verdicts,
            vec![
                vec![
                    (Verdict::Delivered, 250),
                    (Verdict::Failed, 550),
                    (Verdict::Deferred, 450),
                ],
                vec![(Verdict::Failed, 550), (Verdict::Failed, 550)],
                vec![(Verdict::Delivered, 250)],
            ],
            "{offer:?}"
        );
        assert_eq!(
            outcome.kept,
            vec![b"one\r\n".to_vec(), b"three\r\n".to_vec()],
            "{offer:?}"
        );
        assert!(
            !outcome.wire.windows(10).any(|w| w == b"never sent"),
            "{offer:?}: content went to a hop that refused every recipient"
        );
        assert_eq!(
            outcome.wire.windows(6).filter(|w| w == b"RSET\r\n").count(),
            1,
            "{offer:?}: one RSET, after the all-refused transaction"
        );
        assert_eq!(outcome.closed, Some(None), "{offer:?}");
    }
}

/// Lines of dots, spaces and letters; a final line end or not.
fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'a'), Just(b' ')], 0..6),
            0..6,
        ),
        any::<bool>(),
    )
        .prop_map(|(lines, final_crlf)| {
            let mut body = lines.join(&b"\r\n"[..]);
            if final_crlf && !lines.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any such bodies, under any offer and chunk size, arrive as sent.
    #[test]
    fn any_body_arrives_as_sent(
        bodies in proptest::collection::vec(body(), 1..4),
        offer in 0usize..4,
        chunk in 1usize..9,
    ) {
        let offer = OFFERS[offer];
        let messages: Vec<Message> = bodies
            .iter()
            .map(|body| (vec!["rcpt@next.test"], body.clone()))
            .collect();
        let outcome = converse(offer, &messages, chunk);
        let expected: Vec<Vec<u8>> = bodies
            .iter()
            .map(|body| expected_content(body, offer.chunking))
            .collect();
        prop_assert_eq!(outcome.kept, expected);
        prop_assert_eq!(outcome.closed, Some(None));
    }
}
