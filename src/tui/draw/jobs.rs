//! The jobs table: running jobs (stage, step bar, ETA, energy so far), the queue by
//! priority with what each job needs, and recent finished jobs with durations and errors.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};

use super::Theme;
use crate::api::views::JobView;
use crate::tui::app::App;
use crate::tui::format::{self, bar, fit, parse_time, short_id};

/// Draws the table.
pub(super) fn draw(f: &mut Frame, area: Rect, app: &App) {
    let t = Theme::of(app);
    let rows = app.rows();
    // The title's pieces go whole from the end on a narrow terminal, as the header's do;
    // the filter comes first, and the counts only once the daemon has answered.
    let mut title = vec![Span::styled(" jobs ", t.title())];
    if !app.filter.is_empty() {
        title.push(Span::styled(format!("· filter \"{}\" ({} shown) ", app.filter, rows.len()), t.title()));
    }
    if app.system.is_some() {
        // A poll lists at most 100 running and 200 queued jobs: say so when there are more.
        let q = app.system.as_ref().map(|s| &s.queue.by_state);
        let count = |shown: usize, total: Option<u64>| match total {
            Some(n) if n > shown as u64 => format!("{shown} of {n}"),
            _ => shown.to_string(),
        };
        for piece in [
            format!("· {} running ", count(app.running.len(), q.map(|q| q.running))),
            format!("· {} queued ", count(app.queued.len(), q.map(|q| q.queued))),
            format!("· {} recent ", app.recent.len()),
        ] {
            title.push(Span::styled(piece, t.title()));
        }
    }
    let title = Line::from(super::whole(title, area.width.saturating_sub(2) as usize));
    let block = Block::default().borders(Borders::ALL).title(title);
    if rows.is_empty() {
        let msg = if app.system.is_none() {
            super::no_data(app).to_string()
        } else if app.filter.is_empty() {
            format!("no jobs yet — submit one with `{} submit testcard`", app.reelbox)
        } else {
            "no job matches the filter (Esc clears it)".to_string()
        };
        f.render_widget(Paragraph::new(Span::styled(msg, t.dim())).block(block), area);
        return;
    }
    let wide = area.width >= 120;
    let currency = app.system.as_ref().map(|s| s.energy.currency.clone()).unwrap_or_default();
    let priced = app.system.as_ref().is_some_and(|s| s.energy.price_per_kwh.is_some());
    let kind_w = if wide { 14 } else { 9 };
    // As wide as the widest device shown (a worker box's `garage/cuda:0`), so none is cut;
    // a table too narrow for it leaves the column out instead (`narrow`).
    let device_w = rows.iter().map(|j| device(j).chars().count()).max().unwrap_or(0).clamp(7, 32);
    let mut columns = vec![
        (Column::Id, 8),
        (Column::Kind, kind_w),
        (Column::State, 9),
        (Column::Priority, 4),
        (Column::Device, device_w),
        (Column::Info, 0),
        (Column::Time, TIME_W),
        (Column::Energy, 8),
    ];
    if wide && priced {
        columns.push((Column::Cost, 12));
    }
    let info_w = narrow(&mut columns, area.width.saturating_sub(2) as usize);
    let header: Vec<&str> = columns.iter().map(|(c, _)| c.title()).collect();
    let widths: Vec<Constraint> = columns
        .iter()
        .map(|&(c, w)| if c == Column::Info { Constraint::Min(info_w as u16) } else { Constraint::Length(w as u16) })
        .collect();
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|j| {
            let cells = columns.iter().map(|&(c, _)| match c {
                Column::Id => Cell::from(short_id(&j.id).to_string()),
                Column::Kind => Cell::from(fit(&j.kind, kind_w)),
                Column::State => Cell::from(Span::styled(j.state.as_str(), t.state(j.state.as_str()))),
                Column::Priority => Cell::from(format!("{:>3}", j.priority)),
                Column::Device => Cell::from(fit(&device(j), device_w)),
                Column::Info => Cell::from(info(j, &app.queued, info_w, t)),
                Column::Time => Cell::from(time(j, app.now)),
                Column::Energy => Cell::from(j.energy_wh.map(format::energy).unwrap_or_else(|| "-".into())),
                Column::Cost => Cell::from(j.cost.map(|c| format::cost(c, &currency)).unwrap_or_else(|| "-".into())),
            });
            Row::new(cells.collect::<Vec<_>>())
        })
        .collect();
    let table = Table::new(table_rows, widths)
        .header(Row::new(header).style(t.dim()))
        .block(block)
        .row_highlight_style(t.selected())
        .column_spacing(1);
    let mut state = TableState::default().with_offset(app.jobs_offset.get()).with_selected(app.selected_index());
    f.render_stateful_widget(table, area, &mut state);
    app.jobs_offset.set(state.offset());
}

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Kind,
    State,
    Priority,
    Device,
    Info,
    Time,
    Energy,
    Cost,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Id => "ID",
            Column::Kind => "KIND",
            Column::State => "STATE",
            Column::Priority => "PRI",
            Column::Device => "DEVICE",
            Column::Info => "PROGRESS / INFO",
            Column::Time => "TIME",
            Column::Energy => "ENERGY",
            Column::Cost => "COST",
        }
    }
}

/// The time column's width: a word and the longest figure (`wait 1m00s`).
const TIME_W: usize = 10;

/// The progress column's least useful width: a bar and `card 29/300`.
const INFO_MIN: usize = 16;

/// Leaves out whole columns, least needed first, until the progress column has
/// [`INFO_MIN`] cells in `width`, and returns its width. Cutting every column a little
/// showed `queue` for queued and `succe` for succeeded, and left no room for progress.
fn narrow(columns: &mut Vec<(Column, usize)>, width: usize) -> usize {
    let info = |columns: &[(Column, usize)]| {
        let fixed: usize = columns.iter().map(|(_, w)| w + 1).sum();
        width.saturating_sub(fixed.saturating_sub(1))
    };
    for drop in [Column::Cost, Column::Energy, Column::Device, Column::Priority, Column::Kind, Column::Time] {
        if info(columns) >= INFO_MIN {
            break;
        }
        columns.retain(|(c, _)| *c != drop);
    }
    info(columns)
}

/// Where a job runs, or what it needs while queued.
fn device(j: &JobView) -> String {
    match (&j.device, j.state.as_str()) {
        (Some(d), _) => d.clone(),
        (None, "queued") if j.vram_mib > 0 => format!("≥{}", format::mib(j.vram_mib)),
        (None, "queued") => "any".into(),
        _ => j.stages.iter().rev().find_map(|s| s.device.clone()).unwrap_or_else(|| "-".into()),
    }
}

/// What a job is doing; a queued one without the daemon's reason says its place in
/// `queued` (the queue in the order it runs).
fn info(j: &JobView, queued: &[JobView], w: usize, t: Theme) -> Line<'static> {
    match j.state.as_str() {
        "running" => {
            // The bar is the current stage's steps; wide tables add the whole job's share.
            let p = &j.progress;
            let bw = (w / 4).clamp(4, 20);
            let stage_done = if p.total > 0 { p.step as f64 / p.total as f64 } else { 0.0 };
            let mut label = match (&p.stage, p.total) {
                (Some(s), n) if n > 0 => format!(" {} {}/{}", s, p.step, n),
                (Some(s), _) => format!(" {s}"),
                (None, _) => String::new(),
            };
            if w >= 30 {
                label = format!(" {:>3.0}%{label}", p.fraction * 100.0);
            }
            Line::from(vec![Span::styled(bar(stage_done, bw), t.good()), Span::raw(fit(&label, w.saturating_sub(bw)))])
        }
        "queued" => {
            let text = match (j.attempts, &j.error) {
                // Why no box can take it (no GPU memory, no box with its model, paused).
                (0, _) => match j.waiting.as_deref() {
                    // The daemon's words name the CLI command; here the key does it.
                    Some(crate::scheduler::PAUSED_REASON) => "waiting: queue paused (p resumes)".to_string(),
                    Some(w) => format!("waiting: {w}"),
                    None => match queued.iter().position(|q| q.id == j.id) {
                        Some(0) => "queued, next".to_string(),
                        Some(ahead) => format!("queued, {ahead} ahead"),
                        None => "waiting".to_string(),
                    },
                },
                (_, Some(e)) => format!("retry after: {e}"),
                (n, None) => format!("waiting (attempt {})", n + 1),
            };
            Line::from(Span::styled(fit(&text, w), t.warn()))
        }
        "failed" => Line::from(Span::styled(fit(j.error.as_deref().unwrap_or("failed"), w), t.bad())),
        // Why and by whom ("canceled because the key \"kid\" was revoked"); jobs canceled
        // before the box kept why just say canceled.
        "canceled" => Line::from(Span::styled(fit(j.error.as_deref().unwrap_or("canceled"), w), t.dim())),
        "succeeded" => {
            let n = j.stages.len();
            Line::from(Span::styled(fit(&format!("{n} stage{} done", if n == 1 { "" } else { "s" }), w), t.dim()))
        }
        other => Line::from(Span::styled(fit(other, w), t.dim())),
    }
}

/// What the time column says, each figure with a word for what it measures: the column
/// holds four kinds of time (a bare `57.0s` could be a wait, a run or what is left).
/// `eta` what is left of a running job, `run` how long one without an estimate has run,
/// `wait` how long a queued job has waited, `took` how long a finished one ran, `ran` how
/// long a canceled one ran before it stopped.
fn time(j: &JobView, now: i64) -> Line<'static> {
    let started = parse_time(j.started_at.as_deref());
    let finished = parse_time(j.finished_at.as_deref());
    let said = match j.state.as_str() {
        "running" => match format::eta_ms(j, now) {
            Some(eta) => Some(("eta", eta)),
            None => started.map(|s| ("run", now - s)),
        },
        "queued" => parse_time(j.enqueued_at.as_deref()).map(|q| ("wait", now - q)),
        // A canceled job's view has no start: its finished stages say when it began to run
        // (one canceled in its first stage has none left, and shows `-`).
        "canceled" => {
            let first = j.stages.iter().filter_map(|s| parse_time(s.started_at.as_deref())).min();
            first.zip(finished).map(|(s, f)| ("ran", f - s))
        }
        _ => started.zip(finished).map(|(s, f)| ("took", f - s)),
    };
    let text = said.map(|(word, ms)| format!("{word:<4} {}", format::duration(ms))).unwrap_or_else(|| "-".into());
    Line::from(Span::styled(text, Style::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: &str, extra: serde_json::Value) -> JobView {
        let mut v = serde_json::json!({
            "id": id, "kind": "testcard", "owner": "local", "state": state, "priority": 0,
            "progress": {"fraction": 0.0, "stage": null, "step": 0, "total": 0, "message": null},
            "stages": [], "artifacts": [], "created_at": "2026-12-06T10:00:00Z",
            "enqueued_at": null, "started_at": null, "finished_at": null, "device": null, "error": null,
            "attempts": 0, "vram_mib": 0, "params": {}
        });
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        serde_json::from_value(v).expect("job view")
    }

    fn text(line: &Line) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn a_queued_job_without_a_reason_says_its_place_in_the_queue() {
        let queue = vec![job("A", "queued", serde_json::json!({})), job("B", "queued", serde_json::json!({}))];
        let t = Theme { color: false };
        assert_eq!(text(&info(&queue[0], &queue, 30, t)).trim(), "queued, next");
        assert_eq!(text(&info(&queue[1], &queue, 30, t)).trim(), "queued, 1 ahead");
        let why = job("C", "queued", serde_json::json!({"waiting": "no GPU has 12 GiB free"}));
        assert_eq!(text(&info(&why, &queue, 40, t)).trim(), "waiting: no GPU has 12 GiB free");
    }

    #[test]
    fn a_canceled_job_says_how_long_it_ran() {
        let stage = |start: &str| {
            serde_json::json!({"name": "card", "state": "done", "artifacts": [], "device": "cpu",
                "started_at": start, "finished_at": "2026-12-06T10:00:40Z", "error": null, "energy_wh": null})
        };
        let j = job(
            "A",
            "canceled",
            serde_json::json!({"finished_at": "2026-12-06T10:01:05Z", "stages": [stage("2026-12-06T10:00:03Z")]}),
        );
        assert_eq!(text(&time(&j, 0)), "ran  1m02s");
        let never_ran = job("B", "canceled", serde_json::json!({"finished_at": "2026-12-06T10:01:05Z"}));
        assert_eq!(text(&time(&never_ran, 0)), "-");
    }
}
