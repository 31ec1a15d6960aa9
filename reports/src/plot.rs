//! Plots: two chart shapes cover every figure — bars with a min–max whisker (throughput)
//! and lines over named categories (latency percentiles, the flush trace, history).
//! Each renders to SVG text (for `report.html`) and to PNG. Text is drawn with DejaVu Sans
//! compiled into the binary, so PNGs have their labels on a machine with no fonts at all.
#![warn(clippy::cast_possible_truncation)]

use plotters::coord::ranged1d::{SegmentedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordi32;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

/// Width of every figure, pixels.
pub const WIDTH: u32 = 900;
/// Height of every figure, pixels.
pub const HEIGHT: u32 = 520;

/// The font family name the figures ask for; registered from the bundled DejaVu Sans.
const FAMILY: &str = "sans-serif";

fn register_bundled_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            // The bytes are DejaVu Sans from the `dejavu` crate: a valid TrueType font.
            register_font(FAMILY, style, bytes).unwrap_or_else(|_| unreachable!());
        }
    });
}

/// One bar: a median with its range across repetitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Category label under the bar.
    pub label: String,
    /// Median.
    pub median: f64,
    /// Smallest repetition.
    pub min: f64,
    /// Largest repetition.
    pub max: f64,
}

/// One line of a category chart; `None` leaves a gap (the layer or run has no value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// One value per category.
    pub values: Vec<Option<f64>>,
}

/// What a figure shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// Bars with whiskers and an optional dashed reference line (the host baseline).
    Bars {
        /// The bars.
        bars: Vec<Bar>,
        /// Label and value of the reference line.
        reference: Option<(String, f64)>,
    },
    /// Lines over categories, with each point's value written next to it when `labels`.
    Lines {
        /// The x categories, in order.
        categories: Vec<String>,
        /// The lines.
        series: Vec<Series>,
        /// Logarithmic y axis.
        log_y: bool,
        /// Write each value beside its point.
        labels: bool,
    },
}

/// A titled chart with a file stem.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File stem under `plots/` (only `[A-Za-z0-9._-]`).
    pub stem: String,
    /// Title drawn above the chart.
    pub title: String,
    /// Y axis description, with its unit.
    pub y_label: String,
    /// The data.
    pub chart: Chart,
}

/// Why a figure could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The drawing backend failed.
    #[error("cannot draw {stem}: {message}")]
    Draw {
        /// The figure.
        stem: String,
        /// The backend's words.
        message: String,
    },
    /// The file could not be written (the old one, if any, is left as it was).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A file stem from a free-form name: everything outside `[A-Za-z0-9._-]` becomes `_`.
pub fn stem(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Minor grid lines.
const LIGHT: RGBColor = RGBColor(238, 238, 238);

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A compact number for labels: 3 significant digits, thousands as k/M, from a billion on
/// in scientific notation (so a huge value is a short label, not 300 digits).
pub fn short(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() || a >= 1e9 {
        format!("{v:.2e}")
    } else if a >= 1e6 {
        format!("{:.3}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Largest axis end. Far below `f64::MAX`, so the plotting library's range arithmetic
/// (key points, log decades) never overflows to infinity, where its loops never end.
pub const AXIS_MAX: f64 = 1e300;
/// Smallest bottom of a log axis.
pub const AXIS_MIN_LOG: f64 = 1e-300;
/// Most decades a log axis spans; smaller values fall below it and are not drawn (the
/// tables still give them).
pub const LOG_DECADES: i32 = 12;

/// A value as drawn: finite, not negative, at most [`AXIS_MAX`]; `None` is not drawn.
fn drawable(v: f64) -> Option<f64> {
    (v.is_finite() && v >= 0.0).then(|| v.min(AXIS_MAX))
}

/// The top of a linear axis from zero over `values`, with room above the largest: finite,
/// positive, at most [`AXIS_MAX`].
pub fn linear_top(values: impl IntoIterator<Item = f64>, headroom: f64) -> f64 {
    let top = values
        .into_iter()
        .filter_map(drawable)
        .fold(0.0_f64, f64::max);
    if top > 0.0 {
        (top * headroom).min(AXIS_MAX)
    } else {
        1.0
    }
}

/// The range of a log axis over `values`: finite, `0 < lo < hi <= AXIS_MAX`, at most
/// [`LOG_DECADES`] decades.
pub fn log_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter_map(drawable)
        .filter(|v| *v > 0.0)
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi == 0.0 {
        return (1.0, 10.0);
    }
    let hi = (hi * 8.0).clamp(AXIS_MIN_LOG * 10.0, AXIS_MAX);
    let lo = (lo / 2.0)
        .max(hi / 10f64.powi(LOG_DECADES))
        .max(AXIS_MIN_LOG)
        .min(hi / 10.0);
    (lo, hi)
}

fn draw<DB: DrawingBackend>(fig: &Figure, root: &DrawingArea<DB, Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    register_bundled_font();
    root.fill(&WHITE)?;
    match &fig.chart {
        Chart::Bars { bars, reference } => draw_bars(fig, root, bars, reference.as_ref())?,
        Chart::Lines {
            categories,
            series,
            log_y,
            labels,
        } => draw_lines(fig, root, categories, series, *log_y, *labels)?,
    }
    root.present()?;
    Ok(())
}

/// A chart position for the `i`th bar, category or series (saturating: no figure has
/// anywhere near `i32::MAX` of them).
fn pos(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

/// Bars with min–max whiskers, and a dashed reference line if there is one.
fn draw_bars<DB: DrawingBackend>(
    fig: &Figure,
    root: &DrawingArea<DB, Shift>,
    bars: &[Bar],
    reference: Option<&(String, f64)>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let font = |size: u32| (FAMILY, size).into_font();
    // Headroom above the tallest whisker for its label and the legend.
    let top = linear_top(
        bars.iter()
            .flat_map(|b| [b.max, b.median])
            .chain(reference.iter().map(|r| r.1)),
        1.3,
    );
    let n = pos(bars.len().max(1));
    // One bar on a range of one value has no width: it gets an empty segment on
    // either side.
    let x = if n == 1 { -1..1 } else { 0..n - 1 };
    let mut chart = ChartBuilder::on(root)
        .caption(&fig.title, font(20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.clone().into_segmented(), 0.0..top)?;
    mesh(&mut chart, &fig.y_label, &|i| {
        bars.get(i).map(|b| b.label.clone())
    })?;
    for (i, b) in bars.iter().enumerate() {
        let c = colour(i);
        let i = pos(i);
        // A bar without a drawable median keeps its label and draws nothing.
        let Some(median) = drawable(b.median) else {
            continue;
        };
        let (min, max) = (
            drawable(b.min).unwrap_or(median),
            drawable(b.max).unwrap_or(median),
        );
        chart.draw_series(std::iter::once(Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), median),
            ],
            c.mix(0.75).filled(),
        )))?;
        chart.draw_series(std::iter::once(ErrorBar::new_vertical(
            SegmentValue::CenterOf(i),
            min,
            median,
            max,
            BLACK.stroke_width(2),
            14,
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            short(median),
            (
                SegmentValue::CenterOf(i),
                (max.max(median) + top * 0.01).min(top),
            ),
            TextStyle::from(font(13)).pos(Pos::new(HPos::Center, VPos::Bottom)),
        )))?;
    }
    if let Some((label, v)) = reference.filter(|r| drawable(r.1).is_some()) {
        let v = v.min(AXIS_MAX);
        chart
            .draw_series(DashedLineSeries::new(
                [
                    (SegmentValue::Exact(x.start), v),
                    (SegmentValue::Exact(x.end + 1), v),
                ],
                8,
                5,
                BLACK.stroke_width(1),
            ))?
            .label(format!("{label} {}", short(v)))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
        legend(&mut chart)?;
    }
    Ok(())
}

/// Series over categories, on a log or a linear y axis.
fn draw_lines<DB: DrawingBackend>(
    fig: &Figure,
    root: &DrawingArea<DB, Shift>,
    categories: &[String],
    series: &[Series],
    log_y: bool,
    labels: bool,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let font = |size: u32| (FAMILY, size).into_font();
    let values = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
    };
    let n = pos(categories.len().max(1));
    // The y ranges leave room above the data for the legend in the upper right.
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&fig.title, font(20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    if log_y {
        let (lo, hi) = log_range(values());
        let mut chart =
            builder.build_cartesian_2d((0..n - 1).into_segmented(), (lo..hi).log_scale())?;
        lines(&mut chart, fig, categories, series, labels, lo)?;
    } else {
        let hi = linear_top(values(), 1.35);
        let mut chart = builder.build_cartesian_2d((0..n - 1).into_segmented(), 0.0..hi)?;
        lines(&mut chart, fig, categories, series, labels, 0.0)?;
    }
    Ok(())
}

/// Axes and grid of a chart over categories, `label` naming each category.
fn mesh<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<SegmentedCoord<RangedCoordi32>, Y>>,
    y_label: &str,
    label: &dyn Fn(usize) -> Option<String>,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let font = |size: u32| (FAMILY, size).into_font();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(LIGHT)
        .y_labels(8)
        .y_desc(y_label)
        .y_label_formatter(&|v| short(*v))
        .label_style(font(13))
        .axis_desc_style(font(14))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => label(*i as usize).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    Ok(())
}

/// Draws `series` over categories on a chart with either y scale; points below `floor`
/// (the bottom of a log axis), negative or not finite are left out rather than drawn off
/// the chart.
fn lines<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<SegmentedCoord<RangedCoordi32>, Y>>,
    fig: &Figure,
    categories: &[String],
    series: &[Series],
    labels: bool,
    floor: f64,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let font = |size: u32| (FAMILY, size).into_font();
    mesh(chart, &fig.y_label, &|i| categories.get(i).cloned())?;
    let shown = |v: f64| drawable(v).filter(|v| *v >= floor);
    for (si, s) in series.iter().enumerate() {
        let c = colour(si);
        // Earlier series are drawn wider and with larger points, so a series that a later
        // one covers (equal counts on every layer) still shows as a border around it.
        let behind = pos((series.len() - 1 - si).min(3));
        let (width, radius) = (3 + 2 * behind.unsigned_abs(), 5 + 2 * behind);
        let points: Vec<(i32, f64)> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.and_then(shown).map(|v| (pos(i), v)))
            .collect();
        // Consecutive present points are joined; a gap (a missing layer) breaks the line.
        for pair in points.windows(2).filter(|p| p[1].0 == p[0].0 + 1) {
            chart.draw_series(std::iter::once(PathElement::new(
                pair.iter()
                    .map(|&(i, v)| (SegmentValue::CenterOf(i), v))
                    .collect::<Vec<_>>(),
                c.stroke_width(width),
            )))?;
        }
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(i, v)| Circle::new((SegmentValue::CenterOf(i), v), radius, c.filled())),
            )?
            .label(s.name.clone())
            .legend(move |(x, y)| Circle::new((x + 9, y), 5, c.filled()));
        if labels {
            chart.draw_series(points.iter().map(|&(i, v)| {
                EmptyElement::at((SegmentValue::CenterOf(i), v))
                    + Text::new(
                        short(v),
                        (7 + 2 * radius, -4 - 15 * pos(si)),
                        font(13).color(&c).pos(Pos::new(HPos::Left, VPos::Bottom)),
                    )
            }))?;
        }
    }
    legend(chart)
}

/// The legend, in the upper right where every chart leaves room for it.
fn legend<'a, DB, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<SegmentedCoord<RangedCoordi32>, Y>>,
) -> DrawResult
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_series_labels()
        .label_font((FAMILY, 13).into_font())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

fn draw_error(fig: &Figure, e: &dyn std::error::Error) -> PlotError {
    PlotError::Draw {
        stem: fig.stem.clone(),
        message: e.to_string(),
    }
}

/// The figure as a standalone SVG document.
pub fn svg(fig: &Figure) -> Result<String, PlotError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        draw(fig, &root).map_err(|e| draw_error(fig, &*e))?;
    }
    Ok(out)
}

/// Writes the figure as a PNG file, atomically: a full disk leaves the old file or none,
/// never half an image.
pub fn png(fig: &Figure, path: &Path) -> Result<(), PlotError> {
    crate::atomic::replace_with(path, |tmp| {
        let root = BitMapBackend::new(tmp, (WIDTH, HEIGHT)).into_drawing_area();
        draw(fig, &root).map_err(|e| std::io::Error::other(draw_error(fig, &*e)))
    })
    .map_err(|source| PlotError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(values: &[f64]) -> Figure {
        Figure {
            stem: "t".into(),
            title: "t".into(),
            y_label: "MiB/s".into(),
            chart: Chart::Bars {
                bars: values
                    .iter()
                    .map(|&v| Bar {
                        label: "b".into(),
                        median: v,
                        min: v,
                        max: v,
                    })
                    .collect(),
                reference: None,
            },
        }
    }

    /// The width of the first bar (the first palette colour) in the SVG.
    fn first_bar_width(svg: &str) -> u32 {
        let rect = svg
            .split("<rect ")
            .find(|r| r.contains("fill=\"#1F77B4\""))
            .unwrap_or_else(|| panic!("no bar in {svg}"));
        let w = rect.split("width=\"").nth(1).unwrap();
        w[..w.find('"').unwrap()].parse().unwrap()
    }

    /// A chart of one bar drew it with no width (a range of one value).
    #[test]
    fn a_single_bar_is_drawn() {
        assert!(first_bar_width(&svg(&bars(&[36.0])).unwrap()) > 100);
        assert!(first_bar_width(&svg(&bars(&[36.0, 50.0])).unwrap()) > 100);
    }

    /// Issue 9 item 8: an infinite or f64::MAX-sized axis made plotters' key-point loops
    /// run for ever.
    #[test]
    fn axis_ranges_are_finite_and_bounded() {
        for v in [f64::INFINITY, f64::MAX, 1e300, f64::NAN, -1.0] {
            let top = linear_top([1.0, v], 1.35);
            assert!(
                top.is_finite() && top > 0.0 && top <= AXIS_MAX,
                "{v}: {top}"
            );
        }
        for values in [
            vec![5e-324, f64::MAX],
            vec![f64::MIN_POSITIVE],
            vec![f64::INFINITY, 0.0],
            vec![1.0, 1e6],
        ] {
            let (lo, hi) = log_range(values.clone());
            assert!(
                lo > 0.0 && lo < hi && hi <= AXIS_MAX,
                "{values:?}: {lo}..{hi}"
            );
            assert!(
                (hi / lo).log10() <= f64::from(LOG_DECADES) + 1e-9,
                "{values:?}: {lo}..{hi}"
            );
        }
        assert_eq!(log_range([1.0, 1e3]), (0.5, 8e3));
        assert_eq!(short(f64::MAX), "1.80e308");
    }

    #[test]
    fn png_is_written_whole_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.png");
        png(&bars(&[1.0, 2.0]), &p).unwrap();
        assert!(std::fs::read(&p).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
