//! The job detail view: state and timings, stages, artifacts, a preview of the newest
//! image, and the job's events as they arrive.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::{Theme, preview};
use crate::api::views::JobView;
use crate::store::records::JobStatus;
use crate::tui::app::App;
use crate::tui::format::{self, fit, parse_time, short_id};

/// Draws the view.
pub(super) fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = Theme::of(app);
    let Some(detail) = &app.detail else { return };
    let Some(job) = &detail.job else {
        f.render_widget(Paragraph::new(format!("loading job {} …", detail.id)), area);
        return;
    };
    // A narrow terminal gives the preview room only once there is an image to show.
    let has_image = detail.preview.is_some();
    let preview_w = match area.width {
        w if w >= 120 => w * 2 / 5,
        w if w >= 80 || (w >= 60 && has_image) => (w / 3).max(20),
        _ => 0,
    };
    let info_w = area.width.saturating_sub(preview_w + 2) as usize;
    let info: Vec<Line> = info_lines(job, app, t, info_w).into_iter().map(|l| super::fit_line(l, info_w)).collect();
    // The events panel keeps at least five lines.
    // Tall terminals give the preview more room.
    let top_h = (info.len() as u16 + 2).max(area.height * 11 / 20).min(area.height.saturating_sub(5));
    let [top, bottom] = Layout::vertical([Constraint::Length(top_h), Constraint::Min(0)]).areas(area);
    let [left, right] = Layout::horizontal([Constraint::Min(0), Constraint::Length(preview_w)]).areas(top);
    let title = format!(" job {} · {} · {} ", short_id(&job.id), job.kind, job.state);
    f.render_widget(
        Paragraph::new(info).block(Block::default().borders(Borders::ALL).title(Span::styled(title, t.title()))),
        left,
    );
    if preview_w > 0 {
        draw_preview(f, right, app, t);
    }
    let inner = Block::default().borders(Borders::ALL).inner(bottom);
    let height = inner.height as usize;
    let total = detail.events.len();
    // Scrolled back at most to the oldest line; the clamped value is kept for the keys.
    let back = detail.events_back.get().min(total.saturating_sub(height));
    detail.events_back.set(back);
    let skip = total.saturating_sub(height) - back;
    let block = Block::default().borders(Borders::ALL).title(Line::from(super::whole(
        events_title(skip, height, total, back, t),
        bottom.width.saturating_sub(2) as usize,
    )));
    let lines: Vec<Line> = detail
        .events
        .iter()
        .skip(skip)
        .take(height)
        .map(|e| {
            let clock = e.at.get(11..19).unwrap_or("");
            Line::from(vec![
                Span::styled(format!("{clock} "), t.dim()),
                Span::raw(fit(&e.text, (inner.width as usize).saturating_sub(9))),
            ])
        })
        .collect();
    let body = if lines.is_empty() { vec![Line::from(Span::styled("no events yet", t.dim()))] } else { lines };
    f.render_widget(Paragraph::new(body).block(block), bottom);
}

/// ` events `, and once they do not all fit, which lines show and the keys that move
/// them (`↑` older; `G` back to the newest once scrolled back).
fn events_title(skip: usize, height: usize, total: usize, back: usize, t: Theme) -> Vec<Span<'static>> {
    let mut title = vec![Span::styled(" events ", t.title())];
    if total > height {
        let last = (skip + height).min(total);
        title.push(Span::styled(format!("{}–{last} of {total} ", skip + 1), t.title()));
        let keys = if back > 0 { "· ↓ newer, G newest " } else { "· ↑ older, g oldest " };
        title.push(Span::styled(keys, t.dim()));
    }
    title
}

fn info_lines(job: &JobView, app: &App, t: Theme, w: usize) -> Vec<Line<'static>> {
    let currency = app.system.as_ref().map(|s| s.energy.currency.clone()).unwrap_or_default();
    let label = |s: &str| Span::styled(format!("{s} "), t.dim());
    let mut lines = vec![
        Line::from(vec![label("id"), Span::raw(job.id.clone()), label(" owner"), Span::raw(job.owner.clone())]),
        Line::from(vec![
            label("state"),
            Span::styled(job.state.as_str(), t.state(job.state.as_str())),
            label(" prio"),
            Span::raw(job.priority.to_string()),
            label(" tries"),
            Span::raw(job.attempts.to_string()),
            label(" on"),
            Span::raw(
                job.device
                    .clone()
                    .or_else(|| job.stages.iter().rev().find_map(|s| s.device.clone()))
                    .unwrap_or_else(|| "-".into()),
            ),
        ]),
    ];
    let created = parse_time(Some(&job.created_at));
    let started = parse_time(job.started_at.as_deref());
    let finished = parse_time(job.finished_at.as_deref());
    let mut times = vec![label("created"), Span::raw(clock(&job.created_at))];
    if let (Some(c), Some(s)) = (created, started) {
        times.extend([label(" waited"), Span::raw(format::duration(s - c))]);
    }
    match (started, finished) {
        (Some(s), Some(e)) => times.extend([label(" ran"), Span::raw(format::duration(e - s))]),
        (Some(s), None) => times.extend([label(" running"), Span::raw(format::duration(app.now - s))]),
        _ => {}
    }
    lines.push(Line::from(times));
    let mut energy = vec![label("energy"), Span::raw(job.energy_wh.map(format::energy).unwrap_or_else(|| "-".into()))];
    if let Some(c) = job.cost {
        energy.extend([label(" cost"), Span::raw(format::cost(c, &currency))]);
    }
    energy
        .extend([label(" needs"), Span::raw(if job.vram_mib > 0 { format::mib(job.vram_mib) } else { "any".into() })]);
    lines.push(Line::from(energy));
    lines.push(Line::from(vec![
        label("params"),
        Span::styled(fit(&job.params.to_string(), w.saturating_sub(7)), t.dim()),
    ]));
    if let Some(reason) = &job.waiting {
        lines.push(Line::from(vec![
            Span::styled("waiting ", t.warn()),
            Span::styled(fit(reason, w.saturating_sub(8)), t.warn()),
        ]));
    }
    if let Some(e) = &job.error {
        // A canceled job's `error` is why it was canceled ("canceled by its owner"), not a fault.
        let (what, style) = if job.state == JobStatus::Canceled { ("why ", t.warn()) } else { ("error ", t.bad()) };
        lines.push(Line::from(vec![
            Span::styled(what, style),
            Span::styled(fit(e, w.saturating_sub(what.len())), style),
        ]));
    }
    lines.push(Line::from(Span::styled(
        format!("{:<12} {:<8} {:<7} {:>7} {:>8}", "STAGE", "STATE", "DEVICE", "TIME", "ENERGY"),
        t.dim(),
    )));
    for s in &job.stages {
        let (a, b) = (parse_time(s.started_at.as_deref()), parse_time(s.finished_at.as_deref()));
        let took = match (a, b) {
            (Some(a), Some(b)) => format::duration(b - a),
            (Some(a), None) => format::duration(app.now - a),
            _ => "-".into(),
        };
        let mut spans = vec![
            Span::raw(format!("{:<12} ", fit(&s.name, 12))),
            Span::styled(
                format!("{:<8} ", s.state),
                t.state(match s.state.as_str() {
                    "done" => "succeeded",
                    "pending" => "queued",
                    other => other,
                }),
            ),
            Span::raw(format!(
                "{:<7} {:>7} {:>8}",
                s.device.clone().unwrap_or_else(|| "-".into()),
                took,
                s.energy_wh.map(format::energy).unwrap_or_else(|| "-".into())
            )),
        ];
        if s.state == "running" && job.progress.total > 0 && w >= 70 {
            spans.push(Span::raw(format!("  step {}/{}", job.progress.step, job.progress.total)));
        }
        if let Some(e) = &s.error {
            let used: usize = spans.iter().map(|s| s.width()).sum();
            spans.push(Span::styled(fit(&format!("  {e}"), w.saturating_sub(used)), t.bad()));
        }
        lines.push(Line::from(spans));
    }
    if let Some(d) = &app.detail
        && !d.artifacts.is_empty()
    {
        lines.push(Line::from(Span::styled("ARTIFACTS", t.dim())));
        for a in &d.artifacts {
            // The URL only whole: a cut one is another (wrong) address to copy.
            let about = format!("{} {}", a.media_type, size(a.size));
            let mut text = format!("{} {about}", a.name);
            if text.chars().count() + 1 + a.url.chars().count() <= w {
                text = format!("{text} {}", a.url);
            }
            let name = fit(&a.name, w);
            let rest = fit(&text[a.name.len()..], w.saturating_sub(name.chars().count()));
            lines.push(Line::from(vec![Span::raw(name), Span::styled(rest, t.dim())]));
        }
    }
    lines
}

/// `MM-DD HH:MM:SS` of an RFC 3339 time (UTC, as the API gives it).
fn clock(rfc3339: &str) -> String {
    rfc3339.get(5..19).map(|s| s.replace('T', " ")).unwrap_or_else(|| rfc3339.to_string())
}

fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn draw_preview(f: &mut Frame, area: Rect, app: &App, t: Theme) {
    let block = Block::default().borders(Borders::ALL).title(Span::styled(" preview ", t.title()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(p) = app.detail.as_ref().and_then(|d| d.preview.as_ref()) else {
        f.render_widget(Paragraph::new(Span::styled("no image yet", t.dim())), inner);
        return;
    };
    let lines = preview::lines(p, inner.width, inner.height, app.color);
    let (w, h) = preview::fit(p, inner.width, inner.height);
    // Centre the picture in the panel.
    let at = Rect { x: inner.x + (inner.width - w) / 2, y: inner.y + (inner.height - h) / 2, width: w, height: h };
    f.render_widget(Paragraph::new(lines), at);
}
