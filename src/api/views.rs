//! JSON shapes of records as the API shows them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::download::download_name;
use crate::scheduler::LiveProgress;
use crate::store::records::{Artifact, Job, JobState, JobStatus, Millis, Profile, StageState, StageStatus};

/// RFC 3339 text for a millisecond timestamp.
pub fn time(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A job as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: String,
    pub owner: String,
    /// One of `queued`, `running`, `succeeded`, `failed`, `canceled`.
    #[schema(value_type = String)]
    pub state: JobStatus,
    pub priority: i32,
    pub progress: ProgressView,
    pub stages: Vec<StageView>,
    pub attempts: u32,
    /// Why it ended when it failed or was canceled: the failure, or the cancel's reason
    /// (`canceled because the key "kid" was revoked`, `canceled by its owner`, `canceled by
    /// an admin (key "mum")`, or the reason its owner gave; `null` for a job canceled
    /// before reelbox kept why). On a queued job that will try again, the last attempt's error.
    pub error: Option<String>,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub device: Option<String>,
    pub created_at: String,
    pub enqueued_at: Option<String>,
    /// When it first started (a job resumed after a crash or a retriable failure keeps its
    /// first start; a retry by hand starts anew), so `finished_at` minus this is all it took.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Energy of its stages so far, Wh (GPU stages; `null` when no device reported any).
    pub energy_wh: Option<f64>,
    /// `energy_wh` priced at `energy.price_per_kwh`, when that is configured.
    #[serde(default)]
    pub cost: Option<f64>,
    /// GPU memory the job needs, MiB (0: runs anywhere).
    #[serde(default)]
    pub vram_mib: u64,
    /// The models the job runs (those a profile or default chose included): what placement
    /// needs a box to hold, and what `reelbox models rm` will not remove from under it.
    #[serde(default)]
    pub models: Vec<String>,
    /// Why a queued job waits when no box can run it now (`no worker box is connected`,
    /// `no box has model "tiny-sd"`, `no GPU has the 4096 MiB it needs free; …`, `the
    /// queue is paused; …`); `null` while it just waits its turn. It starts by itself
    /// once a box that can run it joins, memory is released or the queue resumes.
    #[serde(default)]
    pub waiting: Option<String>,
}

/// How far a job is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// 0.0–1.0 over all stages.
    pub fraction: f64,
    pub stage: Option<String>,
    pub step: u64,
    pub total: u64,
    pub message: Option<String>,
}

/// One stage of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StageView {
    /// The stage's name. A string, not `StageName`, on the client side of the wire: a
    /// dashboard must still read a newer daemon whose kinds have stages it does not know.
    pub name: String,
    /// `pending`, `running`, `done`, `failed` or `stopped` (a cancel stopped it there, at
    /// `finished_at`; the job's `progress` keeps how far it had come; a retry runs it again).
    #[schema(value_type = String)]
    pub state: StageStatus,
    pub artifacts: Vec<String>,
    pub device: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub energy_wh: Option<f64>,
    /// Its expected share of the job's time, 0.0–1.0 (a render's from its plan: a lip-sync
    /// weighs more than its keyframes); `progress.fraction` adds these up.
    #[serde(default)]
    pub weight: f64,
}

impl JobView {
    /// Builds the view, folding in live progress when the job runs. `weights` are its
    /// stages' shares of its time, in their order (`jobs::Service::stage_weights`, its
    /// kind's), which the overall fraction adds up.
    pub fn new(job: &Job, weights: &[f64], live: Option<LiveProgress>) -> Self {
        let (enqueued_at, this_try, finished_at, device, error) = match &job.state {
            JobState::Queued { enqueued_at, .. } => (Some(*enqueued_at), None, None, None, None),
            JobState::Running { enqueued_at, started_at, device } => {
                (Some(*enqueued_at), Some(*started_at), None, Some(device.name()), None)
            }
            JobState::Succeeded { started_at, finished_at } => {
                (None, Some(*started_at), Some(*finished_at), None, None)
            }
            JobState::Failed { started_at, finished_at, error } => {
                (None, *started_at, Some(*finished_at), None, Some(error.clone()))
            }
            JobState::Canceled { canceled_at, reason } => (None, None, Some(*canceled_at), None, reason.clone()),
        };
        // From the job's first start, not its last try's: a job resumed after a crash took
        // the whole time, and top, the CLI and the web studio all count from this field.
        let started_at = this_try.map(|t| job.first_started_at.map_or(t, |first| first.min(t)));
        // One per stage whatever was handed in, so no stage drops out of the view.
        let weights: Vec<f64> = (0..job.stages.len()).map(|i| weights.get(i).copied().unwrap_or(0.0)).collect();
        let stages: Vec<StageView> = job.stages.iter().zip(&weights).map(|(s, &w)| stage_view(s, w)).collect();
        let done: f64 = job
            .stages
            .iter()
            .zip(&weights)
            .filter(|(s, _)| matches!(s.state, StageState::Done { .. }))
            // Not `sum()`: an empty float sum is -0.0, which a queued job showed as "-0%".
            .fold(0.0, |done, (_, w)| done + w);
        let progress = match (&job.state, live) {
            (JobState::Succeeded { .. }, _) => {
                ProgressView { fraction: 1.0, stage: None, step: 0, total: 0, message: None }
            }
            (JobState::Running { .. }, Some(p)) => {
                // Between a stage's end and the next one's first report the live progress is
                // still the finished stage's: counting it again would jump ahead, then back.
                let current = job.stages.iter().zip(&weights).find(|(s, _)| s.name.as_str() == p.stage);
                let within = match current {
                    Some((s, w)) if p.total > 0 && !matches!(s.state, StageState::Done { .. }) => {
                        w * p.step as f64 / p.total as f64
                    }
                    _ => 0.0,
                };
                ProgressView {
                    fraction: (done + within).min(1.0),
                    stage: Some(p.stage).filter(|s| !s.is_empty()),
                    step: p.step,
                    total: p.total,
                    message: p.message,
                }
            }
            // A canceled job keeps how far the stage it stopped had come.
            (JobState::Canceled { .. }, _) => match job.stages.iter().zip(&weights).find_map(|(s, w)| match s.state {
                StageState::Stopped { step, total, .. } => Some((s.name, w, step, total)),
                _ => None,
            }) {
                Some((name, w, step, total)) => {
                    let within = if total > 0 { w * step as f64 / total as f64 } else { 0.0 };
                    let stage = Some(name.to_string());
                    ProgressView { fraction: (done + within).min(1.0), stage, step, total, message: None }
                }
                None => ProgressView { fraction: done.min(1.0), stage: None, step: 0, total: 0, message: None },
            },
            _ => ProgressView { fraction: done.min(1.0), stage: None, step: 0, total: 0, message: None },
        };
        let energy: Vec<f64> = job.stages.iter().filter_map(|s| s.energy_wh).collect();
        Self {
            id: job.id.to_string(),
            kind: job.kind.clone(),
            owner: job.owner.clone(),
            state: job.state.status(),
            priority: job.priority,
            progress,
            stages,
            attempts: job.attempts,
            error: error.or_else(|| {
                job.stages.iter().find_map(|s| match &s.state {
                    StageState::Failed { error, .. } if !job.state.is_terminal() => Some(error.clone()),
                    _ => None,
                })
            }),
            params: serde_json::from_str(&job.params).unwrap_or(serde_json::Value::Null),
            device,
            created_at: time(job.created_at),
            enqueued_at: enqueued_at.map(time),
            started_at: started_at.map(time),
            finished_at: finished_at.map(time),
            energy_wh: (!energy.is_empty()).then(|| energy.iter().sum()),
            cost: None,
            vram_mib: 0,
            models: Vec::new(),
            waiting: None,
        }
    }

    /// Adds why a queued job waits (from the scheduler, asked only of a queued job: it may
    /// read the disk's free space), also as its progress message.
    pub fn with_waiting(mut self, reason: impl FnOnce() -> Option<String>) -> Self {
        if self.state == JobStatus::Queued {
            let reason = reason();
            self.progress.message = reason.as_ref().map(|r| format!("waiting: {r}"));
            self.waiting = reason;
        }
        self
    }

    /// Adds the running stage's energy so far and prices the total.
    pub fn with_energy(mut self, live_stage_wh: Option<f64>, price_per_kwh: Option<f64>) -> Self {
        if let Some(live) = live_stage_wh {
            self.energy_wh = Some(self.energy_wh.unwrap_or(0.0) + live);
        }
        self.cost = energy_cost(self.energy_wh, price_per_kwh);
        self
    }
}

/// Cost of `energy_wh` at a price per kWh.
pub fn energy_cost(energy_wh: Option<f64>, price_per_kwh: Option<f64>) -> Option<f64> {
    Some(energy_wh? / 1000.0 * price_per_kwh?)
}

fn stage_view(s: &crate::store::records::Stage, weight: f64) -> StageView {
    let (device, started, finished, error) = match &s.state {
        StageState::Pending => (None, None, None, None),
        StageState::Running { started_at, device } => (Some(device.name()), Some(*started_at), None, None),
        StageState::Done { started_at, finished_at, device } => {
            (Some(device.name()), Some(*started_at), Some(*finished_at), None)
        }
        StageState::Failed { started_at, finished_at, error } => {
            (None, Some(*started_at), Some(*finished_at), Some(error.clone()))
        }
        StageState::Stopped { started_at, stopped_at, .. } => (None, Some(*started_at), Some(*stopped_at), None),
    };
    StageView {
        name: s.name.to_string(),
        state: s.state.status(),
        artifacts: s.artifacts.iter().map(|a| a.to_string()).collect(),
        device,
        started_at: started.map(time),
        finished_at: finished.map(time),
        error,
        energy_wh: s.energy_wh,
        weight,
    }
}

/// Artifact metadata as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactView {
    pub id: String,
    pub job: Option<String>,
    pub stage: Option<String>,
    pub name: String,
    pub media_type: String,
    pub size: u64,
    pub sha256: String,
    pub url: String,
    pub created_at: String,
    /// The name to save it as: a job's artifacts are named by the job's first words and
    /// short id (`foggy-harbour-at-dawn-7KQ2M4XZ.mp4`), as the download's
    /// `Content-Disposition` names them; an upload keeps `name`.
    #[serde(default)]
    pub download_name: String,
    /// A picture's width as it is seen (a phone photo's EXIF orientation applied); in an
    /// upload's answer and `/meta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// A picture's height as it is seen; with `width`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl ArtifactView {
    /// The view of `art`, made by `job`, named to save as [`download_name`] says.
    pub fn of_job(art: &Artifact, job: Option<&Job>) -> Self {
        Self { download_name: download_name(art, job), ..Self::from(art) }
    }

    /// The view with a picture's upright size from its header.
    pub fn with_picture(mut self, header: Option<crate::media::picture::Header>) -> Self {
        self.width = header.map(|h| h.width);
        self.height = header.map(|h| h.height);
        self
    }
}

impl From<&Artifact> for ArtifactView {
    fn from(a: &Artifact) -> Self {
        Self {
            id: a.id.to_string(),
            job: a.job.map(|j| j.to_string()),
            stage: a.stage.clone(),
            name: a.name.clone(),
            media_type: a.media_type.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            url: format!("/api/v1/artifacts/{}", a.id),
            created_at: time(a.created_at),
            download_name: a.name.clone(),
            width: None,
            height: None,
        }
    }
}

/// A face box that is not written `x,y,w,h`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be four whole numbers x,y,w,h")]
pub struct BadFaceBox;

/// A face box as a profile form's `face_box` field and `--face-box` take it: `x,y,w,h`,
/// four whole numbers (spaces around them allowed).
pub fn parse_face_box(text: &str) -> Result<[u32; 4], BadFaceBox> {
    let nums: Vec<u32> = text.split(',').map(|n| n.trim().parse().ok()).collect::<Option<_>>().ok_or(BadFaceBox)?;
    nums.try_into().map_err(|_| BadFaceBox)
}

/// One of a request's `face_box` numbers as the document shows it: pixels, a whole number,
/// 0 or more. It is a `u32`, which utoipa writes as `int32`, a range ending at 2³¹ − 1 where
/// the routes take more (a box too large is refused against its portrait).
pub struct FaceSide;

impl utoipa::PartialSchema for FaceSide {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).into()
    }
}

impl ToSchema for FaceSide {}

/// A face box written as [`parse_face_box`] reads it (not Rust's `[80, 56, 96, 96]`).
pub fn face_box_text([x, y, w, h]: [u32; 4]) -> String {
    format!("{x},{y},{w},{h}")
}

/// A profile as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProfileView {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub portrait: Option<String>,
    pub face_box: Option<[u32; 4]>,
    pub voice_sample: Option<String>,
    pub voice: VoiceView,
    pub style: StyleView,
    pub created_at: String,
}

/// Voice settings of a profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VoiceView {
    pub model: String,
    pub speaker: Option<String>,
    pub length_scale: Option<f32>,
    pub noise_scale: Option<f32>,
    pub noise_w: Option<f32>,
}

/// Style settings of a profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StyleView {
    pub prompt_prefix: String,
    pub negative_prompt: String,
    pub preset: Option<String>,
    /// Diffusion model of the keyframes when a render names none.
    #[serde(default)]
    pub image_model: Option<String>,
    /// Lip-sync model of the presenter when a render or lip-sync names none (null: the box's
    /// default).
    #[serde(default)]
    pub lipsync_model: Option<String>,
    /// Upscaler of an upscaled render that names none (null: the box's default).
    #[serde(default)]
    pub upscale_model: Option<String>,
}

impl From<&Profile> for ProfileView {
    fn from(p: &Profile) -> Self {
        Self {
            id: p.id.to_string(),
            owner: p.owner.clone(),
            name: p.name.clone(),
            portrait: p.portrait.map(|a| a.to_string()),
            face_box: p.face_box,
            voice_sample: p.voice_sample.map(|a| a.to_string()),
            voice: VoiceView {
                model: p.voice.model.clone(),
                speaker: p.voice.speaker.clone(),
                length_scale: p.voice.length_scale,
                noise_scale: p.voice.noise_scale,
                noise_w: p.voice.noise_w,
            },
            style: StyleView {
                prompt_prefix: p.style.prompt_prefix.clone(),
                negative_prompt: p.style.negative_prompt.clone(),
                preset: p.style.preset.clone(),
                image_model: p.style.image_model.clone(),
                lipsync_model: p.style.lipsync_model.clone(),
                upscale_model: p.style.upscale_model.clone(),
            },
            created_at: time(p.created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::DeviceId;
    use crate::store::records::{Stage, StageName};

    fn stage(name: StageName, state: StageState) -> Stage {
        Stage { name, state, artifacts: Vec::new(), energy_wh: None }
    }

    /// Between a stage's end and the next stage's first report, the live progress still
    /// names the finished stage at 100 %: the fraction must not count that stage twice.
    #[test]
    fn a_finished_stages_last_report_does_not_count_twice() {
        let done = StageState::Done { started_at: 1, finished_at: 2, device: DeviceId::Cpu };
        let job = Job {
            id: ulid::Ulid::new(),
            owner: "local".into(),
            kind: "render".into(),
            params: "{}".into(),
            priority: 0,
            state: JobState::Running { enqueued_at: 1, started_at: 1, device: DeviceId::Cpu },
            attempts: 1,
            first_started_at: None,
            stages: vec![stage(StageName::Plan, done), stage(StageName::Keyframes, StageState::Pending)],
            idempotency_key: None,
            created_at: 1,
        };
        let live = |stage: &str, step| LiveProgress { stage: stage.into(), step, total: 4, message: None };
        assert_eq!(JobView::new(&job, &[0.5, 0.5], Some(live("plan", 4))).progress.fraction, 0.5);
        assert_eq!(JobView::new(&job, &[0.5, 0.5], Some(live("keyframes", 2))).progress.fraction, 0.75);
        // A queued job has done nothing: 0, not -0 (which clients print as "-0%").
        let queued = Job {
            state: JobState::Queued { enqueued_at: 1, not_before: None },
            stages: vec![stage(StageName::Plan, StageState::Pending)],
            ..job
        };
        let fraction = JobView::new(&queued, &[1.0], None).progress.fraction;
        assert!(fraction == 0.0 && fraction.is_sign_positive(), "{fraction}");
    }

    #[test]
    fn a_face_box_reads_back_as_it_is_written() {
        assert_eq!(parse_face_box(" 80, 56 ,96,96"), Ok([80, 56, 96, 96]));
        assert_eq!(face_box_text([80, 56, 96, 96]), "80,56,96,96");
        for bad in ["80,56,96", "80,56,96,96,1", "80,-56,96,96", "a,b,c,d", ""] {
            assert_eq!(parse_face_box(bad), Err(BadFaceBox), "{bad:?}");
        }
    }
}
