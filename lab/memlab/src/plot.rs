//! `memlab allocate --plot FILE.svg`: the process's RSS and heap size after each step, on a
//! log scale, each step's point coloured by where its block landed, and the switch from
//! `[heap]` to mappings of their own marked. Drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use crate::allocate::{switch, Region, Step};
use crate::size::human;

const RSS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const HEAP: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const MMAP: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);

/// Mebibytes, for the axis (at least a sliver, so a zero-sized heap still has a place on a
/// log scale).
fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0).max(0.01)
}

pub fn allocation(path: &Path, steps: &[Step], pid: u32) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = steps.len().max(1);
    let high = steps
        .iter()
        .map(|s| mib(s.rss_kib.max(s.heap_kib)))
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("memlab allocate (pid {pid}): RSS and heap after each block"),
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..n as f64 + 0.5, (0.01..high).log_scale())?;
    let label_of = |x: &f64| {
        let i = x.round() as usize;
        match steps.get(i.wrapping_sub(1)) {
            Some(step) if (x - i as f64).abs() < 1e-6 => human(step.size),
            _ => String::new(),
        }
    };
    chart
        .configure_mesh()
        .x_labels(n.min(24))
        .x_label_formatter(&label_of)
        .x_desc("block size of the step (each block kept until the end)")
        .y_desc("MiB (log scale)")
        .draw()?;
    let points = |f: fn(&Step) -> u64| -> Vec<(f64, f64)> {
        steps
            .iter()
            .enumerate()
            .map(|(i, s)| ((i + 1) as f64, mib(f(s))))
            .collect()
    };
    chart
        .draw_series(LineSeries::new(points(|s| s.rss_kib), RSS.stroke_width(2)))?
        .label("RSS (resident memory)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RSS.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            points(|s| s.heap_kib),
            HEAP.stroke_width(2),
        ))?
        .label("[heap] size (brk)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], HEAP.stroke_width(2)));
    // Each step's RSS point says where its block landed.
    for (i, s) in steps.iter().enumerate() {
        let colour = if s.region == Region::Heap { HEAP } else { MMAP };
        chart.draw_series([Circle::new(
            ((i + 1) as f64, mib(s.rss_kib)),
            5,
            colour.filled(),
        )])?;
    }
    // Legend entries only: no points of their own.
    let none = || std::iter::empty::<Circle<(f64, f64), i32>>();
    chart
        .draw_series(none())?
        .label("block landed in [heap]")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, HEAP.filled()));
    chart
        .draw_series(none())?
        .label("block got a mapping of its own (mmap)")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, MMAP.filled()));
    if let Some((last_heap, first_own)) = switch(steps) {
        let at = steps
            .iter()
            .position(|s| s.size == first_own)
            .map_or(1.0, |i| i as f64 + 0.5);
        chart.draw_series(DashedLineSeries::new(
            [(at, 0.01), (at, high)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?;
        chart.draw_series([Text::new(
            format!(
                "heap up to {}, own mappings from {}",
                human(last_heap),
                human(first_own)
            ),
            (at + 0.1, high / 1.6),
            ("sans-serif", 15).into_font(),
        )])?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(size: usize, region: Region, rss_kib: u64, heap_kib: u64) -> Step {
        Step {
            size,
            address: 0x1000,
            region,
            mapping_start: 0,
            mapping_end: 0,
            mapping_name: String::new(),
            rss_kib,
            heap_kib,
        }
    }

    #[test]
    fn the_picture_is_valid_svg_with_both_series_and_the_switch_marked() {
        let steps = [
            step(1024, Region::Heap, 2_000, 132),
            step(4096, Region::Heap, 2_010, 132),
            step(1 << 20, Region::Mmap, 3_100, 132),
            step(1 << 24, Region::Mmap, 19_500, 132),
        ];
        let path = std::env::temp_dir().join(format!("memlab-plot-{}.svg", std::process::id()));
        allocation(&path, &steps, 42).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let svg = roxmltree::Document::parse(&text).expect("valid XML");
        let texts: Vec<String> = svg
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect();
        for label in [
            "RSS (resident memory)",
            "[heap] size (brk)",
            "heap up to 4 KiB, own mappings from 1 MiB",
        ] {
            assert!(
                texts.iter().any(|t| t == label),
                "no {label:?} in {texts:?}"
            );
        }
        let lines = |colour: RGBColor| {
            let RGBColor(r, g, b) = colour;
            let hex = format!("#{r:02X}{g:02X}{b:02X}");
            svg.descendants()
                .filter(|n| n.has_tag_name("polyline"))
                .filter(|n| {
                    n.attribute("stroke")
                        .is_some_and(|s| s.eq_ignore_ascii_case(&hex))
                })
                .count()
        };
        assert!(lines(RSS) >= 1 && lines(HEAP) >= 1, "one line per series");
    }
}
