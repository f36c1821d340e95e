//! Which charts a report of one or more runs has, built from their [`RunFigures`]; several
//! runs are overlaid in each chart, one colour per run, named by their labels.
//!
//! The charts, by id (the HTML element id and the `--svg`/`--png` file name):
//! * `percentiles-TAG`, one per tag with data: the whole run's latency by percentile on
//!   HdrHistogram's `1/(1-p)` axis, which gives each further nine as much room as the last
//!   (the tail is where servers differ). Tags whose histograms are identical in every run
//!   that has them ([`identical`]: mail, rcpt and data of one pipelined group) share one
//!   chart, named by the first (`percentiles-mail`, titled `mail = rcpt = data (one pipelined
//!   group)`), drawn once
//!   with a note instead of as lines on top of each other.
//! * `corrected-vs-service` (open-loop runs): latency from the intended send time
//!   (coordinated-omission corrected) against service time from the first command written.
//! * `latency-over-time-TAG` for `eod`, `bdat`, `message`, `message_corrected`, `delivered`: p50, p99 and
//!   max of each interval.
//! * `throughput`: messages accepted per second per interval (and started, the offered load
//!   in open loop, when the log has counts).
//!
//! Charts over time draw every interval of the log on one x axis (from the start to the
//! log's end): the warm-up shaded grey, the drain after the last send (replies to earlier
//! sends only; not measured time) shaded blue.
//!
//! What it does not do: compute figures (`figures`), draw (`chart`), or lay out the page
//! (`html`).

use super::chart::{Chart, Mark, Scale, Series, Shade};
use super::figures::{identical, spectrum, tag_rank, tag_title, RunFigures, TagFigures};

/// The tags that get a latency-over-time chart, in this order.
const OVER_TIME_TAGS: [&str; 5] = ["eod", "bdat", "message", "message_corrected", "delivered"];

/// A tag as part of an id or a file name: letters, digits, `_` and `-` kept, others `-`.
pub fn id_part(tag: &str) -> String {
    if tag.is_empty() {
        return "untagged".into();
    }
    tag.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Every tag of `runs` with data, in display order.
fn tags(runs: &[RunFigures]) -> Vec<String> {
    let mut tags: Vec<String> = runs
        .iter()
        .flat_map(|r| &r.tags)
        .filter(|t| !t.total.is_empty() || !t.over_time.is_empty())
        .map(|t| t.tag.clone())
        .collect();
    tags.sort_by_key(|t| (tag_rank(t), t.clone()));
    tags.dedup();
    tags
}

/// The charts of a report on `runs`, in the order the page shows them.
pub fn run_charts(runs: &[RunFigures]) -> Vec<Chart> {
    let mut charts = Vec::new();
    if runs.iter().any(|r| !r.throughput.is_empty()) {
        charts.push(throughput_chart(runs));
    }
    let all_tags = tags(runs);
    for tag in OVER_TIME_TAGS {
        if all_tags.iter().any(|t| t == tag) {
            charts.push(over_time_chart(runs, tag));
        }
    }
    if runs.iter().any(RunFigures::open_loop) {
        charts.push(corrected_vs_service_chart(runs));
    }
    let measured: Vec<String> = all_tags
        .into_iter()
        .filter(|tag| {
            runs.iter()
                .filter_map(|r| r.tag(tag))
                .any(|t| !t.total.is_empty())
        })
        .collect();
    for group in identical_groups(runs, &measured) {
        let mut chart = percentile_chart(runs, &group[0]);
        if group.len() > 1 {
            let group: Vec<&str> = group.iter().map(|t| tag_title(t)).collect();
            let names = group.join(" = ");
            let list = match group.len() {
                2 => format!("{} and {}", group[0], group[1]),
                n => format!("{} and {}", group[..n - 1].join(", "), group[n - 1]),
            };
            chart.title = format!("{names} (one pipelined group): latency by percentile");
            chart.caption = format!(
                "{names} (one pipelined group): {list} have identical histograms in every \
                 run (the same count in every bucket, so the same value at every percentile: \
                 their replies arrive in one read), so they are drawn once. {}",
                chart.caption
            );
        }
        charts.push(chart);
    }
    charts
}

/// `tags` (with data, in display order) in groups of tags whose measured histograms are
/// [`identical`] in every run, and present in the same runs; each group in display order,
/// groups ordered by their first tag.
pub fn identical_groups(runs: &[RunFigures], tags: &[String]) -> Vec<Vec<String>> {
    let same = |a: &str, b: &str| {
        runs.iter().all(|run| match (run.tag(a), run.tag(b)) {
            (Some(x), Some(y)) => identical(&x.total, &y.total),
            (None, None) => true,
            _ => false,
        })
    };
    let mut groups: Vec<Vec<String>> = Vec::new();
    for tag in tags {
        match groups.iter_mut().find(|g| same(&g[0], tag)) {
            Some(group) => group.push(tag.clone()),
            None => groups.push(vec![tag.clone()]),
        }
    }
    groups
}

/// `percentiles-TAG`: one spectrum per run.
pub fn percentile_chart(runs: &[RunFigures], tag: &str) -> Chart {
    let series = runs
        .iter()
        .enumerate()
        .filter_map(|(i, run)| {
            let figures = run.tag(tag)?;
            (!figures.total.is_empty()).then(|| Series {
                name: run.label.clone(),
                color: i,
                mark: Mark::Line(2),
                points: spectrum(&figures.total),
            })
        })
        .collect();
    Chart {
        id: format!("percentiles-{}", id_part(tag)),
        title: format!("{} latency by percentile", tag_title(tag)),
        caption: format!(
            "{} latency of the whole run (warm-up left out; the drain's replies counted) by \
             percentile. The percentile axis \
             is 1/(1-p) on a log scale, as HdrHistogram's plotter draws it: 90%, 99%, 99.9% are \
             equally far apart, so the tail gets the room. A curve ends at its largest value.",
            tag_title(tag)
        ),
        x_label: "percentile".into(),
        y_label: "latency (ms)".into(),
        x_scale: Scale::Percentile,
        y_scale: Scale::Linear,
        series,
        shaded: Vec::new(),
    }
}

/// `corrected-vs-service`: per open-loop run, the corrected and the service-time spectrum.
fn corrected_vs_service_chart(runs: &[RunFigures]) -> Chart {
    let mut series = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let nonempty = |tag| run.tag(tag).filter(|t: &&TagFigures| !t.total.is_empty());
        let (Some(corrected), Some(service)) = (nonempty("message_corrected"), nonempty("message"))
        else {
            continue;
        };
        series.push(Series {
            name: format!("{}: corrected (from intended send)", run.label),
            color: i,
            mark: Mark::Line(2),
            points: spectrum(&corrected.total),
        });
        series.push(Series {
            name: format!("{}: service time", run.label),
            color: i,
            mark: Mark::Dashed,
            points: spectrum(&service.total),
        });
    }
    Chart {
        id: "corrected-vs-service".into(),
        title: "Message latency: corrected vs service time".into(),
        caption: "Open loop: latency counted from each message's intended send time \
                  (coordinated-omission corrected, solid) against service time from its first \
                  command written (dashed). Where they part, messages waited for a connection: \
                  the server fell behind the offered rate."
            .into(),
        x_label: "percentile".into(),
        y_label: "latency (ms)".into(),
        x_scale: Scale::Percentile,
        y_scale: Scale::Linear,
        series,
        shaded: Vec::new(),
    }
}

/// The shaded spans of charts over time: every run's warm-up (grey) and drain (blue), each
/// named after the runs that have one when others have none.
fn shades(runs: &[RunFigures]) -> Vec<Shade> {
    let kind = |name: &str, tone: usize, spans_of: fn(&RunFigures) -> &Vec<(f64, f64)>| {
        let spans: Vec<(f64, f64)> = runs.iter().flat_map(|r| spans_of(r).clone()).collect();
        let with: Vec<&str> = runs
            .iter()
            .filter(|r| !spans_of(r).is_empty())
            .map(|r| r.label.as_str())
            .collect();
        let name = if with.len() == runs.len() {
            name.to_string()
        } else {
            format!("{name} ({})", with.join(", "))
        };
        (!spans.is_empty()).then_some(Shade { name, spans, tone })
    };
    [
        kind("warm-up", 0, |r| &r.warmup),
        kind("drain (after the last send)", 1, |r| &r.drain),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `latency-over-time-TAG`: p50, p99 and max per interval, per run.
fn over_time_chart(runs: &[RunFigures], tag: &str) -> Chart {
    let mut series = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let Some(figures) = run.tag(tag) else {
            continue;
        };
        let points = |f: fn(&super::figures::IntervalLatency) -> u64| -> Vec<(f64, f64)> {
            figures
                .over_time
                .iter()
                .map(|p| (p.t, f(p) as f64 / 1e6))
                .collect()
        };
        series.push(Series {
            name: format!("{} p99", run.label),
            color: i,
            mark: Mark::Line(2),
            points: points(|p| p.p99),
        });
        series.push(Series {
            name: format!("{} p50", run.label),
            color: i,
            mark: Mark::Line(1),
            points: points(|p| p.p50),
        });
        series.push(Series {
            name: format!("{} max", run.label),
            color: i,
            mark: Mark::Dashed,
            points: points(|p| p.max),
        });
    }
    Chart {
        id: format!("latency-over-time-{}", id_part(tag)),
        title: format!("{} latency over time", tag_title(tag)),
        caption: format!(
            "{} latency per interval: p99 (thick), p50 (thin) and max (dashed), at each \
             interval's end; the warm-up is shaded grey, the drain after the last send (replies \
             to earlier sends; not measured time, its replies counted) blue.",
            tag_title(tag)
        ),
        x_label: "seconds since start".into(),
        y_label: "latency (ms)".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        series,
        shaded: shades(runs),
    }
}

/// `throughput`: messages accepted (and started) per second, per run.
fn throughput_chart(runs: &[RunFigures]) -> Chart {
    let mut series = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        if run.throughput.is_empty() {
            continue;
        }
        series.push(Series {
            name: format!("{} accepted", run.label),
            color: i,
            mark: Mark::Line(2),
            points: run.throughput.iter().map(|p| (p.t, p.accepted)).collect(),
        });
        let started: Vec<(f64, f64)> = run
            .throughput
            .iter()
            .filter_map(|p| Some((p.t, p.started?)))
            .collect();
        if !started.is_empty() {
            series.push(Series {
                name: format!("{} started", run.label),
                color: i,
                mark: Mark::Dashed,
                points: started,
            });
        }
    }
    Chart {
        id: "throughput".into(),
        title: "Throughput over time".into(),
        caption: "Messages accepted per second in each interval (solid) and messages started \
                  (dashed; in open loop, the offered load). Logs without smtp-loadgen's counts \
                  lines show messages finished per second, from the histograms. The warm-up \
                  is shaded grey, the drain after the last send (nothing started: replies to \
                  earlier sends; not measured time) blue."
            .into(),
        x_label: "seconds since start".into(),
        y_label: "messages per second".into(),
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
        series,
        shaded: shades(runs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::codec::encode_histogram;
    use crate::report::interval_log::{LogNotes, LoggedInterval};
    use crate::report::warmup::{Source, Warmup};

    /// A run with one interval per tag: each tag's values are `values(i)` (i: its place).
    fn run_with(label: &str, tags: &[&str], values: impl Fn(usize) -> Vec<u64>) -> RunFigures {
        let intervals: Vec<LoggedInterval> = tags
            .iter()
            .enumerate()
            .map(|(i, tag)| {
                let mut h = crate::drive::record::new_histogram();
                for v in values(i) {
                    h.record(v).unwrap();
                }
                LoggedInterval {
                    start: 0.0,
                    duration: 1.0,
                    tag: tag.to_string(),
                    encoded: encode_histogram(&h),
                }
            })
            .collect();
        let none = Warmup::new(0.0, 0.0, Source::None);
        RunFigures::from_log(label, &intervals, &LogNotes::default(), none).unwrap()
    }

    /// A run whose tags each have a different value.
    fn run(label: &str, tags: &[&str]) -> RunFigures {
        run_with(label, tags, |i| vec![1_000_000 * (i as u64 + 1)])
    }

    #[test]
    fn identical_stages_share_one_chart_with_a_note() {
        // A pipelined run: mail, rcpt and data identical; eod differs.
        let tags = ["mail", "rcpt", "data", "eod"];
        let same = |i: usize| {
            if i < 3 {
                vec![500_000, 700_000]
            } else {
                vec![9_000_000]
            }
        };
        let piped = run_with("piped", &tags, same);
        let charts = run_charts(std::slice::from_ref(&piped));
        let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
        assert!(ids.contains(&"percentiles-mail"), "{ids:?}");
        assert!(!ids.contains(&"percentiles-rcpt") && !ids.contains(&"percentiles-data"));
        let mail = charts.iter().find(|c| c.id == "percentiles-mail").unwrap();
        assert_eq!(
            mail.title,
            "mail = rcpt = data (one pipelined group): latency by percentile"
        );
        assert!(mail.caption.starts_with("mail = rcpt = data (one pipelined group): mail, rcpt and data have identical histograms"), "{}", mail.caption);
        assert_eq!(mail.series.len(), 1, "drawn once");
        // Identical in one run but not in another: each keeps its own chart.
        let stepwise = run("stepwise", &tags);
        let both = run_charts(&[piped.clone(), stepwise]);
        let ids: Vec<&str> = both.iter().map(|c| c.id.as_str()).collect();
        for id in ["percentiles-mail", "percentiles-rcpt", "percentiles-data"] {
            assert!(ids.contains(&id), "{id} in {ids:?}");
        }
        // Two runs in which they are identical: still one chart, both runs in it.
        let twice = run_charts(&[piped.clone(), piped]);
        let mail = twice.iter().find(|c| c.id == "percentiles-mail").unwrap();
        assert_eq!(mail.series.len(), 2);
        assert!(!twice.iter().any(|c| c.id == "percentiles-rcpt"));
    }

    #[test]
    fn charts_over_time_share_one_axis_with_the_drain_shaded() {
        // N1: a run of 3 s after a 1 s warm-up, then a drain second (nothing started, a late
        // reply) and a second with QUIT only. Before, the throughput chart stopped at 4 s
        // while the eod chart drew the drain's reply (at 5 s).
        use crate::report::interval_log::{IntervalCounts, LoggedCounts};
        let eod = |start: f64| {
            let mut h = crate::drive::record::new_histogram();
            h.record(2_000_000).unwrap();
            LoggedInterval {
                start,
                duration: 1.0,
                tag: "eod".into(),
                encoded: encode_histogram(&h),
            }
        };
        let mut intervals: Vec<LoggedInterval> = (0..5).map(|s| eod(s as f64)).collect();
        let mut quit = eod(5.0);
        quit.tag = "quit".into();
        intervals.push(quit);
        let counts = (0..6)
            .map(|s| LoggedCounts {
                start: s as f64,
                duration: 1.0,
                counts: IntervalCounts {
                    warmup: s == 0,
                    started: if s < 4 { 1 } else { 0 },
                    accepted: u64::from(s < 5),
                    ..IntervalCounts::default()
                },
            })
            .collect();
        let notes = LogNotes {
            counts,
            ..LogNotes::default()
        };
        let rule = Warmup::new(1.0, 0.0, Source::Run);
        let run = RunFigures::from_log("r", &intervals, &notes, rule).unwrap();
        assert_eq!(run.measured_seconds, 3.0);
        assert_eq!(run.drain, [(4.0, 6.0)]);
        // The drain's reply is counted: 4 eod values after the warm-up.
        assert_eq!(run.tag("eod").unwrap().total.len(), 4);
        let charts = run_charts(std::slice::from_ref(&run));
        let over_time: Vec<&Chart> = charts
            .iter()
            .filter(|c| c.id == "throughput" || c.id.starts_with("latency-over-time-"))
            .collect();
        assert_eq!(over_time.len(), 2);
        for chart in over_time {
            let shades: Vec<String> = chart
                .shaded
                .iter()
                .map(|s| format!("{} {:?} tone {}", s.name, s.spans, s.tone))
                .collect();
            assert_eq!(
                shades,
                [
                    "warm-up [(0.0, 1.0)] tone 0",
                    "drain (after the last send) [(4.0, 6.0)] tone 1"
                ],
                "{}",
                chart.id
            );
            assert!(chart.caption.contains("drain"), "{}", chart.caption);
        }
        // The throughput chart draws the drain's seconds (shaded) instead of stopping.
        let throughput = charts.iter().find(|c| c.id == "throughput").unwrap();
        let xs: Vec<f64> = throughput.series[0].points.iter().map(|p| p.0).collect();
        assert_eq!(xs, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn charts_follow_the_tags_the_runs_have() {
        let closed = run("closed", &["mail", "eod", "message"]);
        let ids = |runs: &[RunFigures]| -> Vec<String> {
            run_charts(runs).into_iter().map(|c| c.id).collect()
        };
        assert_eq!(
            ids(std::slice::from_ref(&closed)),
            [
                "throughput",
                "latency-over-time-eod",
                "latency-over-time-message",
                "percentiles-mail",
                "percentiles-eod",
                "percentiles-message"
            ]
        );
        let open = run("open", &["bdat", "message", "message_corrected", "odd tag"]);
        let charts = run_charts(&[closed, open]);
        let ids: Vec<&str> = charts.iter().map(|c| c.id.as_str()).collect();
        assert!(ids.contains(&"corrected-vs-service"));
        assert!(ids.contains(&"percentiles-odd-tag"));
        assert!(ids.contains(&"latency-over-time-bdat"));
        // Overlays: both runs in the message spectrum, each in its colour.
        let message = charts
            .iter()
            .find(|c| c.id == "percentiles-message")
            .unwrap();
        let names: Vec<(&str, usize)> = message
            .series
            .iter()
            .map(|s| (s.name.as_str(), s.color))
            .collect();
        assert_eq!(names, [("closed", 0), ("open", 1)]);
        let cvs = charts
            .iter()
            .find(|c| c.id == "corrected-vs-service")
            .unwrap();
        assert_eq!(cvs.series.len(), 2);
        assert!(cvs.series.iter().all(|s| s.color == 1));
    }
}
