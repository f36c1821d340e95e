//! `--api ADDR`: the control plane's HTTP API over the capture store, so a test can ask what
//! arrived (issue 18): take a cursor, trigger the action, `await` the message; list, read,
//! delete; follow a live stream of server-sent events. `docs/api.md` is the manual.
//!
//! It runs on a thread of its own ([`crate::control`]: hyper on a current-thread tokio
//! runtime, every request bounded in size and time, connections capped), never on an SMTP
//! event loop: it reads the store under its short lock and waits with the store's waiters.
//!
//! | submodule | job |
//! |---|---|
//! | `routes` | method and path → handler; the bearer token, CORS, `404`/`405` |
//! | `body` | request bodies: the one bounded reader, JSON without duplicate keys |
//! | `query` | the query string: filter parameters → a `Selection`, bounded numbers, `400`s |
//! | `select` | pages and counts of a selection (index filter in the store, decoded subject outside) |
//! | `wait` | `await`: register, scan, sleep until woken or the timeout |
//! | `events` | the server-sent event stream, read from the index after a cursor |
//! | `faults` | `/api/v1/faults`: the runtime fault rules, shown, replaced, cleared |
//! | `render` | a kept message as JSON: summary, whole record, tombstone |
//! | `read` | the parsed view (text, HTML, headers, parts), a part's bytes, links and codes, search (`q=`), stats |
//! | `mailboxes` | `/api/v1/mailboxes`: per-test mailboxes (create, list, get, delete) |
//! | `mailbox_faults` | `/api/v1/mailboxes/{id}/faults`: one mailbox's fault plan, shown, replaced, cleared |
//! | `mailpit` | `/compat/mailpit/`: Mailpit's API v1 read subset, for suites written against Mailpit |
//! | `ui` | the web UI's embedded assets and their Content Security Policy |
//! | `seed` | `POST /api/v1/messages`: a message seeded over HTTP, its envelope from the query, its size bounded |
//! | `transcript` | a message's SMTP transcript as text or JSON |
//! | `response` | the response body (whole or a stream) and JSON/error responses |
//! | `counters` | the API's metrics as `prometheus` collectors |
//! | `openapi.json` | the OpenAPI 3.1 document, served as is ([`OPENAPI`]) |
//!
//! What it does not do: keep mail (the capture store does; `seed` hands it a message taken
//! over HTTP), parse MIME or the search grammar itself (`crate::view`,
//! `crate::capture::query`), serve `/metrics` (the metrics endpoint does), or speak TLS.

mod body;
mod counters;
mod events;
mod faults;
mod mailbox_faults;
mod mailboxes;
mod mailpit;
mod query;
mod read;
mod render;
mod response;
mod routes;
mod seed;
mod select;
mod transcript;
mod ui;
mod wait;

pub use counters::ApiCounters;
pub use events::{HEARTBEAT, MAX_SUBSCRIBERS};
pub use faults::MAX_BODY as MAX_FAULTS_BODY;
pub use query::{DEFAULT_TIMEOUT, MAX_COUNT, MAX_LIMIT, MAX_TIMEOUT};

use crate::capture::Capture;
use crate::control::{HttpServer, Limits};
use hyper::header::HeaderValue;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// The OpenAPI 3.1 document of every route (`GET /api/v1/openapi.json`; behind the token like
/// the rest of `/api/v1`: one rule for the whole prefix, and the document is in the source
/// tree for anyone without one). `tests/openapi.rs` validates real responses against it.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Most API connections open at once (each `await` holds one); past it the least recently
/// active one is closed.
pub const MAX_CONNECTIONS: usize = 1024;

/// How the API is exposed.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// `--api-token`: every `/api/` route needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// `--api-cors`: the one origin a browser may read responses from (none: same origin
    /// only).
    pub cors_origin: Option<String>,
    /// `--hostname`: the domain of a plus-tag mailbox's address (`test+ID@HOSTNAME`); empty:
    /// `localhost`.
    pub hostname: String,
    /// The server's fault plans, which `/api/v1/faults` shows and changes (the default: a
    /// set of its own that no connection reads).
    pub faults: Arc<crate::fault::Plans>,
    /// The largest message `POST /api/v1/messages` takes: the SMTP side's `SIZE`
    /// (`Config::max_message_size`); `None`: [`crate::config::DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: Option<u64>,
    /// The SMTP side's longest command line (`Config::max_line_len`), which bounds a
    /// seeded message's `helo=` as it bounds `HELO`; `None`:
    /// [`crate::config::DEFAULT_MAX_LINE_LEN`].
    pub max_line_len: Option<usize>,
    /// The budget of the cache of parsed views, in octets (0: `view::VIEW_CACHE_DEFAULT`);
    /// the server gives it the share of `--capture-memory` it took from the store.
    pub view_cache: usize,
}

/// The API server: a thread serving until [`ApiServer::stop`] (or drop).
#[derive(Debug)]
pub struct ApiServer {
    /// The HTTP server.
    http: HttpServer,
    /// Its metrics.
    counters: ApiCounters,
}

impl ApiServer {
    /// Binds `addr` and serves `capture` until [`ApiServer::stop`]. Errors (the address is
    /// taken, a CORS origin that is not a header value) are reported here.
    pub fn start(
        addr: SocketAddr,
        capture: Arc<Capture>,
        options: ApiOptions,
    ) -> io::Result<ApiServer> {
        let cors_origin = match options.cors_origin {
            Some(origin) => Some(HeaderValue::from_str(&origin).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--api-cors {origin:?}: not a valid origin"),
                )
            })?),
            None => None,
        };
        let counters = ApiCounters::new();
        let state = Arc::new(routes::State {
            capture,
            faults: options.faults,
            token: options.token,
            cors_origin,
            counters: counters.clone(),
            views: Arc::new(crate::view::ViewCache::new(match options.view_cache {
                0 => crate::view::VIEW_CACHE_DEFAULT,
                bytes => bytes,
            })),
            readers: Arc::new(tokio::sync::Semaphore::new(routes::READERS)),
            in_flight: Arc::default(),
            seeding: seed::SeedLimits::new(
                options
                    .max_message_size
                    .unwrap_or(crate::config::DEFAULT_MAX_MESSAGE_SIZE),
                options
                    .max_line_len
                    .unwrap_or(crate::config::DEFAULT_MAX_LINE_LEN),
            ),
            loopback: addr.ip().is_loopback(),
            hostname: match options.hostname.as_str() {
                "" => "localhost".to_owned(),
                name => name.to_owned(),
            },
        });
        let limits = Limits {
            max_connections: MAX_CONNECTIONS,
        };
        let http = HttpServer::start(
            addr,
            "--api",
            "fastsmtpd-api",
            limits,
            move |request, conn| {
                let state = Arc::clone(&state);
                async move {
                    let path = request.uri().path();
                    // A change from another origin is refused on every route of our own
                    // (`routes::foreign_origin`); the Mailpit-compatible subset behaves as
                    // Mailpit does (its clients are test runners, not pages).
                    let changes = !matches!(
                        *request.method(),
                        hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
                    );
                    if changes && !path.starts_with(mailpit::PREFIX) {
                        if let Some(refused) = routes::foreign_origin(&state, &request) {
                            return refused;
                        }
                    }
                    if path.starts_with(mailpit::PREFIX) {
                        mailpit::handle(state, request, conn).await
                    } else if mailboxes::owns(request.uri().path()) {
                        mailboxes::handle(state, request, conn).await
                    } else if path == faults::PATH {
                        faults::handle(state, request, conn).await
                    } else {
                        routes::handle(state, request, conn).await
                    }
                }
            },
        )?;
        Ok(ApiServer { http, counters })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Its metrics, to register with the metrics endpoint ([`ApiCounters::register`]).
    pub fn counters(&self) -> &ApiCounters {
        &self.counters
    }

    /// Stops serving: closes every connection (cancelling their waiters and streams) and
    /// waits for the thread. Calling it again does nothing.
    pub fn stop(&mut self) {
        self.http.stop();
    }
}
