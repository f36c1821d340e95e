//! `/api/v1/mailboxes/{id}/faults`: one mailbox's fault plan, so that one test can make its
//! sender fail without touching the tests running beside it (`GET`, `PUT`, `DELETE`).
//!
//! A `PUT` body has the forms and bounds of `PUT /api/v1/faults` (JSON `{"rules": [..]}` or
//! text, one rule per line; [`super::faults`] reads it) and replaces the mailbox's whole plan.
//! Every answer but an error is the plan after it: `{"rules": [..]}` (empty: none).
//!
//! Where a plan applies (the fault engine's [`crate::fault::Plans`] decides): at `rcpt` when
//! the recipient being given is one of the mailbox's ([`MailboxScope`]), at `data`, `eod` and
//! `bdat` when a recipient accepted so far is. A rule at another point (`connect`, `mail`, ..)
//! is a `400` naming it, and nothing changed. A mailbox routed by a header has no point where
//! its plan could apply (the header is not known before the message is whole, after the last
//! point): a `PUT` for one is a `409`, and `GET` shows no rules.
//!
//! A plan lives as long as its mailbox: `DELETE /api/v1/mailboxes/{id}` clears it, and a plan
//! stops firing the moment its mailbox's `expires_at` passes (the scope compares the clock, no
//! store lock on the SMTP path). The plans of expired mailboxes are dropped at the next
//! request to a `/api/v1/mailboxes` route ([`sweep`]), so they never hold a place among the
//! engine's bounded number of plans for long.
//!
//! What it does not do: parse a rule or carry a fault out (`crate::fault` does), or route
//! mail into a mailbox (the capture store does; the capture store knows nothing of faults).

use super::faults::texts;
use super::response::{error, json, ApiBody};
use super::routes::{allow, State};
use super::select::mailbox_refusal;
use crate::capture::{MailboxId, MailboxInfo, MailboxLookup, Route};
use crate::fault::Scope;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::time::SystemTime;

/// The last segment of the route, after the mailbox's id.
pub const SEGMENT: &str = "/faults";

/// The prefix of a mailbox's plan's key in [`crate::fault::Plans`].
const KEY_PREFIX: &str = "mailbox:";

/// A mailbox's route seen from the fault engine: it covers a recipient the route covers,
/// until the mailbox expires.
#[derive(Debug)]
pub struct MailboxScope {
    /// The mailbox's route.
    route: Route,
    /// When the mailbox expires: past it, the scope covers nothing.
    expires_at: SystemTime,
}

impl Scope for MailboxScope {
    fn covers(&self, recipient: &[u8], auth_user: Option<&[u8]>) -> bool {
        // The route first: the clock is read only for the mail of this mailbox.
        self.route.covers(recipient, auth_user) && SystemTime::now() < self.expires_at
    }
}

/// The key of mailbox `id`'s plan.
fn key(id: &MailboxId) -> String {
    format!("{KEY_PREFIX}{id}")
}

/// Answers a request for `/api/v1/mailboxes/{id}/faults`, the host, token, expiry and
/// query checked already (by the mailboxes' handler).
pub async fn answer(state: &State, id: &str, request: Request<Incoming>) -> Response<ApiBody> {
    let method = request.method().clone();
    let methods = &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE];
    if let Some(refused) = allow(&method, methods, state) {
        return refused;
    }
    let Some(id) = MailboxId::parse(id.as_bytes()) else {
        return error(StatusCode::NOT_FOUND, "no such mailbox");
    };
    let info = match state.capture.mailbox(&id) {
        MailboxLookup::Found(info) => info,
        _ => {
            return mailbox_refusal(&state.capture, &id)
                .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no such mailbox"))
        }
    };
    let plans = &state.faults;
    let key = key(&id);
    match method {
        Method::GET | Method::HEAD => {}
        Method::DELETE => {
            plans.clear_scoped(&key);
        }
        _ => {
            let texts = match texts(request).await {
                Ok(texts) => texts,
                Err(refused) => return *refused,
            };
            if let Some(refused) = refuse_route(&info) {
                return refused;
            }
            let scope = Arc::new(MailboxScope {
                route: info.route.clone(),
                expires_at: info.expires_at,
            });
            if let Err(refused) = plans.set_scoped(&key, scope, &texts) {
                return error(StatusCode::BAD_REQUEST, &refused.to_string());
            }
            // Deleted while the body was read: its plan goes with it.
            if !matches!(state.capture.mailbox(&id), MailboxLookup::Found(_)) {
                plans.clear_scoped(&key);
                return mailbox_refusal(&state.capture, &id)
                    .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no such mailbox"));
            }
        }
    }
    json(
        StatusCode::OK,
        &json!({"rules": plans.scoped(&key).unwrap_or_default()}),
    )
}

/// A `409` for a mailbox whose route covers no recipient (a header route).
fn refuse_route(info: &MailboxInfo) -> Option<Response<ApiBody>> {
    matches!(info.route, Route::Header { .. }).then(|| {
        error(
            StatusCode::CONFLICT,
            "this mailbox is routed by a header, which is known only once the message is \
             whole, after the last point a plan applies at (rcpt, data, eod, bdat): its plan \
             would never fire. Route the mailbox by plus_tag, rcpt, domain or auth_user",
        )
    })
}

/// Clears the plan of mailbox `id` (it was deleted).
pub fn clear(state: &State, id: &MailboxId) {
    state.faults.clear_scoped(&key(id));
}

/// Drops the plans whose mailbox is no longer live (expired since the last look).
pub fn sweep(state: &State) {
    for key in state.faults.scoped_keys() {
        let Some(id) = key.strip_prefix(KEY_PREFIX) else {
            continue;
        };
        let live = MailboxId::parse(id.as_bytes())
            .is_some_and(|id| matches!(state.capture.mailbox(&id), MailboxLookup::Found(_)));
        if !live {
            state.faults.clear_scoped(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_scope_covers_its_routes_recipients_until_the_mailbox_expires() {
        let live = MailboxScope {
            route: Route::Recipient(b"a@x.test".to_vec()),
            expires_at: SystemTime::now() + Duration::from_secs(3600),
        };
        assert!(live.covers(b"a@X.test", None));
        assert!(!live.covers(b"ba@x.test", None));
        let expired = MailboxScope {
            route: Route::Recipient(b"a@x.test".to_vec()),
            expires_at: SystemTime::now() - Duration::from_secs(1),
        };
        assert!(!expired.covers(b"a@x.test", None));
    }
}
