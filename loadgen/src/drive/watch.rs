//! The watcher thread: one blocking HTTP connection to the far sink's event stream.
//!
//! What it does: read the sink's cursor, subscribe to `GET /api/v1/events` from it (both
//! before the run's first message: [`subscribe`]), then ([`run_watch`]) read events as they
//! come, with a short read timeout so it also keeps the one-second reporting grid: each
//! arrival tagged by this run goes to the [`DeliveryLink`]'s tracker with the message's
//! recipients it names (its summary's `rcpt_to` matched against the addresses the workload
//! gave that message: [`recipients_of`]), a delivered latency (a message's last recipient
//! arrived) into the interval's `delivered` histogram; `lagged` ranges, `reset`s, recipients
//! arrived, duplicate and late recipients, and foreign arrivals are counted. A dropped
//! connection is reopened with `Last-Event-ID` (the last id read), every
//! [`RECONNECT_PAUSE`], until the watch ends. The watch ends once every engine thread has
//! finished and either nothing is awaited or the drain time has passed; its last report
//! carries the `never delivered` and `partly delivered` counts and the recipients never
//! delivered.
//!
//! What it does not do: parse HTTP or the event stream itself (`delivered::http`,
//! `delivered::sse`), decide what an arrival is (`delivered::tracker`), parse tags (`tag`),
//! or send mail. It is a room of its own, apart from `delivered`, because it reports like an
//! engine thread (it imports `engine`'s report), while the engine imports `delivered`'s
//! tracker: one room for both would be a cycle.

use crate::drive::client::Stage;
use crate::drive::delivered::http::{self, Chunked, Framing};
use crate::drive::delivered::sse::SseParser;
use crate::drive::delivered::tracker::{Recipients, IDENTIFIED_RCPTS_MAX};
use crate::drive::delivered::DeliveryLink;
use crate::drive::engine::{IntervalReport, INTERVAL};
use crate::drive::record::{record, Recorder};
use crate::drive::tag::parse_tag;
use crate::drive::workload::Workload;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long connecting to the API and reading a response head may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one read waits for events before the loop looks at the clock.
const READ_POLL: Duration = Duration::from_millis(20);
/// The pause before reopening a dropped event stream.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// Octets read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Longest body of the cursor's response.
const MAX_CURSOR_BODY: usize = 4096;
/// The default drain time (`--delivered-drain`).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// `--delivered-via` and its companions, checked.
#[derive(Debug, Clone)]
pub struct Via {
    /// The URL as given (shown in the header and `--json`).
    pub url: String,
    /// The API's address.
    pub addr: SocketAddr,
    /// `HOST:PORT` as given, for the `Host` field.
    pub host: String,
    /// A path prefix before `/api/v1/` (empty, or starting with `/` and not ending with it).
    pub prefix: String,
    /// `--delivered-token`: a bearer token for an API started with `--api-token`.
    pub token: Option<String>,
    /// `--delivered-drain`: how long to wait after the send phase for awaited messages.
    pub drain: Duration,
}

impl Via {
    /// Checks `url` (`http://HOST:PORT[/PREFIX]`).
    pub fn new(url: &str, token: Option<String>, drain: Duration) -> Result<Via, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("--delivered-via {url}: give the sink's capture API as http://HOST:PORT")
        })?;
        let (host, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("--delivered-via {url}: {e}"))?
            .next()
            .ok_or_else(|| format!("--delivered-via {url}: {host} has no address"))?;
        Ok(Via {
            url: url.to_string(),
            addr,
            host: host.to_string(),
            prefix: prefix.to_string(),
            token,
            drain,
        })
    }
}

/// An open event stream: the connection, the octets read past the response head, and how
/// the body is framed.
#[derive(Debug)]
pub struct Subscription {
    /// The connection.
    stream: TcpStream,
    /// Body octets read with the head.
    early: Vec<u8>,
    /// The body's framing.
    framing: Framing,
    /// The cursor the stream started after.
    pub after: u64,
}

/// Reads the sink's cursor and subscribes to its events after it: everything that arrives
/// from now on will be seen.
pub fn subscribe(via: &Via) -> Result<Subscription, String> {
    let after = read_cursor(via)?;
    open_stream(via, after)
}

/// `GET /api/v1/cursor`: the last sequence number the sink gave.
fn read_cursor(via: &Via) -> Result<u64, String> {
    let (mut stream, head, mut body) = request(via, "/api/v1/cursor", None)?;
    let fail = |what: String| format!("--delivered-via {}: /api/v1/cursor: {what}", via.url);
    if head.status != 200 {
        return Err(fail(format!("HTTP status {}", head.status)));
    }
    let mut buf = [0u8; 4096];
    while body.len() < MAX_CURSOR_BODY {
        if let Framing::Length(n) = head.framing {
            if body.len() as u64 >= n {
                break;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    let body = match head.framing {
        Framing::Chunked => {
            let mut out = Vec::new();
            Chunked::new().decode_into(&body, &mut out).map_err(fail)?;
            out
        }
        _ => body,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))?;
    value["cursor"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| fail("no cursor in the answer".into()))
}

/// Opens the event stream after `after`.
fn open_stream(via: &Via, after: u64) -> Result<Subscription, String> {
    let (stream, head, early) = request(via, "/api/v1/events", Some(after))?;
    if head.status != 200 {
        return Err(format!(
            "--delivered-via {}: /api/v1/events: HTTP status {}",
            via.url, head.status
        ));
    }
    stream
        .set_read_timeout(Some(READ_POLL))
        .map_err(|e| e.to_string())?;
    Ok(Subscription {
        stream,
        early,
        framing: head.framing,
        after,
    })
}

/// Sends a `GET` for `path` (below the prefix) and reads the response head; returns the
/// connection, the head and the body octets read with it.
fn request(
    via: &Via,
    path: &str,
    last_id: Option<u64>,
) -> Result<(TcpStream, http::Head, Vec<u8>), String> {
    let fail = |e: String| format!("--delivered-via {}: {path}: {e}", via.url);
    let mut stream = TcpStream::connect_timeout(&via.addr, CONNECT_TIMEOUT)
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| fail(e.to_string()))?;
    let mut out = Vec::new();
    let full = format!("{}{path}", via.prefix);
    http::request_into(&via.host, &full, via.token.as_deref(), last_id, &mut out);
    stream.write_all(&out).map_err(|e| fail(e.to_string()))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((head, used)) = http::parse_head(&buf).map_err(fail)? {
            return Ok((stream, head, buf[used..].to_vec()));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(fail("closed before answering".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

/// What the watcher needs of the run.
#[derive(Debug, Clone, Copy)]
pub struct WatchPlan {
    /// Its reporter number (after the engine threads').
    pub index: usize,
    /// The run's start (intervals count from it).
    pub start: Instant,
    /// Measurements before this are warm-up.
    pub warmup_end: Instant,
    /// The run id in this run's tags.
    pub run: u32,
}

/// The watcher's state.
struct Watcher<'a> {
    /// The shared tracker and clock.
    link: &'a DeliveryLink,
    /// The run.
    plan: WatchPlan,
    /// This interval's figures.
    recorder: Recorder,
    /// The current interval.
    interval: u64,
    /// The last event id read (the resume point).
    last_id: u64,
    /// The stream's format state.
    sse: SseParser,
    /// The chunked decoder, when the body is chunked.
    chunked: Option<Chunked>,
    /// Decoded body octets waiting for the event parser.
    decoded: Vec<u8>,
    /// The workload (the addresses each message was sent to).
    workload: &'a Workload,
    /// One buffer per recipient number, for the addresses of the message at hand.
    addresses: Vec<Vec<u8>>,
}

/// Watches until the end of the drain, reporting to `reports` like an engine thread.
pub fn run_watch(
    subscription: Subscription,
    via: &Via,
    link: Arc<DeliveryLink>,
    plan: WatchPlan,
    workload: &Workload,
    reports: Sender<IntervalReport>,
) -> io::Result<()> {
    let mut watcher = Watcher {
        link: &link,
        plan,
        recorder: watch_recorder(),
        interval: 0,
        last_id: subscription.after,
        sse: SseParser::new(),
        chunked: None,
        decoded: Vec::new(),
        workload,
        addresses: Vec::new(),
    };
    let mut stream = Some(watcher.start(subscription));
    let mut buf = vec![0u8; READ_CHUNK];
    let mut reconnect_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        watcher.report_due(now, &reports);
        if let Some(done) = link.senders_done_at() {
            if link.tracker().awaited() == 0 || now >= done + via.drain {
                break;
            }
        }
        let Some(conn) = stream.as_mut() else {
            if reconnect_at.is_none_or(|at| now >= at) {
                match open_stream(via, watcher.last_id) {
                    Ok(sub) => stream = Some(watcher.start(sub)),
                    Err(e) => {
                        watcher.recorder.note(e);
                        reconnect_at = Some(now + RECONNECT_PAUSE);
                    }
                }
            } else {
                std::thread::sleep(READ_POLL);
            }
            continue;
        };
        let failed = match conn.read(&mut buf) {
            Ok(0) => Some("the event stream closed".to_string()),
            Ok(n) => {
                // The read may have waited into a new interval: report the old one first,
                // so these arrivals count in the interval of their time (the engines' 250s
                // are counted by theirs; an arrival at the warm-up's end must not fall into
                // the warm-up's report).
                watcher.report_due(Instant::now(), &reports);
                watcher.on_bytes(&buf[..n]).err()
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(e) => Some(format!("the event stream failed: {e}")),
        };
        if let Some(why) = failed {
            watcher.recorder.delivery.reconnects += 1;
            watcher.recorder.note(why);
            stream = None;
            reconnect_at = Some(Instant::now() + RECONNECT_PAUSE);
        }
    }
    let (missing, rcpts_arrived) = {
        let tracker = link.tracker();
        (tracker.missing(), tracker.rcpts_arrived())
    };
    let figures = &mut watcher.recorder.delivery;
    figures.never_delivered = missing.never_delivered;
    figures.partly_delivered = missing.partly_delivered;
    figures.never_delivered_rcpts = missing.recipients;
    // Counted by the tracker, which knows which messages count (their 250 came after the
    // warm-up), even for recipients that arrived before it: the final report carries it.
    figures.rcpts_arrived = rcpts_arrived;
    watcher.send(&reports, true);
    Ok(())
}

/// Which of message `seq`'s recipients the arrival event `value` (its summary) names, or
/// `None` when it names none of them (a notification to the sender that quotes the tag, say:
/// not an arrival of the message).
///
/// When the tracker `named` them (up to [`IDENTIFIED_RCPTS_MAX`] recipients per message, all
/// a summary lists), each address of `rcpt_to` is matched with the first recipient not
/// matched yet that was sent to that address (compared ignoring ASCII case: an MTA may
/// rewrite a domain's case, RFC 5321 §2.4), so two recipients sent to one address are two.
/// Past that the summary lists only some, so its `rcpt_count` is taken as the number of the
/// message's recipients it carries. `addresses` is scratch space, one buffer per recipient
/// number.
fn recipients_of(
    workload: &Workload,
    named: bool,
    seq: u64,
    value: &serde_json::Value,
    addresses: &mut Vec<Vec<u8>>,
) -> Option<Recipients> {
    let listed = value["rcpt_to"].as_array();
    if !named || workload.rcpts > IDENTIFIED_RCPTS_MAX {
        let count = value["rcpt_count"]
            .as_u64()
            .or_else(|| listed.map(|l| l.len() as u64))?;
        return (count > 0).then_some(Recipients::Counted(count));
    }
    addresses.resize_with(workload.rcpts, Vec::new);
    for (r, address) in addresses.iter_mut().enumerate() {
        address.clear();
        workload.rcpt_address_into(seq, r, address);
    }
    let mut mask = 0u64;
    for named in listed?.iter().filter_map(|a| a.as_str()) {
        let matched = addresses
            .iter()
            .enumerate()
            .find(|(r, address)| {
                mask & (1 << r) == 0 && address.eq_ignore_ascii_case(named.as_bytes())
            })
            .map(|(r, _)| r);
        if let Some(r) = matched {
            mask |= 1 << r;
        }
    }
    (mask != 0).then_some(Recipients::Named(mask))
}

/// An empty recorder of the watcher (its delivery figures marked as present).
fn watch_recorder() -> Recorder {
    let mut recorder = Recorder::new();
    recorder.delivery.watched = true;
    recorder
}

impl Watcher<'_> {
    /// Starts reading a (re)opened stream: fresh framing and event state, and the octets
    /// read with the head. Returns the connection.
    fn start(&mut self, subscription: Subscription) -> TcpStream {
        self.sse = SseParser::new();
        self.chunked = (subscription.framing == Framing::Chunked).then(Chunked::new);
        if let Err(e) = self.on_bytes(&subscription.early) {
            self.recorder.note(e);
        }
        subscription.stream
    }

    /// Body octets from the stream: decoded, parsed, each event handled.
    fn on_bytes(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.decoded.clear();
        match &mut self.chunked {
            Some(chunked) => {
                chunked.decode_into(bytes, &mut self.decoded)?;
                if chunked.is_done() {
                    return Err("the event stream ended".into());
                }
            }
            None => self.decoded.extend_from_slice(bytes),
        }
        let mut events = Vec::new();
        self.sse.feed(&self.decoded, |e| {
            events.push((e.kind.to_string(), e.data.to_string()))
        })?;
        if let Some(id) = self.sse.last_id().and_then(|id| id.parse().ok()) {
            self.last_id = id;
        }
        let now = self.link.nanos(Instant::now());
        for (kind, data) in events {
            self.on_event(&kind, &data, now);
        }
        Ok(())
    }

    /// One event, read at `now` (nanoseconds from the link's epoch).
    fn on_event(&mut self, kind: &str, data: &str, now: u64) {
        let value: serde_json::Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) => return,
        };
        match kind {
            "message" => {
                let tag = value["subject"].as_str().and_then(parse_tag);
                let named = self.link.tracker().names_recipients();
                let ours = tag
                    .filter(|(run, _)| *run == self.plan.run)
                    .and_then(|(_, seq)| {
                        recipients_of(self.workload, named, seq, &value, &mut self.addresses)
                            .map(|rcpts| (seq, rcpts))
                    });
                let Some((seq, rcpts)) = ours else {
                    self.recorder.delivery.foreign += 1;
                    return;
                };
                let arrival = self.link.tracker().on_arrival(seq, now, rcpts);
                let figures = &mut self.recorder.delivery;
                if arrival.unknown {
                    figures.foreign += 1;
                    return;
                }
                figures.duplicates += arrival.duplicates;
                figures.replayed += arrival.replayed;
                figures.late += arrival.late;
                // Timed for exactly the messages `accepted` counts: those whose `250` came
                // after the warm-up (the tracker kept that), wherever the arrival falls.
                if let Some((nanos, true)) = arrival.delivered {
                    record(&mut self.recorder.stages[Stage::Delivered.index()], nanos);
                }
            }
            // docs/api.md: the sequence numbers missed, both included.
            "lagged" => {
                let figures = &mut self.recorder.delivery;
                let from = value["from"].as_u64().unwrap_or(0);
                let to = value["to"].as_u64().unwrap_or(from);
                figures.lagged += to.saturating_sub(from) + 1;
            }
            "reset" => {
                self.recorder.delivery.resets += 1;
                self.link.tracker().on_reset();
            }
            _ => {}
        }
    }

    /// Sends the intervals that ended by `now`.
    fn report_due(&mut self, now: Instant, reports: &Sender<IntervalReport>) {
        let current = (now.saturating_duration_since(self.plan.start).as_nanos()
            / INTERVAL.as_nanos()) as u64;
        if current > self.interval {
            self.send(reports, false);
            self.interval = current;
        }
    }

    /// Sends this interval's figures (`last`: the watcher's final report).
    fn send(&mut self, reports: &Sender<IntervalReport>, last: bool) {
        let interval_start = self.plan.start + INTERVAL * self.interval as u32;
        let recorder = std::mem::replace(&mut self.recorder, watch_recorder());
        let _ = reports.send(IntervalReport {
            thread: self.plan.index,
            interval: self.interval,
            warmup: interval_start < self.plan.warmup_end,
            recorder,
            last,
            backlog: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::workload::{AddressPattern, Generated, Order, Pipelining, Security, Sizes};

    /// A workload of `rcpts` recipients per message, `sink{r}@example.net` each.
    fn workload(rcpts: usize) -> Workload {
        Workload {
            rcpts,
            msgs_per_conn: 0,
            pipelining: Pipelining::Auto,
            bdat: false,
            inflight: 1,
            helo: false,
            ehlo_name: "loadgen.test".into(),
            from: AddressPattern::new("loadgen{n}@example.org").unwrap(),
            to: AddressPattern::new("sink{r}@example.net").unwrap(),
            generated: Generated::new(Sizes::Fixed(4096), true),
            security: Security::Plain,
            auth: None,
            corpus: None,
            order: Order::Sequential,
            recipients: None,
            tag_run: None,
        }
    }

    /// One `message` event of message `seq` of run 7 naming `rcpts`.
    fn event(id: u64, seq: u64, rcpts: &[&str]) -> String {
        let mut subject = Vec::new();
        crate::drive::tag::tag_into(7, seq, &mut subject);
        let data = serde_json::json!({
            "id": format!("m{id}"), "seq": id, "mail_from": "loadgen0@example.org",
            "rcpt_to": rcpts, "rcpt_count": rcpts.len(),
            "subject": String::from_utf8(subject).unwrap(),
        });
        format!("id: {id}\nevent: message\ndata: {data}\n\n")
    }

    /// The watcher's figures after `stream` was read cut at `cut`, message 0 (three
    /// recipients) accepted before it, and the number of `delivered` latencies recorded.
    fn read(stream: &[u8], cut: usize) -> (crate::drive::record::DeliveryFigures, u64) {
        let (figures, timed, last_id) = read_with(stream, cut, &[(0, true)]);
        assert_eq!(last_id, 6);
        (figures, timed)
    }

    /// As [`read`], the messages `accepted` (number, whether it counts: after the warm-up)
    /// accepted before the stream; also returns the last event id read.
    fn read_with(
        stream: &[u8],
        cut: usize,
        accepted: &[(u64, bool)],
    ) -> (crate::drive::record::DeliveryFigures, u64, u64) {
        let link = DeliveryLink::new(1, 3);
        let start = Instant::now();
        for &(seq, counts) in accepted {
            link.on_accepted(seq, start, counts, 3, 0);
        }
        let workload = workload(3);
        let mut watcher = Watcher {
            link: &link,
            plan: WatchPlan {
                index: 1,
                start,
                warmup_end: start,
                run: 7,
            },
            recorder: watch_recorder(),
            interval: 0,
            last_id: 0,
            sse: SseParser::new(),
            chunked: None,
            decoded: Vec::new(),
            workload: &workload,
            addresses: Vec::new(),
        };
        watcher.on_bytes(&stream[..cut]).unwrap();
        watcher.on_bytes(&stream[cut..]).unwrap();
        let missing = link.tracker().missing();
        let mut figures = watcher.recorder.delivery;
        figures.never_delivered = missing.never_delivered;
        figures.partly_delivered = missing.partly_delivered;
        figures.never_delivered_rcpts = missing.recipients;
        figures.rcpts_arrived = link.tracker().rcpts_arrived();
        let timed = watcher.recorder.stages[Stage::Delivered.index()].len();
        (figures, timed, watcher.last_id)
    }

    #[test]
    fn recipients_split_over_transactions_cut_anywhere_are_one_delivery_and_one_duplicate() {
        let stream = [
            // Two of three recipients; the relay retries the deferred one alone.
            event(1, 0, &["sink0@example.net", "SINK2@Example.NET"]),
            event(2, 0, &["sink1@example.net"]),
            // Then recipient 1 once more: one duplicate recipient.
            event(3, 0, &["sink1@example.net"]),
            // A notification to the sender quoting the tag: not an arrival of message 0.
            event(4, 0, &["loadgen0@example.org"]),
            // Another run's mail, and message 1, which was never accepted.
            event(5, 0, &[]).replace("run 00000007", "run 00000008"),
            event(6, 1, &["sink0@example.net"]),
        ]
        .concat();
        for cut in 0..=stream.len() {
            let (figures, timed) = read(stream.as_bytes(), cut);
            assert_eq!(timed, 1, "cut at {cut}");
            // Message 0's three; message 1 was never accepted (not counted, as in `accepted`).
            assert_eq!(figures.rcpts_arrived, 3, "cut at {cut}");
            assert_eq!(figures.duplicates, 1, "cut at {cut}");
            assert_eq!(figures.foreign, 2, "cut at {cut}");
            assert_eq!(figures.never_delivered, 0, "cut at {cut}");
            assert_eq!(figures.partly_delivered, 0, "cut at {cut}");
        }
    }

    #[test]
    fn a_recipient_that_never_arrives_is_counted_with_its_message() {
        let stream = [
            event(1, 0, &["sink0@example.net"]),
            event(2, 0, &["sink2@example.net"]),
            event(3, 2, &["sink0@example.net"]),
            event(4, 2, &["sink0@example.net", "sink0@example.net"]),
            event(5, 2, &["nobody@example.net"]),
            event(6, 2, &["sink1@example.net"]),
        ]
        .concat();
        let (figures, timed) = read(stream.as_bytes(), 0);
        assert_eq!(timed, 0);
        assert_eq!(figures.partly_delivered, 1);
        assert_eq!(figures.never_delivered, 0);
        assert_eq!(figures.never_delivered_rcpts, 1);
        // Message 2 (never accepted, arrivals still seen): sink0 again is a duplicate; the
        // same address twice in one transaction matches its one recipient once.
        assert_eq!(figures.duplicates, 1);
        assert_eq!(figures.foreign, 1);
        // Message 0's two: message 2's arrivals are not of a message counted.
        assert_eq!(figures.rcpts_arrived, 2);
    }

    #[test]
    fn recipients_of_warm_up_messages_arriving_late_are_not_counted() {
        // Message 0 got its 250 in the warm-up, message 1 after it; both arrive now (after
        // the warm-up), message 1 in two transactions and message 0 once more.
        let stream = [
            event(
                1,
                0,
                &[
                    "sink0@example.net",
                    "sink1@example.net",
                    "sink2@example.net",
                ],
            ),
            event(2, 1, &["sink0@example.net"]),
            event(3, 1, &["sink1@example.net", "sink2@example.net"]),
            event(4, 0, &["sink1@example.net"]),
        ]
        .concat();
        for cut in 0..=stream.len() {
            let (figures, timed, last_id) =
                read_with(stream.as_bytes(), cut, &[(0, false), (1, true)]);
            assert_eq!(last_id, 4);
            // Only message 1 is timed and only its recipients arrived count: as many as
            // `accepted` (1 message, 3 recipients) allows, never the warm-up's on top.
            assert_eq!(timed, 1, "cut at {cut}");
            assert_eq!(figures.rcpts_arrived, 3, "cut at {cut}");
            assert_eq!(figures.duplicates, 1, "cut at {cut}");
            assert_eq!(figures.never_delivered, 0, "cut at {cut}");
        }
    }

    #[test]
    fn more_recipients_than_a_summary_lists_are_counted_from_rcpt_count() {
        let w = workload(IDENTIFIED_RCPTS_MAX + 5);
        let value = serde_json::json!({"rcpt_to": ["sink0@example.net"], "rcpt_count": 25});
        let mut scratch = Vec::new();
        assert_eq!(
            recipients_of(&w, false, 0, &value, &mut scratch),
            Some(Recipients::Counted(25))
        );
        assert!(scratch.is_empty(), "no addresses computed when counting");
        let w = workload(2);
        let value = serde_json::json!({"rcpt_to": ["sink1@example.net", "x@y"], "rcpt_count": 2});
        assert_eq!(
            recipients_of(&w, true, 9, &value, &mut scratch),
            Some(Recipients::Named(0b10))
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"rcpt_to": "sink0@example.net"}),
            serde_json::json!({"rcpt_to": [1, null]}),
        ] {
            assert_eq!(
                recipients_of(&w, true, 9, &bad, &mut scratch),
                None,
                "{bad}"
            );
        }
    }
}
