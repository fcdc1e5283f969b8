//! `reelbox top`: a terminal dashboard of a reelbox daemon, over its HTTP API only.
//!
//! Split by role, as bottom does: [`client`] talks to the daemon (through
//! [`crate::client::ApiClient`]) and feeds [`event::Update`]s into one channel of
//! [`event::Event`]s (with keys, resizes, ticks and signals);
//! [`app::App`] holds the state and turns keys into [`app::Command`]s; [`draw`] draws
//! the state and nothing else. The terminal is restored on every exit path: normal quit,
//! errors, signals (SIGTERM, SIGHUP when the SSH session drops) and panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::DefaultTerminal;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

pub mod app;
pub mod client;
pub mod draw;
pub mod event;
pub mod format;

use crate::client::ApiClient;
use app::{App, Command};
use event::{Event, Update};

/// Options of `reelbox top`.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// Daemon URL.
    pub url: String,
    /// API key, sent as a bearer token.
    pub key: Option<String>,
    /// Extra CA certificate to trust (a daemon serving HTTPS with its own certificate).
    pub cacert: Option<std::path::PathBuf>,
    /// Disables cancel, retry, pause and priority changes.
    pub readonly: bool,
    /// Time between polls.
    pub refresh: Duration,
    /// How a command the dashboard suggests starts: `reelbox` with the `--url` typed to
    /// start it, when another daemon is reached without it (see [`App::reelbox`]).
    pub reelbox: String,
}

/// Why the dashboard could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("reelbox top needs a terminal: {0}")]
    Terminal(std::io::Error),
    #[error(transparent)]
    Client(#[from] crate::api::http_client::HttpClientError),
}

/// True when colours are wanted (`NO_COLOR` unset or empty, per no-color.org).
pub fn colors_wanted() -> bool {
    !crate::config::env::no_color()
}

/// The terminal in raw mode on the alternate screen; dropping it restores the terminal.
/// `ratatui::try_init` also installs a panic hook that restores it before the message.
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> Result<Self, TopError> {
        use std::io::IsTerminal;
        // Checked first: restoring a terminal never entered wrote escape codes into a pipe.
        // A `TERM=dumb` terminal (an editor's shell, a serial console) shows the alternate
        // screen's cursor and colour codes as text: refused as a pipe is.
        let dumb = crate::config::env::term().is_some_and(|t| t == "dumb");
        if dumb || !std::io::stdout().is_terminal() {
            let what = if dumb { "the terminal is TERM=dumb" } else { "standard output is not a terminal" };
            return Err(TopError::Terminal(std::io::Error::other(format!(
                "{what} (run it in an SSH session, tmux or screen)"
            ))));
        }
        let terminal = ratatui::try_init().map_err(|e| {
            ratatui::restore();
            TopError::Terminal(e)
        })?;
        Ok(Self { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        ratatui::restore();
    }
}

/// Runs the dashboard until `q`, Ctrl-C or a terminating signal.
pub async fn run(opts: TopOptions) -> Result<(), TopError> {
    let client = ApiClient::new(&opts.url, opts.key.clone(), opts.cacert.as_deref(), Some(client::CONNECT_TIMEOUT))?;
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    let mut app = App::new(&opts.url, opts.readonly, opts.refresh, colors_wanted(), now());
    app.reelbox = opts.reelbox.clone();
    let mut screen = Screen::enter()?;

    let stop_input = Arc::new(AtomicBool::new(false));
    let input = spawn_input(tx.clone(), stop_input.clone());
    let wake = Arc::new(Notify::new());
    let mut tasks: Vec<JoinHandle<()>> = vec![
        tokio::spawn(client::poll(client.clone(), tx.clone(), opts.refresh, wake.clone())),
        tokio::spawn(client::telemetry(client.clone(), tx.clone(), opts.refresh.max(Duration::from_secs(1)))),
        tokio::spawn(signals(tx.clone())),
        tokio::spawn(ticks(tx.clone(), opts.refresh)),
    ];
    let mut follow: Option<JoinHandle<()>> = None;

    let result = loop {
        if let Err(e) = screen.terminal.draw(|f| draw::draw(f, &app)) {
            break Err(TopError::Terminal(e));
        }
        let Some(first) = rx.recv().await else { break Ok(()) };
        // Fold everything already waiting into one redraw.
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        app.now = now();
        let mut quit = false;
        for ev in batch {
            match ev {
                Event::Key(k) => match app.on_key(k) {
                    Some(Command::Quit) => quit = true,
                    Some(Command::Follow(id)) => {
                        if let Some(h) = follow.take() {
                            h.abort();
                        }
                        follow = Some(tokio::spawn(client::follow(client.clone(), tx.clone(), id, opts.refresh)));
                    }
                    Some(Command::Unfollow) => {
                        if let Some(h) = follow.take() {
                            h.abort();
                        }
                    }
                    Some(cmd) => {
                        let (client, tx, wake) = (client.clone(), tx.clone(), wake.clone());
                        tokio::spawn(async move {
                            let update = match client::act(&client, &cmd).await {
                                Ok(m) => Update::Flash(m),
                                Err(e) => Update::ActionFailed(format!("failed: {}", client::status_line(&e))),
                            };
                            let _ = tx.send(Event::Data(update)).await;
                            wake.notify_one();
                        });
                    }
                    None => {}
                },
                Event::Data(u) => app.apply(u),
                Event::Resize | Event::Tick => {}
                Event::Shutdown => quit = true,
            }
        }
        if quit {
            break Ok(());
        }
    };
    stop_input.store(true, Ordering::SeqCst);
    for t in tasks.drain(..).chain(follow) {
        t.abort();
    }
    drop(screen);
    // The input thread polls with a short timeout; wait so it never reads after restore.
    let _ = tokio::task::spawn_blocking(move || input.join()).await;
    result
}

fn now() -> i64 {
    crate::time::now_ms()
}

/// Reads keys and resizes on a thread (crossterm's reader blocks) until `stop`.
fn spawn_input(tx: mpsc::Sender<Event>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    use ratatui::crossterm::event as ct;
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match ct::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => break,
            }
            let ev = match ct::read() {
                Ok(ct::Event::Key(k)) => Event::Key(k),
                Ok(ct::Event::Resize(..)) => Event::Resize,
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.blocking_send(ev).is_err() {
                break;
            }
        }
    })
}

async fn signals(tx: mpsc::Sender<Event>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::hangup()), signal(SignalKind::interrupt()))
    else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = hup.recv() => {}
        _ = int.recv() => {}
    }
    let _ = tx.send(Event::Shutdown).await;
}

async fn ticks(tx: mpsc::Sender<Event>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        if tx.send(Event::Tick).await.is_err() {
            return;
        }
    }
}
