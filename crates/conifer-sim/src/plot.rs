//! SVG plots of a run, drawn with `plotters`' SVG backend only (no font or
//! bitmap backends, so nothing needs system libraries): delivery ratio over
//! time, the stretch histogram, control traffic per node, convergence over
//! time and, for adversary sweeps, delivery against the adversary fraction.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::results::Results;

type PlotResult = Result<(), Box<dyn std::error::Error>>;

const SIZE: (u32, u32) = (800, 480);
const FONT: &str = "sans-serif";

fn colour(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(23, 190, 207),
    ];
    PALETTE[i % PALETTE.len()]
}

/// Writes every plot that has data; returns the files written.
pub fn write_all(results: &Results, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let mut go = |name: &str, f: &dyn Fn(&Path) -> PlotResult, has_data: bool| {
        if !has_data {
            return Ok(());
        }
        let path = dir.join(name);
        f(&path).map_err(|e| format!("plotting {}: {e}", path.display()))?;
        written.push(path);
        Ok::<(), String>(())
    };
    let s = &results.series;
    go(
        "delivery.svg",
        &|p| delivery(results, p),
        s.iter().any(|x| !x.series.delivery.is_empty()),
    )?;
    go(
        "stretch.svg",
        &|p| stretch(results, p),
        s.first()
            .is_some_and(|x| !x.series.stretch_histogram.is_empty()),
    )?;
    go(
        "control.svg",
        &|p| control(results, p),
        s.iter()
            .any(|x| !x.series.control_bytes_per_node_per_sec.is_empty()),
    )?;
    go(
        "convergence.svg",
        &|p| convergence(results, p),
        s.first().is_some_and(|x| !x.series.convergence.is_empty()),
    )?;
    go(
        "adversary.svg",
        &|p| adversary(results, p),
        !results.runs.is_empty(),
    )?;
    Ok(written)
}

fn delivery(r: &Results, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let xmax = r
        .series
        .iter()
        .flat_map(|s| s.series.delivery.iter().map(|p| p[0]))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: ping arrival ratio over time", r.scenario.name),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..xmax * 1.02, 0f64..1.05)?;
    chart
        .configure_mesh()
        .x_desc("virtual time (s)")
        .y_desc("arrival ratio")
        .draw()?;
    for (i, s) in r.series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(
                s.series.delivery.iter().map(|p| (p[0], p[1])),
                &c,
            ))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn stretch(r: &Results, path: &Path) -> PlotResult {
    let s = &r.series[0];
    let hist = &s.series.stretch_histogram;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let xmax = hist.iter().map(|b| b[0] + 0.25).fold(2.0f64, f64::max);
    let ymax = hist.iter().map(|b| b[1]).fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} ({}): path stretch (hops ÷ shortest)",
                r.scenario.name, s.label
            ),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(1f64..xmax, 0f64..ymax * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("stretch")
        .y_desc("delivered pings")
        .draw()?;
    chart.draw_series(
        hist.iter()
            .map(|b| Rectangle::new([(b[0], 0.0), (b[0] + 0.25, b[1])], colour(0).filled())),
    )?;
    root.present()?;
    Ok(())
}

fn control(r: &Results, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let n = r
        .series
        .iter()
        .map(|s| s.series.control_bytes_per_node_per_sec.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let ymax = r
        .series
        .iter()
        .flat_map(|s| s.series.control_bytes_per_node_per_sec.iter().copied())
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: control traffic per node (sorted)", r.scenario.name),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..(n - 1) as f64, 0f64..ymax * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("node rank")
        .y_desc("control bytes sent / s")
        .draw()?;
    for (i, s) in r.series.iter().enumerate() {
        let mut v = s.series.control_bytes_per_node_per_sec.clone();
        v.sort_by(|a, b| b.total_cmp(a));
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(
                v.into_iter().enumerate().map(|(k, y)| (k as f64, y)),
                &c,
            ))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn convergence(r: &Results, path: &Path) -> PlotResult {
    let s = &r.series[0];
    let pts = &s.series.convergence;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let xmax = pts.iter().map(|p| p[0]).fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} ({}): convergence", r.scenario.name, s.label),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..xmax, 0f64..1.05)?;
    chart
        .configure_mesh()
        .x_desc("virtual time (s)")
        .y_desc("fraction of nodes")
        .draw()?;
    for (i, label) in [(1usize, "agree on root"), (2, "right SNEK predecessor")] {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(pts.iter().map(|p| (p[0], p[i])), &c))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn adversary(r: &Results, path: &Path) -> PlotResult {
    let pts: Vec<(f64, f64, Option<f64>)> = r
        .runs
        .iter()
        .filter_map(|(_, m)| {
            let frac = m.get("malicious_identities")?.as_f64()? / m.get("nodes")?.as_f64()?;
            let h = m.get("honest_delivery_ratio")?.as_f64()?;
            let v = m.get("victim_delivery_ratio").and_then(|v| v.as_f64());
            Some((frac * 100.0, h, v))
        })
        .collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let xmax = pts.iter().map(|p| p.0).fold(5.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: delivery against adversaries", r.scenario.name),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..xmax * 1.05, 0f64..1.05)?;
    chart
        .configure_mesh()
        .x_desc("malicious identities (% of nodes)")
        .y_desc("delivery ratio")
        .draw()?;
    let c = colour(0);
    chart
        .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), &c))?
        .label("honest pairs")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    chart.draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 4, c.filled())))?;
    if pts.iter().any(|p| p.2.is_some()) {
        let c = colour(1);
        chart
            .draw_series(LineSeries::new(
                pts.iter().filter_map(|p| Some((p.0, p.2?))),
                &c,
            ))?
            .label("pairs to a victim")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
