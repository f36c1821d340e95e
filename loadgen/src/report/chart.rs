//! Drawing one chart with plotters, as SVG text or as a PNG image: one code path for the
//! HTML report (inline SVG), `--svg` and `--png`.
//!
//! What it does: take a [`Chart`] (series of points, axis scales, labels), fit the axes to
//! the data, and draw lines, markers, shaded spans and a legend. The legend never covers
//! data: it is drawn below the plot (under the x axis' description), in as many columns as
//! fit the width, and the drawing grows by its height; in SVG it is one
//! `<g class="legend">`, so a test can check it against everything else drawn. Text is laid
//! out (and, in PNGs, drawn) with DejaVu Sans embedded in the binary, registered with
//! plotters' `ab_glyph` backend on first use, so no system font is looked up. The percentile
//! axis is HdrHistogram's `1/(1-p)` on a log scale, labelled in percent. Each drawing also
//! returns where its plot area is, in pixels and in data units, so a page can map a pointer
//! to values.
//!
//! What it does not do: decide what a chart shows (`charts`, `sweep`), or write files.

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::sync::Once;

/// Width of every chart in pixels.
pub const WIDTH: u32 = 960;
/// Height of every chart without its legend, in pixels (the legend below adds
/// `legend_height`).
pub const HEIGHT: u32 = 440;
/// Height of a legend row in pixels.
const LEGEND_ROW: u32 = 20;
/// Space around the legend's entries in pixels.
const LEGEND_PAD: u32 = 8;
/// Length of a legend entry's line sample in pixels.
const SWATCH: i32 = 22;
/// Space between columns of legend entries in pixels.
const LEGEND_GAP: u32 = 24;
/// Font size of legend text.
const LEGEND_FONT: u32 = 13;
/// The legend frame's colour.
const LEGEND_BORDER: RGBColor = RGBColor(0xbb, 0xbb, 0xbb);
/// The font family plotters is asked for (and the SVG's `font-family`).
const FONT: &str = "sans-serif";

/// Series colours (Tableau 10: tell-apart-able, also in grey print).
const COLORS: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear, from 0 (or the smallest value, if negative) to the largest.
    Linear,
    /// Logarithmic, around the values.
    Log,
    /// HdrHistogram's percentile axis: values are `1/(1-p)` on a log scale, labelled as
    /// percentiles (1 is 0%, 10 is 90%, 100 is 99%, ...).
    Percentile,
}

impl Scale {
    /// The name the HTML page's script knows the scale by.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log => "log",
            Scale::Percentile => "percentile",
        }
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A solid line of this width in pixels.
    Line(u32),
    /// A dashed line.
    Dashed,
    /// A filled circle at each point, joined by a thin line.
    Points,
    /// A cross at each point, not joined.
    Crosses,
}

/// One series.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend text.
    pub name: String,
    /// Index into the palette (wraps around).
    pub color: usize,
    /// How it is drawn.
    pub mark: Mark,
    /// `(x, y)` points in data units, in x order for lines.
    pub points: Vec<(f64, f64)>,
}

/// A chart: what to draw and how to label it.
#[derive(Debug, Clone)]
pub struct Chart {
    /// A stable identifier: the HTML element's id and the file name of `--svg`/`--png`.
    pub id: String,
    /// The title above the chart.
    pub title: String,
    /// What the chart shows and how to read it (the HTML caption).
    pub caption: String,
    /// The x axis' description.
    pub x_label: String,
    /// The y axis' description.
    pub y_label: String,
    /// The x axis' scale.
    pub x_scale: Scale,
    /// The y axis' scale.
    pub y_scale: Scale,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Shaded x spans (a warm-up, a drain), each kind with its legend text; the x axis
    /// covers them.
    pub shaded: Vec<Shade>,
}

/// Spans of the x axis shaded in one tone, with the legend text for them.
#[derive(Debug, Clone)]
pub struct Shade {
    /// The legend text.
    pub name: String,
    /// `(from, to)` x spans in data units.
    pub spans: Vec<(f64, f64)>,
    /// Index into [`SHADES`] (wraps around): 0 grey (a warm-up), 1 blue (a drain).
    pub tone: usize,
}

/// The tones of shaded spans, drawn at [`SHADE_OPACITY`].
pub const SHADES: [RGBColor; 2] = [RGBColor(0x99, 0x99, 0x99), RGBColor(0x3a, 0x7b, 0xd5)];

/// How opaque a shaded span is: the lines over it stay readable.
const SHADE_OPACITY: f64 = 0.18;

/// A shaded span's fill.
fn shade_style(tone: usize) -> ShapeStyle {
    SHADES[tone % SHADES.len()].mix(SHADE_OPACITY).filled()
}

/// Where a drawing's plot area is: pixels and the data range they show.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotArea {
    /// Left and right edge in pixels.
    pub px: (i32, i32),
    /// Top and bottom edge in pixels.
    pub py: (i32, i32),
    /// The x values at the left and right edge.
    pub x: (f64, f64),
    /// The y values at the bottom and top edge.
    pub y: (f64, f64),
}

/// An SVG drawing and its plot area.
#[derive(Debug, Clone)]
pub struct Svg {
    /// The `<svg>` document.
    pub text: String,
    /// Where its plot area is.
    pub area: PlotArea,
}

/// Registers the embedded font with plotters, once per process.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a known-good TTF; failure here would be a build problem.
        if plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_err()
        {
            panic!("the embedded DejaVu Sans font does not load");
        }
    });
}

/// `chart` with control characters replaced in every text it draws (see
/// [`printable`](super::printable)): they would make the SVG invalid XML.
fn printable(chart: &Chart) -> Chart {
    let p = super::printable;
    let mut clean = chart.clone();
    clean.title = p(&chart.title);
    clean.caption = p(&chart.caption);
    clean.x_label = p(&chart.x_label);
    clean.y_label = p(&chart.y_label);
    for series in &mut clean.series {
        series.name = p(&series.name);
    }
    for shade in &mut clean.shaded {
        shade.name = p(&shade.name);
    }
    clean
}

/// Draws `chart` as an SVG document. The legend is drawn apart and put in as one
/// `<g class="legend">` after the plot.
pub fn svg(chart: &Chart) -> Result<Svg, String> {
    let chart = &printable(chart);
    register_font();
    let layout = LegendLayout::of(chart)?;
    let size = (WIDTH, HEIGHT + layout.height());
    let mut text = String::new();
    let area = {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        let area = draw(&root, chart)?;
        root.present().map_err(|e| e.to_string())?;
        area
    };
    if !layout.entries.is_empty() {
        let mut legend = String::new();
        {
            let root = SVGBackend::with_string(&mut legend, size).into_drawing_area();
            draw_legend(&root, &layout, area.px.0)?;
            root.present().map_err(|e| e.to_string())?;
        }
        // The legend document's elements: after its `<svg ...>` line, before `</svg>`.
        let body = legend
            .split_once('\n')
            .map_or("", |(_, rest)| rest)
            .trim_end()
            .trim_end_matches("</svg>");
        let end = text.rfind("</svg>").unwrap_or(text.len());
        text.insert_str(end, &format!("<g class=\"legend\">\n{body}</g>\n"));
    }
    Ok(Svg { text, area })
}

/// Draws `chart` as a PNG image (8-bit RGB), the legend below the plot.
pub fn png(chart: &Chart) -> Result<Vec<u8>, String> {
    let chart = &printable(chart);
    register_font();
    let layout = LegendLayout::of(chart)?;
    let (width, height) = (WIDTH, HEIGHT + layout.height());
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let area = draw(&root, chart)?;
        draw_legend(&root, &layout, area.px.0)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(&rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    /// A box in a shade's tone (shaded spans).
    Shade(usize),
    /// The series' mark in its colour.
    Mark(Mark, RGBColor),
}

/// The legend's entries in a grid of equal columns, filled row by row.
#[derive(Debug)]
struct LegendLayout {
    /// `(text, swatch)` in the chart's order: the shaded spans first, then each series.
    entries: Vec<(String, Swatch)>,
    /// Width of a column in pixels.
    column: u32,
    /// Columns.
    columns: usize,
}

impl LegendLayout {
    /// The layout of `chart`'s legend, its text measured with the embedded font.
    fn of(chart: &Chart) -> Result<LegendLayout, String> {
        let mut entries = Vec::new();
        for shade in chart.shaded.iter().filter(|s| !s.spans.is_empty()) {
            entries.push((shade.name.clone(), Swatch::Shade(shade.tone)));
        }
        for series in &chart.series {
            let color = COLORS[series.color % COLORS.len()];
            entries.push((series.name.clone(), Swatch::Mark(series.mark, color)));
        }
        let font = (FONT, LEGEND_FONT).into_font();
        let mut widest = 0;
        for (name, _) in &entries {
            let (w, _) = font.box_size(name).map_err(|e| format!("{e:?}"))?;
            widest = widest.max(w);
        }
        let column = widest + SWATCH as u32 + 8 + LEGEND_GAP;
        // From the plot's left edge (about 76 px in) to the right edge, less padding.
        let room = WIDTH.saturating_sub(76 + 12 + 2 * LEGEND_PAD);
        let columns = ((room / column.max(1)) as usize).clamp(1, entries.len().max(1));
        Ok(LegendLayout {
            entries,
            column,
            columns,
        })
    }

    /// Rows of entries.
    fn rows(&self) -> u32 {
        self.entries.len().div_ceil(self.columns) as u32
    }

    /// The height the legend adds below the plot (0 without entries).
    fn height(&self) -> u32 {
        if self.entries.is_empty() {
            0
        } else {
            self.rows() * LEGEND_ROW + 2 * LEGEND_PAD + 6
        }
    }
}

/// Draws the legend below the plot on `root` (the whole drawing), its frame's left edge at
/// `left` (the plot area's).
fn draw_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    layout: &LegendLayout,
    left: i32,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    if layout.entries.is_empty() {
        return Ok(());
    }
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let top = HEIGHT as i32;
    let columns = layout.columns.min(layout.entries.len());
    let width = columns as i32 * layout.column as i32 - LEGEND_GAP as i32 + 2 * LEGEND_PAD as i32;
    let height = (layout.rows() * LEGEND_ROW + 2 * LEGEND_PAD) as i32;
    root.draw(&Rectangle::new(
        [(left, top), (left + width, top + height)],
        LEGEND_BORDER.stroke_width(1),
    ))
    .map_err(err)?;
    let text_style = TextStyle::from((FONT, LEGEND_FONT).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, swatch)) in layout.entries.iter().enumerate() {
        let (row, column) = (i / layout.columns, i % layout.columns);
        let x = left + LEGEND_PAD as i32 + column as i32 * layout.column as i32;
        let y = top + (LEGEND_PAD + row as u32 * LEGEND_ROW + LEGEND_ROW / 2) as i32;
        match *swatch {
            Swatch::Shade(tone) => root.draw(&Rectangle::new(
                [(x, y - 5), (x + SWATCH, y + 5)],
                shade_style(tone),
            )),
            Swatch::Mark(Mark::Line(w), color) => root.draw(&PathElement::new(
                vec![(x, y), (x + SWATCH, y)],
                color.stroke_width(w),
            )),
            Swatch::Mark(Mark::Dashed, color) => root.draw(&DashedPathElement::new(
                vec![(x, y), (x + SWATCH, y)],
                5,
                3,
                color.stroke_width(2),
            )),
            Swatch::Mark(Mark::Points, color) => {
                root.draw(&Circle::new((x + SWATCH / 2, y), 4, color.filled()))
            }
            Swatch::Mark(Mark::Crosses, color) => {
                root.draw(&Cross::new((x + SWATCH / 2, y), 6, color.stroke_width(2)))
            }
        }
        .map_err(err)?;
        root.draw(&Text::new(
            name.clone(),
            (x + SWATCH + 8, y),
            text_style.clone(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Draws `chart`'s plot (without the legend) on `root`'s top [`HEIGHT`] pixels, with the
/// axis types its scales need.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> Result<PlotArea, String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (root, _) = root.split_vertically(HEIGHT);
    let root = &root;
    // The x axis covers the shaded spans too: charts over time of one report share it.
    let x = fit(
        chart.x_scale,
        chart
            .series
            .iter()
            .flat_map(|s| &s.points)
            .map(|p| p.0)
            .chain(
                chart
                    .shaded
                    .iter()
                    .flat_map(|s| &s.spans)
                    .flat_map(|(a, b)| [*a, *b]),
            ),
    );
    let y = fit(
        chart.y_scale,
        chart.series.iter().flat_map(|s| &s.points).map(|p| p.1),
    );
    let result = match (chart.x_scale, chart.y_scale) {
        (Scale::Linear, Scale::Linear) => draw_with(root, chart, x.clone(), y.clone()),
        (Scale::Linear, _) => draw_with(root, chart, x.clone(), y.clone().log_scale()),
        (_, Scale::Linear) => draw_with(root, chart, x.clone().log_scale(), y.clone()),
        (_, _) => draw_with(root, chart, x.clone().log_scale(), y.clone().log_scale()),
    };
    let (px, py) = result.map_err(|e| e.to_string())?;
    Ok(PlotArea {
        px: (px.start, px.end),
        py: (py.start, py.end),
        x: (x.start, x.end),
        y: (y.start, y.end),
    })
}

/// The axis range that shows `values` on `scale`.
fn fit(scale: Scale, values: impl Iterator<Item = f64>) -> Range<f64> {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        if scale != Scale::Linear && v <= 0.0 {
            continue;
        }
        low = low.min(v);
        high = high.max(v);
    }
    if !low.is_finite() {
        (low, high) = (1.0, 10.0);
    }
    match scale {
        Scale::Linear => {
            let low = low.min(0.0);
            let high = if high > low { high * 1.08 } else { low + 1.0 };
            low..high
        }
        Scale::Log => {
            // Whole decades around the values, so the ticks are round.
            let low = 10f64.powf(low.log10().floor());
            let mut high = 10f64.powf(high.log10().ceil());
            if high <= low {
                high = low * 10.0;
            }
            low..high
        }
        Scale::Percentile => {
            // From 0% to at least 99%, up to the decade above the largest x.
            let high = 10f64.powf(high.log10().ceil()).max(100.0);
            1.0..high
        }
    }
}

/// The unit every tick of a linear axis reaching `top` (its largest absolute end) is
/// written in, so one axis never mixes `8000` with `10k`: `(divisor, suffix)`.
fn tick_unit(top: f64) -> (f64, &'static str) {
    if top >= 1e6 {
        (1e6, "M")
    } else if top >= 1e4 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// A tick of an axis reaching `top`, in the axis' one unit ([`tick_unit`]): `2k`, `2.5k`,
/// `10k`; without a unit, up to two decimals from 1 up and four below (`120`, `1.5`,
/// `0.025`).
fn tick(v: f64, top: f64) -> String {
    let (divisor, suffix) = tick_unit(top);
    let scaled = v / divisor;
    let a = scaled.abs();
    if a == 0.0 {
        "0".into()
    } else if !suffix.is_empty() || a >= 1.0 {
        format!("{}{suffix}", trim(scaled, 2))
    } else {
        trim(scaled, 4)
    }
}

/// `v` with at most `decimals` decimals, trailing zeros dropped.
fn trim(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// An x of the percentile axis as the percentile it stands for: 10 -> `90%`.
pub fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x.max(1.0));
    // As many decimals as the nines need (99.99% has two), at most six.
    let decimals = ((x.log10().round() as i32) - 2).clamp(0, 6) as usize;
    format!("{}%", trim(p, decimals))
}

/// Formats a tick of an axis with `scale` reaching `top`: a linear axis in one unit
/// ([`tick_unit`]); a log axis in plain numbers (its decades span units: `0.1` to `10000`).
fn tick_for(scale: Scale, v: f64, top: f64) -> String {
    match scale {
        Scale::Percentile => percentile_label(v),
        Scale::Log => tick(v, 1.0),
        Scale::Linear => tick(v, top),
    }
}

/// A plot area's x and y extent in pixels.
type PixelRanges = (Range<i32>, Range<i32>);

/// The drawing itself, generic over the axis types. Returns the plot area's pixel ranges.
fn draw_with<DB, X, Y>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
    x: X,
    y: Y,
) -> Result<PixelRanges, DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, (FONT, 20))
        .margin(12)
        .margin_right(36)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)?;
    let (x_scale, y_scale) = (chart.x_scale, chart.y_scale);
    let top = |r: Range<f64>| r.start.abs().max(r.end.abs());
    let (x_top, y_top) = (top(ctx.x_range()), top(ctx.y_range()));
    let x_format = move |v: &f64| tick_for(x_scale, *v, x_top);
    let y_format = move |v: &f64| tick_for(y_scale, *v, y_top);
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_labels(10)
        .y_labels(8)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .bold_line_style(RGBColor(0xd0, 0xd0, 0xd0))
        .draw()?;

    let y_range = ctx.y_range();
    for shade in &chart.shaded {
        let style = shade_style(shade.tone);
        ctx.draw_series(
            shade
                .spans
                .iter()
                .map(|(a, b)| Rectangle::new([(*a, y_range.start), (*b, y_range.end)], style)),
        )?;
    }

    for series in &chart.series {
        let color = COLORS[series.color % COLORS.len()];
        let points = series
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        match series.mark {
            Mark::Line(width) => {
                ctx.draw_series(LineSeries::new(points, color.stroke_width(width)))?;
            }
            Mark::Dashed => {
                ctx.draw_series(DashedLineSeries::new(points, 6, 4, color.stroke_width(2)))?;
            }
            Mark::Points => {
                ctx.draw_series(LineSeries::new(points.clone(), color.stroke_width(1)))?;
                ctx.draw_series(points.map(|p| Circle::new(p, 4, color.filled())))?;
            }
            Mark::Crosses => {
                let style = color.stroke_width(2);
                ctx.draw_series(points.map(|p| Cross::new(p, 6, style)))?;
            }
        }
    }
    Ok(ctx.plotting_area().get_pixel_range())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(x_scale: Scale, y_scale: Scale) -> Chart {
        Chart {
            id: "sample".into(),
            title: "A <sample> & more".into(),
            caption: String::new(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale,
            y_scale,
            series: vec![
                Series {
                    name: "one".into(),
                    color: 0,
                    mark: Mark::Line(2),
                    points: vec![(1.0, 1.0), (10.0, 2.0), (1000.0, 30.0)],
                },
                Series {
                    name: "two".into(),
                    color: 1,
                    mark: Mark::Dashed,
                    points: vec![(1.0, 0.5), (100.0, 3.0)],
                },
                Series {
                    name: "three".into(),
                    color: 2,
                    mark: Mark::Points,
                    points: vec![(2.0, 0.7), (50.0, 4.0)],
                },
                Series {
                    name: "four".into(),
                    color: 3,
                    mark: Mark::Crosses,
                    points: vec![(3.0, 0.8)],
                },
            ],
            shaded: vec![Shade {
                name: "warm-up".into(),
                spans: vec![(1.0, 2.0)],
                tone: 0,
            }],
        }
    }

    #[test]
    fn every_scale_pair_draws_svg_and_png() {
        for (x, y) in [
            (Scale::Linear, Scale::Linear),
            (Scale::Percentile, Scale::Linear),
            (Scale::Linear, Scale::Log),
            (Scale::Log, Scale::Log),
        ] {
            let chart = sample(x, y);
            let svg = svg(&chart).unwrap();
            assert!(svg.text.starts_with("<svg"), "{}", &svg.text[..100]);
            assert!(svg.text.contains("&lt;sample&gt; &amp; more"));
            assert!(svg.text.contains(">\none\n</text>"));
            let area = svg.area;
            assert!(area.px.0 < area.px.1 && area.py.0 < area.py.1, "{area:?}");
            let png = png(&chart).unwrap();
            assert_eq!(&png[1..4], b"PNG");
        }
        // An empty chart still draws (axes only).
        let mut chart = sample(Scale::Percentile, Scale::Linear);
        chart.series.clear();
        chart.shaded.clear();
        assert!(svg(&chart).is_ok());
    }

    #[test]
    fn axes_fit_the_data_and_label_percentiles() {
        assert_eq!(fit(Scale::Linear, [2.0, 5.0].into_iter()), 0.0..5.4);
        assert_eq!(fit(Scale::Log, [0.3, 0.0, 42.0].into_iter()), 0.1..100.0);
        assert_eq!(fit(Scale::Percentile, [1.0, 12.0].into_iter()), 1.0..100.0);
        assert_eq!(
            fit(Scale::Percentile, [1.0, 2000.0].into_iter()),
            1.0..10000.0
        );
        assert_eq!(fit(Scale::Linear, std::iter::empty()), 0.0..10.8);
        let labels: Vec<String> = [1.0, 2.0, 10.0, 100.0, 1000.0, 1e4, 1e6]
            .into_iter()
            .map(percentile_label)
            .collect();
        assert_eq!(
            labels,
            ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.9999%"]
        );
        assert_eq!(tick(15_000.0, 15_000.0), "15k");
        assert_eq!(tick(2_500_000.0, 3e6), "2.5M");
        assert_eq!(tick(0.25, 1.0), "0.25");
        assert_eq!(tick(120.0, 150.0), "120");
        // N2: one unit per axis: a sweep's x axis up to 13000 was `2000 ... 8000, 10k, 12k`.
        let axis: Vec<String> = [0.0, 2000.0, 8000.0, 10_000.0, 12_000.0]
            .into_iter()
            .map(|v| tick_for(Scale::Linear, v, 13_000.0))
            .collect();
        assert_eq!(axis, ["0", "2k", "8k", "10k", "12k"]);
        let axis: Vec<String> = [500_000.0, 1_500_000.0, 2_000_000.0]
            .into_iter()
            .map(|v| tick_for(Scale::Linear, v, 2_100_000.0))
            .collect();
        assert_eq!(axis, ["0.5M", "1.5M", "2M"]);
        // Log axes: plain numbers, each decade as it is.
        let axis: Vec<String> = [0.1, 1.0, 1000.0, 10_000.0]
            .into_iter()
            .map(|v| tick_for(Scale::Log, v, 10_000.0))
            .collect();
        assert_eq!(axis, ["0.1", "1", "1000", "10000"]);
    }
}
