//! The web UI's assets, embedded in the binary (`include_str!`): `/` (the page),
//! `/ui/app.js`, `/ui/app.css`. No network, no Node at run time; the page reads everything
//! through the API (`src/api/ui/app.js` says what it does and does not do).
//!
//! Every asset goes out with one Content Security Policy. Besides keeping the page itself to
//! its own script, it is the wall around a message's HTML: the page shows that HTML in an
//! `<iframe sandbox srcdoc=…>` (no permission at all: no script, an opaque origin), and a
//! srcdoc document inherits this policy, so it can load nothing from elsewhere (remote
//! images off, RFC 8058's tracking pixels included) and a link in it cannot load another
//! site into the frame. No frames loaded by URL (`frame-src 'none'`; a srcdoc frame loads
//! nothing): a message's `<iframe src="/api/v1/messages">` would otherwise show this origin's
//! API inside the message, or hold event streams open. Images only from `data:` URLs: not even this origin, so a message's
//! `<img src="/api/v1/await?...">` cannot make the viewer's browser call the API.
//! `style-src 'unsafe-inline'` is there for the mail's own styles.
//!
//! What it does not do: hold data (the API routes do, behind the token when one is set).

use super::response::{whole, ApiBody};
use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use hyper::{Response, StatusCode};

/// The page's policy (see the module doc).
pub const POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src data:; connect-src 'self'; frame-src 'none'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// The page.
const INDEX: &str = include_str!("ui/index.html");
/// Its script.
const SCRIPT: &str = include_str!("ui/app.js");
/// Its style sheet.
const STYLE: &str = include_str!("ui/app.css");

/// The asset at `path` (`/`, `/ui/app.js`, `/ui/app.css`), or `None`.
pub fn asset(path: &str) -> Option<Response<ApiBody>> {
    let (body, content_type) = match path {
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/ui/app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut response = whole(
        StatusCode::OK,
        content_type,
        Bytes::from_static(body.as_bytes()),
    );
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    Some(response)
}
