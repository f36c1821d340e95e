//! `capture::query::parse` over arbitrary UTF-8: never panics, an error's offset is inside
//! the query, and parsing is deterministic.
#![no_main]

use fastsmtpd::capture::query::parse;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let first = parse(text, now);
    if let Err(e) = &first {
        assert!(e.position <= text.len().max(fastsmtpd::capture::query::QUERY_MAX_LEN));
    }
    assert_eq!(first, parse(text, now));
});
