//! The metrics endpoint's HTTP server: hyper (HTTP/1.1) on a current-thread tokio runtime
//! in a thread of its own.
//!
//! What it does: accept connections and serve each one concurrently as a task; `GET` or
//! `HEAD` on `/metrics` or `/` answers with the text exposition, another path `404`, another
//! method `405`. Every connection has deadlines and the number of connections is capped:
//!
//! - a request head must arrive within [`HEADER_READ_TIMEOUT`] of the connection opening or
//!   of the previous response (hyper's header read timeout), so slowloris senders and idle
//!   keep-alive connections are closed;
//! - a connection is closed [`REQUEST_TIMEOUT`] after it was accepted or after its latest
//!   request head arrived, whichever is later: that bounds a request's whole life, including
//!   a client that reads its response slowly or never;
//! - at most [`MAX_CONNECTIONS`] are open: the accept loop never stops accepting (a scrape
//!   must not wait in the kernel's backlog behind idle sockets), and when full it closes the
//!   least recently active connection, the one with the oldest accept or request, as nginx
//!   drops its oldest idle connections when it runs out (`ngx_drain_connections`).
//!
//! [`MetricsServer::stop`] tells the accept loop to end; the runtime is then dropped, which
//! cancels every connection task and closes its socket, and the thread is joined.
//!
//! What it does not do: run on or wait for an SMTP worker (they publish atomics and never
//! see this thread), speak HTTP/2 or TLS, read request bodies, or defend against a flood
//! that opens connections faster than scrapes are answered (a firewall's job).

use super::MetricsSource;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Registry, TextEncoder};
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
use tokio::runtime::Runtime;
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
/// Most connections open at once; past it the least recently active one is closed.
pub const MAX_CONNECTIONS: usize = 128;
/// Pause after a failed `accept` (out of descriptors, for example) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Largest buffer hyper keeps per connection (its minimum): bounds a connection's memory.
const MAX_BUF_SIZE: usize = 8192;

/// The content type of what [`TextEncoder`] writes: text format 0.0.4.
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics endpoint: a thread running the HTTP server until [`MetricsServer::stop`] (or
/// drop).
#[derive(Debug)]
pub struct MetricsServer {
    /// Where it listens.
    addr: SocketAddr,
    /// Tells the accept loop to end; taken by the first [`MetricsServer::stop`].
    stop: Option<oneshot::Sender<()>>,
    /// The server's thread; taken when joined.
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves `source` until [`MetricsServer::stop`]. Errors (the address
    /// is taken, the runtime cannot start) are reported here, before the thread starts.
    pub fn start(addr: SocketAddr, source: MetricsSource) -> io::Result<MetricsServer> {
        let registry = source.registry().map_err(io::Error::other)?;
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("--metrics {addr}: {e}")))?;
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
        let thread = std::thread::Builder::new()
            .name("fastsmtpd-metrics".into())
            .spawn(move || serve(runtime, listener, Arc::new(registry), stopped))?;
        Ok(MetricsServer {
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

impl Drop for MetricsServer {
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

/// The thread's body: runs the accept loop until `stopped`, then drops the runtime, which
/// cancels the connection tasks.
fn serve(
    runtime: Runtime,
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    stopped: oneshot::Receiver<()>,
) {
    runtime.block_on(accept_loop(listener, registry, stopped));
    drop(runtime);
}

/// Accepts until `stopped` resolves (or its sender is dropped), spawning a task per
/// connection and keeping at most [`MAX_CONNECTIONS`].
async fn accept_loop(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    mut stopped: oneshot::Receiver<()>,
) {
    let epoch = Instant::now();
    let mut live: Vec<Tracked> = Vec::with_capacity(MAX_CONNECTIONS);
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
            Some(Ok((stream, _))) => stream,
            Some(Err(_)) => {
                // Out of descriptors, or the peer gave up before the accept: give the other
                // tasks a moment to close theirs rather than spin.
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        live.retain(|conn| !conn.abort.is_finished());
        if live.len() >= MAX_CONNECTIONS {
            let oldest = (0..live.len())
                .min_by_key(|&i| live[i].activity.last())
                .expect("MAX_CONNECTIONS is not zero");
            live.swap_remove(oldest).abort.abort();
        }
        let activity = Arc::new(Activity::new(epoch));
        let task = tokio::spawn(connection(
            stream,
            Arc::clone(&registry),
            Arc::clone(&activity),
        ));
        live.push(Tracked {
            activity,
            abort: task.abort_handle(),
        });
        // Let the new connection (and the others) run before the next accept: under a flood
        // of connections, a scrape that just arrived is read and answered before it could
        // become the oldest.
        tokio::task::yield_now().await;
    }
}

/// The latest moment a connection was accepted or received a request head, as milliseconds
/// since the accept loop started: written by the connection's service, read by the accept
/// loop (which evicts the least recent) and by the connection's own deadline.
#[derive(Debug)]
struct Activity {
    /// The accept loop's start.
    epoch: Instant,
    /// Milliseconds from `epoch` to the latest activity.
    millis: AtomicU64,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity = Activity {
            epoch,
            millis: AtomicU64::new(0),
        };
        activity.touch();
        activity
    }

    /// Records activity now.
    fn touch(&self) {
        let millis = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(millis, Ordering::Relaxed);
    }

    /// The latest activity.
    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// Serves one connection until the client closes it, hyper closes it (a header read
/// timeout, an error) or [`REQUEST_TIMEOUT`] passes without a new request.
async fn connection(
    stream: tokio::net::TcpStream,
    registry: Arc<Registry>,
    activity: Arc<Activity>,
) {
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            activity.touch();
            std::future::ready(Ok::<_, Infallible>(respond(&registry, &request)))
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
    let mut deadline = activity.last() + REQUEST_TIMEOUT;
    let mut timer = pin!(tokio::time::sleep_until(deadline));
    std::future::poll_fn(|cx| {
        if conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        // A request may have arrived during that poll: move the deadline.
        let latest = activity.last() + REQUEST_TIMEOUT;
        if latest != deadline {
            deadline = latest;
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    })
    .await;
}

/// The answer to one request.
fn respond(registry: &Registry, request: &Request<Incoming>) -> Response<String> {
    if !matches!(request.uri().path(), "/metrics" | "/") {
        return plain(StatusCode::NOT_FOUND, "not found: try /metrics\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // hyper leaves the body out of the answer to HEAD and keeps its Content-Length.
    match encode(registry) {
        Ok(text) => {
            let mut response = Response::new(text);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
            response
        }
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode metrics: {e}\n"),
        ),
    }
}

/// The text exposition of everything `registry` collects.
pub(super) fn encode(registry: &Registry) -> prometheus::Result<String> {
    let mut text = String::with_capacity(4096);
    TextEncoder::new().encode_utf8(&registry.gather(), &mut text)?;
    Ok(text)
}

/// A short plain-text response.
fn plain(status: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(body.to_owned());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder as _;

    #[test]
    fn format_type_is_text_0_0_4() {
        // What the content type announces is what the encoder writes.
        assert!(CONTENT_TYPE_TEXT.starts_with(TextEncoder::new().format_type()));
    }
}
