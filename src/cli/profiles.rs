//! `reelbox profiles ...`: mirrors of the profile routes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use reelbox::api::keys::KeyView;
use reelbox::api::models::ModelList;
use reelbox::api::views::{ProfileView, face_box_text, parse_face_box};
use reelbox::client::profile_path;
use reqwest::Method;
use reqwest::multipart::Form;

use super::client::Client;
use super::{Global, table};

/// `reelbox profiles ...`
#[derive(Debug, Default, Subcommand)]
pub enum ProfilesAction {
    /// List profiles.
    #[default]
    List,
    /// Create a profile from a portrait, a voice and a style.
    Create {
        /// Profile name.
        #[arg(long)]
        name: String,
        /// Portrait image file.
        #[arg(long)]
        portrait: Option<PathBuf>,
        /// Face box in the portrait as x,y,w,h.
        #[arg(long, value_parser = parse_face_box)]
        face_box: Option<[u32; 4]>,
        /// A voice sample (audio file) kept with the profile.
        #[arg(long)]
        voice_sample: Option<PathBuf>,
        #[command(flatten)]
        settings: ProfileSettings,
    },
    /// Change a profile's name, voice, style or models.
    Update {
        /// The profile's id or name (as `profiles list` shows them).
        id: String,
        /// New profile name.
        #[arg(long)]
        name: Option<String>,
        /// The face box in the portrait as x,y,w,h.
        #[arg(long, value_parser = parse_face_box)]
        face_box: Option<[u32; 4]>,
        #[command(flatten)]
        settings: ProfileSettings,
    },
    /// Show one profile.
    Show {
        /// The profile's id or name.
        id: String,
    },
    /// Delete a profile, and its portrait and voice sample unless a job still uses them.
    Rm {
        /// The profile's id or name.
        id: String,
    },
}

/// The voice and style settings `profiles create` and `update` share.
#[derive(Debug, clap::Args)]
pub struct ProfileSettings {
    /// Installed TTS voice name.
    #[arg(long)]
    voice: Option<String>,
    /// Prompt prefix applied to every scene.
    #[arg(long)]
    style: Option<String>,
    /// Negative prompt for every scene.
    #[arg(long)]
    negative_prompt: Option<String>,
    /// Generation preset for the pictures (`fast`, `quality`, `max`, or one of
    /// `presets.toml`; "" clears it on update).
    #[arg(long)]
    preset: Option<String>,
    /// Installed diffusion model (e.g. a LoRA-fused import) for the keyframes of renders
    /// that name no model ("" clears it on update).
    #[arg(long)]
    image_model: Option<String>,
    /// Installed lip-sync model (e.g. an imported wav2lip_gan) that makes the presenter talk
    /// in renders that name none ("" clears it on update: the box's default).
    #[arg(long, value_name = "NAME")]
    lipsync_model: Option<String>,
    /// Installed upscale model (e.g. an imported 4x-UltraSharp) for the profile's renders
    /// with --upscale that name none ("" clears it on update: the box's default).
    #[arg(long, value_name = "NAME")]
    upscale_model: Option<String>,
}

impl ProfileSettings {
    /// The settings given, under the API's field names.
    fn fields(self) -> impl Iterator<Item = (&'static str, String)> {
        [
            ("voice", self.voice),
            ("prompt_prefix", self.style),
            ("negative_prompt", self.negative_prompt),
            ("preset", self.preset),
            ("image_model", self.image_model),
            ("lipsync_model", self.lipsync_model),
            ("upscale_model", self.upscale_model),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
    }
}

/// Runs a `profiles` action.
pub async fn run(g: &Global, action: ProfilesAction) -> anyhow::Result<ExitCode> {
    let c = Client::new(g)?;
    match action {
        ProfilesAction::List => {
            let list: Vec<ProfileView> = c.get("/api/v1/profiles").await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_list(&c, &list).await?;
            }
        }
        ProfilesAction::Create { name, portrait, face_box, voice_sample, settings } => {
            let mut form = Form::new().text("name", name);
            for (k, v) in face_box.map(|b| ("face_box", face_box_text(b))).into_iter().chain(settings.fields()) {
                form = form.text(k, v);
            }
            for (k, flag, path) in
                [("portrait", "--portrait", portrait), ("voice_sample", "--voice-sample", voice_sample)]
            {
                if let Some(path) = path {
                    form = form.part(k, c.local_file(&path, flag).await?.part());
                }
            }
            let p: ProfileView = c.send(c.request(Method::POST, "/api/v1/profiles").multipart(form)).await?;
            print_profile(g, &p)?;
            warn_unfindable_face(&c, &p).await;
        }
        ProfilesAction::Update { id, name, face_box, settings } => {
            let mut body: serde_json::Map<String, serde_json::Value> =
                settings.fields().map(|(k, v)| (k.to_string(), v.into())).collect();
            if let Some(name) = name {
                body.insert("name".into(), name.into());
            }
            if let Some(b) = face_box {
                body.insert("face_box".into(), b.into());
            }
            let req = c.request(Method::PATCH, &profile_path(&id)).json(&body);
            let p: ProfileView = c.send(req).await?;
            print_profile(g, &p)?;
            warn_unfindable_face(&c, &p).await;
        }
        ProfilesAction::Show { id } => {
            let p: ProfileView = c.get(&profile_path(&id)).await?;
            print_profile(g, &p)?;
        }
        ProfilesAction::Rm { id } => {
            c.send_raw(c.request(Method::DELETE, &profile_path(&id))).await?;
            if !g.json {
                println!("removed {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Warns when a render showing `p`'s portrait would be refused: it has no face box and the
/// box has no face detector (the `face` kind's installed default) to find the face. The
/// profile is kept (a detector may be pulled later); the fix a user can make now is named.
async fn warn_unfindable_face(c: &Client, p: &ProfileView) {
    if p.portrait.is_none() || p.face_box.is_some() {
        return;
    }
    // A box that cannot list its models is not warned about: the render still says it.
    let Ok(list) = c.get::<ModelList>("/api/v1/models").await else { return };
    if list.models.iter().any(|m| m.kind == "face" && m.default && m.state == "installed") {
        return;
    }
    eprintln!(
        "reelbox: warning: this box has no face detector to find the face in {:?}'s portrait, so a render that \
         shows it is refused until the profile has a face box: {}",
        p.name,
        reelbox::jobs::face_box_fix(&c.hint().reelbox(), &p.name)
    );
}

/// The profiles as a table; an admin's list of several people's profiles says whose each
/// one is, by the name of the key that made it (two people may both have a "me").
async fn print_list(c: &Client, list: &[ProfileView]) -> anyhow::Result<()> {
    let several = list.iter().any(|p| p.owner != list[0].owner);
    let names: HashMap<String, String> = if several {
        let keys: Vec<KeyView> = c.get("/api/v1/keys").await.unwrap_or_default();
        keys.into_iter().map(|k| (k.id, k.name)).collect()
    } else {
        HashMap::new()
    };
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            let mut row = vec![p.id.clone(), p.name.clone()];
            if several {
                row.push(names.get(&p.owner).cloned().unwrap_or_else(|| p.owner.clone()));
            }
            row.push(p.voice.model.clone());
            row.push(own_models(p).join(", "));
            row.push(p.portrait.clone().unwrap_or_default());
            row
        })
        .collect();
    let headers: &[&str] = if several {
        &["ID", "NAME", "OWNER", "VOICE", "MODELS", "PORTRAIT"]
    } else {
        &["ID", "NAME", "VOICE", "MODELS", "PORTRAIT"]
    };
    table::print(headers, &rows);
    Ok(())
}

/// The models `p` chooses itself, by what each makes (`pictures styled`, `lip-sync
/// wav2lip_gan`, `upscale x4`): the rest are the box's defaults.
fn own_models(p: &ProfileView) -> Vec<String> {
    let s = &p.style;
    [("pictures", &s.image_model), ("lip-sync", &s.lipsync_model), ("upscale", &s.upscale_model)]
        .into_iter()
        .filter_map(|(what, name)| Some(format!("{what} {}", name.as_deref()?)))
        .collect()
}

fn print_profile(g: &Global, p: &ProfileView) -> anyhow::Result<()> {
    if g.json {
        println!("{}", serde_json::to_string_pretty(p)?);
    } else {
        // The models by what each makes, under 8-column labels as `jobs show` names them.
        let or_default = |m: &Option<String>| m.clone().unwrap_or_else(|| "(the box's default)".into());
        println!(
            "profile  {}\nname     {}\nvoice    {}\nportrait {}\nface box {}\npictures {}\nlip-sync {}\nupscale  {}",
            p.id,
            p.name,
            p.voice.model,
            p.portrait.clone().unwrap_or_default(),
            match (p.face_box, &p.portrait) {
                (Some(b), _) => face_box_text(b),
                // Said here, as a render refuses a presenter without one on a box with no detector.
                (None, Some(_)) => "(none: a face detector finds the face when a film shows it)".to_string(),
                (None, None) => "(none)".to_string(),
            },
            or_default(&p.style.image_model),
            or_default(&p.style.lipsync_model),
            or_default(&p.style.upscale_model)
        );
    }
    Ok(())
}
