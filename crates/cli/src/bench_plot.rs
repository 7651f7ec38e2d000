//! `bookstore bench --plot FILE.svg`: the latency distribution of every round-trip row on a
//! log-scale axis (p50 and p99 marked on each curve, the floor's p50 as a dashed line), and the
//! throughput figures as bars beneath. Drawn with plotters' SVG backend: no external tool.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Bins per decade of the latency axis.
const BINS_PER_DECADE: f64 = 20.0;
/// The bottom of the share axis, in percent: one round trip in 10⁵.
const Y_LOW: f64 = 0.001;

/// One round-trip row: its name and what it measured.
pub struct LatencyRow<'a> {
    pub name: &'a str,
    pub histogram: &'a Histogram<u64>,
}

/// One throughput figure: its name and value per second.
pub struct Throughput<'a> {
    pub name: &'a str,
    pub per_sec: f64,
}

/// Ten, one for each latency row the bench draws (nine), so no two rows share a colour; none
/// grey, the floor's dashed line.
const COLOURS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x00, 0x55, 0x55),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The share of round trips in each log-spaced bin, as (bin centre in ns, percent), from the
/// first bin with a count to the last (empty bins between them count zero).
fn density(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len().max(1) as f64;
    let bin_of = |ns: u64| ((ns.max(1) as f64).log10() * BINS_PER_DECADE).floor() as i64;
    let mut counts = std::collections::BTreeMap::<i64, u64>::new();
    for v in h.iter_recorded() {
        *counts.entry(bin_of(v.value_iterated_to())).or_default() += v.count_at_value();
    }
    let (Some(&first), Some(&last)) = (counts.keys().next(), counts.keys().next_back()) else {
        return Vec::new();
    };
    (first..=last)
        .map(|bin| {
            let centre = 10f64.powf((bin as f64 + 0.5) / BINS_PER_DECADE);
            let count = counts.get(&bin).copied().unwrap_or(0);
            (centre, 100.0 * count as f64 / total)
        })
        .collect()
}

/// The curve's height at `x` (its bin), for placing a percentile's marker on it.
fn height_at(points: &[(f64, f64)], x: f64) -> f64 {
    points
        .iter()
        .min_by(|a, b| (a.0 / x).ln().abs().total_cmp(&(b.0 / x).ln().abs()))
        .map_or(Y_LOW, |p| p.1.max(Y_LOW))
}

pub fn draw(
    path: &Path,
    title: &str,
    rows: &[LatencyRow<'_>],
    floor_p50_ns: u64,
    throughput: &[Throughput<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1100, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(560);
    let curves: Vec<Vec<(f64, f64)>> = rows.iter().map(|r| density(r.histogram)).collect();
    let x_low = rows
        .iter()
        .map(|r| r.histogram.min().max(1))
        .min()
        .unwrap_or(1) as f64
        / 1.5;
    let x_high = rows
        .iter()
        .map(|r| r.histogram.value_at_quantile(0.9999).max(2))
        .max()
        .unwrap_or(2) as f64
        * 1.5;
    // A log-scale share, so the tails (a p99.9 bin holds 0.1 %) show beside the peaks.
    let y_high = 200.0;
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x_low..x_high).log_scale(), (Y_LOW..y_high).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("round-trip time, ns (log scale)")
        .y_desc("% of round trips per bin (log scale)")
        .y_label_formatter(&|y| format!("{y}"))
        .x_label_formatter(&|x| crate::watch::format_ns(*x as u64))
        .draw()?;
    let floor = floor_p50_ns as f64;
    chart
        .draw_series(DashedLineSeries::new(
            [(floor, Y_LOW), (floor, y_high)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?
        .label(format!(
            "floor p50 {}",
            crate::watch::format_ns(floor_p50_ns)
        ))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    for (i, (row, curve)) in rows.iter().zip(&curves).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let p50 = row.histogram.value_at_quantile(0.5);
        let p99 = row.histogram.value_at_quantile(0.99);
        // Bins with no round trip have no height on a log scale: the curve is drawn in runs.
        let mut runs = curve.split(|p| p.1 <= 0.0).filter(|run| !run.is_empty());
        let first = runs.next().unwrap_or(&[]);
        for run in runs {
            chart.draw_series(LineSeries::new(run.iter().copied(), colour.stroke_width(2)))?;
        }
        chart
            .draw_series(LineSeries::new(
                first.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(format!(
                "{}: p50 {}, p99 {}",
                row.name,
                crate::watch::format_ns(p50),
                crate::watch::format_ns(p99)
            ))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        for (q, value, filled) in [("p50", p50, true), ("p99", p99, false)] {
            let at = (value as f64, height_at(curve, value as f64));
            let style = if filled {
                colour.filled()
            } else {
                colour.stroke_width(2)
            };
            chart.draw_series([Circle::new(at, 5, style)])?;
            chart.draw_series([Text::new(
                q.to_string(),
                (at.0 * 1.05, at.1 * 1.25),
                ("sans-serif", 13).into_font().color(&colour),
            )])?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    draw_bars(&bottom, throughput)?;
    root.present()?;
    Ok(())
}

/// The throughput figures as horizontal bars, each labelled with its value.
fn draw_bars(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    throughput: &[Throughput<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    // Room to the right of the longest bar for its label.
    let max = throughput.iter().map(|t| t.per_sec).fold(1.0, f64::max) * 1.6;
    let n = throughput.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption("throughput (per second)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..max, 0.0..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_label_formatter(&|x| crate::watch::format_count(*x as u64))
        .draw()?;
    for (i, t) in throughput.iter().enumerate() {
        let y = n - i as f64;
        let colour = COLOURS[(i + 3) % COLOURS.len()];
        chart.draw_series([Rectangle::new(
            [(0.0, y - 0.8), (t.per_sec, y - 0.2)],
            colour.mix(0.8).filled(),
        )])?;
        chart.draw_series([Text::new(
            format!(
                "{}: {}",
                t.name,
                crate::watch::format_count(t.per_sec as u64)
            ),
            (t.per_sec + max * 0.01, y - 0.4),
            ("sans-serif", 14).into_font(),
        )])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_density_adds_up_to_every_round_trip() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for ns in [200, 210, 250, 1_700, 1_800, 15_000] {
            h.record(ns).unwrap();
        }
        let d = density(&h);
        let total: f64 = d.iter().map(|p| p.1).sum();
        assert!((total - 100.0).abs() < 1e-9, "{total}");
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0), "bins in order");
    }

    #[test]
    fn the_picture_is_valid_svg_with_a_curve_per_row_and_a_bar_per_figure() {
        let histogram = |centre: u64| {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            for i in 0..1000 {
                h.record(centre + i % 50).unwrap();
            }
            // A tail, away from the peak: drawn as a run of its own.
            h.record(centre * 100).unwrap();
            h
        };
        let (a, b) = (histogram(200), histogram(2_000));
        let rows = [
            LatencyRow {
                name: "floor",
                histogram: &a,
            },
            LatencyRow {
                name: "market",
                histogram: &b,
            },
        ];
        let bars = [
            Throughput {
                name: "orders/s",
                per_sec: 1.5e6,
            },
            Throughput {
                name: "engine ops/s",
                per_sec: 9.0e6,
            },
        ];
        let path = std::env::temp_dir().join(format!("bench-plot-{}.svg", std::process::id()));
        draw(&path, "test", &rows, 200, &bars).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let svg = roxmltree::Document::parse(&text).expect("valid XML");
        assert_eq!(svg.root_element().tag_name().name(), "svg");
        let texts: Vec<String> = svg
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect();
        for label in [
            "floor: p50",
            "market: p50",
            "floor p50 200 ns",
            "orders/s: 1.5M",
            "engine ops/s: 9.0M",
        ] {
            assert!(
                texts.iter().any(|t| t.starts_with(label)),
                "no {label:?} in {texts:?}"
            );
        }
        for (i, _) in rows.iter().enumerate() {
            let RGBColor(r, g, b) = COLOURS[i];
            let colour = format!("#{r:02X}{g:02X}{b:02X}");
            let curves = svg
                .descendants()
                .filter(|n| n.has_tag_name("polyline"))
                .filter(|n| {
                    n.attribute("stroke")
                        .is_some_and(|s| s.eq_ignore_ascii_case(&colour))
                })
                .count();
            // The legend's sample line, the peak's run and the tail's run.
            assert!(curves >= 3, "row {i} ({colour}) has {curves} polylines");
        }
    }
}
