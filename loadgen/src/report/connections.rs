//! The connections of a run as reported: how many were asked for and alive, and why some
//! never got ready. Said first in the summary, in `--json`, in the interval log's comments
//! (and from there in the HTML report), and as the reason for exit status 3.
//!
//! What it does: turn [`SlotFigures`](crate::drive::slots::SlotFigures) and the never-ready counts
//! of [`Results`] into text lines, JSON fields and the closing message, which names the
//! server limits that most likely refused the connections.
//!
//! What it does not do: count (`slots`, the engine), or choose the exit status (`main`).

use super::results::Results;
use crate::drive::slots::{FEWER_TOLERANCE, SETUP_GRACE};
use std::fmt::Write as _;

/// What starts the warning line (the HTML report finds it among the log's comments).
pub const WARNING_PREFIX: &str = "WARNING: fewer connections";

/// The never-ready reasons, most frequent first: `greeting 421: 200, connect failed: 3`.
fn reasons(results: &Results) -> String {
    let mut list: Vec<(&String, &u64)> = results.total.never_ready.iter().collect();
    list.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    list.iter()
        .map(|(reason, n)| format!("{reason}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connections that never got ready, over the measured time.
fn never_ready(results: &Results) -> u64 {
    results.total.never_ready.values().sum()
}

/// The warning line when fewer connections than asked for were alive for more than the
/// tolerated share of the measured time (`None` otherwise, or when nothing was tracked).
pub fn warning(results: &Results) -> Option<String> {
    let c = &results.connections;
    let measured = results.measured;
    if !c.fewer(measured) {
        return None;
    }
    Some(format!(
        "{WARNING_PREFIX} than the {} asked for were alive during {:.1}% of the measured time \
         ({} set up at most at once, {:.1} set up on average): these figures are not those of {} connections",
        c.requested,
        100.0 * c.fewer_fraction(measured),
        c.most_ready,
        c.ready_mean(measured),
        c.requested
    ))
}

/// The lines the summary shows first, right under the header: the warning, and the
/// connections that never got ready (empty when every connection asked for was alive and
/// none failed to set up).
pub fn lines(results: &Results) -> String {
    let mut out = String::new();
    if let Some(warning) = warning(results) {
        let _ = writeln!(out, "{warning}");
    }
    let n = never_ready(results);
    if n > 0 {
        let _ = writeln!(
            out,
            "connections that never got ready: {n} ({})",
            reasons(results)
        );
    }
    out
}

/// The connection fields of `--json`'s `totals`.
pub fn json_fields(results: &Results) -> serde_json::Map<String, serde_json::Value> {
    let c = &results.connections;
    let measured = results.measured;
    let mut map = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        map.insert(key.to_string(), value);
    };
    put("connections_requested", c.requested.into());
    put("connections_established", c.most_ready.into());
    put("connections_alive_min", c.least_alive.into());
    put("connections_alive_mean", c.alive_mean(measured).into());
    put("connections_ready_mean", c.ready_mean(measured).into());
    put(
        "connections_fewer_seconds",
        (c.fewer_nanos as f64 / 1e9).into(),
    );
    put(
        "connections_unopened_seconds",
        (c.unopened_nanos as f64 / 1e9).into(),
    );
    put(
        "connections_fewer_fraction",
        c.fewer_fraction(measured).into(),
    );
    put("connections_fewer_tolerance", FEWER_TOLERANCE.into());
    put("connections_fewer", c.fewer(measured).into());
    put("connections_fewer_allowed", c.allowed.into());
    put(
        "connections_never_ready",
        serde_json::to_value(&results.total.never_ready).expect("a map of counts"),
    );
    map
}

/// The message of a run that fails for its connections (exit status 3): what happened,
/// the limit that most likely caused it, and what to do.
pub fn failure_message(results: &Results) -> String {
    let c = &results.connections;
    let never = &results.total.never_ready;
    let count = |pred: &dyn Fn(&str) -> bool| -> u64 {
        never
            .iter()
            .filter(|(reason, _)| pred(reason))
            .map(|(_, n)| n)
            .sum()
    };
    let refused = count(&|r| r.starts_with("greeting 4") || r.starts_with("greeting 5"));
    // Set-ups still under way when the run ended (see the engine) waited as long as the
    // run let them: slow, as a timeout is.
    let connect = count(&|r| r.starts_with("connect ") || r == "awaiting connect at the run's end");
    let slow = count(&|r| r.starts_with("timeout awaiting") || r.ends_with("at the run's end"));
    // Slots not opened yet (--stagger) for most of the short time.
    let unopened = c.unopened_nanos > 0 && c.unopened_nanos * 2 >= c.fewer_nanos;
    let mut out = format!(
        "fewer connections than asked for: at most {} of {} set up at once, fewer than {} \
         alive during {:.1}% of the measured time",
        c.most_ready,
        c.requested,
        c.requested,
        100.0 * c.fewer_fraction(results.measured)
    );
    if !never.is_empty() {
        let _ = write!(
            out,
            "; {} connection(s) never got ready ({})",
            never_ready(results),
            reasons(results)
        );
    }
    out.push('\n');
    // The likely cause, and what to do about that cause (a server that is down has no
    // limit to raise).
    let (likely, advice) = if unopened && never.is_empty() {
        (
            "--stagger spread the first connects into the measured time (some connections \
             were not opened yet, or never: a --stagger longer than the run)"
                .to_string(),
            "Give a --warmup at least as long as --stagger, or a shorter --stagger",
        )
    } else if refused > 0 {
        (
            "the server refused connections past a limit (one load generator is one client \
             address): fastsmtpd's --max-connections-per-ip (default 50 per client address) \
             or --max-connections, Postfix's anvil smtpd_client_connection_count_limit \
             (default 50), Exim's smtp_accept_max_per_host or smtp_accept_max"
                .to_string(),
            "Raise the server's limit, connect from several --source addresses, or lower \
             --connections",
        )
    } else if connect > 0 {
        (
            "connects failed or never completed: the server is down or not listening at the \
             target, its listen backlog is full, or this host is out of ephemeral ports"
                .to_string(),
            "Check that the server listens at --target; for ephemeral ports, connect from \
             several --source addresses",
        )
    } else if slow > 0 || never.is_empty() {
        (
            format!(
                "sessions took longer than {} s to set up, or failed during the run (see the \
                 errors): a server that queues connections past a process limit (Postfix's \
                 default_process_limit, 100) or is overloaded",
                SETUP_GRACE.as_secs()
            ),
            "Raise the server's process limit, or lower --connections",
        )
    } else {
        (
            "the sessions failed to set up (see the reasons above and the errors)".to_string(),
            "Fix what the reasons above name",
        )
    };
    let _ = write!(
        out,
        "likely cause: {likely}.\n{advice}. This run exits with status 3; with \
         --allow-fewer-connections such a run is reported the same but does not fail."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::record::Recorder;
    use crate::drive::slots::SlotFigures;
    use std::time::Duration;

    fn refused_run() -> Results {
        let mut results = Results::new(1);
        let mut r = Recorder::new();
        for _ in 0..200 {
            r.not_ready("greeting 421".into());
        }
        r.not_ready("connect failed".into());
        results.add(0, 0, false, &r, true);
        results.measured = Duration::from_secs(2);
        results.connections = SlotFigures {
            requested: 60,
            most_ready: 50,
            least_alive: 50,
            alive_nanos: 50 * 2_000_000_000,
            ready_nanos: 50 * 2_000_000_000,
            fewer_nanos: 2_000_000_000,
            allowed: false,
            unopened_nanos: 0,
        };
        results
    }

    #[test]
    fn a_shortfall_is_said_first_with_its_reasons() {
        let results = refused_run();
        assert_eq!(
            lines(&results),
            "WARNING: fewer connections than the 60 asked for were alive during 100.0% of the \
             measured time (50 set up at most at once, 50.0 set up on average): these figures are not those \
             of 60 connections\n\
             connections that never got ready: 201 (greeting 421: 200, connect failed: 1)\n"
        );
        let json = json_fields(&results);
        assert_eq!(json["connections_requested"], 60);
        assert_eq!(json["connections_established"], 50);
        assert_eq!(json["connections_alive_mean"], 50.0);
        assert_eq!(json["connections_fewer_fraction"], 1.0);
        assert_eq!(json["connections_fewer"], true);
        assert_eq!(json["connections_never_ready"]["greeting 421"], 200);
        let message = failure_message(&results);
        assert!(
            message.contains("--max-connections-per-ip (default 50"),
            "{message}"
        );
        assert!(message.contains("smtpd_client_connection_count_limit"));
        assert!(message.contains("smtp_accept_max_per_host"));
        assert!(message.contains("--allow-fewer-connections"));
        assert!(message.contains("Raise the server's limit"), "{message}");
        assert!(!message.contains("?."), "{message}");
    }

    #[test]
    fn a_server_that_is_down_is_not_told_to_raise_a_limit() {
        let mut results = Results::new(1);
        results.measured = Duration::from_secs(2);
        results.connections = refused_run().connections;
        let mut r = Recorder::new();
        for _ in 0..20 {
            r.not_ready("connect failed".into());
        }
        results.add(0, 0, false, &r, true);
        let message = failure_message(&results);
        assert!(message.contains("not listening at the target"), "{message}");
        assert!(
            message.contains("Check that the server listens"),
            "{message}"
        );
        assert!(!message.contains("Raise"), "{message}");
        assert!(!message.contains("?."), "{message}");
        // The exit status is the run's, not the flag's.
        assert!(
            message.ends_with(
                "This run exits with status 3; with --allow-fewer-connections such a run is \
                 reported the same but does not fail."
            ),
            "{message}"
        );
    }

    #[test]
    fn set_ups_cut_short_by_the_end_of_the_run_read_as_slow_set_ups() {
        let mut results = Results::new(1);
        results.measured = Duration::from_secs(2);
        results.connections = refused_run().connections;
        let mut r = Recorder::new();
        for _ in 0..40 {
            r.not_ready("awaiting greeting at the run's end".into());
        }
        results.add(0, 0, false, &r, true);
        let message = failure_message(&results);
        assert!(
            message.contains("took longer than 1 s to set up"),
            "{message}"
        );
        let mut r = Recorder::new();
        r.not_ready("awaiting connect at the run's end".into());
        results.add(0, 1, false, &r, true);
        let message = failure_message(&results);
        assert!(message.contains("listen backlog"), "{message}");
    }

    #[test]
    fn a_full_run_says_nothing_extra() {
        let mut results = Results::new(1);
        results.measured = Duration::from_secs(2);
        results.connections = SlotFigures {
            requested: 4,
            most_ready: 4,
            least_alive: 4,
            alive_nanos: 8_000_000_000,
            ready_nanos: 8_000_000_000,
            fewer_nanos: 1_000_000,
            allowed: false,
            unopened_nanos: 0,
        };
        assert_eq!(lines(&results), "");
        assert_eq!(warning(&results), None);
        assert_eq!(json_fields(&results)["connections_fewer"], false);
    }
}
