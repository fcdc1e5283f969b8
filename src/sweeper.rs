//! The retention sweep: `[retention]` turned into a store sweep, run by the daemon once a
//! day (the first shortly after it starts, so a box that was off catches up), on demand by
//! `POST /api/v1/gc`, and by `reelbox gc` when no daemon runs. All three call [`sweep`].

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::store::quota::DAY_MS;
use crate::store::records::{Millis, now_ms};
use crate::store::{Removal, Store, StoreError, SweepPolicy};

/// Delay from daemon start to the first sweep: after start-up work, before anyone waits long.
pub const FIRST_SWEEP: Duration = Duration::from_secs(60);
/// Time between sweeps.
pub const EVERY: Duration = Duration::from_secs(24 * 3600);

/// The store sweep `config` asks for at `now`: days of 0 remove nothing of that kind, and
/// files no record names are always collected.
pub fn policy(config: &RetentionConfig, now: Millis) -> SweepPolicy {
    let cutoff = |days: f64| (days > 0.0).then(|| now.saturating_sub((days * DAY_MS as f64) as Millis));
    SweepPolicy {
        jobs_finished_before: cutoff(config.finished_job_days),
        unused_before: cutoff(config.unused_upload_days),
        orphan_files: true,
    }
}

/// Runs the sweep `config` asks for now; with `dry_run`, only counts what would go.
pub async fn sweep(store: &Store, config: &RetentionConfig, dry_run: bool) -> Result<Removal, StoreError> {
    let removal = store.sweep(policy(config, now_ms()), dry_run).await?;
    if !dry_run && removal != Removal::default() {
        tracing::info!(
            jobs = removal.jobs,
            artifacts = removal.artifacts,
            orphan_files = removal.orphan_files,
            bytes = removal.bytes,
            "retention sweep removed old jobs and unused files"
        );
    }
    Ok(removal)
}

/// The daemon's daily sweep task; stopping (or dropping) it ends the task.
pub struct Sweeper {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Starts the daily sweep, or nothing when `[retention]` keeps everything forever.
    pub fn spawn(store: Store, config: RetentionConfig) -> Option<Self> {
        config.enabled().then(|| Self::spawn_every(store, config, FIRST_SWEEP, EVERY))
    }

    /// Starts sweeping after `first`, then every `every`.
    pub fn spawn_every(store: Store, config: RetentionConfig, first: Duration, every: Duration) -> Self {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut wait = first;
            loop {
                // Stopping is seen only between sweeps, so a sweep is never cut off between
                // its commit and removing the files.
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                if let Err(e) = sweep(&store, &config, false).await {
                    tracing::warn!("retention sweep failed (next try in {every:?}): {e}");
                }
                wait = every;
            }
        });
        Self { stop, task: Some(task) }
    }

    /// Stops the task, waiting up to `grace` for a sweep in progress to finish.
    pub async fn stop(mut self, grace: Duration) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && tokio::time::timeout(grace, task).await.is_err()
        {
            tracing::warn!("the retention sweep did not finish within {grace:?}; it stops with the store");
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{EventBody, Job, JobState, JobStatus};

    #[test]
    fn zero_days_keep_forever_and_fractions_work() {
        let p = policy(&RetentionConfig::default(), 10 * DAY_MS);
        assert_eq!((p.jobs_finished_before, p.unused_before), (None, None));
        let p = policy(&RetentionConfig { finished_job_days: 0.5, unused_upload_days: 2.0 }, 10 * DAY_MS);
        assert_eq!(p.jobs_finished_before, Some(10 * DAY_MS - DAY_MS / 2));
        assert_eq!(p.unused_before, Some(8 * DAY_MS));
        assert!(RetentionConfig { finished_job_days: -1.0, ..Default::default() }.check().is_err());
        assert!(RetentionConfig { unused_upload_days: f64::NAN, ..Default::default() }.check().is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweeper_removes_expired_jobs_on_its_own_and_stops_when_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), true, 64).expect("open");
        let at = now_ms() - 3 * DAY_MS;
        let job = Job {
            id: store.new_id(),
            owner: "local".into(),
            kind: "testcard".into(),
            params: "{}".into(),
            priority: 0,
            state: JobState::Failed { started_at: Some(at), finished_at: at, error: "x".into() },
            attempts: 1,
            first_started_at: None,
            stages: vec![],
            idempotency_key: None,
            created_at: at,
        };
        let id = job.id;
        store
            .write(true, move |ctx| {
                ctx.put_job(None, &job)?;
                ctx.event(&job, EventBody::State { state: JobStatus::Failed, error: Some("x".into()) })
            })
            .await
            .expect("put");
        assert!(Sweeper::spawn(store.clone(), RetentionConfig::default()).is_none(), "off by default");
        let config = RetentionConfig { finished_job_days: 1.0, unused_upload_days: 0.0 };
        let sweeper = Sweeper::spawn_every(store.clone(), config, Duration::from_millis(10), Duration::from_millis(50));
        let t0 = std::time::Instant::now();
        while store.job(id).expect("read").is_some() {
            assert!(t0.elapsed() < Duration::from_secs(10), "the sweeper never removed the expired job");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t0 = std::time::Instant::now();
        sweeper.stop(Duration::from_secs(5)).await;
        assert!(t0.elapsed() < Duration::from_secs(1), "stopping waits only for a sweep in progress");
        store.close();
    }
}
