//! `model_pull`: installs a model through the model manager as a queued job, so a pull
//! started from the API shows in the queue with byte progress and can be canceled.
//!
//! Params ([`PullRequest`] → [`PullParams`]): `name` (a shipped or installed manifest, or a
//! Piper voice as `piper:NAME`, what `reelbox pull` takes), `force` (fetch again when
//! installed), `accept_license` (needed once for a non-commercial licence).
//! The one stage writes `pull.json`, the manager's report (which source each file came from).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fields::{reject_unknown, string_field};
use super::{ParamError, StageError, StageRun, TypedKind, ValidateCtx};
use crate::kinds::StageName;
use crate::models::piper::{self, PiperError};
use crate::models::{ModelError, ModelStore, PullProgress, PullReport};

/// The `model_pull` job kind.
pub struct ModelPull;

const STAGE: StageName = StageName::Pull;
/// How often the stage thread forwards download progress to the job's events.
const PROGRESS_POLL: Duration = Duration::from_millis(200);

/// `model_pull` parameters as a request gives them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// A shipped or installed manifest's name, or `piper:NAME`.
    pub name: Option<String>,
    /// Fetch again when installed.
    pub force: Option<bool>,
    /// Accept the model's non-commercial licence (remembered).
    pub accept_license: Option<bool>,
}

/// Validated `model_pull` parameters, as stored with the job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullParams {
    pub name: String,
    pub force: bool,
    /// The caller accepted the model's non-commercial licence.
    pub accept_license: bool,
}

impl PullRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(params: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(params, &["name", "force", "accept_license"])?;
        let name = string_field(params, "name")?;
        let flag = |field: &str| match params.get(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ParamError::new(field, "must be true or false")),
        };
        Ok(Self { name, force: flag("force")?, accept_license: flag("accept_license")? })
    }

    /// Checks the name against the known manifests.
    pub fn resolve(self, store: &ModelStore) -> Result<PullParams, ParamError> {
        let name = self.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() {
            return Err(ParamError::new("name", "required: the model to pull"));
        }
        if let Some(voice) = name.strip_prefix(piper::PREFIX) {
            return Self::resolve_voice(name, voice, self.force, store);
        }
        // Refuse unknown names now rather than fail on a worker later.
        let manifest = store.manifest(name).map_err(|e| ParamError::new("name", e.to_string()))?;
        let accept_license = self.accept_license.unwrap_or(false);
        if !accept_license && let Err(refusal) = store.check_license(&manifest) {
            // The CLI's words (`reelbox pull` passes them on as they are), and this field's.
            let why = format!("{refusal}; through the API, send \"accept_license\": true");
            return Err(ParamError::new("accept_license", why));
        }
        Ok(PullParams { name: name.to_string(), force: self.force.unwrap_or(false), accept_license })
    }

    /// A Piper voice's files are read from the voice index when the pull runs (fetched then
    /// if this box never has); a name the cached index lacks is refused now, with the close
    /// names, as `reelbox pull` says it.
    fn resolve_voice(
        name: &str,
        voice: &str,
        force: Option<bool>,
        store: &ModelStore,
    ) -> Result<PullParams, ParamError> {
        let cached = store.cached_piper_voices();
        if voice.is_empty() || (!cached.is_empty() && !cached.iter().any(|v| v == voice)) {
            return Err(ParamError::new("name", PiperError::unknown(voice, &cached).to_string()));
        }
        // Piper voices carry no licence to accept.
        Ok(PullParams { name: name.to_string(), force: force.unwrap_or(false), accept_license: false })
    }
}

impl TypedKind for ModelPull {
    type Params = PullParams;
    const NAME: &'static str = "model_pull";
    const FIRST_STAGE: StageName = StageName::Pull;

    fn admin_only(&self) -> bool {
        true
    }

    fn runs_on_head(&self) -> bool {
        true
    }

    fn needs_runtime(&self, _p: &PullParams) -> bool {
        false
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<PullParams, ParamError> {
        PullRequest::from_json(params)?.resolve(&ModelStore::new(ctx.config))
    }

    fn stages(&self, _p: &PullParams) -> Vec<StageName> {
        vec![STAGE]
    }

    fn run_stage(&self, stage: StageName, p: &PullParams, run: &StageRun) -> Result<(), StageError> {
        if stage != STAGE {
            return Err(StageError::fatal(format!("model_pull has no stage {stage:?}")));
        }
        let (name, force) = (p.name.clone(), p.force);
        let store = ModelStore::new(run.config);
        if p.accept_license {
            store.accept_license(&name)?;
        }
        // A voice's size is known once the index is read: then from the files' own totals.
        // A model's manifest, read here once, is also what is pulled.
        let manifest = if name.starts_with(piper::PREFIX) { None } else { Some(store.manifest(&name)?) };
        let latest: Mutex<Latest> = Mutex::new(Latest::default());
        let progress = |p: PullProgress| {
            let mut l = latest.lock().unwrap_or_else(|e| e.into_inner());
            l.done.insert(p.file.clone(), p.done);
            l.totals.insert(p.file.clone(), p.total);
            l.message = Some(format!("{} from {}", p.file, p.source));
            l.changed = true;
        };
        let total_of = |l: &Latest| manifest.as_ref().map_or_else(|| l.totals.values().sum(), |m| m.total_size());
        // The manager is async and the store's event writes block, so the pull runs on its
        // own runtime in a helper thread while this (blocking) thread reports progress.
        let cancel = run.cancel;
        let result = std::thread::scope(|scope| {
            let worker = scope.spawn(|| -> Option<Result<PullReport, ModelError>> {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        return Some(Err(ModelError::Io { path: store.models_dir().into(), source: e }));
                    }
                };
                rt.block_on(async {
                    tokio::select! {
                        r = async {
                            match &manifest {
                                Some(m) => store.pull_manifest(m, force, &progress).await,
                                None => store.pull(&name, force, &progress).await,
                            }
                        } => Some(r),
                        _ = cancel.cancelled() => None,
                    }
                })
            });
            while !worker.is_finished() {
                std::thread::sleep(PROGRESS_POLL);
                let mut l = latest.lock().unwrap_or_else(|e| e.into_inner());
                if std::mem::take(&mut l.changed) {
                    let (done, total): (u64, u64) = (l.done.values().sum(), total_of(&l));
                    run.sink.progress(done.min(total), total, l.message.as_deref());
                }
            }
            worker.join().unwrap_or_else(|_| {
                let source = std::io::Error::other("the pull thread panicked");
                Some(Err(ModelError::Io { path: store.models_dir().into(), source }))
            })
        });
        let report = match result {
            None => return Err(StageError::Canceled),
            Some(r) => r?,
        };
        // A re-pulled model has new files under the same paths; drop sessions of the old ones.
        for f in report.files.keys().filter(|f| f.ends_with(".onnx")) {
            run.engine.forget_model(&report.dir.join(f));
        }
        let total = total_of(&latest.lock().unwrap_or_else(|e| e.into_inner()));
        run.sink.progress(total, total, Some("installed"));
        run.sink.log(
            "info",
            &if report.already_installed {
                format!("{name} was already installed at {}", report.dir.display())
            } else {
                format!("{name} installed at {}", report.dir.display())
            },
        );
        let bytes =
            serde_json::to_vec_pretty(&report).map_err(|e| StageError::context("cannot encode the pull report", e))?;
        run.sink.put_artifact("pull.json", "application/json", &bytes)?;
        Ok(())
    }
}

/// The newest download progress, per file.
#[derive(Default)]
struct Latest {
    done: BTreeMap<String, u64>,
    /// Each file's size, as its download reports it.
    totals: BTreeMap<String, u64>,
    message: Option<String>,
    changed: bool,
}
