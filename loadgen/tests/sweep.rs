//! The rate sweep against a stub with a designed knee: it serves at most 500 messages per
//! second (one server-wide worker, 2 ms per message), so below that replies come at once
//! and past it they queue without bound. The sweep must find the knee within one step, stop
//! right after the first failing step, and write its JSON, per-step logs and charts.
//!
//! The only timing figure asserted is that knee, built into the stub; the SLO bound (100 ms)
//! is far from both sides of it (a few ms below, hundreds of ms above).

mod common;

use common::{loadgen, scratch, Stub, StubScript};

/// The stub's capacity in messages per second.
const KNEE: f64 = 500.0;
/// The sweep's step in messages per second.
const STEP: f64 = 200.0;

#[test]
fn a_sweep_finds_the_knee_within_one_step_and_stops_past_it() {
    let stub = Stub::start(StubScript {
        capacity: Some(KNEE),
        ..StubScript::default()
    });
    let hlog = scratch("sweep.hlog");
    let svg_dir = scratch("sweep-svg");
    let html = scratch("sweep.html");
    let run = loadgen(
        stub.addr,
        &[
            "-c",
            "8",
            "--sweep",
            "200..1k",
            "--step",
            "200",
            "-d",
            "2s",
            "--warmup",
            "1s",
            "--slo",
            "message_corrected:p99<100ms",
            "--hdr-log",
            hlog.to_str().unwrap(),
            "--svg",
            svg_dir.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{run:#?}");
    let doc = run.json();
    let found = doc["sweep"]["max_sustainable_rate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no rate found: {}", run.stdout));
    assert!(
        (found - KNEE).abs() <= STEP && found <= KNEE,
        "found {found} msgs/s, the knee is {KNEE}\n{}",
        run.stdout
    );
    // It stopped right after the first rate that failed twice (the step and its re-try),
    // which is the one after `found`.
    let steps = doc["steps"].as_array().unwrap();
    let offered: Vec<f64> = steps
        .iter()
        .map(|s| s["offered_rate"].as_f64().unwrap())
        .collect();
    let n = steps.len();
    assert!(n >= 2, "{offered:?}");
    assert_eq!(offered[n - 1], found + STEP, "{offered:?}");
    assert_eq!(
        offered[n - 2],
        found + STEP,
        "the failing rate is re-tried: {offered:?}"
    );
    let last = steps.last().unwrap();
    assert_eq!(last["passed"], false);
    assert_eq!(last["retry"], true);
    assert_eq!(steps[n - 2]["passed"], false);
    assert_eq!(steps[n - 2]["retry"], false);
    assert_eq!(doc["sweep"]["knee_found"], true);
    // Every lower rate passed (maybe on its re-try).
    for rate in &offered[..n - 2] {
        assert!(
            steps
                .iter()
                .any(|s| s["offered_rate"].as_f64() == Some(*rate) && s["passed"] == true),
            "{rate}: {offered:?}"
        );
    }
    assert_eq!(
        doc["sweep"]["planned_rates"].as_array().unwrap().len(),
        5,
        "200, 400, ..., 1000"
    );
    // Past the knee the server fell behind: the corrected p99 breached the SLO.
    assert_eq!(last["slo"][0]["ok"], false, "{:#}", last["slo"]);
    // Every step carries the measured value of each SLO, and the table shows it.
    for step in steps {
        let v = &step["slo_values"][0];
        assert_eq!(v["slo"], "message_corrected:p99<100ms");
        assert_eq!(v["unit"], "ms");
        assert!(v["value"].as_f64().is_some(), "{v}");
    }
    assert_eq!(last["slo_values"][0]["pass"], false);
    assert!(run.stdout.contains(" ms ✓"), "{}", run.stdout);
    // Each step carries its own results, with coordinated-omission-corrected latency.
    for step in steps {
        assert!(step["results"]["latency"]["message_corrected"]["count"]
            .as_u64()
            .is_some_and(|n| n > 0));
    }
    // The text: a row per step, the reason the last failed, the result.
    assert!(
        run.stdout.contains(&format!(
            "max sustainable rate: {found} msgs/s (the highest step"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("SLO BREACHED: message_corrected:p99<100ms"),
        "{}",
        run.stdout
    );
    let rows = run
        .stdout
        .lines()
        .filter(|l| {
            !l.contains("msgs/s:")
                && l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<f64>().is_ok())
        })
        .count();
    assert_eq!(rows, steps.len(), "{}", run.stdout);
    // One interval log per step, beside the name given.
    for (rate, step) in offered.iter().zip(steps) {
        let retry = if step["retry"] == true { ".retry" } else { "" };
        let path = hlog.with_file_name(format!("sweep.{rate}{retry}.hlog"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(text.contains("Tag=message_corrected,"));
    }
    // The charts.
    for chart in [
        "sweep-latency",
        "sweep-throughput",
        "percentiles-message_corrected",
    ] {
        let text = std::fs::read_to_string(svg_dir.join(format!("{chart}.svg"))).unwrap();
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{chart}: {e}"));
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<table id=\"steps\">"));
    assert!(page.contains("id=\"sweep-latency\""));
    assert!(page.contains("<th>message_corrected:p99&lt;100ms</th>"));
    assert!(page.contains("SLO message_corrected:p99&lt;100ms"));
}

#[test]
fn sweep_flags_are_checked() {
    let stub = Stub::start(StubScript::default());
    for bad in [
        &["--sweep", "1k..100"][..],
        &["--sweep", "1k..2k", "--rate", "5"],
        &["--sweep", "1k..2k", "-n", "5"],
        &["--sweep", "1k..2k", "--step", "100", "--steps", "3"],
        &["--step", "100"],
        &["--sweep", "1k..2k", "--steps", "0"],
        &["--sweep", "1..1e308"],
        &["--sweep", "0.5..1"],
        &["-n", "5", "--source", "255.255.255.255"],
        &["-n", "5", "--source", "0.0.0.0"],
        &["-n", "5", "--source", "224.0.0.1"],
    ] {
        let run = loadgen(stub.addr, bad);
        assert_eq!(run.code, 2, "{bad:?}: {run:#?}");
    }
}

#[test]
fn unwritable_outputs_fail_before_any_load_is_sent() {
    let stub = Stub::start(StubScript::default());
    let file_in_file = scratch("plain-file");
    std::fs::write(&file_in_file, "x").unwrap();
    let under_file = file_in_file.join("sub");
    let under = under_file.to_str().unwrap();
    for (flag, value) in [
        ("--html", "/nonexistent/x.html"),
        ("--hdr-log", "/nonexistent/x.hlog"),
        ("--svg", under),
        ("--png", under),
    ] {
        for mode in [&["-n", "5"][..], &["--sweep", "100..200", "-d", "1s"]] {
            let mut args = mode.to_vec();
            args.extend([flag, value]);
            let run = loadgen(stub.addr, &args);
            assert_eq!(run.code, 2, "{args:?}: {run:#?}");
            assert!(
                run.stderr.contains(&format!("cannot write {flag} {value}")),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    assert_eq!(
        stub.counts
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no load was sent"
    );
    // A report checks them before reading its logs too.
    let (code, _, stderr) = common::run_binary(&[
        "report".into(),
        "/nonexistent/in.hlog".into(),
        "--html".into(),
        "/nonexistent/x.html".into(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot write --html"), "{stderr}");
}
