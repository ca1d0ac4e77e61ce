//! The lab's plots: cycles per PTE against batch size, log-log, one line per variant and
//! hypervisor, as SVG and PNG (`plotters`).
//!
//! Text is drawn with `ab_glyph` from a TrueType file loaded at run time ([`load_font`]), not
//! through fontconfig: a headless Debian machine has no font unless one is installed, and
//! `scripts/setup.sh` installs `fonts-dejavu-core` for this.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report::{batches, find};
use crate::{Hypervisor, Mode, Row};

/// Where Debian's `fonts-dejavu-core` puts the sans-serif face.
pub const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// The family name the plots ask for.
const FAMILY: &str = "sans-serif";

/// Loads the sans-serif font for the plots' text (once per process); the error says what to
/// install.
pub fn load_font() -> Result<(), String> {
    static LOADED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = FONT_PATHS
                .iter()
                .map(Path::new)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    format!(
                        "no font for the plots' text: {} is missing (run scripts/setup.sh, or \
                         apt-get install fonts-dejavu-core)",
                        FONT_PATHS[0]
                    )
                })?;
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            // plotters keeps fonts for the process's lifetime and wants them 'static.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a font plotters can read", path.display()))
        })
        .clone()
}

/// One line of a chart.
struct Line {
    label: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn color(variant: &str) -> RGBColor {
    match variant {
        "mmu_update" => RGBColor(31, 119, 180),
        "multicall_uvm" => RGBColor(255, 127, 14),
        "update_va_mapping" => RGBColor(44, 160, 44),
        "update_va_mapping_invlpg" => RGBColor(214, 39, 40),
        _ => RGBColor(148, 103, 189),
    }
}

/// The lines of the batch-size chart of `mode` at N `pages`.
fn lines(rows: &[Row], mode: Mode, pages: u32) -> Vec<Line> {
    let bs = batches(rows);
    let (lo, hi) = match (bs.first(), bs.last()) {
        (Some(&lo), Some(&hi)) if hi > lo => (f64::from(lo), f64::from(hi)),
        _ => (1.0, 512.0),
    };
    let mut out = vec![];
    for h in Hypervisor::ALL {
        let who = if h == Hypervisor::Ours {
            "ours"
        } else {
            "Xen 4.17"
        };
        for variant in ["mmu_update", "multicall_uvm"] {
            let points: Vec<(f64, f64)> = bs
                .iter()
                .filter_map(|&b| find(rows, h, mode, variant, Some(b), pages))
                .map(|r| (f64::from(r.batch.unwrap_or(1)), r.cycles_per_pte as f64))
                .collect();
            if !points.is_empty() {
                out.push(Line {
                    label: format!("{who}: {variant}, B per call"),
                    color: color(variant),
                    dashed: h == Hypervisor::Xen417,
                    points,
                });
            }
        }
        for (variant, batch) in [
            ("update_va_mapping", Some(1)),
            ("update_va_mapping_invlpg", Some(1)),
            ("native", None),
        ] {
            if let Some(r) = find(rows, h, mode, variant, batch, pages) {
                let y = r.cycles_per_pte.max(1) as f64;
                let what = if variant == "native" {
                    "native ring-0 stores"
                } else {
                    variant
                };
                out.push(Line {
                    label: format!("{who}: {what} (no batch)"),
                    color: color(variant),
                    dashed: h == Hypervisor::Xen417,
                    points: vec![(lo, y), (hi, y)],
                });
            }
        }
    }
    out
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    lines: &[Line],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("plot: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let x_lo = xs.clone().fold(f64::INFINITY, f64::min);
    let x_hi = xs.fold(f64::NEG_INFINITY, f64::max);
    let y_lo = ys.clone().fold(f64::INFINITY, f64::min);
    let y_hi = ys.fold(f64::NEG_INFINITY, f64::max);
    if !(x_lo.is_finite() && y_lo.is_finite()) {
        return Err("plot: nothing to draw".into());
    }
    // Log-scale range with room above the data for the legend (about 30% of the height).
    let (bottom, top) = (y_lo / 1.6, y_hi * 1.6);
    let decades = (top / bottom).log10();
    let top = top * 10f64.powf(decades * 0.3 / 0.7 + 0.05 * decades);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 26))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(85)
        .build_cartesian_2d(
            (x_lo..x_hi.max(x_lo * 2.0)).log_scale(),
            (bottom..top).log_scale(),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("batch size B (PTEs per hypercall)")
        .y_desc("TSC cycles per PTE update (median)")
        .label_style((FAMILY, 16))
        .axis_desc_style((FAMILY, 18))
        .x_label_formatter(&|x| format!("{}", x.round()))
        .y_label_formatter(&|y| format!("{}", y.round()))
        .draw()
        .map_err(err)?;
    for l in lines {
        let style = ShapeStyle::from(&l.color).stroke_width(3);
        let legend_style = style;
        if l.dashed {
            chart
                .draw_series(DashedLineSeries::new(l.points.clone(), 10, 6, style))
                .map_err(err)?
                .label(&l.label)
                .legend(move |(x, y)| {
                    DashedPathElement::new(vec![(x, y), (x + 30, y)], 7, 4, legend_style)
                });
        } else {
            chart
                .draw_series(LineSeries::new(l.points.clone(), style))
                .map_err(err)?
                .label(&l.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 30, y)], legend_style));
        }
        if l.points.len() > 2 {
            chart
                .draw_series(
                    l.points
                        .iter()
                        .map(|&p| Circle::new(p, 4, ShapeStyle::from(&l.color).filled())),
                )
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Size of both pictures, in pixels.
const SIZE: (u32, u32) = (1280, 860);

/// Draws the batch-size chart of `mode` at N `pages` into `<dir>/batching-<mode>.svg` and
/// `.png`; returns the two paths.
pub fn batching_chart(
    rows: &[Row],
    mode: Mode,
    pages: u32,
    dir: &Path,
) -> Result<[PathBuf; 2], String> {
    load_font()?;
    let lines = lines(rows, mode, pages);
    let what = match mode {
        Mode::Wall => "wall clock (TCG, host cycles)",
        Mode::Icount => "icount (guest instructions)",
    };
    let title = format!("Cycles per PTE update against batch size, N = {pages}, {what}");
    let svg = dir.join(format!("batching-{}.svg", mode.name()));
    let png = dir.join(format!("batching-{}.png", mode.name()));
    draw(
        SVGBackend::new(&svg, SIZE).into_drawing_area(),
        &title,
        &lines,
    )?;
    draw(
        BitMapBackend::new(&png, SIZE).into_drawing_area(),
        &title,
        &lines,
    )?;
    Ok([svg, png])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(h: Hypervisor, variant: &str, batch: Option<u32>, cycles: u64) -> Row {
        Row {
            hypervisor: h,
            mode: Mode::Icount,
            variant: variant.into(),
            batch,
            pages: 512,
            cycles_per_pte: cycles,
            hypercalls: 2,
            validations: None,
            flushes: None,
            invlpgs: None,
            traps: None,
            ref_ops: None,
            page_updates: None,
            hv_hypercalls: None,
            touch_cycles_per_page: 4,
            min_cycles_per_pte: cycles,
            max_cycles_per_pte: cycles,
            reps: 3,
        }
    }

    #[test]
    fn one_line_per_variant_and_hypervisor_flat_where_there_is_no_batch() {
        let rows = vec![
            row(Hypervisor::Ours, "mmu_update", Some(1), 3000),
            row(Hypervisor::Ours, "mmu_update", Some(512), 1000),
            row(Hypervisor::Ours, "native", None, 5),
            row(Hypervisor::Xen417, "mmu_update", Some(1), 1000),
            row(Hypervisor::Xen417, "mmu_update", Some(512), 550),
            row(Hypervisor::Xen417, "update_va_mapping", Some(1), 760),
        ];
        let l = lines(&rows, Mode::Icount, 512);
        let labels: Vec<&str> = l.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "ours: mmu_update, B per call",
                "ours: native ring-0 stores (no batch)",
                "Xen 4.17: mmu_update, B per call",
                "Xen 4.17: update_va_mapping (no batch)"
            ]
        );
        assert_eq!(l[1].points, [(1.0, 5.0), (512.0, 5.0)]);
        assert!(!l[0].dashed && l[2].dashed);
        assert!(lines(&rows, Mode::Wall, 512).is_empty());
    }

    #[test]
    fn draws_both_files_when_a_font_is_installed() {
        if load_font().is_err() {
            eprintln!("skipped: no DejaVu font installed");
            return;
        }
        let rows = vec![
            row(Hypervisor::Ours, "mmu_update", Some(1), 3000),
            row(Hypervisor::Ours, "mmu_update", Some(512), 1000),
        ];
        let dir = std::env::temp_dir().join(format!("lab-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let [svg, png] = batching_chart(&rows, Mode::Icount, 512, &dir).unwrap();
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(svg_text.contains("batch size B"));
        assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
