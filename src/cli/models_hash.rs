//! `reelbox models hash [NAME]`: A1111's hashes of diffusion models imported before imports
//! kept them, worked out now from the files their records name (`models::convert::rehash`,
//! which the daemon also runs at start), and why a model stays without one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use reelbox::error_text::chain_text;
use reelbox::models::convert::fused::Checkpoint;
use reelbox::models::convert::rehash;
use reelbox::models::{Catalog, ModelKind, ModelStore};

use super::Global;

/// Hashes model `name`, or every installed diffusion model lacking a hash; fails when one
/// stays without a hash its files should give.
pub fn run(g: &Global, store: &ModelStore, name: Option<&str>) -> anyhow::Result<ExitCode> {
    let models: Vec<(String, PathBuf)> = match name {
        Some(n) => {
            let catalog = Catalog::of(store);
            let dir = catalog.installed(ModelKind::Diffusion).find(|m| m.name() == n).and_then(|m| m.dir());
            let Some(dir) = dir else {
                anyhow::bail!(
                    "{n} is not an installed diffusion model (`reelbox models list`): A1111's hashes are of the \
                     Stable Diffusion checkpoints and LoRAs a model was imported from"
                );
            };
            vec![(n.to_string(), dir.to_path_buf())]
        }
        None => rehash::lacking(store),
    };
    let stop = AtomicBool::new(false);
    let mut reports = Vec::new();
    let mut all_hashed = true;
    for (name, dir) in &models {
        let done = if rehash::lacks_hashes(dir) { rehash::rehash(store, name, dir, &stop) } else { Default::default() };
        let model = Checkpoint::read(name, dir, None);
        let unhashed: Vec<String> = done.unhashed.iter().map(|e| chain_text(e)).collect();
        all_hashed &= unhashed.is_empty();
        if !g.json {
            match (done.hashed.is_empty(), &model.sha256) {
                (false, _) => println!("{name}: hashed, A1111 clients list it as {}", model.title()),
                (true, Some(_)) if unhashed.is_empty() => println!("{name}: already hashed ({})", model.title()),
                (true, None) if unhashed.is_empty() && model.lora_hashes().len() == model.loras.len() => {
                    println!("{name}: nothing to hash (not made from a checkpoint file)")
                }
                _ => {}
            }
            for why in &unhashed {
                println!("{name}: not hashed: {why}");
            }
        }
        let hashed: Vec<String> = done.hashed.iter().map(|p| p.display().to_string()).collect();
        reports.push(serde_json::json!({"name": name, "title": model.title(), "sha256": model.sha256,
            "shorthash": model.shorthash(), "hashed": hashed, "unhashed": unhashed}));
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if models.is_empty() {
        println!("every imported diffusion model has its A1111 hashes");
    }
    Ok(if all_hashed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
