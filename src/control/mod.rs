//! The control plane's HTTP serving, shared by `--metrics` and `--api`: hyper (HTTP/1.1) on a
//! current-thread tokio runtime in a thread of its own, with deadlines and a connection cap.
//!
//! What it does: bind, accept connections and serve each one concurrently as a task, calling
//! the caller's handler for each request. Every connection has deadlines and the number of
//! connections is capped:
//!
//! - a request head must arrive within [`HEADER_READ_TIMEOUT`] of the connection opening or
//!   of the previous response (hyper's header read timeout), so slowloris senders and idle
//!   keep-alive connections are closed; a head larger than hyper's smallest buffer
//!   ([`MAX_BUF_SIZE`]) is refused (`431`);
//! - a connection is closed [`REQUEST_TIMEOUT`] after it was accepted or after its latest
//!   request head arrived, whichever is later: that bounds a request's whole life, including
//!   a client that reads its response slowly or never. A handler that answers late on
//!   purpose (a long poll, an event stream) extends its own connection's deadline with
//!   [`Conn::hold`], by a bounded time;
//! - at most [`Limits::max_connections`] are open: the accept loop never stops accepting (a
//!   scrape must not wait in the kernel's backlog behind idle sockets), and when full it
//!   closes one: a connection that never sent a request head first, then the least recently
//!   active, the one with the oldest accept or request, as nginx drops its oldest idle
//!   connections when it runs out (`ngx_drain_connections`); a connection a handler holds
//!   open on purpose (a long poll, an event stream) only when every one is held.
//!
//! [`HttpServer::stop`] tells the accept loop to end; the runtime is then dropped, which
//! cancels every connection task (dropping its handler's futures and bodies) and closes its
//! socket, and the thread is joined.
//!
//! What it does not do: route, read request bodies, or know what it serves (the handler
//! does); speak HTTP/2 or TLS; run on or wait for an SMTP worker; defend against a flood that
//! opens connections faster than requests are answered (a firewall's job).

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How long a request head may take to arrive, counted from the connection's accept or from
/// the end of its previous response (so it is also the idle keep-alive timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may live after its accept or its latest request head: the deadline
/// for answering a request, writing the response included. Longer than
/// [`HEADER_READ_TIMEOUT`], so it never cuts a healthy keep-alive connection.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (out of descriptors, for example) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Largest buffer hyper keeps per connection (its minimum): bounds a connection's memory and
/// the size of a request head.
pub const MAX_BUF_SIZE: usize = 8192;

/// What one server allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once; past it the least recently active one is closed.
    pub max_connections: usize,
}

/// The handler's view of its connection: to extend the deadline of a request it answers
/// late on purpose.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The connection's activity and deadline.
    activity: Arc<Activity>,
}

impl Conn {
    /// Lets the connection live `time` more from now, plus [`REQUEST_TIMEOUT`] to write what
    /// follows (never shortens an earlier hold).
    pub fn hold(&self, time: Duration) {
        self.activity.hold(time + REQUEST_TIMEOUT);
    }
}

/// A running server: a thread serving until [`HttpServer::stop`] (or drop).
#[derive(Debug)]
pub struct HttpServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Tells the accept loop to end; taken by the first [`HttpServer::stop`].
    stop: Option<oneshot::Sender<()>>,
    /// The server's thread; taken when joined.
    thread: Option<JoinHandle<()>>,
}

/// How long stopping waits for work on blocking threads (parses, file reads) to end.
const BLOCKING_GRACE: Duration = Duration::from_millis(500);

impl HttpServer {
    /// Binds `addr` (`flag` names it in errors: `--metrics 127.0.0.1:9000: ...`) and serves
    /// every request with `handler` on a thread named `thread` until [`HttpServer::stop`].
    /// Errors (the address is taken, the runtime cannot start) are reported here, before the
    /// thread starts.
    pub fn start<H, F, B>(
        addr: SocketAddr,
        flag: &str,
        thread: &str,
        limits: Limits,
        handler: H,
    ) -> io::Result<HttpServer>
    where
        H: Fn(Request<Incoming>, Conn) -> F + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("{flag} {addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (stop, stopped) = oneshot::channel();
        let handler = Arc::new(handler);
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, handler, limits, stopped));
                // A parse or file read on a blocking thread cannot be interrupted; dropping
                // the runtime would wait for it (a review's SIGTERM waited minutes on one):
                // give it a moment, then leave it to end with the process.
                runtime.shutdown_timeout(BLOCKING_GRACE);
            })?;
        Ok(HttpServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: ends the accept loop, closes every connection and waits for the
    /// thread. Returns promptly whatever the clients are doing; calling it again does
    /// nothing.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // An error means the thread has already ended.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A live connection, as the accept loop tracks it.
#[derive(Debug)]
struct Tracked {
    /// When it was accepted or its latest request head arrived (see [`Activity`]).
    activity: Arc<Activity>,
    /// Closes it (dropping its task drops the socket).
    abort: AbortHandle,
}

/// Accepts until `stopped` resolves (or its sender is dropped), spawning a task per
/// connection and keeping at most `limits.max_connections`.
async fn accept_loop<H, F, B>(
    listener: tokio::net::TcpListener,
    handler: Arc<H>,
    limits: Limits,
    mut stopped: oneshot::Receiver<()>,
) where
    H: Fn(Request<Incoming>, Conn) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let epoch = Instant::now();
    let max = limits.max_connections.max(1);
    let mut live: Vec<Tracked> = Vec::with_capacity(max.min(1024));
    loop {
        // Wait for a connection or the stop signal, whichever comes first.
        let accepted = std::future::poll_fn(|cx| {
            if Pin::new(&mut stopped).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok((stream, _))) => {
                // Responses go out whole, and an event stream writes small batches one after
                // another: with Nagle's algorithm a batch waited for the client's ACK of the
                // one before, up to a delayed ACK's 40 ms (measured: `delivered` p50 18.7 ms,
                // p99 41.7 ms straight into a sink at 2 000 msgs/s, docs/benchmarks/
                // 2026-12-07-relay-speed.md).
                let _ = stream.set_nodelay(true);
                stream
            }
            Some(Err(_)) => {
                // Out of descriptors, or the peer gave up before the accept: give the other
                // tasks a moment to close theirs rather than spin.
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        live.retain(|conn| !conn.abort.is_finished());
        if live.len() >= max {
            let oldest = (0..live.len())
                .min_by_key(|&i| live[i].activity.eviction_order())
                .expect("max is not zero");
            live.swap_remove(oldest).abort.abort();
        }
        let activity = Arc::new(Activity::new(epoch));
        let task = tokio::spawn(connection(
            stream,
            Arc::clone(&handler),
            Arc::clone(&activity),
        ));
        live.push(Tracked {
            activity,
            abort: task.abort_handle(),
        });
        // Let the new connection (and the others) run before the next accept: under a flood
        // of connections, a request that just arrived is read and answered before it could
        // become the oldest.
        tokio::task::yield_now().await;
    }
}

/// The latest moment a connection was accepted or received a request head, as milliseconds
/// since the accept loop started, and how long a handler asked it to live: written by the
/// connection's service, read by the accept loop (which evicts the least recent) and by the
/// connection's own deadline.
#[derive(Debug)]
struct Activity {
    /// The accept loop's start.
    epoch: Instant,
    /// Milliseconds from `epoch` to the latest activity.
    millis: AtomicU64,
    /// Milliseconds from `epoch` to the end of the latest [`Conn::hold`] (0: none).
    held: AtomicU64,
    /// Whether a request head has arrived on it yet.
    requested: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity = Activity {
            epoch,
            millis: AtomicU64::new(0),
            held: AtomicU64::new(0),
            requested: std::sync::atomic::AtomicBool::new(false),
        };
        activity.touch();
        activity
    }

    /// Milliseconds from `epoch` to now.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records activity now.
    fn touch(&self) {
        self.millis.store(self.now(), Ordering::Relaxed);
    }

    /// Lets the connection live until `time` from now at least.
    fn hold(&self, time: Duration) {
        let until = self
            .now()
            .saturating_add(u64::try_from(time.as_millis()).unwrap_or(u64::MAX));
        self.held.fetch_max(until, Ordering::Relaxed);
    }

    /// A request head arrived.
    fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
        self.touch();
    }

    /// Which connection the accept loop closes first when full (the least of these):
    /// one that is answering late on purpose (a held long poll or event stream) last; among
    /// the others, one that never sent a request head (a bare or slowloris socket) first; then
    /// the least recently active. So a flood of sockets that say nothing, which needs no
    /// token, cannot close a client's waiting `await` or its event stream.
    fn eviction_order(&self) -> (bool, bool, Instant) {
        let held = self.held.load(Ordering::Relaxed) > self.now();
        (held, self.requested.load(Ordering::Relaxed), self.last())
    }

    /// The latest activity.
    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }

    /// When the connection must close: [`REQUEST_TIMEOUT`] after its latest activity, or
    /// the end of a hold, whichever is later.
    fn deadline(&self) -> Instant {
        let held = self.epoch + Duration::from_millis(self.held.load(Ordering::Relaxed));
        (self.last() + REQUEST_TIMEOUT).max(held)
    }
}

/// Serves one connection until the client closes it, hyper closes it (a header read
/// timeout, an error) or its deadline passes.
async fn connection<H, F, B>(
    stream: tokio::net::TcpStream,
    handler: Arc<H>,
    activity: Arc<Activity>,
) where
    H: Fn(Request<Incoming>, Conn) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            activity.request();
            let conn = Conn {
                activity: Arc::clone(&activity),
            };
            let answer = handler(request, conn);
            async move { Ok::<_, Infallible>(answer.await) }
        })
    };
    let mut conn = pin!(hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE)
        // Header names as most servers write them (`Content-Type`); HTTP says case does
        // not matter, some simple scrapers and tests think otherwise.
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), service));
    let mut deadline = activity.deadline();
    let mut timer = pin!(tokio::time::sleep_until(deadline));
    std::future::poll_fn(|cx| {
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        // A request (or a hold) may have come during that poll: move the deadline.
        let latest = activity.deadline();
        if latest != deadline {
            deadline = latest;
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    })
    .await;
}
