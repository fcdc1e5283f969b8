//! The dashboard's state and what keys do to it. No I/O here: keys become [`Command`]s
//! the loop carries out through the API, and data arrives as [`Update`]s.

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::event::{EventLine, Preview, Snapshot, Update};
use super::format::short_id;
use crate::api::system::SystemView;
use crate::api::views::{ArtifactView, JobView};
use crate::gpu::TelemetrySample;
use crate::time::Millis;

/// Telemetry samples kept for sparklines (five minutes at one per second).
pub const HISTORY_LEN: usize = 300;
/// Event lines kept for the detail view (scrollable, so a long job's first lines stay
/// readable; progress lines replace each other and do not count up).
const EVENTS_KEPT: usize = 1000;
/// Lines PgUp/PgDn move, in the jobs table and in the events.
const PAGE: i64 = 10;
/// How long an action's result stays on the status line.
const FLASH_MS: i64 = 5_000;

/// Which screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Dashboard,
    Detail,
}

/// Whether the daemon answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Connecting,
    Up,
    /// Down since this time, with the last error.
    Down {
        since: Millis,
        error: String,
    },
    /// The daemon answers but refuses the key (none given, unknown, or not allowed).
    Refused {
        error: String,
    },
}

/// What the user asked for that needs the API (or ends the program).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Quit,
    Cancel(String),
    Retry(String),
    SetPaused(bool),
    SetPriority(String, i32),
    /// Start following this job in the detail view.
    Follow(String),
    /// Stop following the detailed job.
    Unfollow,
}

/// The detailed job.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    pub id: String,
    pub job: Option<JobView>,
    pub artifacts: Vec<ArtifactView>,
    pub events: VecDeque<EventLine>,
    /// How many lines the events are scrolled back from the newest (0: following them).
    /// The draw clamps it to what the panel can scroll and writes that back, as
    /// [`App::jobs_offset`], so a key pressed past the oldest line is not stored up.
    pub events_back: Cell<usize>,
    pub preview: Option<Preview>,
}

/// Everything the dashboard shows.
#[derive(Debug, Clone)]
pub struct App {
    pub url: String,
    /// How a command the dashboard suggests starts (`reelbox`, or `reelbox --url URL` when
    /// `top` was started with a `--url` that a bare command would not reach).
    pub reelbox: String,
    pub readonly: bool,
    pub refresh: Duration,
    /// Colours on (off with `NO_COLOR`).
    pub color: bool,
    /// The clock render functions use, so they stay pure.
    pub now: Millis,
    pub link: Link,
    pub system: Option<SystemView>,
    /// Whether the key may pause the queue (`None`: not known, offered anyway).
    pub admin: Option<bool>,
    pub history: VecDeque<TelemetrySample>,
    pub running: Vec<JobView>,
    pub queued: Vec<JobView>,
    pub recent: Vec<JobView>,
    /// Row under the cursor, by job id so refreshes do not move it.
    pub selected: Option<String>,
    /// Where the cursor last was, for when its job leaves the list (it stays there
    /// instead of jumping to the first row, where `c` would cancel another job).
    pub selected_at: usize,
    /// The jobs table's first shown row, as the last draw left it: kept between frames
    /// so the cursor moves within the view and the rows stay put, instead of the list
    /// scrolling under a cursor glued to the bottom line.
    pub jobs_offset: Cell<usize>,
    pub screen: Screen,
    pub help: bool,
    pub filter: String,
    pub editing_filter: bool,
    pub detail: Option<Detail>,
    pub flash: Option<(String, Millis)>,
    /// The flash is a failed action's: it stays until the next key.
    pub flash_failed: bool,
    /// When the daemon last answered a poll.
    pub last_answer: Option<Millis>,
    /// The job `c` asked to cancel, until the next key: `y` cancels it, any other keeps it
    /// (one stray key over a laggy SSH link stopped a long render).
    pub confirm_cancel: Option<String>,
}

impl App {
    /// A dashboard for the daemon at `url`, not yet connected.
    pub fn new(url: &str, readonly: bool, refresh: Duration, color: bool, now: Millis) -> Self {
        Self {
            url: url.to_string(),
            reelbox: "reelbox".into(),
            readonly,
            refresh,
            color,
            now,
            link: Link::Connecting,
            system: None,
            admin: None,
            history: VecDeque::new(),
            running: Vec::new(),
            queued: Vec::new(),
            recent: Vec::new(),
            selected: None,
            selected_at: 0,
            jobs_offset: Cell::new(0),
            screen: Screen::Dashboard,
            help: false,
            filter: String::new(),
            editing_filter: false,
            detail: None,
            flash: None,
            flash_failed: false,
            last_answer: None,
            confirm_cancel: None,
        }
    }

    /// Jobs in display order (running, queued by priority, recent), filtered.
    pub fn rows(&self) -> Vec<&JobView> {
        let needle = self.filter.to_lowercase();
        self.running
            .iter()
            .chain(self.queued.iter())
            .chain(self.recent.iter())
            .filter(|j| needle.is_empty() || matches_filter(j, &needle))
            .collect()
    }

    /// Index of the selected row; when the selected job is gone (pushed out of the recent
    /// list, hidden by the filter), the row at the same place.
    pub fn selected_index(&self) -> Option<usize> {
        let rows = self.rows();
        if rows.is_empty() {
            return None;
        }
        let found = self.selected.as_ref().and_then(|id| rows.iter().position(|j| &j.id == id));
        Some(found.unwrap_or(self.selected_at.min(rows.len() - 1)))
    }

    /// The job under the cursor.
    pub fn selected_job(&self) -> Option<&JobView> {
        let i = self.selected_index()?;
        self.rows().get(i).copied()
    }

    /// The flash message, while fresh.
    pub fn flash_text(&self) -> Option<&str> {
        self.flash.as_ref().filter(|(_, at)| self.flash_failed || self.now - at < FLASH_MS).map(|(m, _)| m.as_str())
    }

    /// Folds data from the daemon into the state.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Snapshot(s) => self.apply_snapshot(*s),
            Update::Refused(error) => self.link = Link::Refused { error },
            Update::Down(error) => {
                // Down since the last answer: a hung daemon fails the poll only after the
                // request timeout, which "down for 1.9s" after 8 s of silence hid.
                let since = match &self.link {
                    Link::Down { since, .. } => *since,
                    _ => self.last_answer.unwrap_or(self.now),
                };
                self.link = Link::Down { since, error };
            }
            Update::History(samples) => {
                self.history = samples.into_iter().collect();
                self.trim_history();
            }
            Update::Sample(s) => {
                if self.history.back().is_none_or(|last| last.at_ms < s.at_ms) {
                    self.history.push_back(*s);
                    self.trim_history();
                }
            }
            Update::Detail(job, artifacts) => {
                if let Some(d) = self.detail.as_mut().filter(|d| d.id == job.id) {
                    d.job = Some(*job);
                    d.artifacts = artifacts;
                }
            }
            Update::JobEvent(id, line) => {
                if let Some(d) = self.detail.as_mut().filter(|d| d.id == id)
                    && d.events.back().is_none_or(|l| l.seq < line.seq)
                {
                    if line.progress && d.events.back().is_some_and(|l| l.progress) {
                        d.events.pop_back();
                    } else if d.events_back.get() > 0 {
                        // Scrolled back: the lines being read stay put as new ones arrive.
                        d.events_back.set(d.events_back.get() + 1);
                    }
                    d.events.push_back(line);
                    if d.events.len() > EVENTS_KEPT {
                        d.events.pop_front();
                    }
                }
            }
            Update::Preview(id, p) => {
                if let Some(d) = self.detail.as_mut().filter(|d| d.id == id) {
                    d.preview = Some(p);
                }
            }
            Update::Flash(msg) => {
                self.flash = Some((msg, self.now));
                self.flash_failed = false;
            }
            Update::ActionFailed(msg) => {
                self.flash = Some((msg, self.now));
                self.flash_failed = true;
            }
        }
    }

    fn apply_snapshot(&mut self, s: Snapshot) {
        self.link = Link::Up;
        self.last_answer = Some(self.now);
        self.system = Some(s.system);
        self.admin = s.admin;
        self.running = s.running;
        self.queued = s.queued;
        // The queue runs highest priority first, FIFO within one.
        self.queued.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.enqueued_at.cmp(&b.enqueued_at)));
        self.recent = s.recent;
        self.pin_selection();
        if let Some(d) = self.detail.as_mut()
            && let Some(j) = self.running.iter().chain(&self.queued).chain(&self.recent).find(|j| j.id == d.id)
        {
            d.job = Some(j.clone());
        }
    }

    /// Remembers the selected job's row, or moves the selection to the job now at the
    /// remembered row when the selected one is gone. Before any key moved the cursor it
    /// stays on the first row, whichever job that is.
    fn pin_selection(&mut self) {
        if self.selected.is_none() {
            return;
        }
        if let Some(i) = self.selected_index() {
            self.selected_at = i;
            self.selected = self.rows().get(i).map(|j| j.id.clone());
        }
    }

    fn trim_history(&mut self) {
        while self.history.len() > HISTORY_LEN {
            self.history.pop_front();
        }
    }

    /// What a key does; state changes happen here, API calls come back as commands.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if self.flash_failed {
            // Seen: the next key puts the key hints back.
            self.flash = None;
            self.flash_failed = false;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char('c' | 'd')) {
            return Some(Command::Quit);
        }
        if let Some(id) = self.confirm_cancel.take() {
            if key.code == KeyCode::Char('y') {
                return Some(Command::Cancel(id));
            }
            self.apply(Update::Flash(format!("not canceled: {} keeps running", short_id(&id))));
            return None;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            return None;
        }
        if self.help {
            // Any key closes help; q still quits.
            self.help = false;
            return (key.code == KeyCode::Char('q')).then_some(Command::Quit);
        }
        match key.code {
            KeyCode::Char('q') => return Some(Command::Quit),
            KeyCode::Char('?') => self.help = true,
            KeyCode::Esc => {
                if self.screen == Screen::Detail {
                    self.screen = Screen::Dashboard;
                    self.detail = None;
                    return Some(Command::Unfollow);
                }
                self.filter.clear();
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-PAGE),
            KeyCode::PageDown => self.move_by(PAGE),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(i64::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(i64::MAX / 2),
            KeyCode::Char('/') if self.screen == Screen::Dashboard => self.editing_filter = true,
            KeyCode::Enter if self.screen == Screen::Dashboard => {
                let id = self.selected_job()?.id.clone();
                self.selected = Some(id.clone());
                self.screen = Screen::Detail;
                self.detail = Some(Detail { id: id.clone(), job: self.selected_job().cloned(), ..Detail::default() });
                return Some(Command::Follow(id));
            }
            KeyCode::Char(c @ ('c' | 'r' | 'p' | '+' | '=' | '-')) => return self.action(c),
            _ => {}
        }
        None
    }

    fn action(&mut self, c: char) -> Option<Command> {
        if self.readonly {
            self.apply(Update::Flash("read-only: actions are off (started with --readonly)".into()));
            return None;
        }
        if c == 'p' {
            if self.admin == Some(false) {
                self.apply(Update::ActionFailed("pausing the queue needs an admin key".into()));
                return None;
            }
            let paused = self.system.as_ref().is_some_and(|s| s.paused);
            return Some(Command::SetPaused(!paused));
        }
        let job = match self.screen {
            Screen::Detail => self.detail.as_ref().and_then(|d| d.job.as_ref()),
            Screen::Dashboard => self.selected_job(),
        }?;
        let id = job.id.clone();
        match c {
            'c' => {
                // The status line asks until the next key answers.
                self.confirm_cancel = Some(id);
                None
            }
            'r' => Some(Command::Retry(id)),
            '+' | '=' => Some(Command::SetPriority(id, (job.priority + 1).min(1000))),
            '-' => Some(Command::SetPriority(id, (job.priority - 1).max(-1000))),
            _ => None,
        }
    }

    /// The movement keys: the cursor in the jobs table, the events in the detail view
    /// (up is older, as in the table; `g` the oldest line, `G` back to following).
    fn move_by(&mut self, by: i64) {
        match (self.screen, &self.detail) {
            (Screen::Dashboard, _) => self.move_selection(by),
            (Screen::Detail, Some(d)) => {
                let back = (d.events_back.get() as i64).saturating_sub(by).clamp(0, d.events.len() as i64);
                d.events_back.set(back as usize);
            }
            (Screen::Detail, None) => {}
        }
    }

    fn move_selection(&mut self, by: i64) {
        let rows = self.rows();
        let Some(current) = self.selected_index() else { return };
        let last = rows.len() as i64 - 1;
        let next = (current as i64).saturating_add(by).clamp(0, last) as usize;
        self.selected = rows.get(next).map(|j| j.id.clone());
        self.selected_at = next;
    }
}

fn matches_filter(j: &JobView, needle: &str) -> bool {
    [j.id.as_str(), j.kind.as_str(), j.state.as_str(), j.owner.as_str(), j.device.as_deref().unwrap_or("")]
        .iter()
        .chain(j.error.as_deref().iter())
        .any(|f| f.to_lowercase().contains(needle))
}
