//! `reelbox top` as an operator meets it every day: small terminals, a daemon never reached
//! or refusing the key, a long scrolled list, refused actions, a paused queue. Drawn from
//! the fixed states of [`crate::top_snapshots`]; review snapshot changes as there.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use reelbox::tui::app::{App, Command, Link};
use reelbox::tui::event::{Snapshot, Update};

use crate::top_snapshots::{NOW, at, busy, detail_app, draw, job, quiet};

/// Small terminals (a phone's SSH app, a split pane) leave out whole columns and gauge
/// parts instead of cutting every value: the state reads `succeeded`, not `succe`, the
/// progress column keeps its bar, and a GPU's power is never cut to a lone digit.
#[test]
fn small_terminals_drop_whole_columns_instead_of_cutting_values() {
    let app = busy(&[8192, 24576]);
    for (w, h, name) in [(60, 20, "busy_queue_60x20"), (40, 12, "busy_queue_40x12")] {
        let screen = draw(&app, w, h).backend().to_string();
        assert!(!screen.contains("succe "), "{screen}");
        insta::assert_snapshot!(name, draw(&app, w, h).backend());
    }
}

/// A daemon never reached (a wrong `--url`) says so in both panels: "no GPU" and "no jobs
/// yet" would be guesses.
#[test]
fn a_daemon_never_reached_is_not_shown_as_an_empty_box() {
    let mut app = App::new("http://127.0.0.1:8471", false, Duration::from_secs(1), true, NOW);
    app.apply(Update::Down("connection refused".into()));
    let screen = draw(&app, 80, 24).backend().to_string();
    assert!(!screen.contains("no GPU") && !screen.contains("no jobs yet"), "{screen}");
    insta::assert_snapshot!("never_reached_80x24", draw(&app, 80, 24).backend());
}

/// An API key required and none given (or a wrong one): the daemon is up, so the status
/// line says the key is refused and how to give one, not "daemon down".
#[test]
fn a_refused_key_is_not_called_a_daemon_down() {
    let mut app = App::new("http://127.0.0.1:8470", false, Duration::from_secs(1), true, NOW);
    app.apply(Update::Refused(
        "401 Unauthorized: this API needs a key: send `Authorization: Bearer KEY` (see `reelbox keys`)".into(),
    ));
    assert!(matches!(app.link, Link::Refused { .. }), "{:?}", app.link);
    // The daemon answered: the panels say it refused the key, not that it never answered.
    let screen = draw(&app, 80, 24).backend().to_string();
    assert!(!screen.contains("no answer from the daemon yet"), "{screen}");
    assert!(screen.contains("the daemon refused: no key, or a wrong one"), "{screen}");
    insta::assert_snapshot!("key_refused_80x24", draw(&app, 80, 24).backend());
}

/// A selected job that leaves the list (pushed out of the recent jobs by newer ones)
/// leaves the cursor where it was, not on the first row, where `c` would cancel a
/// running job the operator never pointed at.
#[test]
fn a_selected_job_that_leaves_the_list_keeps_the_cursor_in_place() {
    let mut app = busy(&[8192, 24576]);
    app.on_key(KeyEvent::from(KeyCode::Char('G')));
    let last = app.rows().len() - 1;
    assert_eq!(app.selected_index(), Some(last));
    let mut next = Snapshot {
        system: app.system.clone().expect("system"),
        running: app.running.clone(),
        queued: app.queued.clone(),
        recent: app.recent.clone(),
        admin: app.admin,
    };
    next.recent.pop();
    app.apply(Update::Snapshot(Box::new(next)));
    assert_eq!(app.selected_index(), Some(last - 1), "the cursor stays at the bottom");
    assert_eq!(app.selected_job().map(|j| j.state.as_str()), Some("succeeded"));
    assert_eq!(app.on_key(KeyEvent::from(KeyCode::Char('c'))), None, "asks first");
    assert!(
        matches!(app.on_key(KeyEvent::from(KeyCode::Char('y'))), Some(Command::Cancel(id)) if !id.ends_with("00000000R1"))
    );
}

/// While the queue is paused the footer offers `p resume`, what the key will do.
#[test]
fn the_pause_key_says_resume_while_the_queue_is_paused() {
    let app = busy(&[8192, 24576]);
    let screen = draw(&app, 120, 30).backend().to_string();
    assert!(screen.contains("p resume"), "{screen}");
}

/// A client key may cancel, retry and reprioritise its own jobs but not pause the box:
/// `p` is not offered, and pressing it says why instead of sending a request the daemon
/// refuses.
#[test]
fn a_client_key_is_not_offered_the_pause() {
    let mut app = busy(&[8192, 24576]);
    app.admin = Some(false);
    let screen = draw(&app, 120, 30).backend().to_string();
    assert!(!screen.contains("p resume") && !screen.contains("p pause"), "{screen}");
    assert!(screen.contains("c cancel"), "{screen}");
    assert_eq!(app.on_key(KeyEvent::from(KeyCode::Char('p'))), None, "nothing is sent");
    let screen = draw(&app, 120, 30).backend().to_string();
    assert!(screen.contains("pausing the queue needs an admin key"), "{screen}");
}

/// Real card names keep their model in the short name column.
#[test]
fn card_names_keep_their_model_in_a_narrow_column() {
    let mut app = quiet(&[24576]);
    for s in app.history.iter_mut() {
        s.gpus[0].name = "NVIDIA GeForce RTX 4090".into();
    }
    let screen = draw(&app, 80, 24).backend().to_string();
    assert!(screen.contains("RTX 4090"), "{screen}");
}

/// Scrolled down a long list, ↑ moves the cursor up the screen; the rows stay where they
/// are (the view used to scroll under a cursor glued to the bottom line).
#[test]
fn moving_up_a_scrolled_list_moves_the_cursor_not_the_rows() {
    let mut app = busy(&[8192, 24576]);
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let mut line_of_selected = |app: &App| {
        t.draw(|f| reelbox::tui::draw::draw(f, app)).expect("draw");
        let id = app.selected_job().map(|j| j.id[j.id.len() - 8..].to_string()).expect("selected");
        let screen = t.backend().to_string();
        screen.lines().position(|l| l.contains(&id)).expect("the selected row is on screen")
    };
    app.on_key(KeyEvent::from(KeyCode::Char('G')));
    let bottom = line_of_selected(&app);
    for up in 1..=3 {
        app.on_key(KeyEvent::from(KeyCode::Up));
        assert_eq!(line_of_selected(&app), bottom - up, "after {up} × ↑");
    }
}

/// On a 40×12 terminal the help still lists every key down to `q`, its texts cut with `…`.
#[test]
fn help_on_a_small_terminal_keeps_every_key() {
    let mut app = quiet(&[]);
    app.on_key(KeyEvent::from(KeyCode::Char('?')));
    let screen = draw(&app, 40, 12).backend().to_string();
    assert!(screen.contains("q  quit"), "{screen}");
    insta::assert_snapshot!("help_40x12", draw(&app, 40, 12).backend());
}

/// A refused action (retry of a job that succeeded) stays on the status line until the
/// next key instead of vanishing after five seconds.
#[test]
fn a_failed_action_stays_on_the_status_line_until_a_key() {
    let mut app = quiet(&[]);
    let refusal = "failed: 409 Conflict: the job's state is succeeded; only failed or canceled jobs can be retried";
    app.apply(Update::ActionFailed(refusal.into()));
    app.now = NOW + 60_000;
    assert_eq!(app.flash_text(), Some(refusal));
    app.on_key(KeyEvent::from(KeyCode::Down));
    assert_eq!(app.flash_text(), None);
    app.apply(Update::Flash("queue paused".into()));
    app.now = NOW + 120_000;
    assert_eq!(app.flash_text(), None, "good news still goes by itself");
}

/// The detail view on small terminals: no empty preview panel taking a third of the
/// width, and a line too long for the panel ends in `…` instead of a cut value.
#[test]
fn detail_on_small_terminals_cuts_visibly_and_drops_an_empty_preview() {
    let mut app = detail_app(true);
    if let Some(d) = app.detail.as_mut() {
        d.preview = None;
    }
    for (w, h, name) in [(60, 20, "detail_no_image_60x20"), (40, 12, "detail_no_image_40x12")] {
        let screen = draw(&app, w, h).backend().to_string();
        assert!(!screen.contains("preview"), "{screen}");
        insta::assert_snapshot!(name, draw(&app, w, h).backend());
    }
}

/// More jobs wait than one poll lists (200): the title says how many of them are shown.
#[test]
fn a_queue_longer_than_the_list_says_how_many_are_shown() {
    let mut app = busy(&[8192, 24576]);
    if let Some(s) = app.system.as_mut() {
        s.queue.by_state.queued = 250;
    }
    let screen = draw(&app, 80, 24).backend().to_string();
    assert!(screen.contains("· 12 of 250 queued"), "{screen}");
}

/// A paused queue's jobs say what resumes them here (the `p` key), not the CLI command
/// the daemon's reason names, which the column cut mid-way.
#[test]
fn jobs_held_by_a_pause_say_p_resumes_them() {
    let mut app = busy(&[8192, 24576]);
    for j in app.queued.iter_mut() {
        j.waiting = Some(reelbox::scheduler::PAUSED_REASON.to_string());
    }
    let screen = draw(&app, 120, 30).backend().to_string();
    assert!(screen.contains("waiting: queue paused (p resumes)"), "{screen}");
}

/// A daemon that hangs (stopped, swapping) fails a poll only after the request timeout:
/// the status line counts from its last answer, not from that first failed poll.
#[test]
fn a_hung_daemon_is_down_since_its_last_answer() {
    let mut app = quiet(&[8192]);
    app.now = NOW + 6_000;
    app.apply(Update::Down("timed out".into()));
    app.now = NOW + 8_000;
    assert_eq!(app.link, Link::Down { since: NOW, error: "timed out".into() });
    let screen = draw(&app, 80, 24).backend().to_string();
    assert!(screen.contains("daemon down for 8.0s"), "{screen}");
}

/// The jobs table's time column holds four kinds of time; each figure says which (a bare
/// `57.0s` was a wait, a run or what was left depending on the row), at every width
/// that has the column.
#[test]
fn every_time_in_the_jobs_table_says_what_it_measures() {
    let app = busy(&[8192, 24576]);
    for w in [60, 80, 120, 160] {
        let screen = draw(&app, w, 48).backend().to_string();
        for said in ["eta  58.2s", "run  2.0s", "wait 57.0s", "took 42.0s", "took 1h02m"] {
            assert!(screen.contains(said), "{w} columns, no {said:?}:\n{screen}");
        }
        assert!(!screen.contains('~'), "{screen}");
    }
}

/// A render whose keyframes took most of its first 100 s (a slow diffusion model, planned
/// at 4 % of it) is halfway through its motion, 10 s in: the time column says the 20 s
/// that motion's pace leaves (as the web studio says), not the 2m30s the whole job's
/// pace since its start said.
#[test]
fn a_running_jobs_eta_goes_at_its_running_stages_pace() {
    let mut app = quiet(&[8192]);
    let stage = |name: &str, state: &str, weight: f64, started: Option<i64>| {
        serde_json::json!({"name": name, "state": state, "weight": weight, "artifacts": [], "device": "cuda:0",
            "started_at": started.map(at), "finished_at": null, "error": null, "energy_wh": null})
    };
    let stages = [
        stage("plan", "done", 0.01, Some(-100)),
        stage("keyframes", "done", 0.04, Some(-99)),
        stage("narration", "done", 0.05, Some(-12)),
        stage("motion", "running", 0.6, Some(-10)),
        stage("mux", "pending", 0.3, None),
    ];
    app.running = vec![job(
        "R9",
        "render",
        "running",
        0,
        serde_json::json!({"device": "cuda:0", "attempts": 1, "started_at": at(-100), "stages": stages,
            "progress": {"fraction": 0.4, "stage": "motion", "step": 50, "total": 100, "message": null}}),
    )];
    for w in [80, 160] {
        let screen = draw(&app, w, 24).backend().to_string();
        assert!(screen.contains("eta  20.0s") && !screen.contains("2m30s"), "{w} columns:\n{screen}");
    }
}

/// A long job's early events stay readable: ↑/PgUp/g scroll back through them in the
/// detail view, new events arriving meanwhile do not move the lines being read, and `G`
/// follows the newest again.
#[test]
fn the_detail_views_events_scroll_back_to_the_first() {
    let mut app = detail_app(true);
    let id = app.detail.as_ref().map(|d| d.id.clone()).expect("detail");
    let line = |seq: u64, text: String| reelbox::tui::event::EventLine {
        seq,
        at: crate::top_snapshots::at(-80 + seq as i64 / 10),
        text,
        progress: false,
    };
    for seq in 10..70 {
        app.apply(Update::JobEvent(id.clone(), line(seq, format!("[info] tile {seq} done"))));
    }
    let screen = draw(&app, 80, 24).backend().to_string();
    assert!(screen.contains("tile 69 done") && !screen.contains("state → queued"), "{screen}");
    assert!(screen.contains("of 65 · ↑ older, g oldest"), "{screen}");

    app.on_key(KeyEvent::from(KeyCode::PageUp));
    app.on_key(KeyEvent::from(KeyCode::Char('k')));
    let scrolled = draw(&app, 80, 24).backend().to_string();
    assert!(!scrolled.contains("tile 69 done") && scrolled.contains("tile 58 done"), "{scrolled}");
    assert!(scrolled.contains("↓ newer, G newest"), "{scrolled}");
    // A new line while scrolled back: the view stays where it was.
    app.apply(Update::JobEvent(id.clone(), line(70, "[info] tile 70 done".into())));
    assert_eq!(draw(&app, 80, 24).backend().to_string(), scrolled.replace("of 65", "of 66"));

    // Past the oldest line the keys do not store up: one ↓ moves at once (the loop
    // draws after every key, as here).
    for key in [KeyCode::Char('g'), KeyCode::Up, KeyCode::Up, KeyCode::Down] {
        app.on_key(KeyEvent::from(key));
        draw(&app, 80, 24);
    }
    let top = draw(&app, 80, 24).backend().to_string();
    assert!(top.contains("state → running") && !top.contains("state → queued"), "{top}");
    app.on_key(KeyEvent::from(KeyCode::Char('g')));
    insta::assert_snapshot!("detail_events_oldest_80x24", draw(&app, 80, 24).backend());

    app.on_key(KeyEvent::from(KeyCode::Char('G')));
    let newest = draw(&app, 80, 24).backend().to_string();
    assert!(newest.contains("tile 70 done") && newest.contains("↑ older"), "{newest}");
    assert_eq!(app.screen, reelbox::tui::app::Screen::Detail, "the keys scroll, they do not leave");
}

/// An empty box's jobs panel says how to submit a job: to the daemon `top` watches, so a
/// `top` started with `--url` (a bare command would reach another daemon) names it.
#[test]
fn the_empty_jobs_panel_names_the_daemon_top_watches() {
    use crate::top_snapshots::{app, system};
    let empty = || Snapshot {
        system: system(&[], 0, 0, 0, false),
        running: vec![],
        queued: vec![],
        recent: vec![],
        admin: None,
    };
    let screen = draw(&app(&[], empty()), 100, 24).backend().to_string();
    assert!(screen.contains("submit one with `reelbox submit testcard`"), "{screen}");
    let mut there = app(&[], empty());
    there.reelbox = "reelbox --url http://box:8470".into();
    let screen = draw(&there, 100, 24).backend().to_string();
    assert!(screen.contains("submit one with `reelbox --url http://box:8470 submit testcard`"), "{screen}");
}
