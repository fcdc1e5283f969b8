//! Stopping a model run mid-graph when its job is canceled.
//!
//! A stage sees its cancellation token only between runs, and one UNet item of a big
//! picture on the CPU takes tens of seconds. ONNX Runtime checks a terminate flag between
//! graph nodes, so every run made while a stage is [`stoppable`] carries run options that a
//! watcher terminates the moment the token fires. The token reaches [`super::run_locked`]
//! through this thread's scope rather than as an argument, so the pipelines and their many
//! run sites stay as they are: a stage runs on one thread, and so do its model runs.

use std::cell::RefCell;
use std::sync::Arc;

use ort::session::RunOptions;
use tokio_util::sync::CancellationToken;

/// The cancellable scope of the stage running on this thread.
struct Scope {
    token: CancellationToken,
    /// Made at the first run (the runtime is loaded by then; a stage that runs no model
    /// never touches ONNX Runtime), shared by the stage's runs: a terminated flag stays set,
    /// as the token stays canceled.
    options: Option<Arc<RunOptions>>,
    /// Ends the watcher when the stage ends.
    done: CancellationToken,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Ends the scope when `stoppable` returns or unwinds, and the watcher with it.
struct Leave(Option<Scope>);

impl Drop for Leave {
    fn drop(&mut self) {
        let ended = SCOPE.with(|s| s.replace(self.0.take()));
        if let Some(scope) = ended {
            scope.done.cancel();
        }
    }
}

/// Runs `f` with every model run it makes on this thread terminated when `token` fires;
/// such a run fails with [`super::EngineError::Canceled`].
pub fn stoppable<R>(token: &CancellationToken, f: impl FnOnce() -> R) -> R {
    let scope = Scope { token: token.clone(), options: None, done: CancellationToken::new() };
    let _leave = Leave(SCOPE.with(|s| s.replace(Some(scope))));
    f()
}

/// The run options for a run on this thread: `None` outside [`stoppable`], or where ONNX
/// Runtime cannot make them (the run then goes on without, stopping between runs as before).
pub(super) fn run_options() -> Option<(Arc<RunOptions>, CancellationToken)> {
    SCOPE.with(|s| {
        let mut scope = s.borrow_mut();
        let scope = scope.as_mut()?;
        if scope.options.is_none() {
            let options = Arc::new(RunOptions::new().ok()?);
            watch(scope.token.clone(), scope.done.clone(), options.clone());
            scope.options = Some(options);
        }
        scope.options.clone().map(|o| (o, scope.token.clone()))
    })
}

/// Terminates `options`' runs when `token` fires, until `done`. A thread of its own rather
/// than a task: stages also run where no tokio runtime is current (`reelbox say --local`).
fn watch(token: CancellationToken, done: CancellationToken, options: Arc<RunOptions>) {
    let spawned = std::thread::Builder::new().name("reelbox-cancel".into()).spawn(move || {
        let (fired, ended) = (std::pin::pin!(token.cancelled()), std::pin::pin!(done.cancelled()));
        if let futures::future::Either::Left(_) = futures::executor::block_on(futures::future::select(fired, ended)) {
            // A failure leaves the run to end by itself; the stage still sees the token
            // between runs.
            let _ = options.terminate();
        }
    });
    // Without the watcher runs stop between items, as they did before this existed.
    drop(spawned);
}
