//! The SVG chart of a run: throughput and tail latency per second, and the sell-out curve
//! at full resolution (one point per granted hold), one panel each.

use super::error::LoadgenError;
use super::report::{Point, Report};
use plotters::prelude::*;
use std::path::Path;

const WIDTH: u32 = 1000;
const PANEL_HEIGHT: u32 = 300;

/// One line of a panel: its label, colour and `(x, y)` points.
struct Line {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

impl Line {
    /// A per-second line, each point at the middle of its second.
    fn per_second(label: &'static str, color: RGBColor, series: &[Point], value: fn(&Point) -> f64) -> Self {
        Self { label, color, points: series.iter().map(|p| (p.second as f64 + 0.5, value(p))).collect() }
    }

    /// A cumulative curve starting from zero at the start.
    fn curve(label: &'static str, color: RGBColor, curve: &[[f64; 2]]) -> Self {
        let points = std::iter::once((0.0, 0.0)).chain(curve.iter().map(|&[x, y]| (x, y))).collect();
        Self { label, color, points }
    }
}

/// Draws `report`'s series into an SVG file at `path`.
pub fn draw(report: &Report, path: &Path) -> Result<(), LoadgenError> {
    let chart_error = |e: &dyn std::fmt::Display| LoadgenError::Chart(e.to_string());
    let root = SVGBackend::new(path, (WIDTH, 3 * PANEL_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| chart_error(&e))?;
    let panels = root.split_evenly((3, 1));
    let s = &report.series;
    let mut throughput = vec![
        Line::per_second("requests/s", BLUE, s, |p| p.requests_per_s),
        Line::per_second("holds/s", GREEN, s, |p| p.holds_per_s),
        Line::per_second("conflicts/s", RGBColor(230, 140, 0), s, |p| p.conflicts_per_s),
        Line::per_second("errors/s", RED, s, |p| p.errors_per_s),
    ];
    if report.watch.is_some() {
        throughput.push(Line::per_second("frames/s", MAGENTA, s, |p| p.frames_per_s));
    }
    let latency = [Line::per_second("p50 ms", BLUE, s, |p| p.p50_ms), Line::per_second("p99 ms", RED, s, |p| p.p99_ms)];
    let mut sellout = vec![Line::curve("seats held", GREEN, &report.held_curve)];
    if !report.sold_curve.is_empty() {
        sellout.push(Line::curve("seats paid", BLUE, &report.sold_curve));
    }
    let last = |c: &[[f64; 2]]| c.last().map_or(0.0, |p| p[0]);
    let x_max = (s.len() as f64).max(last(&report.held_curve)).max(last(&report.sold_curve)).max(1.0);
    let caption = format!("loadgen {} against {}: per second", report.scenario, report.base_url);
    panel(&panels[0], &caption, "per second", x_max, &throughput).map_err(|e| chart_error(&e))?;
    let caption = "latency of the requests answered in each second";
    panel(&panels[1], caption, "ms", x_max, &latency).map_err(|e| chart_error(&e))?;
    let caption = match report.time_to_sell_out_s {
        Some(t) => format!("sell-out curve: sold out {t:.2} s after the first hold"),
        None => "sell-out curve".to_owned(),
    };
    panel(&panels[2], &caption, "seats", x_max, &sellout).map_err(|e| chart_error(&e))?;
    root.present().map_err(|e| chart_error(&e))
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    x_max: f64,
    lines: &[Line],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let y_max = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart.configure_mesh().max_light_lines(0).x_desc("seconds since the load started").y_desc(unit).draw()?;
    for line in lines {
        let color = line.color;
        // Sparse lines get their points marked: a run shorter than two seconds has one
        // point per line, which a line alone would not show.
        let marks = if line.points.len() < 60 { 2 } else { 0 };
        let series = LineSeries::new(line.points.iter().copied(), color.stroke_width(2)).point_size(marks);
        chart
            .draw_series(series)?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    // Curves rise left to right: the top left is free of them.
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}
