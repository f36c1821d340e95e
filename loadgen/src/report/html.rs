//! The HTML report: one self-contained file (styles, charts as inline SVG, and a small
//! script inline), which opens without network access.
//!
//! What it does: lay out headings, text, tables and charts ([`Block`]s) as a page; each chart
//! is a `<figure class="chart" id="ID">` holding its `<svg>`, a caption, and `data-*`
//! attributes saying where its plot area is, from which the script shows the values under
//! the pointer. The script also marks the page: `data-ready="1"` on `<body>` once it ran, and
//! `data-errors` on `<html>` for each uncaught error, so a headless browser's DOM dump shows
//! whether the page worked. The page names no URL at all (the SVG namespace attribute is
//! dropped from inline SVG, where HTML does not need it).
//!
//! What it does not do: choose the charts (`charts`, `sweep`), draw them (`chart`), or
//! write the file.

use super::chart::{self, Chart};
use super::figures::tag_title;
use super::figures::RunFigures;
use super::provenance::Provenance;
use super::render::PERCENTILES;
use std::fmt::Write as _;

/// A part of a page.
#[derive(Debug)]
pub enum Block<'a> {
    /// A section heading.
    Heading(String),
    /// A paragraph of plain text.
    Text(String),
    /// A table: element id, caption, header cells, rows of cells (plain text).
    Table {
        /// The `<table>` id.
        id: String,
        /// The caption.
        caption: String,
        /// Header cells (none: no header row).
        head: Vec<String>,
        /// Rows.
        rows: Vec<Vec<String>>,
        /// Whether cells that are figures ([`is_numeric`]) are right-aligned (tables of
        /// figures), or every cell is left as text (tables of facts: a date, `1 KiB`).
        figures: bool,
    },
    /// A chart, drawn as inline SVG.
    Chart(&'a Chart),
}

/// Styles: readable on screen and in print, charts scale down with the window.
const STYLE: &str = "
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1000px; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
figure.chart { margin: 1.5em 0; }
figure.chart svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; }
output.readout { display: block; min-height: 1.3em; font-size: 0.85em; color: #225; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; }
th { text-align: left; background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
";

/// Runs first, before anything else: counts uncaught errors on `<html>`.
const ERROR_SCRIPT: &str = "window.onerror = function (message) {
  var root = document.documentElement;
  root.setAttribute('data-errors', String(Number(root.getAttribute('data-errors') || 0) + 1));
  root.setAttribute('data-last-error', String(message));
};";

/// Runs last: the pointer readout on each chart, then `data-ready` on `<body>`.
const READOUT_SCRIPT: &str = "(function () {
  function numbers(text) { return text.split(' ').map(Number); }
  function at(scale, range, f) {
    if (scale === 'linear') { return range[0] + (range[1] - range[0]) * f; }
    var a = Math.log(range[0]), b = Math.log(range[1]);
    return Math.exp(a + (b - a) * f);
  }
  function show(scale, v) {
    if (scale === 'percentile') {
      var nines = Math.max(0, Math.min(6, Math.round(Math.log10(v)) - 1));
      return (100 * (1 - 1 / v)).toFixed(nines) + '%';
    }
    var a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
  }
  var figures = document.querySelectorAll('figure.chart');
  Array.prototype.forEach.call(figures, function (figure) {
    var svg = figure.querySelector('svg');
    var readout = figure.querySelector('output.readout');
    var d = figure.dataset;
    var px = numbers(d.px), py = numbers(d.py), xr = numbers(d.x), yr = numbers(d.y);
    svg.addEventListener('mousemove', function (event) {
      var box = svg.getBoundingClientRect();
      var k = svg.viewBox.baseVal && svg.viewBox.baseVal.width ?
        svg.viewBox.baseVal.width / box.width : 1;
      var x = (event.clientX - box.left) * k, y = (event.clientY - box.top) * k;
      if (x < px[0] || x > px[1] || y < py[0] || y > py[1]) { readout.textContent = ''; return; }
      var fx = (x - px[0]) / (px[1] - px[0]), fy = (py[1] - y) / (py[1] - py[0]);
      readout.textContent = d.xLabel + ': ' + show(d.xScale, at(d.xScale, xr, fx)) +
        '    ' + d.yLabel + ': ' + show(d.yScale, at(d.yScale, yr, fy));
    });
    svg.addEventListener('mouseleave', function () { readout.textContent = ''; });
  });
  document.body.setAttribute('data-ready', '1');
  document.body.setAttribute('data-charts', String(figures.length));
})();";

/// Text escaped for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in HTML text (nor in inline SVG).
            c if c.is_control() && c != '\n' => out.push('\u{FFFD}'),
            _ => out.push(c),
        }
    }
    out
}

/// The page: a title and its blocks.
pub fn page(title: &str, blocks: &[Block<'_>]) -> Result<String, String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<script>{ERROR_SCRIPT}</script>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n<h1>{}</h1>\n",
        escape(title),
        escape(title)
    );
    for block in blocks {
        match block {
            Block::Heading(text) => {
                let _ = writeln!(out, "<h2>{}</h2>", escape(text));
            }
            Block::Text(text) => {
                let _ = writeln!(out, "<p>{}</p>", escape(text));
            }
            Block::Table {
                id,
                caption,
                head,
                rows,
                figures,
            } => table_into(&mut out, id, caption, head, rows, *figures),
            Block::Chart(chart) => figure_into(&mut out, chart)?,
        }
    }
    let _ = write!(out, "<script>{READOUT_SCRIPT}</script>\n</body>\n</html>\n");
    Ok(out)
}

/// Appends a `<table>`.
fn table_into(
    out: &mut String,
    id: &str,
    caption: &str,
    head: &[String],
    rows: &[Vec<String>],
    figures: bool,
) {
    let _ = write!(
        out,
        "<table id=\"{}\">\n<caption>{}</caption>\n",
        escape(id),
        escape(caption)
    );
    if !head.is_empty() {
        out.push_str("<thead><tr>");
        for cell in head {
            let _ = write!(out, "<th>{}</th>", escape(cell));
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let numeric = figures && is_numeric(cell);
            let class = if numeric { " class=\"num\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// Whether a cell is a figure, right-aligned: `-` (none), or a number followed by at most a
/// unit and a mark (`4.674`, `9.000 ms ✓`); not a date or a sentence that starts with one.
fn is_numeric(cell: &str) -> bool {
    let mut words = cell.split_whitespace();
    cell == "-" || (words.next().is_some_and(|w| w.parse::<f64>().is_ok()) && words.count() <= 2)
}

/// Appends a chart's `<figure>`.
fn figure_into(out: &mut String, chart: &Chart) -> Result<(), String> {
    let svg = chart::svg(chart)?;
    let area = &svg.area;
    let _ = writeln!(
        out,
        "<figure class=\"chart\" id=\"{}\" data-x-scale=\"{}\" data-y-scale=\"{}\" \
         data-x-label=\"{}\" data-y-label=\"{}\" data-px=\"{} {}\" data-py=\"{} {}\" \
         data-x=\"{} {}\" data-y=\"{} {}\" data-series=\"{}\">",
        escape(&chart.id),
        chart.x_scale.name(),
        chart.y_scale.name(),
        escape(&chart.x_label),
        escape(&chart.y_label),
        area.px.0,
        area.px.1,
        area.py.0,
        area.py.1,
        area.x.0,
        area.x.1,
        area.y.0,
        area.y.1,
        chart.series.len(),
    );
    // HTML parses inline SVG into the SVG namespace by itself.
    out.push_str(
        &svg.text
            .replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1),
    );
    let _ = write!(
        out,
        "\n<figcaption><strong>{}.</strong> {}</figcaption>\n\
         <output class=\"readout\"></output>\n</figure>\n",
        escape(&chart.title),
        escape(&chart.caption)
    );
    Ok(())
}

/// Milliseconds with three decimals, as the text tables show them.
fn ms(nanos: u64) -> String {
    format!("{:.3}", nanos as f64 / 1e6)
}

/// The provenance of `runs`: per run a table (`provenance-N`, N from 1) with the date,
/// smtp-loadgen's version and commit, the command line, the host, target(s), connections,
/// message size, mode and warm-up, or a sentence saying the log does not record it.
pub fn provenance_blocks(runs: &[RunFigures]) -> Vec<Block<'static>> {
    let mut blocks = vec![Block::Heading("How the runs were made".into())];
    for (i, run) in runs.iter().enumerate() {
        match &run.provenance {
            Some(p) => blocks.push(provenance_table(
                &format!("provenance-{}", i + 1),
                &format!("{}: {}", run.label, p.description),
                p,
                &run.warmup_statement(),
            )),
            None => blocks.push(Block::Text(format!(
                "{}: provenance not recorded in the log (an older smtp-loadgen or another \
                 tool); {}.",
                run.label,
                run.warmup_statement()
            ))),
        }
    }
    blocks
}

/// One provenance table: `id`, `caption`, a row per fact, the warm-up rule last.
pub fn provenance_table(
    id: &str,
    caption: &str,
    provenance: &Provenance,
    warmup: &str,
) -> Block<'static> {
    let mut rows: Vec<Vec<String>> = provenance
        .rows()
        .into_iter()
        .map(|(what, text)| vec![what, text])
        .collect();
    rows.push(vec!["warm-up".into(), warmup.to_string()]);
    Block::Table {
        id: id.to_string(),
        caption: caption.to_string(),
        head: Vec::new(),
        rows,
        figures: false,
    }
}

/// The page's last line: what made this page (date, smtp-loadgen's version and commit, the
/// command line).
pub fn made_by() -> Block<'static> {
    let me = Provenance::capture(
        super::provenance::Kind::Run,
        std::time::SystemTime::now(),
        "",
        serde_json::Value::Null,
        0.0,
    );
    Block::Text(format!(
        "This page: made {} by {}: {}",
        me.date,
        me.tool(),
        me.command_line
    ))
}

/// The `runs` table: each run's label, description, measured time (the drain after the
/// last send left out, as the text report and the run's summary do), drain and message
/// counts.
pub fn runs_table(runs: &[RunFigures]) -> Block<'static> {
    let rows = runs
        .iter()
        .map(|run| {
            let rate = run
                .accepted
                .map(|a| format!("{:.1}", a as f64 / run.measured_seconds.max(1e-9)))
                .unwrap_or_else(|| "n/a".into());
            let drain = match (run.drain.first(), run.accepted) {
                (Some((from, to)), _) => format!(
                    "{} s, from {from:.1} s to {to:.1} s",
                    super::figures::seconds_figure(to - from)
                ),
                (None, Some(_)) => "none".into(),
                (None, None) => "n/a".into(),
            };
            vec![
                run.label.clone(),
                super::figures::seconds_figure(run.measured_seconds),
                drain,
                run.accepted.map_or("n/a".into(), |a| a.to_string()),
                rate,
                run.errors.map_or("n/a".into(), |e| e.to_string()),
                run.warmup_statement(),
                run.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    Block::Table {
        id: "runs".into(),
        caption: "Runs (the warm-up left out, as stated; the drain after the last send is not \
                  measured time, its replies are counted; n/a: the log has no message counts)"
            .into(),
        head: [
            "run",
            "seconds",
            "drain",
            "accepted",
            "msgs/s",
            "failed + errors",
            "warm-up",
            "description",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        figures: true,
    }
}

/// The `figures` table: per run and tag, count and percentiles in milliseconds.
pub fn figures_table(runs: &[RunFigures]) -> Block<'static> {
    let mut head: Vec<String> = ["run", "tag", "count"].map(String::from).to_vec();
    head.extend(PERCENTILES.iter().map(|(name, _)| format!("{name} ms")));
    head.push("max ms".into());
    let mut rows = Vec::new();
    for run in runs {
        for tag in run.tags.iter().filter(|t| !t.total.is_empty()) {
            let mut row = vec![
                run.label.clone(),
                tag_title(&tag.tag).to_string(),
                tag.total.len().to_string(),
            ];
            row.extend(
                PERCENTILES
                    .iter()
                    .map(|(_, q)| ms(tag.total.value_at_percentile(*q))),
            );
            row.push(ms(tag.total.max()));
            rows.push(row);
        }
    }
    let mut caption = "Latency per tag, in protocol order (the warm-up left out)".to_string();
    for run in runs {
        let only = run.warmup_only_tags();
        if !only.is_empty() {
            let _ = write!(
                caption,
                "; {}: {} only inside the warm-up",
                run.label,
                only.join(", ")
            );
        }
    }
    Block::Table {
        id: "figures".into(),
        caption,
        head,
        rows,
        figures: true,
    }
}

/// The report page of one or more runs: the tables, then the charts by kind.
pub fn run_page(runs: &[RunFigures], charts: &[Chart]) -> Result<String, String> {
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    let title = format!("smtp-loadgen report: {}", labels.join(" vs "));
    // A run that is not the one asked for says so before any figure.
    let mut blocks: Vec<Block> = runs
        .iter()
        .flat_map(|run| {
            run.warnings
                .iter()
                .map(|w| Block::Text(format!("{}: {w}", run.label)))
        })
        .collect();
    blocks.push(runs_table(runs));
    blocks.extend(provenance_blocks(runs));
    blocks.push(figures_table(runs));
    let sections = [
        ("Throughput", "throughput"),
        ("Latency over time", "latency-over-time-"),
        ("Corrected vs service time", "corrected-vs-service"),
        ("Latency by percentile", "percentiles-"),
    ];
    for (heading, prefix) in sections {
        let mut first = true;
        for chart in charts.iter().filter(|c| c.id.starts_with(prefix)) {
            if first {
                blocks.push(Block::Heading(heading.into()));
                first = false;
            }
            blocks.push(Block::Chart(chart));
        }
    }
    blocks.push(made_by());
    page(&title, &blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::charts::run_charts;
    use crate::report::codec::encode_histogram;
    use crate::report::interval_log::{LogNotes, LoggedInterval};

    #[test]
    fn the_page_is_self_contained_and_names_each_chart() {
        let mut h = crate::drive::record::new_histogram();
        for v in 1..100u64 {
            h.record(v * 10_000).unwrap();
        }
        let intervals: Vec<LoggedInterval> = ["eod", "message", "message_corrected"]
            .iter()
            .map(|tag| LoggedInterval {
                start: 0.0,
                duration: 1.0,
                tag: tag.to_string(),
                encoded: encode_histogram(&h),
            })
            .collect();
        let no_warmup =
            crate::report::warmup::Warmup::new(0.0, 0.0, crate::report::warmup::Source::None);
        let runs = [
            RunFigures::from_log("a <b> & 'c'", &intervals, &LogNotes::default(), no_warmup)
                .unwrap(),
            RunFigures::from_log("second", &intervals, &LogNotes::default(), no_warmup).unwrap(),
        ];
        let charts = run_charts(&runs);
        let html = run_page(&runs, &charts).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains(" src=") && !html.contains(" href="));
        for chart in &charts {
            assert!(
                html.contains(&format!("<figure class=\"chart\" id=\"{}\"", chart.id)),
                "{}",
                chart.id
            );
        }
        assert_eq!(html.matches("<svg").count(), charts.len());
        assert!(html.contains("a &lt;b&gt; &amp; &#39;c&#39;"));
        assert!(html.contains("<table id=\"figures\">"));
        assert!(html.contains("<table id=\"runs\">"));
        assert!(html.contains("data-ready"));
    }
}
