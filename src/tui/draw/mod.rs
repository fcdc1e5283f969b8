//! Pure drawing: every function here takes the [`App`] and a frame area and draws; none
//! fetches data or reads the clock (the app carries `now`), so snapshots are exact.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::app::{App, Link, Screen};
use super::format;

mod detail;
mod devices;
mod jobs;
pub mod preview;

/// Styles, with colours dropped under `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// The theme for an app.
    pub fn of(app: &App) -> Self {
        Self { color: app.color }
    }

    fn fg(self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }

    /// Titles and headers.
    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Labels and secondary text.
    pub fn dim(self) -> Style {
        if self.color { Style::default().fg(Color::DarkGray) } else { Style::default() }
    }

    /// Problems.
    pub fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// Warnings (paused, read-only, waiting).
    pub fn warn(self) -> Style {
        self.fg(Color::Yellow)
    }

    /// Good news.
    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    /// The selected row: reversed, which reads without colour too.
    pub fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    /// A gauge's colour by how full it is.
    pub fn level(self, fraction: f64) -> Style {
        match fraction {
            f if f >= 0.9 => self.fg(Color::Red),
            f if f >= 0.7 => self.fg(Color::Yellow),
            _ => self.fg(Color::Green),
        }
    }

    /// A job state's colour.
    pub fn state(self, state: &str) -> Style {
        match state {
            "running" => self.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            "queued" => self.fg(Color::Yellow),
            "succeeded" => self.fg(Color::Green),
            "failed" => self.fg(Color::Red),
            _ => self.dim(),
        }
    }
}

/// Draws the whole dashboard.
pub fn draw(f: &mut Frame, app: &App) {
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(f.area());
    draw_header(f, header, app);
    match app.screen {
        Screen::Dashboard => {
            let height = devices::height(app, body);
            let [top, rest] = Layout::vertical([Constraint::Length(height), Constraint::Min(0)]).areas(body);
            devices::draw(f, top, app);
            jobs::draw(f, rest, app);
        }
        Screen::Detail => detail::draw(f, body, app),
    }
    draw_footer(f, footer, app);
    if app.help {
        draw_help(f, body, f.area(), app);
    }
}

fn draw_header(f: &mut Frame, area: Rect, app: &App) {
    // What matters most comes first; the pieces that do not fit whole are left out, so a
    // narrow terminal never shows a cut value (`up 1` of `up 17.3s`, a URL without its port).
    let t = Theme::of(app);
    let mut spans = vec![Span::styled("reelbox top", t.title())];
    if app.system.as_ref().is_some_and(|s| s.paused) {
        spans.push(Span::styled(" · PAUSED", t.warn().add_modifier(Modifier::BOLD)));
    }
    if app.system.as_ref().is_some_and(|s| s.gpus_unusable.is_some()) {
        // Jobs run on the CPU although GPUs are there: the one thing an owner must fix.
        spans.push(Span::styled(" · GPUs unused: CUDA does not register (reelbox doctor)", t.bad()));
    }
    if let Some(low) = app.system.as_ref().and_then(|s| s.disk.low()) {
        // Work stops until someone frees space: as urgent as unused GPUs.
        spans.push(Span::styled(format!(" · DISK LOW ({low}): {}", crate::disk::stops(low)), t.bad()));
    }
    if app.readonly {
        spans.push(Span::styled(" · read-only", t.warn()));
    }
    if let Some(s) = &app.system {
        let q = &s.queue.by_state;
        spans.push(Span::raw(format!(" · {} running {} queued {} failed", q.running, q.queued, q.failed)));
        if let Some(data) = s.disk.data {
            let free = crate::disk::human_bytes(data.free_bytes);
            spans.push(Span::styled(format!(" · disk {free} free"), t.dim()));
        }
    }
    spans.push(Span::styled(format!(" · {}", app.url), t.dim()));
    if let Some(s) = &app.system {
        spans.push(Span::styled(
            format!(" · v{} up {}", s.version, format::duration(s.uptime_s as i64 * 1000)),
            t.dim(),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(whole(spans, area.width as usize))), area);
}

/// `line` cut to `width` cells with a visible `…` where it was cut (a panel cuts silently,
/// and `waited 5ms runn` reads as a whole value).
pub(super) fn fit_line(line: Line<'static>, width: usize) -> Line<'static> {
    if line.width() <= width {
        return line;
    }
    let mut left = width;
    let mut spans = Vec::new();
    for s in line.spans {
        let w = s.width();
        if w < left {
            left -= w;
            spans.push(s);
            continue;
        }
        spans.push(Span::styled(format::fit(&s.content, left), s.style));
        break;
    }
    Line::from(spans)
}

/// The leading spans that fit in `width` whole; the first is always kept (cut if need be).
pub(super) fn whole(spans: Vec<Span<'static>>, width: usize) -> Vec<Span<'static>> {
    let mut used = 0;
    let mut kept = Vec::new();
    for s in spans {
        used += s.width();
        if !kept.is_empty() && used > width {
            break;
        }
        kept.push(s);
    }
    kept
}

fn draw_footer(f: &mut Frame, area: Rect, app: &App) {
    let t = Theme::of(app);
    // The question first: whatever else happens, the next key answers it.
    let line = if let Some(id) = &app.confirm_cancel {
        Line::from(Span::styled(
            format!("cancel job {}? y cancels it, any other key keeps it", format::short_id(id)),
            t.warn().add_modifier(Modifier::BOLD),
        ))
    } else if let Link::Down { since, error } = &app.link {
        // The state and how long come first: a long error is what a narrow terminal cuts.
        Line::from(vec![
            Span::styled("✖ daemon down", t.bad()),
            Span::raw(format!(
                " for {} · retrying every {} · {error}",
                format::duration(app.now - since),
                format::duration(app.refresh.as_millis() as i64),
            )),
        ])
    } else if let Link::Refused { error } = &app.link {
        // The daemon is up: "down" would send the operator to restart it.
        Line::from(vec![
            Span::styled("✖ key refused", t.bad()),
            Span::raw(" · start top with --key KEY (or REELBOX_KEY) · "),
            Span::raw(error.clone()),
        ])
    } else if app.link == Link::Connecting {
        Line::from(Span::styled(format!("connecting to {} …", app.url), t.warn()))
    } else if app.editing_filter {
        Line::from(vec![
            Span::styled("filter: ", t.title()),
            Span::raw(app.filter.clone()),
            Span::styled("▏ (Enter keep, Esc clear)", t.dim()),
        ])
    } else if let Some(msg) = app.flash_text() {
        let style = if app.flash_failed { t.bad() } else { t.warn() };
        Line::from(Span::styled(msg.to_string(), style))
    } else {
        // `p` says what it will do now.
        let pause = if app.system.as_ref().is_some_and(|s| s.paused) { "resume" } else { "pause" };
        let mut keys: Vec<(&str, &str)> = match (app.screen, app.readonly) {
            (Screen::Dashboard, false) => vec![
                ("↑↓", "select"),
                ("⏎", "detail"),
                ("c", "cancel"),
                ("r", "retry"),
                ("p", pause),
                ("+-", "prio"),
                ("/", "filter"),
                ("?", "help"),
                ("q", "quit"),
            ],
            (Screen::Dashboard, true) => {
                vec![("↑↓", "select"), ("⏎", "detail"), ("/", "filter"), ("?", "help"), ("q", "quit")]
            }
            (Screen::Detail, false) => vec![
                ("Esc", "back"),
                ("↑↓", "events"),
                ("c", "cancel"),
                ("r", "retry"),
                ("+-", "prio"),
                ("?", "help"),
                ("q", "quit"),
            ],
            (Screen::Detail, true) => vec![("Esc", "back"), ("↑↓", "events"), ("?", "help"), ("q", "quit")],
        };
        // A client key may cancel, retry and reprioritise its own jobs, not pause the box.
        if app.admin == Some(false) {
            keys.retain(|(k, _)| *k != "p");
        }
        Line::from(key_spans(keys, area.width as usize, t))
    };
    f.render_widget(Paragraph::new(line), area);
}

/// What a panel says before any data came: the daemon refused the key (it did answer), or
/// no answer yet; the status line says more.
fn no_data(app: &App) -> &'static str {
    if matches!(app.link, Link::Refused { .. }) {
        "the daemon refused: no key, or a wrong one (see the status line)"
    } else {
        "no answer from the daemon yet (see the status line)"
    }
}

/// The key hints that fit; when some must go, those before `? help` go first, so help and
/// quit stay on screen at any width.
fn key_spans(mut keys: Vec<(&str, &str)>, width: usize, t: Theme) -> Vec<Span<'static>> {
    let len =
        |keys: &[(&str, &str)]| keys.iter().map(|(k, w)| k.chars().count() + w.chars().count() + 2).sum::<usize>();
    while len(&keys) > width && keys.len() > 2 {
        keys.remove(keys.len() - 3);
    }
    let mut spans = Vec::new();
    for (k, what) in keys {
        spans.push(Span::styled(k.to_string(), t.title()));
        spans.push(Span::styled(format!(" {what} "), t.dim()));
    }
    spans
}

/// The keys box over the body, or over the whole screen when the body is too short to
/// hold every key (`q` was the first to fall off); texts are cut visibly (`…`).
fn draw_help(f: &mut Frame, body: Rect, screen: Rect, app: &App) {
    let t = Theme::of(app);
    let rows: &[(&str, &str)] = &[
        ("↑/↓ j/k", "select a job / scroll the events (PgUp/PgDn, g/G)"),
        ("Enter", "job detail: stages, events, artifacts, preview"),
        ("Esc", "back to the dashboard / clear the filter"),
        ("c", "cancel the job"),
        ("r", "retry a failed or canceled job"),
        ("p", "pause or resume the queue"),
        ("+ / -", "raise or lower the job's priority"),
        ("/", "filter jobs by id, kind, state, device or error"),
        ("?", "this help"),
        ("q", "quit"),
    ];
    let text_w = (body.width.min(64) as usize).saturating_sub(2 + 10);
    let mut lines: Vec<Line> = rows
        .iter()
        .map(|(k, v)| Line::from(vec![Span::styled(format!("{k:>8}  "), t.title()), Span::raw(format::fit(v, text_w))]))
        .collect();
    if app.readonly {
        let note = "read-only: c, r, p, + and - are off";
        lines.push(Line::from(Span::styled(format::fit(note, text_w + 10), t.warn())));
    }
    let body = if body.height < lines.len() as u16 + 2 { screen } else { body };
    let w = body.width.min(64);
    let h = (lines.len() as u16 + 2).min(body.height);
    let area = Rect { x: body.x + (body.width - w) / 2, y: body.y + (body.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(Span::styled(" keys ", t.title()))),
        area,
    );
}
