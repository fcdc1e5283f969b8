//! A split whose second pass goes on with the first pass's one sampler run (`refine.continue:
//! run`, A1111's refiner, which swaps the model inside one run): the `generate` stage keeps
//! beside each picture's `leftover.npy` what its sampler carries into the next step, as
//! `sampler.json` (`sampler-N.json`, [`Carry`]): its latents as the sampler holds them, its
//! history (DPM++ 2M's last denoised latent, PLMS's past outputs), and where the noise stream
//! stands (the batch's seeds, its noise kind and the draws made). Being an artifact of
//! `generate` it travels to a worker box with the stage's other inputs. The `refine` stage
//! takes each up (`Start::Continued`): the sampler's state restored and its noise drawn on
//! from there, so on one model the split is the one run to the pixel.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::split::{Continue, Switch};
use super::{ImageParams, Rendered, picture_name};
use crate::kinds::{StageError, StageName, StageRun};
use crate::pipelines::diffusion::noise::{Draws, NoiseError, NoiseKind, NoiseSource};
use crate::pipelines::diffusion::samplers::SamplerState;
use crate::store::records::Artifact;

/// The media type of a stored [`Carry`].
const MEDIA_TYPE: &str = "application/json";
/// The name its files start with.
const STEM: &str = "sampler";

/// One picture's sampler run where the first pass stopped, as `sampler.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carry {
    /// The step of the schedule it goes on at.
    pub step: u32,
    /// The noise of the batch: its kind and each picture's seed.
    pub noise: NoiseKind,
    pub seeds: Vec<u64>,
    /// Which picture of the batch it is.
    pub picture: usize,
    /// The draws the batch's run made from its noise.
    pub draws: Draws,
    /// Channels, height and width in cells of its latents.
    pub shape: [usize; 3],
    /// Its latents as the sampler holds them (f32 little-endian, base64).
    #[serde(with = "packed")]
    pub latents: Vec<f32>,
    /// The sampler's history ([`SamplerState::latents`]), each packed as `latents` is.
    #[serde(with = "packed_slots")]
    pub history: Vec<Option<Vec<f32>>>,
    /// The steps its method counted ([`SamplerState::count`]).
    pub count: usize,
}

impl Carry {
    /// The sampler's state it restores.
    pub fn sampler(&self) -> SamplerState {
        SamplerState { latents: self.history.clone(), count: self.count }
    }

    /// The noise the picture draws on with, where its batch's run left it.
    pub fn noise(&self) -> Result<Box<dyn NoiseSource>, NoiseError> {
        self.noise.continued(&self.seeds, self.picture, &self.draws)
    }
}

/// Each picture's [`Carry`] of a first pass `rendered` by `params` stopping at `switch`, stored
/// as `sampler.json` (`sampler-N.json`); nothing for a split whose second pass is a run of its own.
pub(super) fn store(
    run: &StageRun,
    params: &ImageParams,
    switch: Switch,
    rendered: &Rendered,
) -> Result<(), StageError> {
    if switch.continues != Continue::Run {
        return Ok(());
    }
    let carried =
        rendered.carried.as_ref().ok_or_else(|| StageError::fatal("the first pass stopped with no sampler state"))?;
    let n = params.n as usize;
    let seeds: Vec<u64> = (0..params.n).map(|i| params.seed.wrapping_add(u64::from(i))).collect();
    let shape = rendered.latent_shape;
    let per = shape.iter().product::<usize>().max(1);
    for (i, latents) in carried.latents.chunks(per).enumerate() {
        let state = carried.sampler.of_picture(i, n);
        let carry = Carry {
            step: switch.step,
            noise: params.noise,
            seeds: seeds.clone(),
            picture: i,
            draws: carried.draws.clone(),
            shape,
            latents: latents.to_vec(),
            history: state.latents,
            count: state.count,
        };
        let json = serde_json::to_vec(&carry).map_err(|e| StageError::context("cannot write the sampler state", e))?;
        run.sink.put_artifact(&picture_name(STEM, i, params.n).replace(".png", ".json"), MEDIA_TYPE, &json)?;
    }
    Ok(())
}

/// The first pass's stored [`Carry`]s, each with its artifact's name, checked to go on at `switch`.
pub(super) fn read_all(run: &StageRun, switch: Switch) -> Result<Vec<(Artifact, Carry)>, StageError> {
    let artifacts = run.sink.stage_artifacts(StageName::Generate);
    let mut carries = Vec::new();
    for artifact in artifacts.into_iter().filter(|a| a.media_type == MEDIA_TYPE && a.name.starts_with(STEM)) {
        let label = format!("sampler state {}", artifact.name);
        let bytes = std::fs::read(run.sink.artifact_path(&artifact))
            .map_err(|e| StageError::context(format!("cannot read {label}"), e))?;
        let carry: Carry =
            serde_json::from_slice(&bytes).map_err(|e| StageError::context(format!("{label} is not one"), e))?;
        if carry.step != switch.step || carry.latents.len() != carry.shape.iter().product::<usize>() {
            return Err(StageError::fatal(format!(
                "{label} stops at step {} with {} values of shape {:?}; the split goes on at step {}",
                carry.step,
                carry.latents.len(),
                carry.shape,
                switch.step
            )));
        }
        carries.push((artifact, carry));
    }
    if carries.is_empty() {
        return Err(StageError::fatal("the generate stage left no sampler state to go on from"));
    }
    Ok(carries)
}

/// f32s as the base64 of their little-endian bytes: exact, and a quarter the size of text.
mod packed {
    use super::Engine;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn encode(v: &[f32]) -> String {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn decode<E: Error>(text: &str) -> Result<Vec<f32>, E> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(E::custom)?;
        if bytes.len() % 4 != 0 {
            return Err(E::custom(format!("{} bytes are no whole f32s", bytes.len())));
        }
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        decode(&String::deserialize(d)?)
    }
}

/// A history's slots, each packed or `null`.
mod packed_slots {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Option<Vec<f32>>], s: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<Option<String>> = v.iter().map(|l| l.as_deref().map(super::packed::encode)).collect();
        texts.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<Vec<f32>>>, D::Error> {
        let texts = Vec::<Option<String>>::deserialize(d)?;
        texts.iter().map(|t| t.as_deref().map(super::packed::decode).transpose()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carry_comes_back_from_its_file_bit_for_bit() {
        let odd = [f32::MIN_POSITIVE, -0.0, 1.0e-38, 3.402_823_5e38, 0.1, -7.25, f32::EPSILON, 1.0 / 3.0];
        let carry = Carry {
            step: 3,
            noise: NoiseKind::TorchCpu,
            seeds: vec![7, 8],
            picture: 1,
            draws: Draws(vec![[512, 1], [256, 4]]),
            shape: [2, 2, 2],
            latents: odd.to_vec(),
            history: vec![None, Some(odd.iter().map(|v| v * 2.0).collect())],
            count: 2,
        };
        let json = serde_json::to_string(&carry).expect("writes");
        let back: Carry = serde_json::from_str(&json).expect("reads");
        assert_eq!(back, carry);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.latents), bits(&odd), "-0.0 and the extremes kept exactly");
        assert_eq!(back.sampler(), SamplerState { latents: carry.history.clone(), count: 2 });
        assert!(json.contains(r#""noise":"torch_cpu""#) && json.contains(r#""draws":[[512,1],[256,4]]"#), "{json}");
        let broken = json.replace(&packed::encode(&odd), "AAA=");
        assert!(serde_json::from_str::<Carry>(&broken).is_err(), "a latent of no whole f32s");
    }
}
