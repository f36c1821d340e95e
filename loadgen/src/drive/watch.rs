//! The watcher thread: one blocking HTTP connection to the far sink's event stream.
//!
//! What it does: read the sink's cursor, subscribe to `GET /api/v1/events` from it (both
//! before the run's first message: [`subscribe`]), then ([`run_watch`]) read events as they
//! come, with a short read timeout so it also keeps the one-second reporting grid: each
//! arrival tagged by this run goes to the [`DeliveryLink`]'s tracker, a delivered latency
//! into the interval's `delivered` histogram; `lagged` ranges, `reset`s, duplicates, late
//! and foreign arrivals are counted. A dropped connection is reopened with `Last-Event-ID`
//! (the last id read), every [`RECONNECT_PAUSE`], until the watch ends. The watch ends once
//! every engine thread has finished and either nothing is awaited or the drain time has
//! passed; its last report carries the `never delivered` count.
//!
//! What it does not do: parse HTTP or the event stream itself (`delivered::http`,
//! `delivered::sse`), decide what an arrival is (`delivered::tracker`), parse tags (`tag`),
//! or send mail. It is a room of its own, apart from `delivered`, because it reports like an
//! engine thread (it imports `engine`'s report), while the engine imports `delivered`'s
//! tracker: one room for both would be a cycle.

use crate::drive::client::Stage;
use crate::drive::delivered::http::{self, Chunked, Framing};
use crate::drive::delivered::sse::SseParser;
use crate::drive::delivered::tracker::Arrival;
use crate::drive::delivered::DeliveryLink;
use crate::drive::engine::{IntervalReport, INTERVAL};
use crate::drive::record::{record, Recorder};
use crate::drive::tag::parse_tag;
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
}

/// Watches until the end of the drain, reporting to `reports` like an engine thread.
pub fn run_watch(
    subscription: Subscription,
    via: &Via,
    link: Arc<DeliveryLink>,
    plan: WatchPlan,
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
    watcher.recorder.delivery.never_delivered = link.tracker().never_delivered();
    watcher.send(&reports, true);
    Ok(())
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
        let figures = &mut self.recorder.delivery;
        match kind {
            "message" => {
                let tag = value["subject"].as_str().and_then(parse_tag);
                let Some((_, seq)) = tag.filter(|(run, _)| *run == self.plan.run) else {
                    figures.foreign += 1;
                    return;
                };
                match self.link.tracker().on_arrival(seq, now) {
                    // Timed for exactly the messages `accepted` counts: those whose `250`
                    // came after the warm-up (the tracker kept that), wherever the arrival
                    // falls.
                    Arrival::Delivered(nanos, true) => {
                        record(&mut self.recorder.stages[Stage::Delivered.index()], nanos)
                    }
                    Arrival::Delivered(_, false) => {}
                    Arrival::Early => {}
                    Arrival::Duplicate => figures.duplicates += 1,
                    Arrival::Replayed => figures.replayed += 1,
                    Arrival::Late => figures.late += 1,
                    Arrival::Unknown => figures.foreign += 1,
                }
            }
            // docs/api.md: the sequence numbers missed, both included.
            "lagged" => {
                let from = value["from"].as_u64().unwrap_or(0);
                let to = value["to"].as_u64().unwrap_or(from);
                figures.lagged += to.saturating_sub(from) + 1;
            }
            "reset" => {
                figures.resets += 1;
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
