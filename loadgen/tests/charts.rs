//! smtp-loadgen's charts: the HTML report as headless Chromium sees it (its DOM dumped after
//! the page's scripts ran: structure, not pixels), the SVG files as XML, the PNG files, and
//! logs without counts lines (older smtp-loadgen, other tools) still charted.
//!
//! Chromium is required, not optional: without it the test fails and says to install it
//! (Debian: `apt-get install chromium`; CI's `.ci/run` installs it).

mod common;

use common::{dump_dom, loadgen, run_binary, scratch, Run, Stub, StubScript};
use scraper::{ElementRef, Html, Selector};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn select<'a>(element: ElementRef<'a>, css: &str) -> Vec<ElementRef<'a>> {
    let selector = Selector::parse(css).unwrap_or_else(|e| panic!("{css}: {e:?}"));
    element.select(&selector).collect()
}

/// An open-loop run (with warm-up) and a closed-loop run against the stub, logged.
fn two_logged_runs(stub: &Stub) -> (PathBuf, PathBuf, PathBuf, Run) {
    let open = scratch("open.hlog");
    let closed = scratch("closed.hlog");
    let direct = scratch("direct.html");
    let run = loadgen(
        stub.addr,
        &[
            "-c",
            "4",
            "--rate",
            "400",
            "-d",
            "2s",
            "--warmup",
            "1s",
            "--hdr-log",
            open.to_str().unwrap(),
            "--html",
            direct.to_str().unwrap(),
            "--label",
            "stub open loop",
        ],
    );
    run.assert_clean();
    loadgen(
        stub.addr,
        &[
            "-c",
            "2",
            "-n",
            "1500",
            "--hdr-log",
            closed.to_str().unwrap(),
        ],
    )
    .assert_clean();
    (open, closed, direct, run)
}

#[test]
fn the_html_report_opens_in_headless_chromium_with_every_chart_and_no_error() {
    let stub = Stub::start(StubScript::default());
    let (open, closed, direct, _) = two_logged_runs(&stub);
    let page = scratch("report.html");
    let (code, stdout, stderr) = run_binary(&args(&[
        "report",
        open.to_str().unwrap(),
        closed.to_str().unwrap(),
        "--label",
        "open <400/s>",
        "--label",
        "closed",
        "--html",
        page.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The text tables are still printed, one per log.
    assert!(stdout.contains("== open <400/s>"), "{stdout}");
    assert!(stdout.contains("== closed"), "{stdout}");

    // Self-contained: nothing to fetch.
    let html = std::fs::read_to_string(&page).unwrap();
    for reference in ["http://", "https://", " src=", " href=", "@import", "url("] {
        assert!(
            !html.contains(reference),
            "the page refers to {reference:?}"
        );
    }

    let (dom, log) = dump_dom(&page);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    let doc = Html::parse_document(&dom);
    let root = doc.root_element();
    assert_eq!(
        root.value().attr("data-errors"),
        None,
        "uncaught error: {:?}",
        root.value().attr("data-last-error")
    );
    let body = select(root, "body")[0];
    assert_eq!(
        body.value().attr("data-ready"),
        Some("1"),
        "the script did not finish"
    );

    // Every chart is a figure with one SVG that has drawn lines, a caption and a readout.
    let figures = select(root, "figure.chart");
    let ids: Vec<&str> = figures.iter().map(|f| f.value().id().unwrap()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids: {ids:?}");
    assert_eq!(
        body.value().attr("data-charts"),
        Some(&*ids.len().to_string())
    );
    for expected in [
        "throughput",
        "latency-over-time-eod",
        "latency-over-time-message",
        "latency-over-time-message_corrected",
        "corrected-vs-service",
        "percentiles-eod",
        "percentiles-mail",
        "percentiles-message",
        "percentiles-message_corrected",
    ] {
        assert!(unique.contains(expected), "no {expected} chart in {ids:?}");
    }
    // rcpt and data have their own chart, or are drawn once in mail's (identical
    // histograms: one pipelined group), which then says so in its title.
    let mail_title = select(root, "figure#percentiles-mail figcaption strong")[0]
        .text()
        .collect::<String>();
    for stage in ["rcpt", "data"] {
        assert!(
            unique.contains(&*format!("percentiles-{stage}"))
                || mail_title.contains(&format!("= {stage}")),
            "{stage}: no chart and not in {mail_title:?}"
        );
    }
    for figure in &figures {
        let id = figure.value().id().unwrap();
        assert_eq!(select(*figure, "svg").len(), 1, "{id}");
        assert!(
            !select(*figure, "svg polyline").is_empty(),
            "{id}: nothing drawn"
        );
        assert_eq!(select(*figure, "figcaption").len(), 1, "{id}");
        assert_eq!(select(*figure, "output.readout").len(), 1, "{id}");
        for attr in ["data-px", "data-py", "data-x", "data-y", "data-x-scale"] {
            assert!(figure.value().attr(attr).is_some(), "{id}: no {attr}");
        }
    }
    // Overlays: both runs appear in the legend of a chart they share.
    let eod = figures
        .iter()
        .find(|f| f.value().id() == Some("percentiles-eod"))
        .unwrap();
    let legend: Vec<String> = select(*eod, "svg text")
        .iter()
        .map(|t| t.text().collect::<String>().trim().to_string())
        .collect();
    assert!(legend.iter().any(|t| t == "open <400/s>"), "{legend:?}");
    assert!(legend.iter().any(|t| t == "closed"), "{legend:?}");
    // The percentile axis is labelled in percent.
    assert!(legend.iter().any(|t| t == "99.9%"), "{legend:?}");
    // Only the open-loop run has a corrected-vs-service pair.
    let cvs = figures
        .iter()
        .find(|f| f.value().id() == Some("corrected-vs-service"))
        .unwrap();
    assert_eq!(cvs.value().attr("data-series"), Some("2"));

    // The figures table: a row per run and tag, labels escaped and intact.
    let rows = select(root, "table#figures tbody tr");
    let cells = |row: &ElementRef| -> Vec<String> {
        select(*row, "td")
            .iter()
            .map(|c| c.text().collect())
            .collect()
    };
    let eod_rows: Vec<Vec<String>> = rows.iter().map(cells).filter(|c| c[1] == "eod").collect();
    assert_eq!(eod_rows.len(), 2, "{eod_rows:?}");
    assert_eq!(eod_rows[0][0], "open <400/s>");
    assert_eq!(eod_rows[1][0], "closed");
    assert_eq!(eod_rows[1][2], "1500");
    let runs = select(root, "table#runs tbody tr");
    assert_eq!(runs.len(), 2);

    // A run writes its own report too.
    let (dom, log) = dump_dom(&direct);
    assert!(!log.contains(":CONSOLE"), "{log}");
    let doc = Html::parse_document(&dom);
    let root = doc.root_element();
    assert_eq!(root.value().attr("data-errors"), None);
    assert_eq!(
        select(root, "body")[0].value().attr("data-ready"),
        Some("1")
    );
    assert_eq!(select(root, "figure#corrected-vs-service svg").len(), 1);
    assert_eq!(
        select(root, "table#runs td")[0].text().collect::<String>(),
        "stub open loop"
    );
}

#[test]
fn svg_files_parse_as_xml_and_png_files_are_images() {
    let stub = Stub::start(StubScript::default());
    let (open, closed, _, _) = two_logged_runs(&stub);
    let svg_dir = scratch("svg");
    let png_dir = scratch("png");
    let (code, stdout, stderr) = run_binary(&args(&[
        "report",
        open.to_str().unwrap(),
        closed.to_str().unwrap(),
        "--svg",
        svg_dir.to_str().unwrap(),
        "--png",
        png_dir.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let names = |dir: &Path, ext: &str| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let svgs = names(&svg_dir, "svg");
    assert!(svgs.contains("percentiles-eod"), "{svgs:?}");
    assert!(svgs.contains("throughput"), "{svgs:?}");
    assert_eq!(svgs, names(&png_dir, "png"));
    for name in &svgs {
        let text = std::fs::read_to_string(svg_dir.join(format!("{name}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{name}.svg is not XML: {e}"));
        let svg = doc.root_element();
        assert_eq!(svg.tag_name().name(), "svg", "{name}");
        assert_eq!(
            svg.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        assert_eq!(svg.attribute("width"), Some("960"));
        assert!(
            svg.descendants().any(|n| n.has_tag_name("polyline")),
            "{name}"
        );
        // Legend labels are the log names by default.
        if name == "percentiles-eod" {
            assert!(
                text.contains("\nopen\n") && text.contains("\nclosed\n"),
                "{text}"
            );
        }
        let png = std::fs::read(png_dir.join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png");
    }
}

#[test]
fn logs_without_counts_lines_are_still_charted() {
    // An older log: the same run with its #smtp-loadgen-counts lines removed.
    let stub = Stub::start(StubScript::default());
    let log = scratch("new.hlog");
    loadgen(
        stub.addr,
        &["-c", "2", "-n", "500", "--hdr-log", log.to_str().unwrap()],
    )
    .assert_clean();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("#smtp-loadgen-counts: "));
    let old_text: String = text
        .lines()
        .filter(|l| !l.contains("smtp-loadgen-counts"))
        .map(|l| format!("{l}\n"))
        .collect();
    let old = scratch("old.hlog");
    std::fs::write(&old, old_text).unwrap();
    let svg_dir = scratch("old-svg");
    let (code, stdout, stderr) = run_binary(&args(&[
        "report",
        old.to_str().unwrap(),
        "--svg",
        svg_dir.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The text table is the same either way; the measured line says the old log has no
    // counts (every interval after the warm-up is measured time).
    let (_, new_text, _) = run_binary(&args(&["report", log.to_str().unwrap()]));
    let table = |text: &str| text[text.find("tag (ms)").unwrap()..].to_string();
    assert!(
        table(&stdout).starts_with(&table(&new_text)),
        "{stdout}\n---\n{new_text}"
    );
    assert!(
        stdout.contains("(every interval after the warm-up: the log has no message counts)"),
        "{stdout}"
    );
    for chart in ["throughput", "percentiles-eod", "latency-over-time-eod"] {
        let path = svg_dir.join(format!("{chart}.svg"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        roxmltree::Document::parse(&text).unwrap();
    }
}

#[test]
fn chart_flags_are_checked() {
    let log = scratch("flags.hlog");
    std::fs::write(&log, "#empty\n").unwrap();
    for bad in [
        &["--target", "127.0.0.1:1", "--label", "a", "--label", "b"][..],
        &[
            "report",
            log.to_str().unwrap(),
            "--label",
            "a",
            "--label",
            "b",
        ],
        &["report", "--html", "x.html"],
    ] {
        let (code, stdout, stderr) = run_binary(&args(bad));
        assert_eq!(code, 2, "{bad:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains("label") || stderr.contains("<LOGS>"),
            "{stderr}"
        );
    }
}

#[test]
fn control_characters_in_labels_and_file_names_are_replaced() {
    let stub = Stub::start(StubScript::default());
    let log = scratch("ctl\u{1}name.hlog");
    loadgen(
        stub.addr,
        &["-c", "2", "-n", "200", "--hdr-log", log.to_str().unwrap()],
    )
    .assert_clean();
    let svg_dir = scratch("ctl-svg");
    let html = scratch("ctl.html");
    let (code, stdout, stderr) = run_binary(&args(&[
        "report",
        log.to_str().unwrap(),
        log.to_str().unwrap(),
        "--label",
        "x\u{1}y",
        "--label",
        "z\u{9b}w",
        "--svg",
        svg_dir.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("== x\u{FFFD}y ("), "{stdout}");
    assert!(
        !stdout.contains('\u{1}') && !stdout.contains('\u{9b}'),
        "{stdout:?}"
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains('\u{1}') && !page.contains('\u{9b}'));
    let mut svgs = 0;
    for entry in std::fs::read_dir(&svg_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        svgs += 1;
    }
    assert!(svgs > 0);
}

#[test]
fn the_max_value_divisor_sets_the_unit_and_its_absence_is_noted() {
    let stub = Stub::start(StubScript::default());
    let log = scratch("units.hlog");
    loadgen(
        stub.addr,
        &["-c", "2", "-n", "200", "--hdr-log", log.to_str().unwrap()],
    )
    .assert_clean();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("#[MaxValueDivisor: 1000000.000]"));
    let (code, ours, _) = run_binary(&args(&["report", log.to_str().unwrap()]));
    assert_eq!(code, 0);
    assert!(!ours.contains("note:"), "{ours}");
    // The same values said to be microseconds (divisor 1000): 1000 times larger.
    let pico = scratch("micro.hlog");
    std::fs::write(
        &pico,
        text.replace(
            "#[MaxValueDivisor: 1000000.000]",
            "#[MaxValueDivisor: 1000.000]",
        ),
    )
    .unwrap();
    let (_, scaled, _) = run_binary(&args(&["report", pico.to_str().unwrap()]));
    let max_of = |table: &str| -> f64 {
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with("eod"))
            .unwrap_or_else(|| panic!("{table}"));
        row.split_whitespace().nth(7).unwrap().parse().unwrap()
    };
    let (a, b) = (max_of(&ours), max_of(&scaled));
    assert!(
        a > 0.0 && (b / a - 1000.0).abs() < 20.0,
        "{a} vs {b}\n{ours}\n{scaled}"
    );
    // Without the header: the Interval_Max column (max / 1e6) says nanoseconds, and the
    // report says so.
    let bare = scratch("bare.hlog");
    std::fs::write(&bare, text.replace("#[MaxValueDivisor: 1000000.000]\n", "")).unwrap();
    let (code, out, _) = run_binary(&args(&["report", bare.to_str().unwrap()]));
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "has no #[MaxValueDivisor] header: values read as ns: Interval_Max column = max / \
             1000000 in every interval"
        ),
        "{out}"
    );
    assert_eq!(max_of(&out), a);
}

#[test]
fn empty_and_cut_logs() {
    let empty = scratch("empty.hlog");
    std::fs::write(&empty, "#[StartTime: 1000.000 (seconds since epoch)]\n").unwrap();
    let (code, stdout, stderr) = run_binary(&args(&["report", empty.to_str().unwrap()]));
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains(&format!("no intervals in {}", empty.display())),
        "{stderr}"
    );
    // A run killed while writing its log: read up to the last whole line, with a warning.
    let stub = Stub::start(StubScript::default());
    let log = scratch("whole.hlog");
    loadgen(
        stub.addr,
        &["-c", "2", "-n", "200", "--hdr-log", log.to_str().unwrap()],
    )
    .assert_clean();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.lines().count();
    let cut = scratch("cut.hlog");
    std::fs::write(&cut, &text[..text.len() - 20]).unwrap();
    let (code, stdout, stderr) = run_binary(&args(&["report", cut.to_str().unwrap()]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("line {lines} is cut short")),
        "{stderr}"
    );
    // A bad line names the file and the line.
    let bad = scratch("bad.hlog");
    std::fs::write(&bad, text.replacen("Tag=", "xTag=", 1)).unwrap();
    let (code, _, stderr) = run_binary(&args(&["report", bad.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("{}: line ", bad.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("offset"), "{stderr}");
}

/// Runs the binary with `list` and its standard output closed by the reader at once (as
/// `| head -1` does); returns the exit code and standard error.
fn run_with_closed_stdout(list: &[String]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smtp-loadgen"))
        .args(list)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_pipe_is_no_panic() {
    let stub = Stub::start(StubScript::default());
    let log = scratch("pipe.hlog");
    let html = scratch("pipe.html");
    let (code, stderr) = run_with_closed_stdout(&args(&[
        "--target",
        &stub.addr.to_string(),
        "--quiet",
        "-c",
        "2",
        "-n",
        "200",
        "--hdr-log",
        log.to_str().unwrap(),
        "--slo",
        "eod:p99<10s",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The run's own status is kept: a breached SLO still exits 1.
    let (code, stderr) = run_with_closed_stdout(&args(&[
        "--target",
        &stub.addr.to_string(),
        "--quiet",
        "-n",
        "20",
        "--slo",
        "eod:p99<1ns",
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let mut list = vec!["report".to_string()];
    list.extend((0..20).map(|_| log.to_str().unwrap().to_string()));
    list.extend(args(&["--html", html.to_str().unwrap()]));
    let (code, stderr) = run_with_closed_stdout(&list);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        std::fs::metadata(&html).unwrap().len() > 0,
        "the page is still written"
    );
}

#[test]
fn labels_one_per_log_repeated_ones_numbered_and_dead_targets_show_a_dash() {
    let stub = Stub::start(StubScript::default());
    let log = scratch("labels.hlog");
    loadgen(
        stub.addr,
        &["-c", "2", "-n", "100", "--hdr-log", log.to_str().unwrap()],
    )
    .assert_clean();
    let l = log.to_str().unwrap();
    // Fewer labels than logs: an error, before anything is read.
    let (code, _, stderr) = run_binary(&args(&["report", l, l, "--label", "a"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("give one per log"), "{stderr}");
    // The same name twice: numbered in legends and headers.
    let svg_dir = scratch("labels-svg");
    let (code, stdout, stderr) =
        run_binary(&args(&["report", l, l, "--svg", svg_dir.to_str().unwrap()]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("== labels ("), "{stdout}");
    assert!(stdout.contains("== labels (2) ("), "{stdout}");
    let svg = std::fs::read_to_string(svg_dir.join("percentiles-eod.svg")).unwrap();
    assert!(svg.contains("labels (2)"));
    // A target that never answered: its latency is `-`, not 0.000.
    let run = loadgen(
        stub.addr,
        &["-c", "2", "-n", "20", "--target", "127.0.0.1:1"],
    );
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("127.0.0.1:1 "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(
        row.trim_end().ends_with('-') && !row.contains("0.000"),
        "{row}"
    );
}
