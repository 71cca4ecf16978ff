//! Recall/QPS curves drawn with `plotters`, as PNG and SVG: recall@10 across, queries per
//! second up (log scale). Each engine gets one colour: its measured points as dots, and the line
//! through its Pareto front (the points no other point of the same engine beats on both recall
//! and QPS), which is the curve a user tuning that engine can reach.
//!
//! Text needs a font: the PNG renderer (ab_glyph) is handed the file fontconfig names for
//! `sans-serif` (`fc-match`), read once per process.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One measured point of one engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Engine (curve) name.
    pub engine: String,
    /// The knobs that gave it, e.g. `ef 64` or `nprobe 16 / rerank 50`.
    pub label: String,
    /// Recall@10.
    pub recall: f64,
    /// Queries per second.
    pub qps: f64,
}

/// The points of `points` that no other beats on both recall and QPS, by ascending recall.
pub fn pareto(points: &[&Point]) -> Vec<Point> {
    let mut v: Vec<Point> = points.iter().map(|p| (*p).clone()).collect();
    // By descending recall (then QPS): a point stays if it is faster than all with more recall.
    v.sort_by(|a, b| b.recall.total_cmp(&a.recall).then(b.qps.total_cmp(&a.qps)));
    let mut best = f64::NEG_INFINITY;
    let mut front = Vec::new();
    for p in v {
        if p.qps > best {
            best = p.qps;
            front.push(p);
        }
    }
    front.reverse();
    front
}

/// Registers fontconfig's sans-serif font for the renderers, once.
fn font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = std::process::Command::new("fc-match")
            .args(["-f", "%{file}", "sans-serif"])
            .output()
            .map_err(|e| format!("running fc-match (fontconfig) to find a font: {e}"))?;
        let file = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let bytes = std::fs::read(&file).map_err(|e| format!("reading font {file:?}: {e}"))?;
        // The renderer keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{file:?} is not a font ab_glyph reads"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Distinct colours for up to ten engines, Quiver's first.
const COLOURS: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    points: &[Point],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let mut engines: Vec<&str> = Vec::new();
    for p in points {
        if !engines.contains(&p.engine.as_str()) {
            engines.push(&p.engine);
        }
    }
    let rmin = points.iter().map(|p| p.recall).fold(1.0, f64::min);
    let x0 = ((rmin * 20.0).floor() / 20.0).clamp(0.0, 0.95);
    let qmin = points.iter().map(|p| p.qps).fold(f64::INFINITY, f64::min);
    let qmax = points.iter().map(|p| p.qps).fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..1.0, ((qmin * 0.8).max(0.1)..qmax * 1.25).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("recall@10")
        .y_desc("queries per second (one thread, log scale)")
        .y_label_formatter(&|q| crate::report::thousands(*q))
        .x_label_formatter(&|r| format!("{r:.2}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (i, e) in engines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mine: Vec<&Point> = points.iter().filter(|p| p.engine == *e).collect();
        let front = pareto(&mine);
        chart
            .draw_series(LineSeries::new(
                front.iter().map(|p| (p.recall, p.qps)),
                colour.stroke_width(2),
            ))?
            .label(*e)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart.draw_series(
            mine.iter()
                .map(|p| Circle::new((p.recall, p.qps), 3, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Draws `points` to `stem.png` and `stem.svg` and returns both paths.
pub fn recall_qps(title: &str, points: &[Point], stem: &Path) -> anyhow::Result<[PathBuf; 2]> {
    anyhow::ensure!(!points.is_empty(), "nothing to plot");
    font()?;
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    draw(
        BitMapBackend::new(&png, (960, 640)).into_drawing_area(),
        title,
        points,
    )?;
    draw(
        SVGBackend::new(&svg, (960, 640)).into_drawing_area(),
        title,
        points,
    )?;
    Ok([png, svg])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(recall: f64, qps: f64) -> Point {
        Point {
            engine: "e".into(),
            label: String::new(),
            recall,
            qps,
        }
    }

    #[test]
    fn pareto_front_by_hand() {
        // (0.9, 500) is beaten by (0.95, 600); the rest trade recall for speed.
        let pts = [
            p(0.8, 1000.0),
            p(0.9, 500.0),
            p(0.95, 600.0),
            p(0.99, 100.0),
        ];
        let refs: Vec<&Point> = pts.iter().collect();
        let front: Vec<(f64, f64)> = pareto(&refs).iter().map(|p| (p.recall, p.qps)).collect();
        assert_eq!(front, vec![(0.8, 1000.0), (0.95, 600.0), (0.99, 100.0)]);
    }
}
