//! Rendering results as text and JSON: the end-of-run summary, the per-second progress line,
//! the `--json` document and the `report` table.
//!
//! What it does: format figures that are already merged ([`Results`], [`RunFigures`]) into
//! strings or JSON values, stages in protocol order, each output stating its warm-up rule. Latencies are recorded in nanoseconds and shown in milliseconds.
//! The formats are an interface (scripts parse them): `report::tests` pins them byte for byte.
//!
//! What it does not do: merge figures (`results`), write files or print (the caller does),
//! or encode histograms (`interval_log`).

use super::codec::encode_histogram;
use super::figures::{tag_rank, tag_title, RunFigures};
use super::results::{IntervalSummary, Results};
use crate::drive::client::Stage;
use crate::drive::record::{ErrorKind, Recorder, TargetFigures};
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::time::Duration;

/// Percentiles shown everywhere: (column name, percentile).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// Nanoseconds as milliseconds.
pub fn millis(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// The value of `h` at percentile `q` in milliseconds (3 decimals), or `-` when `h` holds
/// nothing (0.000 would read as a measured zero).
fn percentile_ms(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".to_string()
    } else {
        format!("{:.3}", millis(h.value_at_percentile(q)))
    }
}

/// One table row: count and percentiles in milliseconds (`-` for a row with no data).
fn latency_row(name: &str, h: &Histogram<u64>) -> String {
    let mut row = format!("{name:<18}{:>10}", h.len());
    for (_, q) in PERCENTILES {
        let _ = write!(row, "{:>10}", percentile_ms(h, q));
    }
    let max = if h.is_empty() {
        "-".to_string()
    } else {
        format!("{:.3}", millis(h.max()))
    };
    let _ = write!(row, "{max:>10}");
    row
}

/// The latency table of a recorder (stages with data only; the open-loop rows with
/// `open_loop`).
fn latency_table(recorder: &Recorder, open_loop: bool) -> String {
    let mut table = format!("{:<18}{:>10}", "latency (ms)", "count");
    for (name, _) in PERCENTILES {
        let _ = write!(table, "{name:>10}");
    }
    let _ = writeln!(table, "{:>10}", "max");
    for stage in Stage::ALL {
        let h = recorder.stage(stage);
        if !h.is_empty() {
            let _ = writeln!(table, "{}", latency_row(stage.name(), h));
        }
    }
    if !recorder.message.is_empty() {
        let _ = writeln!(table, "{}", latency_row("message", &recorder.message));
    }
    if open_loop {
        let _ = writeln!(
            table,
            "{}",
            latency_row("message corrected", &recorder.message_corrected)
        );
        let _ = writeln!(
            table,
            "{}",
            latency_row("send lateness", &recorder.send_lateness)
        );
    }
    table
}

/// The default send lateness p99 past which an open loop that reached its rate is not
/// "sustained" (`--late-send-limit`): its sends went out late and caught up. 10 ms: far
/// above the generator's own floor (the machine's wake-up latency, well under a millisecond
/// on an idle machine), far below a server stall worth reporting.
pub const LATE_SEND_LIMIT: Duration = Duration::from_millis(10);

/// The most TLS handshakes in one measured second.
fn peak_handshakes(results: &Results) -> u64 {
    results
        .intervals
        .values()
        .filter(|i| !i.warmup)
        .map(|i| i.handshakes)
        .max()
        .unwrap_or(0)
}

/// The human summary printed at the end of a run (`target_rate`: the open loop's `--rate`).
///
/// `late_send_limit`: the send lateness p99 past which a rate reached is reported NOT
/// sustained on time ([`LATE_SEND_LIMIT`] unless `--late-send-limit` says otherwise).
pub fn summary(
    results: &Results,
    header: &str,
    target_rate: Option<f64>,
    late_send_limit: Duration,
) -> String {
    let total = &results.total;
    let secs = results.measured.as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(out, "{header}");
    let (rule, from) = results.warmup_rule();
    let _ = writeln!(out, "{}", rule.statement(from));
    let _ = writeln!(
        out,
        "measured {secs:.2} s: messages started {}, accepted {}, failed {}",
        total.started, total.accepted, total.failed
    );
    let _ = writeln!(
        out,
        "throughput: {:.1} msgs/s, {:.2} MB/s",
        results.msgs_per_sec(),
        total.accepted_bytes as f64 / secs.max(1e-9) / 1e6
    );
    if total.handshakes() > 0 {
        // Handshakes come in bursts (at connect): the average over the run says little
        // about the rate a server sustained, so the busiest second is said too.
        let _ = writeln!(
            out,
            "tls handshakes: {} ({} resumed, {} full), {:.1}/s averaged over the measured \
             {secs:.2} s, at most {} in one second",
            total.handshakes(),
            total.handshakes_resumed,
            total.handshakes_full,
            total.handshakes() as f64 / secs.max(1e-9),
            peak_handshakes(results)
        );
    }
    if let Some(rate) = target_rate {
        let achieved = results.msgs_per_sec();
        if achieved < 0.99 * rate || results.backlog > 0 {
            let _ = writeln!(
                out,
                "WARNING: target rate {rate:.1} msgs/s NOT sustained: achieved {achieved:.1} msgs/s \
                 ({:.1}%), {} sends never started, send lateness p99 {}",
                100.0 * achieved / rate,
                results.backlog,
                match percentile_ms(&total.send_lateness, 99.0).as_str() {
                    "-" => "- (no send)".to_string(),
                    ms => format!("{ms} ms"),
                }
            );
        } else if total.send_lateness.value_at_percentile(99.0)
            > u64::try_from(late_send_limit.as_nanos()).unwrap_or(u64::MAX)
        {
            // Every send started and the rate was reached, but by catching up: sends waited
            // for a free connection (a server stall) or for the CPU.
            let _ = writeln!(
                out,
                "WARNING: target rate {rate:.1} msgs/s NOT sustained on time: achieved \
                 {achieved:.1} msgs/s, but send lateness p99 {:.3} ms is over {} ms (sends \
                 waited for a free connection, as when the server stalls, or for the CPU; \
                 --late-send-limit)",
                millis(total.send_lateness.value_at_percentile(99.0)),
                late_send_limit.as_secs_f64() * 1e3
            );
        } else if results.connections.fewer(results.measured) {
            // The rate was reached, but not over the connections asked for.
            let _ = writeln!(
                out,
                "WARNING: target rate {rate:.1} msgs/s NOT sustained as asked: achieved \
                 {achieved:.1} msgs/s over fewer connections than the {} asked for",
                results.connections.requested
            );
        } else {
            let _ = writeln!(out, "target rate {rate:.1} msgs/s sustained");
        }
    }
    if total.delivery.watched {
        let _ = writeln!(out, "{}", delivery_line(results));
    }
    out.push_str(&latency_table(total, target_rate.is_some()));
    let mut codes = String::new();
    for stage in Stage::ALL {
        let line: Vec<String> = total
            .codes
            .iter()
            .filter(|((s, _), _)| *s == stage.index())
            .map(|((_, code), n)| format!("{code}={n}"))
            .collect();
        if !line.is_empty() {
            let _ = write!(codes, " {}[{}]", stage.name(), line.join(" "));
        }
    }
    let _ = writeln!(out, "reply codes:{codes}");
    let errors: Vec<String> = ErrorKind::ALL
        .iter()
        .filter_map(|kind| {
            let n = total.errors.get(kind).copied().unwrap_or(0);
            (n > 0).then(|| format!("{}={n}", kind.name()))
        })
        .collect();
    let _ = writeln!(
        out,
        "errors: {}",
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(" ")
        }
    );
    for (detail, n) in &total.details {
        let _ = writeln!(out, "error detail: {detail} (x{n})");
    }
    out
}

/// The end-to-end line of the summary (`--delivered-via`): how many accepted messages
/// arrived whole at the far sink and were timed (those sent after the warm-up, as
/// `accepted` counts them), how many never arrived, how many recipients arrived twice (over
/// the whole run, warm-up included: a loss is a loss), foreign mail, the recipients that
/// arrived (of the messages `accepted` counts, like `timed`) and those that never did, and the rarer counts (messages partly delivered among
/// them) when not zero.
pub fn delivery_line(results: &Results) -> String {
    let total = &results.total;
    let d = &total.delivery;
    let mut line = format!(
        "delivered (end to end{}): {} timed of {} accepted, never delivered {}, duplicates {}, \
         foreign {}; recipients arrived {}, never delivered {}",
        results
            .run_id
            .map_or(String::new(), |id| format!(", run {id:08x}")),
        total.stage(Stage::Delivered).len(),
        total.accepted,
        d.never_delivered,
        d.duplicates,
        d.foreign,
        d.rcpts_arrived,
        d.never_delivered_rcpts
    );
    for (name, n) in [
        ("partly delivered", d.partly_delivered),
        ("late", d.late),
        ("lagged (unattributed)", d.lagged),
        ("resets", d.resets),
        ("replayed", d.replayed),
        ("stream reconnects", d.reconnects),
    ] {
        if n > 0 {
            let _ = write!(line, ", {name} {n}");
        }
    }
    line
}

/// The `delivery` object of `--json` (`--delivered-via`).
fn delivery_json(results: &Results) -> serde_json::Value {
    let total = &results.total;
    let d = &total.delivery;
    serde_json::json!({
        "run_id": results.run_id.map(|id| format!("{id:08x}")),
        "arrived": total.stage(Stage::Delivered).len(),
        "never_delivered": d.never_delivered,
        "partly_delivered": d.partly_delivered,
        "rcpts_arrived": d.rcpts_arrived,
        "never_delivered_rcpts": d.never_delivered_rcpts,
        "duplicates": d.duplicates,
        "foreign": d.foreign,
        "late": d.late,
        "lagged": d.lagged,
        "resets": d.resets,
        "replayed": d.replayed,
        "reconnects": d.reconnects,
    })
}

/// The per-target section of the summary (several `--target`s, named by `names` in order;
/// empty for one target): per target msgs/s of accepted messages, messages started, accepted
/// and failed, connection errors, and the end-of-content reply's p50 and p99 in milliseconds
/// (`eod`: the end-of-data dot, or `BDAT LAST` with `--bdat`). The aggregate above is the sum.
pub fn targets(results: &Results, names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let width = names.iter().map(String::len).max().unwrap_or(0).max(6) + 2;
    let mut out = format!(
        "{:<width$}{:>12}{:>10}{:>10}{:>10}{:>10}{:>12}{:>12}\n",
        "target", "msgs/s", "started", "accepted", "failed", "errors", "eod p50 ms", "eod p99 ms"
    );
    let secs = results.measured.as_secs_f64().max(1e-9);
    let empty = TargetFigures::default();
    for (i, name) in names.iter().enumerate() {
        let t = results.total.targets.get(i).unwrap_or(&empty);
        // A target that answered nothing has no latency: `-`, not 0.000.
        let eod = |p: f64| {
            if t.eod.is_empty() {
                "-".to_string()
            } else {
                format!("{:.3}", millis(t.eod.value_at_percentile(p)))
            }
        };
        let _ = writeln!(
            out,
            "{name:<width$}{:>12.1}{:>10}{:>10}{:>10}{:>10}{:>12}{:>12}",
            t.accepted as f64 / secs,
            t.started,
            t.accepted,
            t.failed,
            t.errors,
            eod(50.0),
            eod(99.0),
        );
    }
    out
}

/// The `targets` array of `--json` (several `--target`s): what [`targets`] shows, per
/// target, with bytes and MB/s.
pub fn targets_json(results: &Results, names: &[String]) -> serde_json::Value {
    let secs = results.measured.as_secs_f64().max(1e-9);
    let empty = TargetFigures::default();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let t = results.total.targets.get(i).unwrap_or(&empty);
            serde_json::json!({
                "target": name,
                "started": t.started,
                "accepted": t.accepted,
                "failed": t.failed,
                "bytes": t.accepted_bytes,
                "errors": t.errors,
                "msgs_per_sec": t.accepted as f64 / secs,
                "mb_per_sec": t.accepted_bytes as f64 / secs / 1e6,
                "eod_count": t.eod.len(),
                "eod_p50_ms": millis(t.eod.value_at_percentile(50.0)),
                "eod_p99_ms": millis(t.eod.value_at_percentile(99.0)),
            })
        })
        .collect()
}

/// The progress line of a finished second (`second` counts from 0, shown from 1). A second
/// without an end-of-data or BDAT reply shows `-` (no latency is not 0 ms).
pub fn progress_line(second: u64, interval: &IntervalSummary) -> String {
    let p99 = interval.eod_p99.max(interval.bdat_p99);
    let p99 = if p99 == 0 {
        format!("{:>11}", "-")
    } else {
        format!("{:>8.3} ms", p99 as f64 / 1e6)
    };
    format!(
        "[{:>4}s]{} {:>9} msgs/s  eod/bdat p99 {p99}  failed {}  errors {}",
        second + 1,
        if interval.warmup { " warmup" } else { "" },
        interval.accepted,
        interval.failed,
        interval.errors
    )
}

/// The live line on a terminal: the last second's msgs/s, p99 (end of data or BDAT; in open
/// loop also the corrected message latency) and errors, after `prefix` (the sweep step).
pub fn live_line(prefix: &str, second: u64, interval: &IntervalSummary, open_loop: bool) -> String {
    // A second with no reply measured shows `-` (no latency is 0 ns).
    let ms = |nanos: u64| {
        if nanos == 0 {
            "-".to_string()
        } else {
            format!("{:.3} ms", nanos as f64 / 1e6)
        }
    };
    let mut line = format!(
        "{prefix}[{:>4}s]{} {:>9} msgs/s  p99 eod/bdat {}",
        second + 1,
        if interval.warmup { " warmup" } else { "" },
        interval.accepted,
        ms(interval.eod_p99.max(interval.bdat_p99)),
    );
    if open_loop {
        let _ = write!(line, ", corrected {}", ms(interval.corrected_p99));
    }
    // The summary's words: failed messages, and errors (connection-level, by kind).
    let _ = write!(
        line,
        "  failed {}  errors {}",
        interval.failed, interval.errors
    );
    line
}

/// A histogram's count, percentiles, max and mean in milliseconds, as JSON.
fn percentiles_json(h: &Histogram<u64>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("count".into(), h.len().into());
    for (name, q) in PERCENTILES {
        map.insert(
            format!("{name}_ms"),
            millis(h.value_at_percentile(q)).into(),
        );
    }
    map.insert("max_ms".into(), millis(h.max()).into());
    map.insert("mean_ms".into(), (h.mean() / 1e6).into());
    map.into()
}

/// The `--json` document; `config` is the run's settings as given.
pub fn json(results: &Results, config: serde_json::Value) -> serde_json::Value {
    let total = &results.total;
    let mut stages = serde_json::Map::new();
    let mut histograms = serde_json::Map::new();
    let named: Vec<(&str, &Histogram<u64>)> = Stage::ALL
        .iter()
        .map(|s| (s.name(), total.stage(*s)))
        .chain([
            ("message", &total.message),
            ("message_corrected", &total.message_corrected),
            ("send_lateness", &total.send_lateness),
        ])
        .collect();
    // JSON objects have no order: `latency_order` lists the keys of `latency` in protocol
    // order, as every table shows them.
    let mut order: Vec<&str> = Vec::new();
    for (name, h) in named {
        if h.is_empty() {
            continue;
        }
        stages.insert(name.into(), percentiles_json(h));
        histograms.insert(name.into(), encode_histogram(h).into());
        order.push(name);
    }
    order.sort_by_key(|name| tag_rank(name));
    let (rule, from) = results.warmup_rule();
    let mut codes = serde_json::Map::new();
    for ((stage, code), n) in &total.codes {
        let key = format!("{}:{code}", Stage::ALL[*stage].name());
        codes.insert(key, (*n).into());
    }
    let errors: serde_json::Map<String, serde_json::Value> = total
        .errors
        .iter()
        .map(|(kind, n)| (kind.name().to_string(), (*n).into()))
        .collect();
    let series: Vec<serde_json::Value> = results
        .intervals
        .iter()
        .map(|(second, i)| {
            serde_json::json!({
                "second": second,
                "warmup": i.warmup,
                "started": i.started,
                "accepted": i.accepted,
                "failed": i.failed,
                "bytes": i.bytes,
                "errors": i.errors,
                "eod_p99_ms": millis(i.eod_p99),
                "bdat_p99_ms": millis(i.bdat_p99),
                "message_p99_ms": millis(i.message_p99),
                "handshakes": i.handshakes,
            })
        })
        .collect();
    let mut doc = serde_json::json!({
        "config": config,
        "warmup": rule.json(from),
        "totals": {
            "measured_seconds": results.measured.as_secs_f64(),
            "started": total.started,
            "accepted": total.accepted,
            "failed": total.failed,
            "bytes": total.accepted_bytes,
            "msgs_per_sec": results.msgs_per_sec(),
            "mb_per_sec": total.accepted_bytes as f64 / results.measured.as_secs_f64().max(1e-9) / 1e6,
            "errors": errors,
            "error_details": total.details,
            "codes": codes,
            "backlog": results.backlog,
            "tls_handshakes": {
                "full": total.handshakes_full,
                "resumed": total.handshakes_resumed,
                "per_sec": total.handshakes() as f64 / results.measured.as_secs_f64().max(1e-9),
                "most_in_one_second": peak_handshakes(results),
            },
        },
        "latency": stages,
        "latency_order": order,
        "histograms_v2_deflate_base64": histograms,
        "series": series,
    });
    // Only with --delivered-via, so a run without it keeps the same document.
    if total.delivery.watched {
        doc["delivery"] = delivery_json(results);
    }
    doc
}

/// The `report` text of one log: its description and provenance as recorded, the warm-up
/// rule applied, the measured time (the drain after the last send left out of it, its
/// replies counted) with the message counts, and per tag (protocol order) the counts and
/// percentiles after the warm-up; the same figures as the HTML report's tables.
pub fn log_report(run: &RunFigures) -> String {
    let mut out = String::new();
    if let Some(description) = &run.description {
        let _ = writeln!(out, "{description}");
    }
    // A run whose connections fell short says so before anything else, as it did.
    for warning in &run.warnings {
        let _ = writeln!(out, "{warning}");
    }
    match &run.provenance {
        Some(p) => {
            for line in p.lines() {
                let _ = writeln!(out, "{line}");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "provenance: not recorded in the log (an older smtp-loadgen or another tool)"
            );
        }
    }
    let _ = writeln!(out, "{}", run.warmup_statement());
    let _ = writeln!(out, "{}", run.measured_statement());
    out.push_str(&log_table(run));
    let only = run.warmup_only_tags();
    if !only.is_empty() {
        let _ = writeln!(out, "only inside the warm-up: {}", only.join(", "));
    }
    out
}

/// The `report` table: per tag with values after the warm-up, in protocol order, the count
/// and percentiles (the measured time is the run's, stated above it, not per tag).
pub fn log_table(run: &RunFigures) -> String {
    let mut out = format!("{:<18}{:>10}", "tag (ms)", "count");
    for (name, _) in PERCENTILES {
        let _ = write!(out, "{name:>10}");
    }
    let _ = writeln!(out, "{:>10}", "max");
    for tag in run.tags.iter().filter(|t| !t.total.is_empty()) {
        let _ = writeln!(out, "{}", latency_row(tag_title(&tag.tag), &tag.total));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_target_figures() {
        let mut results = Results::new(1);
        let mut r = Recorder::new();
        for (target, accepted) in [(0usize, 30u64), (1, 10)] {
            let t = r.target(target);
            t.started = accepted + 1;
            t.accepted = accepted;
            t.failed = 1;
            t.errors = target as u64;
            t.accepted_bytes = accepted * 1000;
            for i in 0..accepted {
                crate::drive::record::record(&mut t.eod, 1_000_000 + i * 10_000);
            }
        }
        results.add(0, 0, false, &r, true);
        results.measured = std::time::Duration::from_secs(2);
        let names = ["127.0.0.1:25".to_string(), "mx.test:2525".to_string()];
        assert_eq!(
            targets(&results, &names),
            "target              msgs/s   started  accepted    failed    errors  eod p50 ms  eod p99 ms\n\
             127.0.0.1:25          15.0        31        30         1         0       1.141       1.290\n\
             mx.test:2525           5.0        11        10         1         1       1.040       1.091\n"
        );
        assert_eq!(targets(&results, &[]), "");
        let json = targets_json(&results, &names);
        assert_eq!(json[1]["target"], "mx.test:2525");
        assert_eq!(json[1]["accepted"], 10);
        assert_eq!(json[0]["msgs_per_sec"], 15.0);
        assert_eq!(json[0]["eod_count"], 30);
    }

    #[test]
    fn rows_without_data_show_a_dash_not_zero() {
        let mut r = Recorder::new();
        crate::drive::record::record(&mut r.message, 1_500_000);
        let table = latency_table(&r, true);
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {table}"))
                .to_string()
        };
        assert!(row("message ").contains("1.500"), "{table}");
        for name in ["message corrected", "send lateness"] {
            let line = row(name);
            assert!(!line.contains("0.000"), "{line}");
            assert_eq!(line.split_whitespace().filter(|w| *w == "-").count(), 6);
        }
        // The NOT-sustained warning of a run that sent nothing.
        let mut results = Results::new(1);
        results.measured = std::time::Duration::from_secs(1);
        let text = summary(&results, "header", Some(100.0), LATE_SEND_LIMIT);
        assert!(text.contains("send lateness p99 - (no send)"), "{text}");
        assert!(!text.contains("0.000 ms"), "{text}");
    }

    #[test]
    fn handshakes_per_second_say_what_they_average_and_the_busiest_second() {
        let mut results = Results::new(1);
        let mut r = Recorder::new();
        for _ in 0..20 {
            r.handshake(1_000_000, false);
        }
        results.add(0, 0, false, &r, false);
        results.add(0, 1, false, &Recorder::new(), true);
        results.measured = std::time::Duration::from_secs(2);
        let text = summary(&results, "header", None, LATE_SEND_LIMIT);
        assert!(
            text.contains(
                "tls handshakes: 20 (0 resumed, 20 full), 10.0/s averaged over the measured \
                 2.00 s, at most 20 in one second"
            ),
            "{text}"
        );
    }

    #[test]
    fn progress_lines() {
        let mut second = IntervalSummary {
            warmup: true,
            started: 1_000,
            accepted: 990,
            failed: 3,
            bytes: 0,
            errors: 1,
            eod_p99: 1_234_567,
            bdat_p99: 0,
            message_p99: 0,
            corrected_p99: 2_000_000,
            handshakes: 0,
            histograms: Vec::new(),
        };
        assert_eq!(
            progress_line(0, &second),
            "[   1s] warmup       990 msgs/s  eod/bdat p99    1.235 ms  failed 3  errors 1"
        );
        assert_eq!(
            live_line("step 2/5 at 400 msgs/s  ", 0, &second, true),
            "step 2/5 at 400 msgs/s  [   1s] warmup       990 msgs/s  p99 eod/bdat 1.235 ms, \
             corrected 2.000 ms  failed 3  errors 1"
        );
        assert_eq!(
            live_line("", 0, &second, false),
            "[   1s] warmup       990 msgs/s  p99 eod/bdat 1.235 ms  failed 3  errors 1"
        );
        // A second with no reply: `-`, not 0.000 ms.
        let mut quiet = second.clone();
        (quiet.eod_p99, quiet.corrected_p99, quiet.accepted) = (0, 0, 0);
        assert_eq!(
            live_line("", 0, &quiet, true),
            "[   1s] warmup         0 msgs/s  p99 eod/bdat -, corrected -  failed 3  errors 1"
        );
        assert_eq!(
            progress_line(0, &quiet),
            "[   1s] warmup         0 msgs/s  eod/bdat p99           -  failed 3  errors 1"
        );
        second.warmup = false;
        second.bdat_p99 = 12_345_678_901;
        assert_eq!(
            progress_line(41, &second),
            "[  42s]       990 msgs/s  eod/bdat p99 12345.679 ms  failed 3  errors 1"
        );
    }
}
