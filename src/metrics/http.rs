//! The metrics endpoint's HTTP server: the control plane's shared serving code
//! ([`crate::control`]: hyper on a current-thread tokio runtime in a thread of its own, with
//! its deadlines and connection cap) answering one route.
//!
//! What it does: `GET` or `HEAD` on `/metrics` or `/` answers with the text exposition,
//! another path `404`, another method `405`. At most [`MAX_CONNECTIONS`] connections are open
//! (see [`crate::control`] for the deadlines and what happens past the cap).
//!
//! What it does not do: run on or wait for an SMTP worker (they publish atomics and never
//! see this thread), speak HTTP/2 or TLS, or read request bodies.

use super::MetricsSource;
use crate::control::{HttpServer, Limits};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{Registry, TextEncoder};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Most connections open at once; past it the least recently active one is closed.
pub const MAX_CONNECTIONS: usize = 128;

/// The content type of what [`TextEncoder`] writes: text format 0.0.4.
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The metrics endpoint: a thread running the HTTP server until [`MetricsServer::stop`] (or
/// drop).
#[derive(Debug)]
pub struct MetricsServer {
    /// The HTTP server.
    http: HttpServer,
}

impl MetricsServer {
    /// Binds `addr` and serves `source` until [`MetricsServer::stop`]. Errors (the address
    /// is taken, the runtime cannot start) are reported here, before the thread starts.
    pub fn start(addr: SocketAddr, source: MetricsSource) -> io::Result<MetricsServer> {
        let registry = Arc::new(source.registry().map_err(io::Error::other)?);
        let limits = Limits {
            max_connections: MAX_CONNECTIONS,
        };
        let http = HttpServer::start(
            addr,
            "--metrics",
            "fastsmtpd-metrics",
            limits,
            move |request: Request<Incoming>, _conn| {
                std::future::ready(respond(&registry, &request))
            },
        )?;
        Ok(MetricsServer { http })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Stops serving: ends the accept loop, closes every connection and waits for the
    /// thread. Returns promptly whatever the clients are doing; calling it again does
    /// nothing.
    pub fn stop(&mut self) {
        self.http.stop();
    }
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
