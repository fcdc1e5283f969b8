//! `reelbox gc [--dry-run]`: the retention sweep now, on the daemon at `--url` when one
//! answers (`POST /api/v1/gc`, admin key), else on the configured data dir in this process.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use reelbox::api::gc::{GcReport, GcRequest};
use reelbox::config::Config;
use reelbox::store::Store;

use super::Global;
use super::backend::Backend;
use super::models::human_bytes;

/// `reelbox gc`
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove nothing; print what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the sweep and prints what it removed.
pub async fn run(g: &Global, args: GcArgs) -> anyhow::Result<ExitCode> {
    let report = match Backend::choose(g, false).await? {
        Backend::Daemon(client) => {
            client.post("/api/v1/gc", &serde_json::to_value(GcRequest { dry_run: args.dry_run })?).await?
        }
        Backend::Local => local(g, args.dry_run).await?,
    };
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", describe(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The sweep on the data dir directly (the store allows one process, so no daemon may run).
async fn local(g: &Global, dry_run: bool) -> anyhow::Result<GcReport> {
    let config = Config::load(g.config.as_deref())?;
    config.retention.check()?;
    let store = Store::open(&config.data_dir, true, 8).with_context(|| {
        format!("cannot open the database in {} (is a daemon running at another --url?)", config.data_dir.display())
    })?;
    let removed = reelbox::sweeper::sweep(&store, &config.retention, dry_run).await;
    store.close();
    Ok(GcReport {
        dry_run,
        finished_job_days: config.retention.finished_job_days,
        unused_upload_days: config.retention.unused_upload_days,
        removed: removed?,
    })
}

/// One paragraph for people: what went (or would go) and under which settings.
fn describe(r: &GcReport) -> String {
    let m = &r.removed;
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let days = |d: f64, what: &str| {
        if d > 0.0 { format!("{what} older than {d} days") } else { format!("{what} kept forever") }
    };
    let mut out = format!(
        "{verb} {} finished jobs ({} events), {} artifacts and {} orphaned files: {}",
        m.jobs,
        m.events,
        m.artifacts,
        m.orphan_files,
        human_bytes(m.bytes)
    );
    if m.kept_in_use > 0 {
        out.push_str(&format!("\nkept {} artifacts of those jobs that profiles or queued jobs use", m.kept_in_use));
    }
    out.push_str(&format!(
        "\nretention: {}; {} (set [retention] in the config)",
        days(r.finished_job_days, "finished jobs"),
        days(r.unused_upload_days, "unused uploads")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reelbox::store::Removal;

    #[test]
    fn the_summary_says_what_would_go_and_why() {
        let r = GcReport {
            dry_run: true,
            finished_job_days: 30.0,
            unused_upload_days: 0.0,
            removed: Removal {
                jobs: 2,
                events: 9,
                artifacts: 5,
                bytes: 3_000_000,
                kept_in_use: 1,
                ..Removal::default()
            },
        };
        let text = describe(&r);
        assert!(text.starts_with("would remove 2 finished jobs (9 events), 5 artifacts and 0 orphaned files: 3.0 MB"));
        assert!(text.contains("kept 1 artifacts"), "{text}");
        assert!(text.contains("finished jobs older than 30 days; unused uploads kept forever"), "{text}");
    }
}
