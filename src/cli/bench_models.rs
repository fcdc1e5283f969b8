//! `reelbox bench models`: the installed-models listing as requests, placement passes and
//! heartbeats ask it, kept while the models dir looks the same, against reading it from
//! disk at every call as each of them did before. The models are links to the bundled demo
//! models, each installed with its manifest under its own name.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use reelbox::config::Config;
use reelbox::daemon::Daemon;
use reelbox::kinds::box_models;
use reelbox::models::{Catalog, ModelStore, fetch};

/// Arguments of `reelbox bench models`.
#[derive(Debug, Args)]
pub struct BenchModelsArgs {
    /// Installed models to list.
    #[arg(long, default_value_t = 20)]
    pub models: usize,
    /// Calls of each path timed.
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
}

/// The bundled demo models linked in, round robin: (shipped manifest name, folder).
const DEMO: [(&str, &str); 3] =
    [("demo-shapes", "shapes"), ("demo-presenter", "presenter"), ("demo-upscaler", "upscaler")];

/// Runs the benchmark.
pub async fn run(args: BenchModelsArgs) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("reelbox-bench-models-{}", std::process::id()));
    let result = measure(&args, &root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn measure(args: &BenchModelsArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let models = root.join("models");
    lay_out(&models, args.models)?;
    let config = Config {
        data_dir: root.join("data"),
        models_dir: Some(models.clone()),
        bind: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    // A reading is kept once the newest file time is 2 s old (`models/catalog/kept.rs`).
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let listed = Catalog::load(&config).models().iter().filter(|m| m.dir().is_some()).count();
    println!("installed-models listing, {listed} models installed, {} calls each", args.rounds);
    println!("{:<40} {:>16} {:>12} {:>8}", "", "read each call", "kept", "ratio");

    let rounds = args.rounds.max(1);
    // Before, every `ModelStore::new` (one per listing) also made its HTTP client.
    let old_catalog = || {
        let _client = fetch::http_client();
        Catalog::of(&ModelStore::new(&config))
    };
    let catalog = (time(rounds, old_catalog), time(rounds, || Catalog::load(&config)));
    row("catalog (/object_info, /v1/models, ...)", catalog);

    let old_beat = || {
        let _clients = (fetch::http_client(), fetch::http_client());
        box_models::heartbeat_unkept(&config)
    };
    let new_beat = || (box_models::installed_names(&config), box_models::installed(&config));
    row("worker heartbeat (names + details)", (time(rounds, old_beat), time(rounds, new_beat)));

    let daemon = Daemon::start(config.clone()).await.context("cannot start the benchmark daemon")?;
    let http = reqwest::Client::new();
    for (what, path) in
        [("GET /object_info over HTTP", "/object_info"), ("GET /api/v1/models over HTTP", "/api/v1/models")]
    {
        let url = format!("http://{}{path}", daemon.addr);
        let mut each = Vec::new();
        for forget in [true, false] {
            let t0 = Instant::now();
            for _ in 0..rounds {
                if forget {
                    Catalog::forget(&models);
                }
                let r = http.get(&url).send().await?;
                if !r.status().is_success() {
                    bail!("GET {path} answered {}", r.status());
                }
                r.bytes().await?;
            }
            each.push(t0.elapsed() / rounds as u32);
        }
        row(what, (each[0], each[1]));
    }
    daemon.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// The mean time of one call of `f`.
fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> Duration {
    let t0 = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(f());
    }
    t0.elapsed() / rounds as u32
}

fn row(what: &str, (old, new): (Duration, Duration)) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{what:<40} {:>13.3} ms {:>9.3} ms {:>7.1}x", ms(old), ms(new), ms(old) / ms(new).max(1e-9));
}

/// `n` installed models in `models`: links to the bundled demo folders, each with the
/// shipped manifest under its own name.
fn lay_out(models: &Path, n: usize) -> anyhow::Result<()> {
    let share = reelbox::models::share_dirs()
        .into_iter()
        .find(|d| d.join("models/demo/shapes/model_index.json").is_file())
        .context("the bundled demo models were not found; set REELBOX_SHARE_DIR")?;
    std::fs::create_dir_all(models).with_context(|| format!("cannot create {}", models.display()))?;
    for i in 0..n {
        let (manifest, folder) = DEMO[i % DEMO.len()];
        let name = format!("{manifest}-{i}");
        let shipped = share.join(format!("models/{manifest}.toml"));
        let text = std::fs::read_to_string(&shipped).with_context(|| format!("cannot read {}", shipped.display()))?;
        let text = text.replacen(&format!("name = \"{manifest}\""), &format!("name = \"{name}\""), 1);
        std::fs::write(models.join(format!("{name}.toml")), text)?;
        let target: PathBuf = share.join("models/demo").join(folder);
        std::os::unix::fs::symlink(&target, models.join(&name))
            .with_context(|| format!("cannot link {}", target.display()))?;
    }
    Ok(())
}
