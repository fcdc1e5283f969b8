//! A presenter profile remembers its lip-sync and upscale models (`profiles create/update
//! --lipsync-model/--upscale-model`, the API's `lipsync_model`/`upscale_model`): a user who
//! imported their own wav2lip_gan and upscaler no longer names them on every render of that
//! presenter. What a user notices: the film's talking head and upscale stages say which model
//! made them and are made by the profile's (the presenter at the profile's upscaler's ×4, not
//! the default's ×2), `jobs show` names them, a render's own model still wins, a model of
//! another kind or none installed is refused naming the field, and a profile's model removed
//! since refuses the render naming the profile and the `profiles update` that mends it.
//! `reelbox lipsync --profile` makes the profile's portrait talk with its lip-sync model.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::daemon::{DaemonProc, get_json, post_json};
use common::provision;
use common::render::portrait_png;
use common::tools::{reelbox_cli, run_ok};
use serde_json::{Value, json};

/// `reelbox ARGS… --url <d>` run from `dir`.
fn reelbox(d: &DaemonProc, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(args)
        .args(["--url", &d.at("")])
        .current_dir(dir)
        .env_remove("REELBOX_KEY")
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .stdin(Stdio::null())
        .output()
        .expect("reelbox")
}

/// `reelbox render script.txt` of `script` on the tiny picture model at 128×96 with `args`.
fn render(d: &DaemonProc, dir: &Path, script: &str, args: &[&str]) -> Output {
    std::fs::write(dir.join("script.txt"), script).expect("script");
    let film = ["render", "script.txt", "--model", "tiny-sd", "--width", "128", "--height", "96", "--fps", "10"];
    reelbox(d, dir, &[&film[..], args].concat())
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Submits `body` to `path` (a render or lip-sync), expecting 202, cancels the job at once
/// and returns the parameters it was accepted with.
async fn accepted(http: &reqwest::Client, d: &DaemonProc, path: &str, body: Value) -> Value {
    let (s, job) = post_json(http, d, path, body).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id");
    let cancel = http.post(d.at(&format!("/api/v1/jobs/{id}/cancel"))).send().await.expect("cancel");
    assert_eq!(cancel.status(), 200);
    job["params"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_s_lipsync_and_upscale_models_make_its_films_unless_the_render_names_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let models = common::render::models_with_defaults_and_imports(home, "tiny-wav2lip-alt");
    let d = common::render::daemon(home, &models);
    let http = reqwest::Client::new();

    // A name that is no installed model of the field's kind is refused naming the field.
    for (field, bad, said) in [
        ("lipsync_model", "my-upscaler", "\"my-upscaler\" is an upscale model, not lipsync"),
        ("upscale_model", "wav2lip_gan", "\"wav2lip_gan\" is a lipsync model, not upscale"),
        ("upscale_model", "no-such-upscaler", "no upscale model \"no-such-upscaler\""),
    ] {
        let (s, e) = post_json(&http, &d, "/api/v1/profiles", json!({"name": "x", field: bad})).await;
        assert_eq!((s, e["error"]["field"].as_str()), (400, Some(field)), "{e}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains(said)), "{e}");
    }
    let out = reelbox(&d, home, &["profiles", "create", "--name", "x", "--lipsync-model", "my-upscaler"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is an upscale model, not lipsync"), "{err}");
    assert_eq!(get_json(&http, &d, "/api/v1/profiles").await, json!([]), "a refused profile is not kept");

    std::fs::write(home.join("anna.png"), portrait_png()).expect("portrait");
    let made = ok(&reelbox(
        &d,
        home,
        &["--json", "profiles", "create", "--name", "anna", "--portrait", "anna.png", "--face-box", "24,12,80,96"],
    ));
    let made: Value = serde_json::from_str(&made).expect("profile JSON");
    assert!(made["style"]["lipsync_model"].is_null() && made["style"]["upscale_model"].is_null(), "{made}");
    let set = ["profiles", "update", "anna", "--lipsync-model", "wav2lip_gan", "--upscale-model", "my-upscaler"];
    let shown = ok(&reelbox(&d, home, &set));
    assert!(shown.contains("\nlip-sync wav2lip_gan\nupscale  my-upscaler\n"), "{shown}");
    let listed = ok(&reelbox(&d, home, &["profiles", "list"]));
    assert!(listed.contains("lip-sync wav2lip_gan, upscale my-upscaler"), "{listed}");

    // A film of the profile's, naming no models: the profile's make its presenter and upscale it.
    let out = render(
        &d,
        home,
        "Hello there.",
        &["--profile", "anna", "--voice", provision::JOE, "--upscale", "--json", "-o", "film.mp4"],
    );
    let out = render_json(&out);
    let id = out["job"].as_str().expect("job").to_string();
    let job = get_json(&http, &d, &format!("/api/v1/jobs/{id}")).await;
    let p = &job["params"];
    assert_eq!((&p["lipsync_model"], &p["upscale_model"]), (&json!("wav2lip_gan"), &json!("my-upscaler")), "{job}");
    // The presenter was made at the film's size over the profile's upscaler's ×4 (the demo
    // upscaler, the box's default, is ×2: 64×48).
    let composed = common::render::artifact(&http, &d, &id, "composed.mp4").await;
    std::fs::write(home.join("composed.mp4"), composed).expect("write");
    let info = reelbox::media::ffprobe::probe(&home.join("composed.mp4")).expect("ffprobe");
    let video = info.video().expect("video");
    assert_eq!((video.width, video.height), (Some(32), Some(24)), "{video:?}");
    let log = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let log = log.text().await.expect("event text");
    for said in ["talking head with lip-sync model wav2lip_gan", "upscale with upscale model my-upscaler"] {
        assert!(log.contains(said), "the stage says which model made it: {said} in {log}");
    }
    let shown = ok(&reelbox(&d, home, &["jobs", "show", &id]));
    assert!(shown.contains("lip-sync wav2lip_gan") && shown.contains("upscale my-upscaler"), "{shown}");

    // The render's own models win; a render that is not upscaled runs no upscaler of the profile's.
    let film = json!({"script": "Hello.", "profile": "anna", "width": 128, "height": 96});
    let own = json!({"lipsync_model": "demo-presenter", "upscale": true, "upscale_model": "demo-upscaler"});
    let p = accepted(&http, &d, "/api/v1/renders", merged(&film, &own)).await;
    assert_eq!((&p["lipsync_model"], &p["upscale_model"]), (&json!("demo-presenter"), &json!("demo-upscaler")), "{p}");
    let p = accepted(&http, &d, "/api/v1/renders", film.clone()).await;
    assert_eq!((&p["lipsync_model"], &p["upscale_model"]), (&json!("wav2lip_gan"), &json!("demo-upscaler")), "{p}");
    // A lip-sync with the profile takes its lip-sync model too.
    let p = accepted(&http, &d, "/api/v1/lipsync", json!({"profile": "anna", "text": "Hello."})).await;
    assert_eq!(p["model"], "wav2lip_gan", "{p}");
    // So does `reelbox lipsync --profile`, with no portrait of its own: the profile's face talks.
    let talk = ["--json", "lipsync", "--profile", "anna", "--text", "Hello.", "--voice", provision::JOE];
    let out = reelbox(&d, home, &[&talk[..], &["-o", "talk.mp4"]].concat());
    let said: Value = serde_json::from_str(ok(&out).trim()).expect("lipsync JSON");
    assert_eq!(said["model"], "wav2lip_gan", "{said}");
    let info = reelbox::media::ffprobe::probe(&home.join("talk.mp4")).expect("ffprobe");
    let video = info.video().expect("video");
    assert_eq!((video.width, video.height), (Some(128), Some(128)), "the profile's portrait talks: {video:?}");

    // Cleared, the profile leaves the presenter to the box's default.
    let shown = ok(&reelbox(&d, home, &["profiles", "update", "anna", "--lipsync-model", ""]));
    assert!(shown.contains("\nlip-sync (the box's default)\n"), "{shown}");
    let p = accepted(&http, &d, "/api/v1/renders", film.clone()).await;
    assert_eq!(p["lipsync_model"], "demo-presenter", "{p}");

    // The profile's upscaler removed since: its upscaled render is refused naming the profile
    // and the command that mends it, before anything is queued; one not upscaled still runs.
    run_ok(reelbox_cli(home, &models).args(["rm", "my-upscaler", "--force"]));
    let upscaled = merged(&film, &json!({"upscale": true}));
    let (s, e) = post_json(&http, &d, "/api/v1/renders", upscaled).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("profile")), "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    for said in [
        "profile \"anna\" names upscale model \"my-upscaler\", which cannot be used",
        "`reelbox profiles update anna --upscale-model NAME` gives the profile an installed one",
        "`--upscale-model ''` leaves it to the box's default",
    ] {
        assert!(message.contains(said), "{said} in {e}");
    }
    let out = render(&d, home, "Hello.", &["--profile", "anna", "--upscale", "-o", "gone.mp4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("reelbox profiles update anna --upscale-model NAME"), "{err}");
    assert!(!home.join("gone.mp4").exists());
    let p = accepted(&http, &d, "/api/v1/renders", film).await;
    assert_eq!(p["upscale_model"], "demo-upscaler", "{p}");
}

/// The JSON line a successful `reelbox render --json` printed (asserting it succeeded).
fn render_json(out: &Output) -> Value {
    let _ = ok(out);
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// `a` with `b`'s fields set.
fn merged(a: &Value, b: &Value) -> Value {
    let mut out = a.clone();
    if let (Some(o), Some(b)) = (out.as_object_mut(), b.as_object()) {
        o.extend(b.clone());
    }
    out
}
