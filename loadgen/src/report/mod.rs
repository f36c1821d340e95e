//! What a run's figures become: merged results, text and JSON, interval logs, SLO verdicts.
//!
//! Layout:
//! * [`results`]: merging every thread's one-second figures into totals and a per-second
//!   series ([`Results`]).
//! * [`render`]: the end-of-run summary, the progress line, the `--json` document and the
//!   `report` table, as text or JSON values.
//! * [`interval_log`]: HdrHistogram interval logs (`--hdr-log`, `report`, `merge`).
//! * [`codec`]: the V2-deflate base64 histogram encoding logs and `--json` share.
//! * [`merge`]: several hosts' logs added up on one grid of seconds, with one warm-up.
//! * [`connections`]: the connections asked for and alive, and why some never got ready.
//! * [`slo`]: `--slo` objectives, parsed once into a metric and a bound, checked at the end.
//! * [`figures`]: what charts show, from an interval log: per-tag totals and per-interval
//!   p50/p99/max, throughput per interval, percentile spectra.
//! * [`chart`]: one chart drawn with plotters, as SVG text or PNG bytes.
//! * [`charts`]: which charts a report of one or more runs has (runs overlaid).
//! * [`html`]: the self-contained HTML page (inline SVG, tables, a small script).
//! * [`sweep`]: a rate sweep's steps judged, and its table, JSON and charts.
//! * [`warmup`]: the warm-up rule every output applies and states.
//! * [`provenance`]: when, with what and where a run was made, as JSON, text and rows.
//!
//! What it does not do: measure (the `drive` wing: the engine and `record` do), run sweep
//! steps (`sweep` in the hall), or choose the exit code (`commands` does, from the SLO
//! verdicts). It reads `drive` only through the record types (see the crate's rule).

pub mod chart;
pub mod charts;
pub mod codec;
pub mod connections;
pub mod figures;
pub mod html;
pub mod interval_log;
pub mod merge;
pub mod provenance;
pub mod render;
pub mod results;
pub mod slo;
pub mod sweep;
pub mod warmup;

pub use results::Results;

/// `text` with every control character (C0, DEL, C1) replaced by U+FFFD, for labels and
/// file names shown in charts, HTML and terminal headers: XML forbids most of them, and on a
/// terminal they are escape sequences. Tab and line ends are replaced too (a label is one
/// line).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// How many characters of a user's text an error message quotes.
const QUOTED_CHARS: usize = 60;

/// `text` as an error message quotes it: in double quotes, control characters replaced (see
/// [`printable`]), cut to 60 characters with `…`. Not Rust's `Debug` form, whose `\u{..}`
/// escapes mean nothing to a user.
pub fn quoted(text: &str) -> String {
    let mut shown: String = printable(text).chars().take(QUOTED_CHARS).collect();
    if text.chars().nth(QUOTED_CHARS).is_some() {
        shown.push('…');
    }
    format!("\"{shown}\"")
}

/// A line of a file as an error message shows it: [`quoted`] if it is text (UTF-8 without
/// control characters other than tabs), else how many bytes of what it is (random bytes
/// would be noise on a terminal).
pub fn shown_line(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(text) if !text.chars().any(|c| c.is_control() && c != '\t') => quoted(text),
        _ => format!("{} bytes that are not text (a binary file?)", line.len()),
    }
}

/// Labels made distinct for legends (`report --label`, sweep steps): a repeated one gets
/// ` (2)`, ` (3)`, ...
pub fn unique_labels(labels: Vec<String>) -> Vec<String> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Vec<String> = Vec::with_capacity(labels.len());
    for label in labels {
        let mut n = *seen.get(&label).unwrap_or(&0);
        let mut name = label.clone();
        while out.contains(&name) {
            n += 1;
            name = format!("{label} ({})", n + 1);
        }
        seen.insert(label, n);
        out.push(name);
    }
    out
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn repeated_labels_are_numbered() {
        let labels =
            |list: &[&str]| super::unique_labels(list.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            labels(&["a", "b", "a", "a", "a (2)"]),
            ["a", "b", "a (2)", "a (3)", "a (2) (2)"]
        );
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(
            super::printable("x\u{1}y\u{7f}z\u{85}\u{9b}é\t"),
            "x\u{FFFD}y\u{FFFD}z\u{FFFD}\u{FFFD}é\u{FFFD}"
        );
    }

    #[test]
    fn quoted_text_is_cut_and_binary_lines_are_described() {
        assert_eq!(super::quoted("hello world"), "\"hello world\"");
        let long = "x".repeat(70);
        assert_eq!(super::quoted(&long), format!("\"{}…\"", "x".repeat(60)));
        assert_eq!(super::quoted("a\u{1b}[31m"), "\"a\u{FFFD}[31m\"");
        assert_eq!(
            super::shown_line(b"hello\tworld\r"),
            "\"hello\u{FFFD}world\""
        );
        // Random bytes (not UTF-8, or with control characters): described, not shown.
        assert_eq!(
            super::shown_line(b"6\xd9d\xc1A\xddk\x1c?"),
            "9 bytes that are not text (a binary file?)"
        );
        assert_eq!(
            super::shown_line("a\u{749}\u{0}b".as_bytes()),
            "5 bytes that are not text (a binary file?)"
        );
        // Text that is not ASCII is shown as it is (no `\u{..}` escapes).
        assert_eq!(super::shown_line("é\u{749}x".as_bytes()), "\"é\u{749}x\"");
    }
}

#[cfg(test)]
mod tests {
    //! The output formats are an interface: these tests pin them byte for byte.

    use super::*;
    use crate::drive::client::Stage;
    use crate::drive::record::{ErrorKind, Recorder};
    use std::time::{Duration, SystemTime};

    /// Deterministic results: two threads, a warm-up second and two measured seconds, every
    /// kind of figure the outputs show.
    fn sample_results() -> Results {
        let mut results = Results::new(2);
        for second in 0..3u64 {
            for thread in 0..2usize {
                let mut r = Recorder::new();
                let base = 1_000 * (second + 1) + thread as u64 * 7;
                for i in 0..50u64 {
                    r.reply(Stage::Greeting, 220, base * 900 + i * 13);
                    r.reply(Stage::Ehlo, 250, base * 800 + i * 17);
                    r.reply(Stage::Mail, 250, base * 300 + i * 19);
                    r.reply(
                        Stage::Rcpt,
                        if i % 10 == 0 { 450 } else { 250 },
                        base * 310 + i,
                    );
                    r.reply(Stage::Data, 354, base * 200 + i * 29);
                    r.reply(Stage::Eod, 250, base * 2_000 + i * 1_000);
                    r.message_done(
                        i % 10 != 0,
                        1024,
                        base * 4_000 + i * 997,
                        Some(base * 5_000),
                    );
                    crate::drive::record::record(&mut r.send_lateness, i * 1_000);
                }
                r.started = 52;
                r.error(ErrorKind::Timeout);
                // A TLS session with AUTH per thread and second: handshakes (one resumed),
                // STARTTLS's 220 and a LOGIN challenge counted, not timed.
                r.handshake(base * 1_500, false);
                r.handshake(base * 700, true);
                r.code(Stage::Tls, 220);
                r.code(Stage::Auth, 334);
                r.reply(Stage::Auth, 235, base * 600);
                if thread == 0 && second == 2 {
                    r.error_with(
                        ErrorKind::Tls,
                        "TLS: invalid peer certificate: unknown issuer".into(),
                    );
                }
                if thread == 1 {
                    r.error(ErrorKind::Desync);
                    r.reply(Stage::Quit, 221, 120_000);
                }
                results.add(thread, second, second == 0, &r, second == 2);
            }
        }
        results.measured = Duration::from_millis(2_000);
        results.backlog = 3;
        results.warmup = Duration::from_secs(1);
        results
    }

    /// Compares `actual` with the file `name` under `src/report/golden/`, or writes it when
    /// `SMTP_LOADGEN_BLESS` is set (after a deliberate format change).
    #[track_caller]
    fn assert_golden(name: &str, actual: &[u8]) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/report/golden")
            .join(name);
        if std::env::var_os("SMTP_LOADGEN_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
            return;
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            expected == actual,
            "{name} changed; expected:\n{}\nactual:\n{}",
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual)
        );
    }

    #[test]
    fn output_formats_are_unchanged() {
        let results = sample_results();
        let mut text = render::summary(
            &results,
            "smtp-loadgen -> golden",
            Some(100.0),
            render::LATE_SEND_LIMIT,
        );
        text.push_str(&render::summary(
            &results,
            "smtp-loadgen -> golden",
            None,
            render::LATE_SEND_LIMIT,
        ));
        for expr in [
            "eod:p99<5ms",
            "eod:p50<1ns",
            "message:p99.9<20ms",
            "message_corrected:max<1s",
            "rcpt:p100<=1ms",
            "quit:p99<1ms",
            "bdat:p99<1ms",
            "tls:p99<5ms",
            "auth:max<1ms",
            "errors<1%",
            "errors<10",
            "errors<=2",
        ] {
            let verdict = match slo::Slo::parse(expr, parse_ms_or_ns)
                .unwrap()
                .check(&results.total)
            {
                Ok(line) => format!("SLO ok: {line}\n"),
                Err(line) => format!("SLO BREACHED: {line}\n"),
            };
            text.push_str(&verdict);
        }
        assert_golden("summary.txt", text.as_bytes());

        let config = serde_json::json!({"target": "golden", "rate": 100.0});
        let provenance = provenance::Provenance::for_tests("golden", 1.0);
        let mut doc = render::json(&results, config);
        doc["provenance"] = provenance.json();
        assert_golden(
            "results.json",
            serde_json::to_string_pretty(&doc).unwrap().as_bytes(),
        );

        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut log = Vec::new();
        let counts = interval_log::run_counts(&results, base);
        interval_log::write_hlog(
            &mut log,
            base,
            &provenance,
            &interval_log::run_intervals(&results, base),
            &counts,
        )
        .unwrap();
        assert_golden("run.hlog", &log);
        let read = interval_log::read_hlog(&log).unwrap();
        let notes = interval_log::read_notes(&log).unwrap();
        assert_eq!(notes.counts, counts);
        assert_eq!(notes.comments[0], "golden");
        assert_eq!(notes.provenance.as_ref(), Some(&provenance));
        // `report`: the warm-up the log records, the same figures as the run's totals.
        let starts: Vec<f64> = read.iter().map(|i| i.start).collect();
        let rule = warmup::Warmup::of_log(&notes, &starts, None);
        let figures = figures::RunFigures::from_log("golden", &read, &notes, rule).unwrap();
        assert_golden("report.txt", render::log_report(&figures).as_bytes());
        for tag in &figures.tags {
            let stage = Stage::ALL.iter().find(|s| s.name() == tag.tag);
            let run_total = match (stage, tag.tag.as_str()) {
                (Some(stage), _) => results.total.stage(*stage),
                (None, "message") => &results.total.message,
                (None, _) => &results.total.message_corrected,
            };
            assert!(
                figures::identical(&tag.total, run_total),
                "{}: the report and the run disagree",
                tag.tag
            );
        }
        let input = merge::Input {
            intervals: read,
            counts: notes.counts,
            warmup: rule,
        };
        let merged = merge::merge(&[input.clone(), input]).unwrap();
        assert_eq!(
            merged.counts[1].counts.accepted,
            2 * counts[1].counts.accepted
        );
        assert_eq!(merged.warmup.seconds, 1.0);
        let mut log = Vec::new();
        let mut merge = provenance::Provenance::for_tests("golden merge", 1.0);
        merge.inputs = vec![provenance.clone(), provenance];
        interval_log::write_hlog(&mut log, base, &merge, &merged.intervals, &merged.counts)
            .unwrap();
        assert_golden("merged.hlog", &log);
    }

    fn parse_ms_or_ns(s: &str) -> Result<Duration, String> {
        match s.strip_suffix("ms") {
            Some(n) => n.parse().map(Duration::from_millis),
            None => match s.strip_suffix("ns") {
                Some(n) => n.parse().map(Duration::from_nanos),
                None => s
                    .strip_suffix('s')
                    .unwrap_or(s)
                    .parse()
                    .map(Duration::from_secs),
            },
        }
        .map_err(|_| "bad".to_string())
    }
}
