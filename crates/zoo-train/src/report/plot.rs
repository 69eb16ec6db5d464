//! PNG plots of a run: training progress (accuracy and loss vs iteration, training and
//! validation, like MATLAB's training-progress window) and the confusion matrix.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::trainer::{IterationRow, ValidationRow};

/// The font ships with zoo (DejaVu Sans Mono, Bitstream Vera licence: assets/), so plots have
/// labels on machines without any font installed.
pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSansMono.ttf"),
        );
    });
}

fn err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Moving average over `window` iterations: mini-batch curves are noisy.
fn smooth(values: &[f64], window: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0;
    for (i, v) in values.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= values[i - window];
        }
        out.push(sum / (i + 1).min(window) as f64);
    }
    out
}

/// One panel: a smoothed training curve and the validation points over iterations.
struct Panel<'a> {
    title: &'a str,
    y_max: f64,
    color: RGBColor,
    train: Vec<f64>,
    val: Vec<(f64, f64)>,
    legend: SeriesLabelPosition,
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    its: &[f64],
    max_it: f64,
    p: Panel<'_>,
) -> std::io::Result<()> {
    let window = (its.len() / 20).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..max_it, 0.0..p.y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .draw()
        .map_err(err)?;
    let color = p.color;
    chart
        .draw_series(LineSeries::new(
            its.iter().copied().zip(smooth(&p.train, window)),
            color,
        ))
        .map_err(err)?
        .label("training (smoothed)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    chart
        .draw_series(LineSeries::new(
            p.val.iter().copied(),
            BLACK.stroke_width(2),
        ))
        .map_err(err)?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .draw_series(p.val.iter().map(|&pt| Circle::new(pt, 3, BLACK.filled())))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(p.legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// The training-progress plot of a run.
pub const PROGRESS_PNG: &str = "training-progress.png";

pub fn training_progress(
    path: &Path,
    iterations: &[IterationRow],
    validations: &[ValidationRow],
) -> std::io::Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(360);
    let max_it = iterations.last().map_or(1, |r| r.iteration).max(1) as f64;
    let its: Vec<f64> = iterations.iter().map(|r| r.iteration as f64).collect();
    let accuracy = Panel {
        title: "accuracy (%)",
        y_max: 100.0,
        color: BLUE,
        train: iterations
            .iter()
            .map(|r| 100.0 * r.train_accuracy)
            .collect(),
        val: validations
            .iter()
            .map(|v| (v.iteration as f64, 100.0 * v.val_accuracy))
            .collect(),
        legend: SeriesLabelPosition::LowerRight,
    };
    draw_panel(&top, &its, max_it, accuracy)?;
    let train_loss: Vec<f64> = iterations.iter().map(|r| r.train_loss).collect();
    let val_loss: Vec<(f64, f64)> = validations
        .iter()
        .map(|v| (v.iteration as f64, v.val_loss))
        .collect();
    let y_max = train_loss
        .iter()
        .chain(val_loss.iter().map(|(_, l)| l))
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.05;
    let loss = Panel {
        title: "loss",
        y_max,
        color: RED,
        train: train_loss,
        val: val_loss
            .into_iter()
            .filter(|(_, l)| l.is_finite())
            .collect(),
        legend: SeriesLabelPosition::LowerLeft,
    };
    draw_panel(&bottom, &its, max_it, loss)?;
    root.present().map_err(err)
}

/// The learning-rate finder's curve: the loss (recorded and smoothed) against the rate on a log
/// axis, with each rule's suggestion marked.
pub fn lr_find(path: &Path, found: &crate::lr_find::LrFind) -> std::io::Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let finite = |v: &&f64| v.is_finite();
    let lo = found
        .smoothed
        .iter()
        .filter(finite)
        .fold(f64::INFINITY, |a, &b| a.min(b));
    let first = found
        .smoothed
        .first()
        .copied()
        .filter(|v| v.is_finite())
        .unwrap_or(1.0);
    // Up to twice the starting loss: the blow-up at the end would flatten the rest.
    let (y_lo, y_hi) = (lo.min(first) * 0.9, (2.0 * first).max(lo * 1.1).max(1e-6));
    let (x_lo, x_hi) = (found.sweep.start, found.sweep.end);
    let mut chart = ChartBuilder::on(&root)
        .caption("learning-rate finder", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(34)
        .y_label_area_size(50)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("learning rate (log scale)")
        .y_desc("loss")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(err)?;
    let clip = |v: f64| v.clamp(y_lo, y_hi);
    let points = |values: &[f64]| -> Vec<(f64, f64)> {
        (found.lrs.iter().zip(values))
            .filter(|(_, v)| v.is_finite())
            .map(|(&lr, &v)| (lr, clip(v)))
            .collect()
    };
    let grey = RGBColor(180, 180, 180);
    chart
        .draw_series(LineSeries::new(points(&found.losses), grey))
        .map_err(err)?
        .label("mini-batch loss")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    chart
        .draw_series(LineSeries::new(
            points(&found.smoothed),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("smoothed")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    for (k, s) in found.suggestions.iter().enumerate() {
        let color = class_color(k + 1);
        let mark = (s.lr.clamp(x_lo, x_hi), clip(s.loss));
        chart
            .draw_series(std::iter::once(Circle::new(mark, 6, color.filled())))
            .map_err(err)?
            .label(format!("{} {:.1e}", s.rule, s.lr))
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// A heat map of `m[true][predicted]` with the counts written in the cells.
pub fn confusion(path: &Path, m: &[Vec<usize>], names: &[String]) -> std::io::Result<()> {
    register_font();
    let n = names.len().max(1);
    let cell = (560 / n).clamp(24, 90) as u32;
    let label_w = 12 + 9 * names.iter().map(|s| s.len()).max().unwrap_or(1).min(24) as u32;
    let size = (
        label_w + cell * n as u32 + 20,
        label_w + cell * n as u32 + 40,
    );
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let font = ("sans-serif", 14).into_font();
    root.draw(&Text::new(
        "true class (rows) x predicted (columns)",
        (10, 8),
        font.clone(),
    ))
    .map_err(err)?;
    let max = m.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let (x0, y0) = (label_w as i32, label_w as i32 + 20);
    for (r, row) in m.iter().enumerate() {
        for (c, &count) in row.iter().enumerate() {
            let shade = count as f64 / max;
            let color = if r == c {
                RGBColor(
                    255 - (200.0 * shade) as u8,
                    255 - (90.0 * shade) as u8,
                    255 - (200.0 * shade) as u8,
                )
            } else {
                RGBColor(
                    255,
                    255 - (200.0 * shade) as u8,
                    255 - (200.0 * shade) as u8,
                )
            };
            let (x, y) = (x0 + c as i32 * cell as i32, y0 + r as i32 * cell as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                color.filled(),
            ))
            .map_err(err)?;
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                BLACK.mix(0.3),
            ))
            .map_err(err)?;
            root.draw(&Text::new(
                count.to_string(),
                (x + 4, y + cell as i32 / 2 - 7),
                font.clone(),
            ))
            .map_err(err)?;
        }
    }
    for (i, name) in names.iter().enumerate() {
        let short: String = name.chars().take(24).collect();
        root.draw(&Text::new(
            short.clone(),
            (6, y0 + i as i32 * cell as i32 + cell as i32 / 2 - 7),
            font.clone(),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            short,
            (x0 + i as i32 * cell as i32 + 2, y0 - 18),
            font.clone().transform(FontTransform::None),
        ))
        .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Where `zoo train linear2d` draws its two features and the learned line.
pub const DECISION_PNG: &str = "decision.png";

/// A line `a x + b y + c = 0` drawn across a scatter plot.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

/// What a scatter plot shows: one point per image, coloured by class, with a legend.
pub struct Scatter<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// `(x, y, class)`.
    pub points: &'a [(f64, f64, usize)],
    pub classes: &'a [String],
    pub line: Option<Line>,
}

/// Distinct colours for up to 10 classes (Tableau 10), then repeating.
pub fn class_color(k: usize) -> RGBColor {
    const TABLEAU: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TABLEAU[k % TABLEAU.len()];
    RGBColor(r, g, b)
}

fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

pub fn scatter(path: &Path, s: &Scatter<'_>) -> std::io::Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (800, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (x0, x1) = span(s.points.iter().map(|p| p.0));
    let (y0, y1) = span(s.points.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(&root)
        .caption(s.title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(s.x_label)
        .y_desc(s.y_label)
        .draw()
        .map_err(err)?;
    for (k, name) in s.classes.iter().enumerate() {
        let color = class_color(k);
        chart
            .draw_series(
                s.points
                    .iter()
                    .filter(|p| p.2 == k)
                    .map(|p| Circle::new((p.0, p.1), 3, color.mix(0.7).filled())),
            )
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
    }
    if let Some(l) = s.line.filter(|l| l.b.abs() > 1e-12 || l.a.abs() > 1e-12) {
        // Sampled across the plot and clipped to it: steep lines stay visible.
        let pts: Vec<(f64, f64)> = (0..=400)
            .map(|i| {
                if l.b.abs() > 1e-12 {
                    let x = x0 + (x1 - x0) * i as f64 / 400.0;
                    (x, -(l.a * x + l.c) / l.b)
                } else {
                    let y = y0 + (y1 - y0) * i as f64 / 400.0;
                    (-(l.b * y + l.c) / l.a, y)
                }
            })
            .filter(|(x, y)| (x0..=x1).contains(x) && (y0..=y1).contains(y))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, BLACK.stroke_width(2)))
            .map_err(err)?
            .label("decision line")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// An RGB picture (`width x height`, row-major) with one line of caption under it, as PNG.
pub fn captioned(
    path: &Path,
    rgb: &[u8],
    (width, height): (u32, u32),
    caption: &str,
) -> std::io::Result<()> {
    register_font();
    let band = 28;
    // The DejaVu Sans Mono glyphs at 14 px are 8-9 px wide.
    let canvas_width = width.max(9 * caption.chars().count() as u32 + 12);
    let root = BitMapBackend::new(path, (canvas_width, height + band)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for y in 0..height {
        for x in 0..width {
            let i = ((y * width + x) * 3) as usize;
            root.draw_pixel(
                (x as i32, y as i32),
                &RGBColor(rgb[i], rgb[i + 1], rgb[i + 2]),
            )
            .map_err(err)?;
        }
    }
    root.draw(&Text::new(
        caption.to_string(),
        (6, height as i32 + 7),
        ("sans-serif", 14).into_font().color(&BLACK),
    ))
    .map_err(err)?;
    root.present().map_err(err)
}

/// The "jet" colour map at `t` in 0..1: blue (low) through green to red (high).
pub fn jet(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let channel = |c: f32| ((1.5 - (4.0 * t - c).abs()).clamp(0.0, 1.0) * 255.0) as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}
