//! The device panel: host CPU/RAM, then one or two lines per GPU (gauges, then
//! sparklines of the kept history).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::Theme;
use crate::gpu::{GpuSample, TelemetrySample};
use crate::tui::app::App;
use crate::tui::format::{self, bar, fit, spark};

/// The newest sample the app knows.
fn latest(app: &App) -> Option<&TelemetrySample> {
    app.history.back().or_else(|| app.system.as_ref().and_then(|s| s.telemetry.latest.as_ref()))
}

/// Lines per GPU that fit: two (gauges and sparklines) while the jobs table keeps room.
fn lines_per_gpu(gpus: usize, body: Rect) -> u16 {
    let room = body.height.saturating_sub(8);
    if (gpus as u16) * 2 + 3 <= room { 2 } else { 1 }
}

/// Height of the panel in `body`.
pub(super) fn height(app: &App, body: Rect) -> u16 {
    let gpus = latest(app).map(|s| s.all_gpus().count()).unwrap_or(0);
    let want = if gpus == 0 { 3 + 2 } else { 1 + gpus as u16 * lines_per_gpu(gpus, body) + 2 };
    // The jobs table keeps at least six lines.
    want.min(body.height.saturating_sub(6)).max(3.min(body.height))
}

/// Draws the panel.
pub(super) fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = Theme::of(app);
    let source = app.system.as_ref().map(|s| s.telemetry.source.as_str()).unwrap_or("?");
    let sample = latest(app);
    // This box's GPUs, then worker boxes' (`NAME/cuda:N`).
    let all: Vec<&GpuSample> = sample.map(|s| s.all_gpus().collect()).unwrap_or_default();
    let gpus = all.len();
    let title = match (gpus, sample) {
        (0, None) => " devices ".to_string(),
        (0, Some(_)) => " host · no GPU ".to_string(),
        _ => format!(" devices · {source} "),
    };
    let block = Block::default().borders(Borders::ALL).title(Span::styled(title, t.title()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let w = inner.width as usize;
    let mut lines = Vec::new();
    let cpu_hist: Vec<f64> = app.history.iter().map(|s| s.host.cpu_percent.map(f64::from).unwrap_or(0.0)).collect();
    let ram_hist: Vec<f64> = app
        .history
        .iter()
        .map(|s| match (s.host.mem_used_mib, s.host.mem_total_mib) {
            (Some(u), Some(t)) if t > 0 => u as f64 * 100.0 / t as f64,
            _ => 0.0,
        })
        .collect();
    if app.system.is_none() && sample.is_none() {
        // Never reached: "no GPU" would be a guess.
        f.render_widget(Paragraph::new(Span::styled(fit(super::no_data(app), w), t.dim())), inner);
        return;
    }
    let mut host = host_line(sample, w, t);
    if gpus == 0 {
        lines.push(host);
        let sw = w.saturating_sub(12) / 2;
        lines.push(Line::from(vec![
            Span::styled("  cpu ", t.dim()),
            Span::styled(spark(&cpu_hist, sw, 100.0), t.good()),
            Span::styled("  ram ", t.dim()),
            Span::styled(spark(&ram_hist, sw, 100.0), t.good()),
        ]));
        let note = match source {
            "none" => "no NVIDIA GPU or driver (NVML not found): jobs run on the CPU",
            _ => "no GPU reported: jobs run on the CPU",
        };
        lines.push(Line::from(Span::styled(fit(note, w), t.dim())));
    } else {
        let used: usize = host.spans.iter().map(|s| s.width()).sum();
        let room = w.saturating_sub(used + 6);
        if room >= 10 {
            host.spans.push(Span::styled("  cpu ", t.dim()));
            host.spans.push(Span::styled(spark(&cpu_hist, room.min(60), 100.0), t.good()));
        }
        lines.push(host);
        let rows = inner.height.saturating_sub(1) as usize;
        let per = if rows >= 2 * gpus { 2 } else { 1 };
        // When not all fit, one line says how many are hidden.
        let shown = if gpus * per <= rows { gpus } else { rows.saturating_sub(1) / per };
        for g in all.iter().take(shown).copied() {
            lines.push(gpu_line(g, w, t));
            if per == 2 {
                lines.push(gpu_history(app, g, w, t));
            }
        }
        if shown < gpus {
            lines.push(Line::from(Span::styled(
                format!("… {} more GPUs (enlarge the terminal)", gpus - shown),
                t.dim(),
            )));
        }
    }
    f.render_widget(Paragraph::new(lines), inner);
}

fn pct(v: Option<u32>) -> String {
    v.map(|v| format!("{v:>3}%")).unwrap_or_else(|| " N/A".into())
}

fn mem_pair(used: Option<u64>, total: Option<u64>) -> String {
    match (used, total) {
        (Some(u), Some(t)) if t >= 100 * 1024 => format!("{}/{}", u / 1024, format::mib(t)),
        (Some(u), Some(t)) => format!("{:.1}/{}", u as f64 / 1024.0, format::mib(t)),
        (None, Some(t)) => format!("N/A/{}", format::mib(t)),
        _ => "N/A".into(),
    }
}

fn host_line(sample: Option<&TelemetrySample>, w: usize, t: Theme) -> Line<'static> {
    // Bars only where the figures after them still fit.
    let bw = if w >= 120 {
        16
    } else if w >= 56 {
        8
    } else {
        0
    };
    let host = sample.map(|s| s.host.clone()).unwrap_or_default();
    let cpu = host.cpu_percent.map(f64::from);
    let ram = match (host.mem_used_mib, host.mem_total_mib) {
        (Some(u), Some(t)) if t > 0 => Some(u as f64 / t as f64),
        _ => None,
    };
    let label = format!("host {}cpu", host.cpus);
    let label_w = if bw > 0 { 14 } else { label.chars().count() };
    Line::from(vec![
        Span::styled(format!("{:<label_w$}", fit(&label, 14)), t.title()),
        Span::styled(" cpu ", t.dim()),
        Span::styled(bar(cpu.unwrap_or(0.0) / 100.0, bw), t.level(cpu.unwrap_or(0.0) / 100.0)),
        Span::raw(cpu.map(|c| format!(" {c:>3.0}%")).unwrap_or_else(|| "  N/A".into())),
        Span::styled("  ram ", t.dim()),
        Span::styled(bar(ram.unwrap_or(0.0), bw), t.level(ram.unwrap_or(0.0))),
        Span::raw(format!(" {}", mem_pair(host.mem_used_mib, host.mem_total_mib))),
    ])
}

/// A GPU's row label: its index here, `NAME/cuda:N` on a worker box.
fn gpu_label(g: &GpuSample) -> String {
    match g.host {
        Some(_) => format!("{} ", g.device()),
        None => format!("{} ", g.index),
    }
}

/// A card's name without the maker's words every card here shares, so a short column
/// keeps the model: `NVIDIA GeForce RTX 4090` → `RTX 4090`, `NVIDIA H100 80GB HBM3` →
/// `H100 80GB HBM3`.
pub(super) fn short_name(name: &str) -> String {
    let name = name.strip_prefix("NVIDIA ").unwrap_or(name);
    name.strip_prefix("GeForce ").unwrap_or(name).to_string()
}

fn gpu_line(g: &GpuSample, w: usize, t: Theme) -> Line<'static> {
    let wide = w >= 120;
    let bw = if wide { 16 } else { 8 };
    let util = g.util_gpu.map(|u| f64::from(u) / 100.0);
    let mem = match (g.mem_used_mib, g.mem_total_mib) {
        (Some(u), Some(t)) if t > 0 => Some(u as f64 / t as f64),
        _ => None,
    };
    let power = match (g.power_w, g.power_limit_w) {
        (Some(p), Some(l)) => format!("{p:>3.0}/{l:.0}W"),
        (Some(p), None) => format!("{p:.0}W"),
        _ => "N/A W".into(),
    };
    let power_level = match (g.power_w, g.power_limit_w) {
        (Some(p), Some(l)) if l > 0.0 => p / l,
        _ => 0.0,
    };
    let temp = g.temperature_c.map(|c| format!("{c:>3}°C")).unwrap_or_else(|| " N/A".into());
    let temp_level = g.temperature_c.map(|c| f64::from(c) / 95.0).unwrap_or(0.0);
    // A longer label (`NAME/cuda:N`) takes its room from the model name so columns align.
    // Narrow panels leave out whole parts (bars, then the name, then power) rather than
    // cutting the line's end, where power and temperature would read as other numbers.
    let label = gpu_label(g);
    let name_w = (if wide { 18 } else { 12 } + 2usize).saturating_sub(label.chars().count());
    let (bars, named, powered) = (w >= 70, w >= 53, w >= 41);
    let mut spans = vec![Span::styled(label, t.title())];
    if named {
        // A name cut to one or two letters (`F…`) says nothing: then only the label.
        let name = if name_w >= 5 { fit(&short_name(&g.name), name_w) } else { String::new() };
        spans.push(Span::raw(format!("{name:<name_w$}")));
    }
    spans.push(Span::styled(" util ", t.dim()));
    if bars {
        spans.push(Span::styled(bar(util.unwrap_or(0.0), bw), t.level(util.unwrap_or(0.0))));
    }
    spans.extend([Span::raw(pct(g.util_gpu)), Span::styled(" mem ", t.dim())]);
    if bars {
        spans.push(Span::styled(bar(mem.unwrap_or(0.0), bw), t.level(mem.unwrap_or(0.0))));
    }
    spans.push(Span::raw(format!(" {:<9}", mem_pair(g.mem_used_mib, g.mem_total_mib))));
    if powered {
        spans.push(Span::styled(format!(" {power}"), t.level(power_level)));
    }
    spans.push(Span::styled(temp, t.level(temp_level)));
    if wide {
        let ours: u64 = g.processes.iter().filter(|p| p.ours).filter_map(|p| p.used_mib).sum();
        let clocks = g.sm_clock_mhz.map(|s| format!(" sm {s}MHz")).unwrap_or_else(|| " sm N/A".into());
        let pcie = match (g.pcie_tx_kib_s, g.pcie_rx_kib_s) {
            (Some(tx), Some(rx)) => format!(" pcie ↑{} ↓{}/s", format::mib(tx / 1024), format::mib(rx / 1024)),
            _ => " pcie N/A".into(),
        };
        spans.push(Span::styled(format!(" fan{}", pct(g.fan_percent)), t.dim()));
        spans.push(Span::styled(clocks, t.dim()));
        spans.push(Span::styled(pcie, t.dim()));
        spans.push(Span::styled(format!(" {} proc, ours {}", g.processes.len(), format::mib(ours)), t.dim()));
    }
    Line::from(spans)
}

fn gpu_history(app: &App, g: &GpuSample, w: usize, t: Theme) -> Line<'static> {
    let series = |read: fn(&GpuSample) -> Option<f64>| -> Vec<f64> {
        app.history.iter().map(|s| s.all_gpus().find(|x| x.same_gpu(g)).and_then(read).unwrap_or(0.0)).collect()
    };
    let util = series(|x| x.util_gpu.map(f64::from));
    let mem = series(|x| match (x.mem_used_mib, x.mem_total_mib) {
        (Some(u), Some(t)) if t > 0 => Some(u as f64 * 100.0 / t as f64),
        _ => None,
    });
    let mut spans = vec![];
    if w >= 120 {
        let power = series(|x| x.power_w);
        let limit = g.power_limit_w.unwrap_or_else(|| power.iter().cloned().fold(1.0, f64::max));
        let sw = w.saturating_sub(2 + 3 * 6) / 3;
        spans.extend([
            Span::styled("  util ", t.dim()),
            Span::styled(spark(&util, sw, 100.0), t.good()),
            Span::styled(" mem ", t.dim()),
            Span::styled(spark(&mem, sw, 100.0), t.good()),
            Span::styled(" pwr ", t.dim()),
            Span::styled(spark(&power, sw, limit), t.good()),
        ]);
    } else {
        let sw = w.saturating_sub(2 + 2 * 6) / 2;
        spans.extend([
            Span::styled("  util ", t.dim()),
            Span::styled(spark(&util, sw, 100.0), t.good()),
            Span::styled(" mem ", t.dim()),
            Span::styled(spark(&mem, sw, 100.0), t.good()),
        ]);
    }
    Line::from(spans)
}
