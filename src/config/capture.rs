//! The settings of the capture store (`--store memory`, `--capture-*`, `--on-full`) and of
//! the HTTP API that reads it (`--api`, `--api-token`, `--api-cors`), with their defaults
//! and their checks.
//!
//! What it does: hold the values as given (`None`: not given, so the default applies and a
//! refusal can tell "given without a capture store" from "left alone"), turn them into the
//! store's [`crate::capture::Limits`] and [`OnFull`], and check them for
//! [`super::Config::validate`].
//!
//! What it does not do: parse the command line (`main.rs`), make the store (`server`) or
//! serve the API (`crate::api`, started by whoever holds the server's capture).

use super::ConfigError;
use crate::capture::{Limits, OnFull, TOMBSTONES_MAX};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The capture store's byte budget by default (`--capture-memory`): 256 MiB (issue 18).
pub const DEFAULT_CAPTURE_MEMORY: u64 = 256 << 20;
/// The most of `--capture-memory` the API's cache of parsed message views takes (issue 18:
/// views are "cached under the same budget"): an eighth of the budget, at most 32 MiB (the
/// views of ~15 000 messages of 1 KiB). The rest is the store's.
pub const VIEW_CACHE_MAX: u64 = 32 << 20;
/// The smallest `--capture-memory`: 64 KiB, a few small messages (below that, every message
/// of real mail would be refused as too large).
pub const MIN_CAPTURE_MEMORY: u64 = 64 << 10;
/// The shortest `--capture-max-age`.
pub const MIN_CAPTURE_MAX_AGE: Duration = Duration::from_secs(1);
/// The longest `--capture-max-age`: a year (longer is "no age limit": leave the flag out).
pub const MAX_CAPTURE_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Where `--api` alone listens: loopback, port 8025 (the catchers' conventional HTTP port).
pub const DEFAULT_API_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8025);

/// The capture store's limits as given; `None`: not given (the default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureSettings {
    /// The byte budget (`--capture-memory`): raw bytes plus the index overhead charged per
    /// message; at least [`MIN_CAPTURE_MEMORY`]; default [`DEFAULT_CAPTURE_MEMORY`].
    pub memory: Option<u64>,
    /// The most messages kept (`--capture-max-messages`, at least 1; default: no limit but
    /// the budget).
    pub max_messages: Option<usize>,
    /// Messages older than this are dropped (`--capture-max-age`, from
    /// [`MIN_CAPTURE_MAX_AGE`] to [`MAX_CAPTURE_MAX_AGE`]; default: no age limit).
    pub max_age: Option<Duration>,
    /// What a full store does (`--on-full evict|tempfail`; default: evict the oldest).
    pub on_full: Option<OnFull>,
}

impl CaptureSettings {
    /// The share of the budget the API's cache of parsed views takes when the API is on
    /// (`api`): an eighth, at most [`VIEW_CACHE_MAX`]; 0 without the API (no views).
    pub fn view_cache_bytes(&self, api: bool) -> u64 {
        if !api {
            return 0;
        }
        (self.memory.unwrap_or(DEFAULT_CAPTURE_MEMORY) / 8).min(VIEW_CACHE_MAX)
    }

    /// The store's limits when the API is on or not (`api`): the given values, else the
    /// defaults, with the budget less the views' share ([`CaptureSettings::view_cache_bytes`]),
    /// so the store and the views together hold at most `--capture-memory`.
    pub fn limits_beside(&self, api: bool) -> Limits {
        let mut limits = self.limits();
        limits.max_bytes -= self.view_cache_bytes(api);
        limits
    }

    /// The store's limits counting the whole budget: the given values, else the defaults.
    pub fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.memory.unwrap_or(DEFAULT_CAPTURE_MEMORY),
            max_messages: self.max_messages.unwrap_or(usize::MAX),
            max_age: self.max_age,
            max_tombstones: TOMBSTONES_MAX,
            ..Limits::default()
        }
    }

    /// What a full store does: as given, else evict the oldest.
    pub fn on_full(&self) -> OnFull {
        self.on_full.unwrap_or(OnFull::EvictOldest)
    }

    /// The first capture flag given, if any (for the refusal without a capture store).
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.memory.is_some(), "--capture-memory"),
            (self.max_messages.is_some(), "--capture-max-messages"),
            (self.max_age.is_some(), "--capture-max-age"),
            (self.on_full.is_some(), "--on-full"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// Checks the values; `keeps_capture`: whether the server will have a capture store
    /// (`--store memory` or `--api`).
    pub(super) fn check(&self, keeps_capture: bool) -> Result<(), ConfigError> {
        if !keeps_capture {
            if let Some(flag) = self.first_given() {
                return Err(ConfigError::CaptureWithoutStore { flag });
            }
        }
        if let Some(memory) = self.memory {
            if memory < MIN_CAPTURE_MEMORY {
                return Err(ConfigError::CaptureMemory(memory));
            }
        }
        if self.max_messages == Some(0) {
            return Err(ConfigError::Zero {
                flag: "--capture-max-messages",
            });
        }
        if let Some(age) = self.max_age {
            if !(MIN_CAPTURE_MAX_AGE..=MAX_CAPTURE_MAX_AGE).contains(&age) {
                return Err(ConfigError::DurationOutOfRange {
                    flag: "--capture-max-age",
                    value: age,
                    min: MIN_CAPTURE_MAX_AGE,
                    max: MAX_CAPTURE_MAX_AGE,
                });
            }
        }
        Ok(())
    }
}

/// The HTTP API's settings (`--api [ADDR]`, `--api-token`, `--api-cors`).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Where it listens (`--api ADDR`; `--api` alone: [`DEFAULT_API_ADDR`]).
    pub addr: SocketAddr,
    /// The bearer token every request must carry (`--api-token`, or the environment variable
    /// `FASTSMTPD_API_TOKEN` so it need not show in `ps`); `None`: open.
    pub token: Option<String>,
    /// The one origin allowed cross-origin (`--api-cors ORIGIN`); `None`: same origin only
    /// (never `*`).
    pub cors: Option<String>,
}

impl fmt::Debug for ApiSettings {
    /// The token is never printed (a config dumped to a log must not leak it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiSettings")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("cors", &self.cors)
            .finish()
    }
}

impl ApiSettings {
    /// The loud line for an API anyone on the network can use: listening beyond loopback
    /// without a token (issue 18: "needs --api-token or says loudly that it is open").
    pub fn open_warning(&self) -> Option<String> {
        (!self.addr.ip().is_loopback() && self.token.is_none()).then(|| {
            format!(
                "fastsmtpd: WARNING: the API on {} is OPEN: it listens beyond loopback without --api-token, so anyone who can reach it can read and delete every captured message; give --api-token (or FASTSMTPD_API_TOKEN) or listen on 127.0.0.1",
                self.addr
            )
        })
    }

    /// Checks the token and the origin: both go into HTTP headers, so printable ASCII
    /// without spaces; the origin is never `*` (issue 18: same origin only unless one is
    /// named).
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let header_safe =
            |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
        if let Some(token) = &self.token {
            if !header_safe(token) {
                return Err(ConfigError::ApiToken);
            }
        }
        if let Some(origin) = &self.cors {
            if !header_safe(origin) || !is_origin(origin) {
                return Err(ConfigError::ApiCors(origin.clone()));
            }
        }
        Ok(())
    }
}

/// Whether `text` is one serialized origin (RFC 6454 §6.2): `scheme://host[:port]`, no
/// path, query or trailing slash; a browser sends exactly that in `Origin`, so anything else
/// could never match.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return false,
        },
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    scheme_ok && host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::super::{Config, StoreSpec};
    use super::*;

    /// The capture store's and the API's refusals, word for word (docs/cli.md quotes them).
    #[test]
    fn capture_and_api_refusals_say_what_to_do() {
        let refused = |change: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate().unwrap_err().to_string()
        };
        let memory = |c: &mut Config| c.stores.specs = vec![StoreSpec::Memory];
        let api = |c: &mut Config| {
            c.api = Some(ApiSettings {
                addr: DEFAULT_API_ADDR,
                token: None,
                cors: None,
            })
        };
        assert_eq!(
            refused(&|c| c.stores.specs = vec![StoreSpec::Memory, StoreSpec::Memory]),
            "--store memory given twice: there is one capture store (size it with --capture-memory)"
        );
        for (change, flag) in [
            (
                &(|c: &mut Config| c.capture.memory = Some(1 << 20)) as &dyn Fn(&mut Config),
                "--capture-memory",
            ),
            (
                &|c| c.capture.max_messages = Some(5),
                "--capture-max-messages",
            ),
            (
                &|c| c.capture.max_age = Some(Duration::from_secs(60)),
                "--capture-max-age",
            ),
            (
                &|c| c.capture.on_full = Some(crate::capture::OnFull::Refuse),
                "--on-full",
            ),
        ] {
            assert_eq!(
                refused(change),
                format!("{flag} sets a limit of the capture store, and there is none: add --store memory (or --api, which reads it)")
            );
            // With file stores only, still none.
            assert!(refused(&|c| {
                c.stores.specs = vec![StoreSpec::Maildir("m".into())];
                change(c);
            })
            .starts_with(flag));
            for with in [&memory as &dyn Fn(&mut Config), &api] {
                let mut config = Config::default();
                with(&mut config);
                change(&mut config);
                assert!(config.validate().is_ok(), "{flag}");
            }
        }
        assert_eq!(
            refused(&|c| {
                memory(c);
                c.capture.memory = Some(1000);
            }),
            "--capture-memory 1000: must be at least 65536 bytes (64KiB)"
        );
        assert_eq!(
            refused(&|c| {
                memory(c);
                c.capture.max_messages = Some(0);
            }),
            "--capture-max-messages must be at least 1"
        );
        assert_eq!(
            refused(&|c| {
                memory(c);
                c.capture.max_age = Some(Duration::from_millis(10));
            }),
            "--capture-max-age 10ms: must be from 1s to 365d"
        );
        assert_eq!(
            refused(&|c| {
                api(c);
                c.api.as_mut().unwrap().token = Some("two words".into());
            }),
            "--api-token (or FASTSMTPD_API_TOKEN) must be printable ASCII without spaces (it is compared with the bearer token of each request)"
        );
        for origin in [
            "*",
            "localhost:3000",
            "http://a b",
            "http://x/path",
            "http://x/",
            "http://x:",
            "http://x:port",
            "null",
        ] {
            assert_eq!(
                refused(&|c| {
                    api(c);
                    c.api.as_mut().unwrap().cors = Some(origin.into());
                }),
                format!("--api-cors {origin:?}: must be one origin, scheme://host[:port] (e.g. http://localhost:3000), never *")
            );
        }
        for origin in [
            "http://localhost:3000",
            "https://app.example",
            "http://[::1]:8080",
        ] {
            let mut config = Config::default();
            api(&mut config);
            config.api.as_mut().unwrap().cors = Some(origin.into());
            assert!(config.validate().is_ok(), "{origin}");
        }
        // The capture as the only store: nothing larger than its budget is accepted or
        // advertised (SIZE); beside a file store, --max-message-size stands. With the API,
        // an eighth of the budget is the view cache's: the store keeps the rest.
        let mut config = Config::default();
        api(&mut config);
        config.capture.memory = Some(64 << 10);
        assert_eq!(config.capture.view_cache_bytes(true), 8 << 10);
        assert_eq!(config.capture_limits().max_bytes, 56 << 10);
        assert_eq!(config.max_message_size(), 56 << 10);
        let ehlo = config.session_config().banner.ehlo;
        assert!(
            ehlo.windows(10).any(|w| w == b"SIZE 57344"),
            "{}",
            String::from_utf8_lossy(&ehlo)
        );
        config.stores.specs = vec![StoreSpec::Maildir("m".into())];
        assert_eq!(config.max_message_size(), config.limits.max_message_size);
        // --api with only file stores: the capture keeps copies.
        let mut config = Config::default();
        api(&mut config);
        config.stores.specs = vec![StoreSpec::Maildir("m".into())];
        assert!(config.keeps_capture());
        assert!(config.validate().is_ok());
        assert!(!Config::default().keeps_capture());
    }

    /// A non-loopback API without a token says loudly that it is open; the token never
    /// shows in `Debug`.
    #[test]
    fn an_open_api_beyond_loopback_is_said_loudly() {
        let mut api = ApiSettings {
            addr: "0.0.0.0:8025".parse().unwrap(),
            token: None,
            cors: None,
        };
        assert!(api.open_warning().unwrap().contains("is OPEN"));
        api.token = Some("s3cret".into());
        assert_eq!(api.open_warning(), None);
        assert!(!format!("{api:?}").contains("s3cret"));
        api.token = None;
        api.addr = "[::1]:8025".parse().unwrap();
        assert_eq!(api.open_warning(), None);
    }
}
