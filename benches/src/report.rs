//! Outputs of `compare`: a JSON file, a markdown table with ratios, and an SVG bar chart.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::compare::{Report, TargetResult};

/// One row of the table: name, value per target (None = not measured), and whether lower is better.
struct Row {
    name: String,
    values: Vec<Option<f64>>,
    chart: bool,
}

fn rows(r: &Report) -> Vec<Row> {
    let ok: Vec<&TargetResult> = r.targets.iter().collect();
    let measured = |t: &TargetResult| t.error.is_none() || t.load.samples_ok > 0;
    let get =
        |f: &dyn Fn(&TargetResult) -> Option<f64>| ok.iter().map(|t| if measured(t) { f(t) } else { None }).collect();
    let mut rows = vec![
        Row {
            name: "ingest, samples/s (wall, client side)".into(),
            values: get(&|t| Some(t.samples_per_s)),
            chart: false,
        },
        Row { name: "server CPU-s per 1M samples".into(), values: get(&|t| Some(t.cpu_s_per_m_samples)), chart: true },
        Row {
            name: "samples rejected or failed".into(),
            values: get(&|t| Some((t.load.samples_rejected + t.load.samples_failed) as f64)),
            chart: false,
        },
        Row { name: "peak RSS, MiB".into(), values: get(&|t| Some(t.peak_rss_bytes as f64 / 1048576.0)), chart: false },
        Row { name: "peak RSS per series, bytes".into(), values: get(&|t| Some(t.rss_bytes_per_series)), chart: true },
        Row {
            name: "disk bytes per sample (du, after clean shutdown)".into(),
            values: get(&|t| Some(t.disk_bytes_per_sample)),
            chart: true,
        },
        Row { name: "startup on empty dir, s".into(), values: get(&|t| Some(t.startup_s)), chart: false },
        Row { name: "shutdown (SIGTERM to exit), s".into(), values: get(&|t| t.shutdown_s), chart: false },
        Row { name: "restart after SIGTERM: ready, s".into(), values: get(&|t| t.restart_clean.ready_s), chart: true },
        Row {
            name: "restart after SIGTERM: queryable, s".into(),
            values: get(&|t| t.restart_clean.queryable_s),
            chart: false,
        },
        Row { name: "restart after kill -9: ready, s".into(), values: get(&|t| t.restart_kill9.ready_s), chart: true },
        Row {
            name: "restart after kill -9: queryable, s".into(),
            values: get(&|t| t.restart_kill9.queryable_s),
            chart: false,
        },
    ];
    for q in &r.queries {
        rows.push(Row {
            name: format!("query `{}` median, ms", q.name),
            values: get(&|t| t.query_median_ms.get(&q.name).copied()),
            chart: true,
        });
    }
    rows
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(0.0) => "0".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 0.1 => format!("{x:.2}"),
        Some(x) => format!("{x:.4}"),
    }
}

/// Index of the target others are divided by in ratio columns: Strata if present, else the first.
fn ratio_pairs(r: &Report) -> Vec<(usize, usize)> {
    let idx = |n: &str| r.targets.iter().position(|t| t.name == n && t.error.is_none());
    let (s, p, v) = (idx("Strata"), idx("Prometheus"), idx("VictoriaMetrics"));
    match s {
        Some(s) => [p, v].into_iter().flatten().map(|o| (s, o)).collect(),
        None => match (v, p) {
            (Some(v), Some(p)) => vec![(v, p)],
            _ => vec![],
        },
    }
}

/// The markdown report.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let spec = &r.spec;
    s.push_str(&format!(
        "Workload: {} metrics × {} series = {} series ({} distinct with churn {}), {} s interval over {} h, \
         OOO fraction {} (max lag {} s), {} {}samples in {} requests of ≤{} samples over {} connections; \
         payloads {:.1} MB snappy / {:.1} MB raw.\n\n",
        spec.metrics,
        spec.series_per_metric,
        spec.slots(),
        r.distinct_series,
        spec.churn,
        spec.interval_ms / 1000,
        spec.span_ms as f64 / 3.6e6,
        spec.ooo_fraction,
        spec.ooo_max_lag_ms / 1000,
        r.samples,
        if spec.histograms { "native histogram (schema 3, integer) " } else { "" },
        r.requests,
        r.batch,
        r.connections,
        r.payload_bytes as f64 / 1e6,
        r.payload_raw_bytes as f64 / 1e6,
    ));
    let pairs = ratio_pairs(r);
    s.push_str("| measure |");
    for t in &r.targets {
        s.push_str(&format!(" {} |", t.name));
    }
    for (a, b) in &pairs {
        s.push_str(&format!(" {} / {} |", r.targets[*a].name, r.targets[*b].name));
    }
    s.push_str("\n|---|");
    for _ in 0..r.targets.len() + pairs.len() {
        s.push_str("---:|");
    }
    s.push('\n');
    for row in rows(r) {
        s.push_str(&format!("| {} |", row.name));
        for v in &row.values {
            s.push_str(&format!(" {} |", fmt(*v)));
        }
        for (a, b) in &pairs {
            let ratio = match (row.values[*a], row.values[*b]) {
                (Some(x), Some(y)) if y != 0.0 => Some(x / y),
                _ => None,
            };
            s.push_str(&format!(" {} |", ratio.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into())));
        }
        s.push('\n');
    }
    s.push_str(&format!(
        "\nParse bound (one core, same payloads): snappy only {:.3}, snappy + prost {:.3}, snappy + Strata's \
         borrowing decoder {:.3} CPU-s per 1M samples.\n",
        r.parse_bound.snappy_cpu_s_per_m, r.parse_bound.snappy_prost_cpu_s_per_m, r.parse_bound.snappy_walk_cpu_s_per_m
    ));
    for t in &r.targets {
        if let Some(e) = &t.error {
            s.push_str(&format!("\n{}: {e}\n", t.name));
        }
        for (q, e) in &t.query_errors {
            s.push_str(&format!("\n{}: query `{q}` failed: {e}\n", t.name));
        }
        for (q, diffs) in &t.mismatches {
            s.push_str(&format!(
                "\n{} answers `{q}` differently from {}: {}\n",
                t.name,
                r.reference.as_deref().unwrap_or("?"),
                diffs.join("; ")
            ));
        }
        for (name, rs) in [("after SIGTERM", &t.restart_clean), ("after kill -9", &t.restart_kill9)] {
            if let Some(e) = &rs.error {
                s.push_str(&format!("\n{} restart {name}: {e}\n", t.name));
            }
        }
    }
    s
}

/// An SVG bar chart: each measure normalized to the reference target (Prometheus if present), lower is better.
pub fn svg(r: &Report, path: &Path) -> Result<()> {
    let rows: Vec<Row> = rows(r).into_iter().filter(|row| row.chart).collect();
    let base = r
        .targets
        .iter()
        .position(|t| t.name == "Prometheus" && t.error.is_none())
        .or_else(|| r.targets.iter().position(|t| t.error.is_none()))
        .unwrap_or(0);
    let n_t = r.targets.len().max(1);
    let ratios: Vec<Vec<Option<f64>>> = rows
        .iter()
        .map(|row| {
            row.values
                .iter()
                .map(|v| match (v, row.values.get(base).copied().flatten()) {
                    (Some(x), Some(b)) if b > 0.0 => Some(x / b),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let ymax = ratios.iter().flatten().flatten().copied().fold(1.0f64, f64::max).min(20.0) * 1.1;
    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let groups = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Relative to {} (= 1.0), lower is better",
                r.targets.get(base).map(|t| t.name.as_str()).unwrap_or("?")
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(150)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..groups as f64, 0f64..ymax)?;
    let names: Vec<String> =
        rows.iter().map(|r| r.name.replace(", ms", "").replace("query ", "").replace('`', "")).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                names.get(i).map(|n| n.chars().take(28).collect()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 11).into_font().transform(FontTransform::Rotate90))
        .y_desc("ratio")
        .draw()?;
    let colors = [RGBColor(230, 85, 13), RGBColor(49, 130, 189), RGBColor(116, 196, 118), RGBColor(150, 150, 150)];
    let w = 0.8 / n_t as f64;
    for (ti, t) in r.targets.iter().enumerate() {
        let color = colors[ti % colors.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = ratios
            .iter()
            .enumerate()
            .filter_map(|(g, vals)| {
                let v = vals.get(ti).copied().flatten()?;
                let x0 = g as f64 + 0.1 + ti as f64 * w;
                Some(Rectangle::new([(x0, 0.0), (x0 + w * 0.9, v.min(ymax))], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(t.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// Writes `compare.json`, `compare.md` and `compare.svg` into `dir`; returns the markdown.
pub fn write_all(r: &Report, dir: &Path) -> Result<String> {
    std::fs::write(dir.join("compare.json"), serde_json::to_string_pretty(r)?)?;
    let md = markdown(r);
    std::fs::write(dir.join("compare.md"), &md)?;
    svg(r, &dir.join("compare.svg"))?;
    Ok(md)
}
