//! A measurement, not a test (ignored; no assertion about time): with 100 000 kept messages of
//! 1 KiB, how long the API takes to answer the first list page, an exact-recipient search and
//! a raw get, and how soon an `await` returns after an insert. Each request on a new loopback
//! connection (curl's default in a shell step). Run:
//! `cargo test -p fastsmtpd --release --test api_scale -- --ignored --nocapture`.

mod api_client;

use api_client::*;
use fastsmtpd::api::ApiOptions;
use std::time::{Duration, Instant};

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "{what:<32} n={:<5} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        times.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
    );
}

#[test]
#[ignore]
fn measure_100k_messages() {
    let (capture, server) = serve(ApiOptions::default());
    let addr = server.local_addr();
    let mut raw = mail("scale");
    raw.resize(1024, b'x');
    raw.extend_from_slice(b"\r\n");
    let n = 100_000;
    for i in 0..n {
        insert(
            &capture,
            &format!("m{i}"),
            "s@test",
            &[&format!("user{}@test", i % 10_000)],
            &raw,
        );
    }
    let runs = 500;
    let time = |path: &str| {
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                let r = get(addr, path);
                assert_eq!(r.status, 200);
                start.elapsed()
            })
            .collect::<Vec<_>>()
    };
    report(
        "first list page (limit=50)",
        time("/api/v1/messages?limit=50"),
    );
    report(
        "rcpt search (10 of 100k)",
        time("/api/v1/messages?rcpt=user77@test"),
    );
    report("raw get (1 KiB)", time("/api/v1/messages/m5000/raw"));
    report("cursor", time("/api/v1/cursor"));
    // Insert-to-answer of a waiting await: the waiter is registered before the insert.
    let mut times = Vec::new();
    for i in 0..200 {
        let after = capture.head();
        let rcpt = format!("wait{i}@test");
        let path = format!("/api/v1/await?rcpt={rcpt}&after={after}&timeout=60s");
        let waiting = std::thread::spawn(move || {
            let r = get(addr, &path);
            (r.status, Instant::now())
        });
        until("the waiter", || capture.stats().waiters == 1);
        let start = Instant::now();
        insert(&capture, &format!("w{i}"), "s@test", &[&rcpt], &raw);
        let (status, done) = waiting.join().unwrap();
        assert_eq!(status, 200);
        times.push(done - start);
    }
    report("insert -> await answered", times);
}
