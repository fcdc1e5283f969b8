//! Generation presets (`fast`, `quality`, `max`): size, steps, guidance, scheduler and the
//! VRAM each needs. The defaults are `assets/presets.toml`, compiled in; a
//! `<data_dir>/presets.toml` replaces them. A model with its own sampling settings (a
//! distilled Turbo model: 1–4 steps, no guidance; from its manifest's `[tuning]`) gets
//! each preset [`Preset::tuned`] to them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::samplers::SchedulerChoice;

/// The compiled-in presets file.
pub const DEFAULT_PRESETS: &str = include_str!("../../../assets/presets.toml");
/// Native size the presets' width and height are written for.
pub const PRESET_BASE_SIZE: u32 = 512;

/// A presets file that cannot be used; `source_name` says which file.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("presets {source_name}: {source}")]
    Read {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("presets {source_name}: {source}")]
    Toml {
        source_name: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("presets {source_name}: [{preset}] {source}")]
    Scheduler {
        source_name: String,
        preset: String,
        #[source]
        source: super::samplers::SchedulerError,
    },
    /// A request names a preset the box has not.
    #[error("unknown preset {name:?}; known: {known}")]
    Unknown { name: String, known: String },
    #[error("presets {source_name}: [{preset}] steps, width and height must be positive")]
    NotPositive { source_name: String, preset: String },
}

/// One preset.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    #[serde(default)]
    pub description: String,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub scheduler: String,
    /// GPU memory an SD 1.x model needs at this preset, MiB.
    pub min_vram_mib: u64,
}

impl Preset {
    /// The preset for a model with its own settings: steps scaled into `1..=max_steps` (a
    /// preset's share of the usual 50 steps becomes that share of the model's range, so
    /// `fast` stays fewer steps than `max`), the model's guidance and its own scheduler
    /// (a distilled model is trained for one schedule).
    pub fn tuned(&self, max_steps: u32, guidance: f32, scheduler: &str) -> Preset {
        const USUAL_MAX_STEPS: u32 = 50;
        let max_steps = max_steps.max(1);
        let scaled = (u64::from(self.steps) * u64::from(max_steps)).div_ceil(u64::from(USUAL_MAX_STEPS));
        let steps = u32::try_from(scaled).unwrap_or(max_steps).clamp(1, max_steps);
        Preset { steps, guidance, scheduler: scheduler.to_string(), ..self.clone() }
    }

    /// Width and height for a model trained at `native` px, kept to multiples of 8.
    pub fn size_for(&self, native: u32) -> (u32, u32) {
        let scale = |v: u32| {
            let s = (u64::from(v) * u64::from(native) / u64::from(PRESET_BASE_SIZE)) as u32;
            (s / 8 * 8).max(64)
        };
        (scale(self.width), scale(self.height))
    }
}

/// All presets by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Presets {
    by_name: BTreeMap<String, Preset>,
}

impl Presets {
    /// Parses a presets file, checking every scheduler name.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, PresetError> {
        let source_name = || source_name.to_string();
        let by_name: BTreeMap<String, Preset> =
            toml::from_str(text).map_err(|source| PresetError::Toml { source_name: source_name(), source })?;
        for (name, p) in &by_name {
            SchedulerChoice::parse(&p.scheduler).map_err(|source| PresetError::Scheduler {
                source_name: source_name(),
                preset: name.clone(),
                source,
            })?;
            if p.steps == 0 || p.width == 0 || p.height == 0 || !p.guidance.is_finite() {
                return Err(PresetError::NotPositive { source_name: source_name(), preset: name.clone() });
            }
        }
        Ok(Self { by_name })
    }

    /// The compiled-in presets.
    pub fn builtin() -> Self {
        // The file is part of the build and checked by a test.
        Self::from_toml(DEFAULT_PRESETS, "assets/presets.toml").unwrap_or(Self { by_name: BTreeMap::new() })
    }

    /// `<data_dir>/presets.toml` when it exists, else the compiled-in presets.
    pub fn load(data_dir: &Path) -> Result<Self, PresetError> {
        let path = data_dir.join("presets.toml");
        if !path.is_file() {
            return Ok(Self::builtin());
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|source| PresetError::Read { source_name: path.display().to_string(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The one check of a request's `preset`: `<data_dir>/presets.toml` (or the built-in
    /// presets) must read, and `name`, when given, must be one of them.
    pub fn check(data_dir: &Path, name: Option<&str>) -> Result<Option<Preset>, PresetError> {
        let presets = Self::load(data_dir)?;
        name.map(|n| presets.named(n).cloned()).transpose()
    }

    /// The preset called `name`.
    pub fn get(&self, name: &str) -> Option<&Preset> {
        self.by_name.get(name)
    }

    /// Every preset with its name, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Preset)> {
        self.by_name.iter().map(|(name, p)| (name.as_str(), p))
    }

    /// Preset names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The preset called `name`, or the refusal naming the known ones.
    pub fn named(&self, name: &str) -> Result<&Preset, PresetError> {
        self.get(name).ok_or_else(|| PresetError::Unknown { name: name.to_string(), known: self.names().join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_presets_parse_and_cover_fast_quality_max() {
        let p = Presets::from_toml(DEFAULT_PRESETS, "builtin").expect("builtin presets parse");
        assert_eq!(p.names(), vec!["fast", "max", "quality"]);
        let max = p.get("max").expect("max");
        assert!(max.min_vram_mib > p.get("fast").expect("fast").min_vram_mib);
    }

    #[test]
    fn preset_sizes_scale_with_the_models_native_size() {
        let p = Presets::builtin();
        let q = p.get("quality").expect("quality");
        assert_eq!(q.size_for(512), (512, 512));
        assert_eq!(q.size_for(1024), (1024, 1024));
        assert_eq!(q.size_for(64), (64, 64));
        assert_eq!(p.get("max").expect("max").size_for(64), (96, 96));
    }

    #[test]
    fn turbo_models_hold_every_preset_to_their_few_steps_and_no_guidance() {
        let p = Presets::builtin();
        let steps: Vec<u32> =
            ["fast", "quality", "max"].iter().map(|n| p.get(n).expect("preset").tuned(4, 0.0, "euler").steps).collect();
        assert!(steps.iter().all(|s| (1..=4).contains(s)), "{steps:?}");
        assert!(steps.windows(2).all(|w| w[0] <= w[1]), "fast is never more steps than max: {steps:?}");
        let q = p.get("quality").expect("quality").tuned(4, 0.0, "euler");
        assert_eq!((q.guidance, q.scheduler.as_str()), (0.0, "euler"));
        assert_eq!(q.width, p.get("quality").expect("quality").width, "the rest is the preset's");
    }

    #[test]
    fn a_preset_with_an_unknown_scheduler_is_rejected() {
        let bad = "[x]\nwidth = 512\nheight = 512\nsteps = 4\nguidance = 1.0\nscheduler = \"heun\"\nmin_vram_mib = 1\n";
        let err = Presets::from_toml(bad, "test").expect_err("unknown scheduler");
        assert!(err.to_string().contains("heun"), "{err}");
    }
}
