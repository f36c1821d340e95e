//! Reports a user can publish: every output of one run (the summary, `--json`, the interval
//! log, `report` as text and as HTML, the charts) applies one warm-up rule and says which,
//! lists stages in protocol order, carries the run's provenance, shows no Rust debug text,
//! and draws legends where no data is.
//!
//! The HTML is checked as headless Chromium sees it (its DOM after the page's scripts ran);
//! SVG charts are parsed with roxmltree.

mod common;

use common::{dump_dom, loadgen, run_binary, scratch, Run, Stub, StubScript};
use scraper::{ElementRef, Html, Selector};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn select<'a>(element: ElementRef<'a>, css: &str) -> Vec<ElementRef<'a>> {
    let selector = Selector::parse(css).unwrap_or_else(|e| panic!("{css}: {e:?}"));
    element.select(&selector).collect()
}

/// Protocol order of the stages and the per-message rows (as `latency_order` lists them).
const ORDER: [&str; 15] = [
    "connect",
    "greeting",
    "tls",
    "ehlo",
    "auth",
    "mail",
    "rcpt",
    "data",
    "eod",
    "bdat",
    "rset",
    "quit",
    "message",
    "message_corrected",
    "send_lateness",
];

/// The stub, offering AUTH PLAIN (the user `user`, a password no output may show).
fn auth_stub() -> Stub {
    Stub::start(StubScript {
        auth: Some("PLAIN LOGIN"),
        password: "never-shown",
        ..StubScript::default()
    })
}

/// An open-loop run with a 1 s warm-up, logged, with JSON: the one run every output here
/// is compared on.
fn logged_run(stub: &Stub) -> (PathBuf, Run) {
    let log = scratch("run.hlog");
    let run = loadgen(
        stub.addr,
        &[
            "-c",
            "2",
            "--rate",
            "200",
            "-d",
            "2s",
            "--warmup",
            "1s",
            "--msgs-per-conn",
            "50",
            "--hdr-log",
            log.to_str().unwrap(),
            "--auth",
            "user:never-shown",
        ],
    );
    run.assert_clean();
    (log, run)
}

/// A closed-loop run of `messages` messages on the AUTH stub, logged to `log`.
fn closed_run(stub: &Stub, log: &Path, messages: u64) {
    let n = messages.to_string();
    loadgen(
        stub.addr,
        &[
            "-c",
            "2",
            "-n",
            &n,
            "--auth",
            "user:never-shown",
            "--hdr-log",
            log.to_str().unwrap(),
        ],
    )
    .assert_clean();
}

/// A tag as the JSON keys it: texts name `message corrected` and `send lateness` in words.
fn json_key(shown: &str) -> String {
    shown.replace(' ', "_")
}

/// The `report` table's rows, in order: tag (as the JSON keys it) -> [count, p50, p90, p99,
/// p99.9, p99.99, max].
fn text_rows(text: &str) -> (Vec<String>, BTreeMap<String, Vec<f64>>) {
    let mut order = Vec::new();
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("tag (ms)") {
            in_table = true;
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let numbers: Option<Vec<f64>> = (words.len() >= 8)
            .then(|| {
                words[words.len() - 7..]
                    .iter()
                    .map(|w| w.parse().ok())
                    .collect()
            })
            .flatten();
        let (true, Some(numbers)) = (in_table, numbers) else {
            in_table = false;
            continue;
        };
        let tag = json_key(&words[..words.len() - 7].join(" "));
        order.push(tag.clone());
        rows.insert(tag, numbers);
    }
    (order, rows)
}

#[test]
fn report_text_html_and_the_runs_json_agree_on_one_warmup_rule() {
    let stub = auth_stub();
    let (log, run) = logged_run(&stub);
    let json = run.json();
    let statement = "warm-up 1 s excluded: intervals from 1.0 s";
    assert_eq!(json["warmup"]["statement"], statement);
    assert!(run.stdout.contains(statement), "{}", run.stdout);
    let hlog = std::fs::read_to_string(&log).unwrap();
    assert!(hlog.contains(&format!("\n#{statement}\n")), "{hlog}");

    // The text report: the warm-up the log records, the same counts and percentiles as
    // the run's JSON, stages in protocol order.
    let (code, text, stderr) = run_binary(&args(&["report", log.to_str().unwrap()]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains(&format!("{statement} (as the log records it)")),
        "{text}"
    );
    let (order, rows) = text_rows(&text);
    assert!(
        rows.contains_key("eod") && rows.contains_key("message_corrected"),
        "{text}"
    );
    // N10: the stage is named as the run's summary names it, in words.
    assert!(
        text.contains("\nmessage corrected ") && !text.contains("message_corrected"),
        "{text}"
    );
    assert!(
        run.stdout.contains("\nmessage corrected "),
        "{}",
        run.stdout
    );
    let ranked: Vec<usize> = order
        .iter()
        .map(|t| ORDER.iter().position(|o| o == t).unwrap())
        .collect();
    assert!(ranked.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    for (tag, numbers) in &rows {
        let figures = &json["latency"][tag];
        assert_eq!(
            numbers[0],
            figures["count"].as_f64().unwrap(),
            "{tag} count"
        );
        for (i, key) in [
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p99.9_ms",
            "p99.99_ms",
            "max_ms",
        ]
        .iter()
        .enumerate()
        {
            let expected = format!("{:.3}", figures[key].as_f64().unwrap());
            assert_eq!(format!("{:.3}", numbers[i + 1]), expected, "{tag} {key}");
        }
    }
    // The JSON lists its latency keys in the same order.
    let listed: Vec<&str> = json["latency_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let text_order: Vec<&str> = order.iter().map(String::as_str).collect();
    assert_eq!(
        listed
            .iter()
            .filter(|t| rows.contains_key(**t))
            .copied()
            .collect::<Vec<_>>(),
        text_order
    );

    // The HTML report of the same log: the same rows, numbers and rule (as Chromium sees
    // the page).
    let page = scratch("report.html");
    let (code, _, stderr) = run_binary(&args(&[
        "report",
        log.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let (dom, _) = dump_dom(&page);
    let doc = Html::parse_document(&dom);
    let root = doc.root_element();
    let mut html_order = Vec::new();
    for row in select(root, "table#figures tbody tr") {
        let cells: Vec<String> = select(row, "td")
            .iter()
            .map(|c| c.text().collect())
            .collect();
        let tag = json_key(&cells[1]);
        let numbers: Vec<f64> = cells[2..].iter().map(|c| c.parse().unwrap()).collect();
        assert_eq!(Some(&numbers), rows.get(&tag), "{tag}: HTML {cells:?}");
        html_order.push(tag);
    }
    assert_eq!(html_order, order);
    let runs: Vec<String> = select(root, "table#runs td")
        .iter()
        .map(|c| c.text().collect())
        .collect();
    assert!(
        runs.iter().any(|c| c.starts_with(statement)),
        "runs table: {runs:?}"
    );
    assert_eq!(
        runs[3],
        run.total("accepted").to_string(),
        "accepted after the warm-up"
    );

    // N1: one rule for the drain after the last send (here the reply to the last message
    // and QUIT, in the second after -d ends): not measured time in the run's summary, its
    // JSON, the text and the HTML; its replies counted in all of them.
    let measured = json["totals"]["measured_seconds"].as_f64().unwrap();
    assert_eq!(measured, 2.0);
    assert!(run.stdout.contains("measured 2.00 s"), "{}", run.stdout);
    assert!(
        text.contains(&format!(
            "measured 2 s (drain after the last send: 1 s from 3.0 s to 4.0 s, not measured \
             time; its replies are counted): accepted {} ({:.1} msgs/s)",
            run.total("accepted"),
            run.total("accepted") as f64 / 2.0
        )),
        "{text}"
    );
    assert_eq!(runs[1], "2", "seconds: {runs:?}");
    assert_eq!(runs[2], "1 s, from 3.0 s to 4.0 s", "drain: {runs:?}");

    // report --warmup 0s: every interval, more values, said so.
    let (_, all, _) = run_binary(&args(&["report", log.to_str().unwrap(), "--warmup", "0s"]));
    assert!(
        all.contains("no warm-up: intervals from 0.0 s (report --warmup)"),
        "{all}"
    );
    let (_, all_rows) = text_rows(&all);
    assert!(all_rows["eod"][0] > rows["eod"][0], "{all}\n{text}");
    // A warm-up past the end of the log is an error, not an empty table.
    let (code, _, stderr) = run_binary(&args(&["report", log.to_str().unwrap(), "--warmup", "1h"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("every interval is inside the warm-up"),
        "{stderr}"
    );
}

/// Every string value in `value` with its JSON path.
fn strings<'a>(value: &'a serde_json::Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        serde_json::Value::String(s) => out.push((path, s)),
        serde_json::Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                strings(v, format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                strings(v, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// Rust debug text that must not reach an output.
const DEBUG_TEXT: [&str; 8] = [
    "Fixed(",
    "Range(",
    "Some(",
    "None)",
    "PipeliningArg",
    "Sizes::",
    "UnknownIssuer",
    "Debug",
];

#[test]
fn outputs_are_typed_json_and_human_text_with_provenance_everywhere() {
    let stub = auth_stub();
    let (log, run) = logged_run(&stub);
    let json = run.json();
    // Typed values.
    assert_eq!(json["config"]["size"], serde_json::json!({"fixed": 1024}));
    assert_eq!(json["config"]["pipelining"], "auto");
    let mut all = Vec::new();
    strings(json, String::new(), &mut all);
    for (path, text) in &all {
        for bad in DEBUG_TEXT {
            assert!(!text.contains(bad), "{path}: {text:?}");
        }
        // No value is a capitalised enum name (`Auto`, `StartTls`): free text aside.
        let free = [
            "command_line",
            "description",
            "cpu",
            "kernel",
            "statement",
            "result",
            "verdict",
            "error_details",
        ];
        let word = !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphabetic())
            && text.starts_with(|c: char| c.is_ascii_uppercase())
            && text.chars().skip(1).any(|c| c.is_ascii_lowercase());
        assert!(
            !word || free.iter().any(|f| path.contains(f)),
            "{path}: {text:?}"
        );
    }

    // Provenance: the same facts in the JSON, the summary, the log and both reports.
    let p = &json["provenance"];
    for key in ["date", "command_line", "description"] {
        assert!(
            !p[key].as_str().unwrap_or("").is_empty(),
            "provenance.{key}"
        );
    }
    let date = p["date"].as_str().unwrap();
    assert!(date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T');
    assert_eq!(
        p["smtp_loadgen"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{p}"
    );
    assert!(!p["smtp_loadgen"]["commit"].as_str().unwrap().is_empty());
    assert!(p["host"]["cores"].as_u64().unwrap() >= 1);
    assert!(!p["host"]["cpu"].as_str().unwrap().is_empty());
    assert!(!p["host"]["kernel"].as_str().unwrap().is_empty());
    assert_eq!(p["config"]["connections"], 2);
    assert_eq!(p["warmup_seconds"], 1.0);
    let command = p["command_line"].as_str().unwrap();
    assert!(
        command.contains("--rate 200 -d 2s --warmup 1s"),
        "{command}"
    );
    // The password is never shown.
    assert!(command.contains("'user:***'"), "{command}");
    let hlog = std::fs::read_to_string(&log).unwrap();
    let (_, text, _) = run_binary(&args(&["report", log.to_str().unwrap()]));
    let run_line = format!("run {date} by smtp-loadgen ");
    for (what, output) in [("summary", &run.stdout), ("log", &hlog), ("report", &text)] {
        assert!(output.contains(&run_line), "{what}: {output}");
        assert!(
            output.contains(&format!("command: {command}")),
            "{what}: {output}"
        );
        assert!(output.contains("host: "), "{what}: {output}");
        assert!(output.contains("size 1 KiB"), "{what}: {output}");
        assert!(!output.contains("never-shown"), "{what}");
        for bad in DEBUG_TEXT {
            assert!(!output.contains(bad), "{what}: {bad} in {output}");
        }
    }
    let page = scratch("provenance.html");
    let (code, _, _) = run_binary(&args(&[
        "report",
        log.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]));
    assert_eq!(code, 0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("never-shown"));
    // The page's text and charts, its scripts left out (JavaScript has `toFixed(`).
    let shown: String = html
        .split("<script>")
        .map(|part| part.split_once("</script>").map_or(part, |(_, rest)| rest))
        .collect();
    for bad in DEBUG_TEXT {
        assert!(!shown.contains(bad), "{bad} in the page");
    }
    let doc = Html::parse_document(&html);
    let facts: BTreeMap<String, String> = select(doc.root_element(), "table#provenance-1 tr")
        .iter()
        .map(|row| {
            let cells: Vec<String> = select(*row, "td")
                .iter()
                .map(|c| c.text().collect())
                .collect();
            (cells[0].clone(), cells[1].clone())
        })
        .collect();
    for fact in [
        "date (UTC)",
        "smtp-loadgen",
        "command",
        "host",
        "target(s)",
        "connections",
        "message size",
        "mode",
        "warm-up",
    ] {
        assert!(facts.contains_key(fact), "no {fact} in {facts:?}");
    }
    assert_eq!(facts["date (UTC)"], date);
    assert_eq!(facts["command"], command);
    assert_eq!(facts["message size"], "1 KiB");
    assert!(
        facts["mode"].starts_with("open loop at 200 msgs/s, DATA, pipelining auto, no TLS"),
        "{}",
        facts["mode"]
    );
    assert!(facts["warm-up"].starts_with("warm-up 1 s excluded"));
    assert!(
        html.contains("This page: made "),
        "the report says what made it"
    );

    // A log without provenance (older smtp-loadgen): said plainly.
    let old = scratch("old.hlog");
    let stripped: String = hlog
        .lines()
        .filter(|l| !l.starts_with("#smtp-loadgen-provenance: "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&old, stripped).unwrap();
    let (_, text, _) = run_binary(&args(&["report", old.to_str().unwrap()]));
    assert!(
        text.contains("provenance: not recorded in the log"),
        "{text}"
    );
    // Its warm-up then comes from its counts lines: the same rows.
    assert!(
        text.contains("warm-up 1 s excluded: intervals from 1.0 s (as the log's counts lines"),
        "{text}"
    );
}

#[test]
fn merged_logs_keep_each_inputs_provenance_and_the_latest_warmup() {
    let stub = auth_stub();
    let (first, _) = logged_run(&stub);
    let second = scratch("second.hlog");
    closed_run(&stub, &second, 200);
    let merged = scratch("merged.hlog");
    let (code, stdout, stderr) = run_binary(&args(&[
        "merge",
        first.to_str().unwrap(),
        second.to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("warm-up "), "{stdout}");
    let (code, text, _) = run_binary(&args(&["report", merged.to_str().unwrap()]));
    assert_eq!(code, 0);
    assert!(text.starts_with("smtp-loadgen merge of 2 logs: "), "{text}");
    assert!(text.contains("\nmerged "), "{text}");
    assert!(text.contains("\ninput 1: smtp-loadgen -> "), "{text}");
    assert!(text.contains("\ninput 2: smtp-loadgen -> "), "{text}");
    assert!(text.contains("\n  run "), "{text}");
    assert!(text.contains("(as the log records it)"), "{text}");
}

/// `(x, y)` points of an SVG element, in pixels: polyline points, line ends, a rect's
/// corners, a circle's centre, a text's anchor.
fn points(node: roxmltree::Node) -> Vec<(f64, f64)> {
    let num = |name: &str| node.attribute(name).and_then(|v| v.parse::<f64>().ok());
    match node.tag_name().name() {
        "polyline" | "polygon" => node
            .attribute("points")
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|p| {
                let (x, y) = p.split_once(',')?;
                Some((x.parse().ok()?, y.parse().ok()?))
            })
            .collect(),
        "line" => [("x1", "y1"), ("x2", "y2")]
            .iter()
            .filter_map(|(x, y)| Some((num(x)?, num(y)?)))
            .collect(),
        "rect" => match (num("x"), num("y"), num("width"), num("height")) {
            (Some(x), Some(y), Some(w), Some(h)) => {
                vec![(x, y), (x + w, y), (x, y + h), (x + w, y + h)]
            }
            _ => Vec::new(),
        },
        "circle" => match (num("cx"), num("cy")) {
            (Some(x), Some(y)) => vec![(x, y)],
            _ => Vec::new(),
        },
        "text" => match (num("x"), num("y")) {
            (Some(x), Some(y)) => vec![(x, y)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Checks one SVG chart: the legend is one `<g class="legend">`, and nothing drawn
/// outside it (data lines, markers, shading, grid, axis labels) has a point inside the
/// legend's box. Returns the number of legend entries' texts.
fn check_legend(name: &str, text: &str) -> usize {
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let legends: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("g") && n.attribute("class") == Some("legend"))
        .collect();
    assert_eq!(legends.len(), 1, "{name}: one legend group");
    let legend = legends[0];
    let frame = legend
        .descendants()
        .find(|n| n.has_tag_name("rect"))
        .unwrap_or_else(|| panic!("{name}: the legend has no frame"));
    let corners = points(frame);
    let (x0, y0) = corners[0];
    let (x1, y1) = corners[3];
    let inside = |(x, y): (f64, f64)| x > x0 && x < x1 && y > y0 && y < y1;
    let mut checked = 0;
    for node in doc.descendants().filter(|n| n.is_element()) {
        if node.ancestors().any(|a| a == legend) {
            continue;
        }
        if node.has_tag_name("svg") || node.has_tag_name("g") {
            continue;
        }
        for p in points(node) {
            checked += 1;
            assert!(
                !inside(p),
                "{name}: {} at {p:?} is inside the legend {x0},{y0}..{x1},{y1}",
                node.tag_name().name()
            );
        }
    }
    assert!(checked > 10, "{name}: nothing drawn?");
    legend
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .count()
}

#[test]
fn legends_never_cover_data_and_identical_stages_are_drawn_once() {
    let stub = auth_stub();
    let (log, _) = logged_run(&stub);
    let second = scratch("closed.hlog");
    closed_run(&stub, &second, 600);
    let svg_dir = scratch("svg");
    let png_dir = scratch("png");
    let (code, _, stderr) = run_binary(&args(&[
        "report",
        log.to_str().unwrap(),
        second.to_str().unwrap(),
        "--svg",
        svg_dir.to_str().unwrap(),
        "--png",
        png_dir.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let mut charts = 0;
    for entry in std::fs::read_dir(&svg_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let entries = check_legend(&name, &text);
        assert!(entries >= 1, "{name}: {entries} legend entries");
        charts += 1;
        // The PNG has the same size as the SVG (legend included).
        let png = std::fs::read(png_dir.join(name.replace(".svg", ".png"))).unwrap();
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        let doc = roxmltree::Document::parse(&text).unwrap();
        assert_eq!(
            doc.root_element().attribute("height"),
            Some(&*height.to_string()),
            "{name}"
        );
    }
    assert!(charts >= 8, "{charts} charts");
    // Stages whose histograms are identical in both runs are drawn once; otherwise each
    // has its chart. Either way no two percentile charts draw the same lines.
    let spectra: Vec<(String, String)> = std::fs::read_dir(&svg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("percentiles-")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let doc = roxmltree::Document::parse(&text).unwrap();
            let lines: String = doc
                .descendants()
                .filter(|n| n.has_tag_name("polyline"))
                .filter(|n| {
                    !n.ancestors()
                        .any(|a| a.attribute("class") == Some("legend"))
                })
                .filter(|n| n.attribute("points").unwrap_or("").split(' ').count() > 3)
                .map(|n| n.attribute("points").unwrap().to_string())
                .collect::<Vec<_>>()
                .join("|");
            (p.display().to_string(), lines)
        })
        .collect();
    for (i, (a, lines_a)) in spectra.iter().enumerate() {
        for (b, lines_b) in &spectra[i + 1..] {
            assert!(lines_a != lines_b, "{a} and {b} draw the same lines");
        }
    }
}

/// A path as a test argument.
fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn the_sweep_states_its_provenance_in_text_json_and_html() {
    let stub = Stub::start(StubScript::default());
    let json = scratch("sweep.json");
    let html = scratch("sweep.html");
    let log = scratch("sweep.hlog");
    let (code, stdout, stderr) = run_binary(&args(&[
        "--target",
        &stub.addr.to_string(),
        "--quiet",
        "-c",
        "2",
        "--sweep",
        "100..200",
        "--steps",
        "2",
        "-d",
        "1s",
        "--warmup",
        "1s",
        "--json",
        s(&json),
        "--html",
        s(&html),
        "--hdr-log",
        s(&log),
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("smtp-loadgen rate sweep -> "),
        "{stdout}"
    );
    assert!(stdout.contains("\nsweep 2"), "{stdout}");
    assert!(stdout.contains("\ncommand: "), "{stdout}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["provenance"]["kind"], "sweep");
    assert_eq!(doc["provenance"]["config"]["sweep"]["steps"], 2);
    let page = std::fs::read_to_string(&html).unwrap();
    let dom = Html::parse_document(&page);
    let facts: Vec<String> = select(dom.root_element(), "table#provenance td")
        .iter()
        .map(|c| c.text().collect())
        .collect();
    for fact in [
        "date (UTC)",
        "command",
        "host",
        "connections",
        "message size",
        "mode",
    ] {
        assert!(facts.iter().any(|f| f == fact), "{fact}: {facts:?}");
    }
    assert!(
        facts
            .iter()
            .any(|f| f.starts_with("open-loop rate sweep 100..200 msgs/s in 2 steps")),
        "{facts:?}"
    );
    // Each step's log is a run of its own, with its rate and the warm-up rule.
    let step = std::fs::read_to_string(log.with_file_name("sweep.100.hlog")).unwrap();
    assert!(step.contains("\n#run "), "{step}");
    assert!(
        step.contains("\n#warm-up 1 s excluded: intervals from 1.0 s\n"),
        "{step}"
    );
    assert!(step.contains("\"rate\":100.0"), "{step}");
}
