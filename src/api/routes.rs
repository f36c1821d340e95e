//! The routes: a request's method and path segments matched by hand to what answers it, the
//! bearer token and CORS checked on the way.
//!
//! | route | methods |
//! |---|---|
//! | `/healthz`, `/readyz` | `GET`, `HEAD` (open without the token) |
//! | `/api/v1/openapi.json` | `GET` |
//! | `/api/v1/cursor` | `GET` |
//! | `/api/v1/await` | `GET` |
//! | `/api/v1/messages` | `GET`, `POST`, `DELETE` |
//! | `/api/v1/messages/{id}` | `GET`, `DELETE` |
//! | `/api/v1/messages/{id}/raw` | `GET`, `HEAD` |
//! | `/api/v1/messages/{id}/links` | `GET` |
//! | `/api/v1/messages/{id}/transcript` | `GET` |
//! | `/api/v1/messages/{id}/parts/{n}` | `GET`, `HEAD` |
//! | `/api/v1/search?q=` | `GET`, `DELETE` |
//! | `/api/v1/stats` | `GET` |
//! | `/api/v1/events` | `GET` |
//! | `/api/v1/mailboxes` | `GET`, `HEAD`, `POST`, `DELETE` (answered by `mailboxes`) |
//! | `/api/v1/mailboxes/{id}` | `GET`, `HEAD`, `DELETE` (answered by `mailboxes`) |
//! | `/api/v1/mailboxes/{id}/faults` | `GET`, `HEAD`, `PUT`, `DELETE` (answered by `mailbox_faults`, through `mailboxes`) |
//! | `/api/v1/faults` | `GET`, `PUT`, `DELETE` (the runtime fault rules; `faults` answers) |
//! | `/`, `/ui/app.js`, `/ui/app.css` | `GET`, `HEAD` (the web UI; open without the token) |
//!
//! Another path is `404`; another method `405` with `Allow`; `OPTIONS` is a CORS preflight
//! when `--api-cors` is set (`204`), else `405`. An id in a path is 1 to 63 characters of
//! `A-Z a-z 0-9 . _ -` (what the stores name messages with); anything else (a `%2f`, a
//! longer id) is `404` before the store is asked.
//!
//! What it does not do: answer a route that takes a request body (`POST /api/v1/messages`
//! hands its body to `seed`, which streams it against the size limit; `/compat/mailpit/` is
//! `mailpit`'s and `/api/v1/faults` is `faults`'s, sent there by the server's handler in
//! `api`; every body is read by `body`), or parse the search
//! grammar or MIME (`read` hands those to `crate::capture::query` and `crate::view`).

use super::counters::ApiCounters;
use super::events::{EventStream, MAX_SUBSCRIBERS};
use super::query::{self, AwaitQuery, BadRequest, ListQuery};
use super::response::{error, json, whole, ApiBody, Sending, SLICE};
use super::{read, render, seed, select, transcript, wait};
use crate::capture::{Capture, Direction, Lookup};
use crate::control::Conn;
use crate::proto::sink::QueueId;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ALLOW, AUTHORIZATION, CACHE_CONTROL,
    CONTENT_TYPE, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What every request shares.
#[derive(Debug)]
pub struct State {
    /// The store.
    pub capture: Arc<Capture>,
    /// The server's fault plans (`/api/v1/faults`).
    pub faults: Arc<crate::fault::Plans>,
    /// `Authorization: Bearer` this, on every `/api/` route.
    pub token: Option<String>,
    /// The one origin allowed to read responses from a browser.
    pub cors_origin: Option<HeaderValue>,
    /// The metrics.
    pub counters: ApiCounters,
    /// Parsed views of the messages read lately, shared by every route.
    pub views: Arc<crate::view::ViewCache>,
    /// Parsing and searching run on tokio's blocking threads, at most this many at once, so
    /// that a message built to be slow to parse never stalls the other routes (awaits,
    /// event streams) and parsing's memory is bounded by a few messages' worth.
    pub readers: Arc<tokio::sync::Semaphore>,
    /// The API listens on a loopback address: only requests naming a loopback host are
    /// served (see [`foreign_host`]).
    pub loopback: bool,
    /// Octets of response bodies made for a request (JSON, decoded parts) not yet sent:
    /// bounded by [`RESPONSE_BYTES_IN_FLIGHT`], past it `503`.
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The bounds of messages seeded with `POST /api/v1/messages`.
    pub seeding: super::seed::SeedLimits,
    /// The SMTP side's `--hostname`: the domain of plus-tag mailbox addresses.
    pub hostname: String,
}

/// At most this many parses or searches run at once (see [`State::readers`]).
pub const READERS: usize = 2;

/// The most octets of made response bodies waiting to be sent, over every connection (the
/// raw bytes of a message are not counted: they are the store's own, shared, never copied).
pub const RESPONSE_BYTES_IN_FLIGHT: usize = 64 << 20;

/// Runs `job` on a blocking thread once a reader's place is free (see [`State::readers`]).
pub(super) async fn blocking<T: Send + 'static>(
    state: &State,
    job: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let _place = state.readers.acquire().await.ok()?;
    tokio::task::spawn_blocking(job).await.ok()
}

/// A `500` for a read that failed inside (a panic the blocking pool caught).
pub(super) fn failed() -> Response<ApiBody> {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the message could not be read",
    )
}

/// Answers one request.
pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    conn: Conn,
) -> Response<ApiBody> {
    let started = Instant::now();
    let (head, body) = request.into_parts();
    let request = Request::from_parts(head, ());
    let (route, response) = route(&state, &request, body, conn.clone()).await;
    finish(&state, route, started, response, conn)
}

/// Answers a request for a route with a handler of its own (`faults`, `mailboxes`): first
/// the checks every API route makes (on a loopback API a loopback `Host`, [`foreign_host`];
/// the bearer token, [`authorize`]), then `answer`; the response timed under `route`, paced
/// and given the CORS header ([`finish`]).
pub(super) async fn guarded<F, Fut>(
    state: Arc<State>,
    request: Request<Incoming>,
    conn: Conn,
    route: &'static str,
    answer: F,
) -> Response<ApiBody>
where
    F: FnOnce(Arc<State>, Request<Incoming>) -> Fut,
    Fut: std::future::Future<Output = Response<ApiBody>>,
{
    let started = Instant::now();
    let refused = state
        .loopback
        .then(|| foreign_host(&request))
        .flatten()
        .or_else(|| authorize(&state, &request));
    let response = match refused {
        Some(refused) => refused,
        None => answer(Arc::clone(&state), request).await,
    };
    finish(&state, route, started, response, conn)
}

/// A response on its way out: paced ([`pace`]), the CORS header added, its time observed
/// under `route`.
pub fn finish(
    state: &State,
    route: &'static str,
    started: Instant,
    response: Response<ApiBody>,
    conn: Conn,
) -> Response<ApiBody> {
    let mut response = pace(state, route, response, conn);
    if let Some(origin) = &state.cors_origin {
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(VARY, HeaderValue::from_static("Origin"));
    }
    state
        .counters
        .requests
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// A large whole body made into one sent a slice at a time ([`Sending`]), its octets counted
/// in flight unless they are the store's own (`raw`); a `503` when the octets in flight
/// would pass [`RESPONSE_BYTES_IN_FLIGHT`].
fn pace(state: &State, route: &str, response: Response<ApiBody>, conn: Conn) -> Response<ApiBody> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        ApiBody::Whole(Some(bytes)) if bytes.len() > SLICE => bytes,
        body => return Response::from_parts(parts, body),
    };
    let charged = if route == "raw" { 0 } else { bytes.len() };
    let before = state.in_flight.fetch_add(charged, Ordering::Relaxed);
    if charged > 0 && before + charged > RESPONSE_BYTES_IN_FLIGHT {
        state.in_flight.fetch_sub(charged, Ordering::Relaxed);
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many large responses are being sent: try again",
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let sending = Sending::new(bytes, conn, charged, Arc::clone(&state.in_flight));
    Response::from_parts(parts, ApiBody::Sending(Box::new(sending)))
}

/// The route's name (a metrics label) and its answer.
async fn route(
    state: &State,
    request: &Request<()>,
    body: Incoming,
    conn: Conn,
) -> (&'static str, Response<ApiBody>) {
    let path = request.uri().path();
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let method = request.method();
    let query = request.uri().query();
    if state.loopback {
        if let Some(refused) = foreign_host(request) {
            return ("foreign-host", refused);
        }
    }
    match segments.as_slice() {
        ["healthz"] | ["readyz"] => {
            let name = if segments[0] == "healthz" {
                "healthz"
            } else {
                "readyz"
            };
            let answer = allow(method, &[Method::GET, Method::HEAD], state).unwrap_or_else(|| {
                whole(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"ok\n"),
                )
            });
            (name, answer)
        }
        ["api", "v1", rest @ ..] => {
            if let Some(refused) = authorize(state, request) {
                return ("unauthorized", refused);
            }
            // `--capture-max-age` holds at every read, not only at the next insert: a
            // message past its age is never served (it answers `410`, expired).
            state.capture.expire(std::time::SystemTime::now());
            api(state, method, rest, query, request.headers(), body, conn).await
        }
        _ => match super::ui::asset(path) {
            Some(asset) => match allow(method, &[Method::GET, Method::HEAD], state) {
                Some(refused) => ("ui", refused),
                None => ("ui", asset),
            },
            None => ("unknown", error(StatusCode::NOT_FOUND, "no such route")),
        },
    }
}

/// The `/api/v1/` routes.
async fn api(
    state: &State,
    method: &Method,
    rest: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
    body: Incoming,
    conn: Conn,
) -> (&'static str, Response<ApiBody>) {
    const GET: &[Method] = &[Method::GET];
    let get_delete = &[Method::GET, Method::DELETE];
    let get_head = &[Method::GET, Method::HEAD];
    match rest {
        ["openapi.json"] => (
            "openapi",
            allow(method, GET, state).unwrap_or_else(|| {
                whole(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from_static(super::OPENAPI.as_bytes()),
                )
            }),
        ),
        ["cursor"] => (
            "cursor",
            allow(method, GET, state)
                .or_else(|| no_parameters(query))
                .unwrap_or_else(|| cursor(state)),
        ),
        ["await"] => match allow(method, GET, state) {
            Some(refused) => ("await", refused),
            None => ("await", await_route(state, query, conn).await),
        },
        ["messages"] => {
            let answer = match allow(method, &[Method::GET, Method::POST, Method::DELETE], state) {
                Some(refused) => refused,
                None if method == Method::POST => {
                    let capture = &state.capture;
                    return (
                        "seed",
                        seed::seed(capture, &state.seeding, query, headers, body, conn).await,
                    );
                }
                None if method == Method::DELETE => delete_matching(state, query),
                None => list(state, query),
            };
            ("messages", answer)
        }
        ["messages", id] => {
            if let Some(refused) = allow(method, get_delete, state) {
                return ("message", refused);
            }
            if method == Method::DELETE {
                return ("message", delete_one(state, id, query));
            }
            let message = match lookup(state, id, query) {
                Ok(message) => message,
                Err(refused) => return ("message", *refused),
            };
            let views = Arc::clone(&state.views);
            let answer = blocking(state, move || read::message(&views, &message)).await;
            ("message", answer.unwrap_or_else(failed))
        }
        ["messages", id, "raw"] => {
            let answer = match allow(method, get_head, state) {
                Some(refused) => refused,
                None => raw(state, id, query, conn).await,
            };
            ("raw", answer)
        }
        ["messages", id, "links"] => {
            if let Some(refused) = allow(method, GET, state) {
                return ("links", refused);
            }
            let message = match lookup(state, id, query) {
                Ok(message) => message,
                Err(refused) => return ("links", *refused),
            };
            let views = Arc::clone(&state.views);
            let answer = blocking(state, move || read::links(&views, &message)).await;
            ("links", answer.unwrap_or_else(failed))
        }
        ["messages", id, "transcript"] => {
            if let Some(refused) = allow(method, GET, state) {
                return ("transcript", refused);
            }
            let json = match transcript::format(query) {
                Ok(json) => json,
                Err(e) => return ("transcript", bad(e)),
            };
            let message = match lookup(state, id, None) {
                Ok(message) => message,
                Err(refused) => return ("transcript", *refused),
            };
            let answer = transcript::transcript(&state.capture, &message, json).await;
            ("transcript", answer)
        }
        ["messages", id, "parts", number] => {
            if let Some(refused) = allow(method, get_head, state) {
                return ("part", refused);
            }
            let message = match lookup(state, id, query) {
                Ok(message) => message,
                Err(refused) => return ("part", *refused),
            };
            let number = (*number).to_owned();
            let answer = blocking(state, move || read::part(&message, &number)).await;
            ("part", answer.unwrap_or_else(failed))
        }
        ["search"] => {
            if let Some(refused) = allow(method, get_delete, state) {
                return ("search", refused);
            }
            let capture = Arc::clone(&state.capture);
            let views = Arc::clone(&state.views);
            let query = query.map(str::to_owned);
            let delete = method == Method::DELETE;
            let answer = blocking(state, move || {
                if delete {
                    read::delete_search(&capture, &views, query.as_deref())
                } else {
                    read::search_route(&capture, &views, query.as_deref())
                }
            })
            .await;
            ("search", answer.unwrap_or_else(failed))
        }
        ["stats"] => (
            "stats",
            allow(method, GET, state)
                .or_else(|| no_parameters(query))
                .unwrap_or_else(|| {
                    read::stats(
                        &state.capture,
                        &state.views,
                        state.counters.waiters.get(),
                        state.counters.subscribers.get(),
                    )
                }),
        ),
        ["events"] => {
            let answer =
                allow(method, GET, state).unwrap_or_else(|| events(state, query, headers, conn));
            ("events", answer)
        }
        _ => ("unknown", error(StatusCode::NOT_FOUND, "no such route")),
    }
}

/// On a loopback API, a `403` for a request whose `Host` is not a loopback name or address
/// (`localhost`, `127.0.0.0/8`, `::1`, any port). A web page a developer visits could
/// otherwise point its own name at 127.0.0.1 (DNS rebinding) and read captured mail, reset
/// codes included, as same-origin requests: its requests carry its own name as `Host`.
///
/// HTTP's own rules about `Host` are kept here too (RFC 9112 §3.2): an HTTP/1.1 request
/// without one, or with more than one, is a `400`; a request in absolute form
/// (`GET http://name/...`) must name a loopback authority as well, since a proxy or a
/// client could otherwise pass a foreign name beside a loopback `Host`.
pub(super) fn foreign_host<B>(request: &Request<B>) -> Option<Response<ApiBody>> {
    let mut hosts = request.headers().get_all(hyper::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "more than one Host field (RFC 9112 §3.2)",
        ));
    }
    match host {
        None if request.version() == hyper::Version::HTTP_11 => {
            return Some(error(
                StatusCode::BAD_REQUEST,
                "an HTTP/1.1 request needs a Host field (RFC 9112 §3.2)",
            ));
        }
        None => {}
        Some(host) => {
            let text = host.to_str().unwrap_or("");
            if !is_loopback_authority(text) {
                return Some(not_loopback(text));
            }
        }
    }
    match request.uri().authority() {
        Some(authority) if !is_loopback_authority(authority.as_str()) => {
            Some(not_loopback(authority.as_str()))
        }
        _ => None,
    }
}

/// Whether `text` (a `Host` value or a URI's authority: a name or address, maybe a port) is
/// `localhost` or a loopback address.
fn is_loopback_authority(text: &str) -> bool {
    let text = text.rsplit_once('@').map_or(text, |(_, host)| host);
    let name = match text.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => text.rsplit_once(':').map_or(text, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `403` for a request naming `text` instead of a loopback name.
fn not_loopback(text: &str) -> Response<ApiBody> {
    error(
        StatusCode::FORBIDDEN,
        &format!(
            "Host {text:?} is not a loopback name: this API listens on loopback and answers \
             only requests for localhost, 127.0.0.1 or [::1] (a guard against DNS rebinding)"
        ),
    )
}

/// `None` if `method` is one of `allowed`; else the `405` (or a CORS preflight's `204`).
pub(super) fn allow(
    method: &Method,
    allowed: &[Method],
    state: &State,
) -> Option<Response<ApiBody>> {
    if allowed.contains(method) {
        return None;
    }
    let list = allowed
        .iter()
        .map(Method::as_str)
        .chain(state.cors_origin.as_ref().map(|_| "OPTIONS"))
        .collect::<Vec<_>>()
        .join(", ");
    let list = HeaderValue::from_str(&list).unwrap_or(HeaderValue::from_static("GET"));
    if method == Method::OPTIONS && state.cors_origin.is_some() {
        let mut response = Response::new(ApiBody::Whole(None));
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, list.clone());
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Last-Event-ID"),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        headers.insert(ALLOW, list);
        return Some(response);
    }
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "method {method} not allowed here (allowed: {})",
            list.to_str().unwrap_or("")
        ),
    );
    response.headers_mut().insert(ALLOW, list);
    Some(response)
}

/// `None` if no token is set or the request carries it; else the `401`. A preflight
/// (`OPTIONS`, which browsers send without credentials) passes.
pub(super) fn authorize<B>(state: &State, request: &Request<B>) -> Option<Response<ApiBody>> {
    let token = state.token.as_ref()?;
    if request.method() == Method::OPTIONS && state.cors_origin.is_some() {
        return None;
    }
    let given = request.headers().get(AUTHORIZATION).and_then(|v| {
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        let v = v.as_bytes();
        (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..])
    });
    if given.is_some_and(|given| same_secret(given, token.as_bytes())) {
        return None;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "this API needs Authorization: Bearer TOKEN (--api-token)",
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"fastsmtpd\""),
    );
    Some(response)
}

/// A cross-origin request refused (`403`), for every request that changes something (any
/// method but `GET`, `HEAD` and `OPTIONS`; checked before routing, in `super::ApiServer`):
/// a browser sends some without a CORS preflight (a `POST` with a form or `text/plain`
/// body), and a page on another origin, even on this machine, must not create or delete
/// state here whatever the browser would do. Browsers send `Origin` on such requests; it must
/// be this API's own origin (`http://` + the `Host` asked for, as the web UI sends it) or the
/// `--api-cors` origin. Clients that send no `Origin` (curl, test libraries) pass.
pub(super) fn foreign_origin<B>(state: &State, request: &Request<B>) -> Option<Response<ApiBody>> {
    let origin = request.headers().get(hyper::header::ORIGIN)?;
    let own = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(|host| format!("http://{host}"));
    let allowed = own.is_some_and(|own| origin.as_bytes() == own.as_bytes())
        || state.cors_origin.as_ref() == Some(origin);
    (!allowed).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "a request from another origin (Origin header) may not change this server; \
             --api-cors ORIGIN allows one",
        )
    })
}

/// Whether two secrets are equal, in a time that depends on their lengths only (RFC 6750
/// §5.2 asks bearer tokens be guarded; a compare that stops at the first difference tells
/// a timing attacker how much of a guess was right).
pub(super) fn same_secret(given: &[u8], wanted: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != wanted.len());
    for (i, &w) in wanted.iter().enumerate() {
        difference |= w ^ given.get(i).copied().unwrap_or(!w);
    }
    difference == 0
}

/// A `400` if the query string has any parameter (for routes that take none).
pub(super) fn no_parameters(query: Option<&str>) -> Option<Response<ApiBody>> {
    match query::pairs(query) {
        Err(e) => Some(bad(e)),
        Ok(pairs) => pairs
            .first()
            .map(|(key, _)| bad(BadRequest(format!("unknown parameter {key:?}")))),
    }
}

/// A `400` from a bad parameter.
fn bad(e: BadRequest) -> Response<ApiBody> {
    error(StatusCode::BAD_REQUEST, &e.0)
}

/// `GET /api/v1/cursor`: the head, as a string (a `u64` does not fit a JavaScript number).
fn cursor(state: &State) -> Response<ApiBody> {
    json(
        StatusCode::OK,
        &json!({"cursor": state.capture.head().to_string()}),
    )
}

/// `GET /api/v1/await`.
async fn await_route(state: &State, query: Option<&str>, conn: Conn) -> Response<ApiBody> {
    let query = match AwaitQuery::parse(query) {
        Ok(query) => query,
        Err(e) => return bad(e),
    };
    if let Some(refused) =
        super::select::mailbox_refusals(&state.capture, query.selection.mailboxes())
    {
        return refused;
    }
    if let Some(refused) = ahead(state, "after", Some(query.after)) {
        return refused;
    }
    conn.hold(query.timeout);
    let found = wait::wait(&state.capture, &query, &state.counters).await;
    if found.ended && !found.complete {
        // The mailbox ended while the wait ran: what `count` (or `expect=none`) asked
        // can no longer be told; its `410` as every mailbox route answers.
        if let Some(refused) =
            super::select::mailbox_refusals(&state.capture, query.selection.mailboxes())
        {
            return refused;
        }
    }
    let status = match (query.expect_none, found.complete) {
        (false, true) => StatusCode::OK,
        // Nothing matched, but a message after the cursor was evicted unseen: "none
        // arrived" cannot be claimed (it might have been that one).
        (true, false) if found.evicted_unexamined => StatusCode::GONE,
        (true, false) => StatusCode::OK,
        (false, false) => StatusCode::REQUEST_TIMEOUT,
        (true, true) => StatusCode::CONFLICT,
    };
    let mut body = json!({
        "cursor": found.cursor.to_string(),
        "messages": found.messages.iter().map(render::summary).collect::<Vec<_>>(),
        "evicted_unexamined": found.evicted_unexamined,
    });
    if status != StatusCode::OK {
        const EVICTED: &str = "mail after the cursor was evicted by the capture's limits \
            before it could be examined (raise --capture-memory / --capture-max-messages)";
        let message = match status {
            StatusCode::CONFLICT => "a matching message arrived (expect=none)".to_owned(),
            StatusCode::GONE => format!("cannot tell that none arrived: {EVICTED}"),
            _ if found.evicted_unexamined => format!(
                "{} of {} matching messages by the timeout; {EVICTED}",
                found.messages.len(),
                query.count
            ),
            _ => format!(
                "{} of {} matching messages by the timeout",
                found.messages.len(),
                query.count
            ),
        };
        body["error"] = json!({"status": status.as_u16(), "message": message});
    }
    json(status, &body)
}

/// A `400` for a cursor (`after`, `before`) ahead of the newest message this server numbered: a
/// cursor of an earlier run (sequence numbers start from 1 at each start), with which a
/// wait would miss every message of this run.
fn ahead(state: &State, key: &str, cursor: Option<u64>) -> Option<Response<ApiBody>> {
    let head = state.capture.head();
    let cursor = cursor.filter(|&cursor| cursor > head)?;
    Some(error(
        StatusCode::BAD_REQUEST,
        &format!(
            "{key}={cursor} is ahead of the newest message ({head}): a cursor from before \
             the server restarted? take a new one from /api/v1/cursor"
        ),
    ))
}

/// `GET /api/v1/messages`: a page of summaries, newest first.
fn list(state: &State, query: Option<&str>) -> Response<ApiBody> {
    let query = match ListQuery::parse(query, true) {
        Ok(query) => query,
        Err(e) => return bad(e),
    };
    if let Some(refused) =
        super::select::mailbox_refusals(&state.capture, query.selection.mailboxes())
    {
        return refused;
    }
    if let Some(refused) =
        ahead(state, "after", query.after).or_else(|| ahead(state, "before", query.before))
    {
        return refused;
    }
    let page = select::page(
        &state.capture,
        &query.selection,
        query.before,
        Direction::Older,
        query.limit,
        query.after,
    );
    json(
        StatusCode::OK,
        &json!({
            "messages": page.items.iter().map(render::summary).collect::<Vec<_>>(),
            "next": page.next.map(|n| n.to_string()),
            "total": select::count(&state.capture, &query.selection),
        }),
    )
}

/// `DELETE /api/v1/messages`: every message, or those the filters select.
fn delete_matching(state: &State, query: Option<&str>) -> Response<ApiBody> {
    let query = match ListQuery::parse(query, false) {
        Ok(query) => query,
        Err(e) => return bad(e),
    };
    if let Some(refused) =
        super::select::mailbox_refusals(&state.capture, query.selection.mailboxes())
    {
        return refused;
    }
    let deleted = if query.selection.has_residual() {
        let mut deleted = 0;
        let mut cursor = None;
        loop {
            let page = select::page(
                &state.capture,
                &query.selection,
                cursor,
                Direction::Newer,
                query::MAX_LIMIT,
                None,
            );
            for message in &page.items {
                deleted += state.capture.delete(&message.id()).seqs.len();
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        deleted
    } else {
        state
            .capture
            .delete_matching(&query.selection.filter)
            .seqs
            .len()
    };
    json(StatusCode::OK, &json!({"deleted": deleted}))
}

/// The id in a path, if it is one (see the module doc).
pub(super) fn queue_id(id: &str) -> Option<QueueId> {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if id.bytes().all(|b| alphabet(&b)) {
        QueueId::new(id.as_bytes())
    } else {
        None
    }
}

/// The message named in a path, or the `404`/`410` (or `400` for a query on a route that
/// takes none).
fn lookup(
    state: &State,
    id: &str,
    query: Option<&str>,
) -> Result<crate::capture::Snapshot, Box<Response<ApiBody>>> {
    if let Err(e) = query::pairs(query).and_then(|pairs| match pairs.first() {
        Some((key, _)) => Err(BadRequest(format!("unknown parameter {key:?}"))),
        None => Ok(()),
    }) {
        return Err(Box::new(bad(e)));
    }
    let Some(id) = queue_id(id) else {
        return Err(Box::new(error(StatusCode::NOT_FOUND, "no such message")));
    };
    match state.capture.get(&id) {
        Lookup::Found(message) => Ok(message),
        Lookup::Gone(gone) => Err(Box::new(json(StatusCode::GONE, &render::gone(&gone)))),
        Lookup::Unknown => Err(Box::new(error(StatusCode::NOT_FOUND, "no such message"))),
    }
}

/// `DELETE /api/v1/messages/{id}`.
fn delete_one(state: &State, id: &str, query: Option<&str>) -> Response<ApiBody> {
    match lookup(state, id, query) {
        Ok(message) => {
            let deleted = state.capture.delete(&message.id()).seqs.len();
            json(StatusCode::OK, &json!({"deleted": deleted}))
        }
        Err(refused) => *refused,
    }
}

/// `GET /api/v1/messages/{id}/raw`: the bytes as received, shared with the store; or, for
/// a message in a file (`--store eml:DIR`), the file streamed a slice at a time (opened on
/// a blocking thread; `410` with the reason when it was removed or changed).
async fn raw(state: &State, id: &str, query: Option<&str>, conn: Conn) -> Response<ApiBody> {
    let message = match lookup(state, id, query) {
        Ok(message) => message,
        Err(refused) => return *refused,
    };
    let mut response = match &message.body {
        crate::capture::Body::Memory(raw) => whole(StatusCode::OK, "message/rfc822", raw.clone()),
        crate::capture::Body::File(file) => {
            let file = Arc::clone(file);
            let opened = blocking(state, move || {
                crate::view::body::open(&file).map(|opened| (opened, file.len()))
            })
            .await;
            match opened {
                Some(Ok((opened, len))) => {
                    let mut response = Response::new(ApiBody::File(Box::new(
                        super::response::FileSending::new(opened, len, conn),
                    )));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
                    response
                }
                Some(Err(e)) => return read::unreadable(&e),
                None => return failed(),
            }
        }
    };
    super::response::confine(response.headers_mut());
    response
}

/// `GET /api/v1/events`.
fn events(
    state: &State,
    query: Option<&str>,
    headers: &HeaderMap,
    conn: Conn,
) -> Response<ApiBody> {
    let (after, selection) = match query::events_after(query) {
        Ok(after) => after,
        Err(e) => return bad(e),
    };
    if let Some(refused) = super::select::mailbox_refusals(&state.capture, selection.mailboxes()) {
        return refused;
    }
    let last = match headers.get("last-event-id") {
        Some(value) => match value
            .to_str()
            .map_err(|_| BadRequest("Last-Event-ID: not text".into()))
            .and_then(|v| query::cursor("Last-Event-ID", v.trim()))
        {
            Ok(last) => Some(last),
            Err(e) => return bad(e),
        },
        None => None,
    };
    if state.counters.subscribers.get() >= MAX_SUBSCRIBERS as i64 {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{MAX_SUBSCRIBERS} event streams are open already"),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    let head = state.capture.head();
    let cursor = last.or(after).unwrap_or(head);
    let stream = if cursor > head {
        EventStream::reset(
            Arc::clone(&state.capture),
            cursor,
            conn,
            state.counters.clone(),
        )
    } else {
        EventStream::new(
            Arc::clone(&state.capture),
            cursor,
            conn,
            state.counters.clone(),
        )
    };
    let stream = stream.filtered(selection.filter);
    let mut response = Response::new(ApiBody::Events(Box::new(stream)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }

    #[test]
    fn ids_outside_the_alphabet_are_not_ids() {
        assert!(queue_id("1795925106.M42P9Q7").is_some());
        for bad in ["", "a/b", "a%2fb", "..%2f", "a b", &"x".repeat(64), "é"] {
            assert!(queue_id(bad).is_none(), "{bad}");
        }
    }
}
