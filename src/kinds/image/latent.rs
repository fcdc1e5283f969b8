//! A second pass from the first pass's latent, ComfyUI's latent hires fix (KSampler →
//! LatentUpscale → KSampler): the `generate` stage keeps each picture's final latent as an
//! artifact of its own, `latent.npy` (`latent-N.npy`), a NumPy array `[1, C, H/8, W/8]` of
//! `f32` as ComfyUI's LATENT holds it (before the VAE's scaling factor), listed with the job so
//! it can be compared with ComfyUI's; being an artifact of `generate` it travels to a worker
//! box with the stage's other inputs. The `refine` stage reads it, crops and scales it
//! (`pipelines::diffusion::latent_scale`) to the pass size, and samples it again.

use ndarray::{Array4, ArrayD, Ix4};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

use super::refine::{PassSize, Refine};
use super::refine_stage::sample_again;
use super::split::Continue;
use super::{Image, ImageParams, Latent, Start, carry, picture_name};
use crate::kinds::{StageError, StageName, StageRun};
use crate::media::resize::Method;
use crate::pipelines::diffusion::latent_scale;
use crate::store::records::Artifact;

/// The media type of a stored latent: a NumPy `.npy` array.
pub const MEDIA_TYPE: &str = "application/x-npy";

/// Each of `params`' pictures' final `latents` stored as `STEM.npy`, or `STEM-N.npy` beside
/// `image-N.png` (`latent`; a split's leftover noise `leftover`).
pub(super) fn store_latents(
    run: &StageRun,
    params: &ImageParams,
    latents: impl Iterator<Item = Latent>,
    stem: &str,
) -> Result<(), StageError> {
    for (i, latent) in latents.enumerate() {
        let [c, h, w] = latent.shape;
        let array = Array4::from_shape_vec((1, c, h, w), latent.values)
            .map_err(|e| StageError::context("the first pass's latent has no whole shape", e))?;
        let mut npy = Vec::new();
        array.write_npy(&mut npy).map_err(|e| StageError::context("cannot write the first pass's latent", e))?;
        let name = picture_name(stem, i, params.n).replace(".png", ".npy");
        run.sink.put_artifact(&name, MEDIA_TYPE, &npy)?;
    }
    Ok(())
}

/// The `[C, H, W]` latent stored in `artifact` (a one-picture NumPy array).
fn read_latent(run: &StageRun, artifact: &Artifact) -> Result<(Vec<f32>, [usize; 3]), StageError> {
    let label = format!("latent {}", artifact.name);
    let file = std::fs::File::open(run.sink.artifact_path(artifact))
        .map_err(|e| StageError::context(format!("cannot open {label}"), e))?;
    let array = ArrayD::<f32>::read_npy(std::io::BufReader::new(file))
        .map_err(|e| StageError::context(format!("{label} is not a NumPy array of f32"), e))?;
    let array = array
        .into_dimensionality::<Ix4>()
        .map_err(|e| StageError::context(format!("{label} is not [1, C, H, W]"), e))?;
    let (n, c, h, w) = array.dim();
    if n != 1 || h == 0 || w == 0 {
        return Err(StageError::fatal(format!("{label} has shape [{n}, {c}, {h}, {w}], not one picture's")));
    }
    Ok((array.iter().copied().collect(), [c, h, w]))
}

/// The `refine` stage from the latent: each stored latent cropped and scaled to the pass
/// size by the resize's method (ComfyUI's `nearest-exact` without one), then sampled again
/// as image to image from it; stored as `refined.png`, `refined-N.png`.
pub(super) fn refine_latents(
    kind: &Image,
    first: &ImageParams,
    refine: &Refine,
    run: &StageRun,
) -> Result<(), StageError> {
    let latents: Vec<_> =
        run.sink.stage_artifacts(StageName::Generate).into_iter().filter(|a| a.media_type == MEDIA_TYPE).collect();
    if latents.is_empty() {
        return Err(StageError::fatal("the generate stage left no latent to refine from"));
    }
    let size = refine.size.ok_or_else(|| StageError::fatal("a second pass from the latent of no known size"))?;
    let method = refine.resize.map_or(Method::NearestExact, |r| r.method);
    let count = latents.len() as u64;
    if let Some(switch) = refine.switch.filter(|s| s.continues == Continue::Run) {
        let carries = carry::read_all(run, switch)?;
        let (model, count) = (refine.model_of(first), carries.len() as u64);
        run.sink.log(
            "info",
            &format!(
                "going on with {count} picture(s)' sampler run with {model}, steps {} to {}",
                switch.step, refine.steps
            ),
        );
        for (i, (artifact, carry)) in carries.iter().enumerate() {
            let name = artifact.name.replacen("sampler", "refined", 1).replace(".json", ".png");
            sample_again(kind, first, refine, run, (i, count, size), Start::Continued(carry), &name)?;
        }
        return Ok(());
    }
    if let Some(switch) = refine.switch {
        let model = refine.model_of(first);
        let (from, steps) = (switch.step, refine.steps);
        run.sink.log(
            "info",
            &format!("going on from {count} latent(s)' leftover noise with {model}, steps {from} to {steps}"),
        );
        for (i, artifact) in latents.iter().enumerate() {
            let (latent, _) = read_latent(run, artifact)?;
            let name = artifact.name.replacen("leftover", "refined", 1).replace(".npy", ".png");
            sample_again(kind, first, refine, run, (i, count, size), Start::Leftover(&latent), &name)?;
        }
        return Ok(());
    }
    run.sink.log(
        "info",
        &format!(
            "refining {count} latent(s) with {} scaled {} to {}x{} at strength {}, {} steps",
            refine.model_of(first),
            method.as_str(),
            size.width,
            size.height,
            refine.strength,
            refine.steps_run(first)
        ),
    );
    for (i, artifact) in latents.iter().enumerate() {
        let (latent, [c, h, w]) = read_latent(run, artifact)?;
        let step = (first.height as usize / h).max(1);
        let scaled = scaled(&latent, c, (h, w), refine, size, step);
        let name = artifact.name.replacen("latent", "refined", 1).replace(".npy", ".png");
        sample_again(kind, first, refine, run, (i, count, size), Start::Latent(&scaled), &name)?;
    }
    Ok(())
}

/// `latent` (`c` channels of `h`×`w` cells of `step` pixels) cut as the resize's crop says
/// and scaled to `size`'s cells.
fn scaled(latent: &[f32], c: usize, (h, w): (usize, usize), refine: &Refine, size: PassSize, step: usize) -> Vec<f32> {
    let to = (size.height as usize / step, size.width as usize / step);
    let Some(resize) = refine.resize else {
        return latent_scale::scale(latent, c, (h, w), to, Method::NearestExact);
    };
    let region = resize.latent_region_of(w as u32, h as u32, step as u32);
    let (rh, rw) = (region.height as usize, region.width as usize);
    if (rh, rw) == (h, w) {
        return latent_scale::scale(latent, c, (h, w), to, resize.method);
    }
    latent_scale::scale(&latent_scale::crop(latent, c, (h, w), region), c, (rh, rw), to, resize.method)
}
