//! "The default model of a kind" is one thing: for every kind, the model `reelbox models
//! list` (and `GET /api/v1/models`, `reelbox models default`) tags as default is the one a
//! request naming no model runs, whether one model is installed, a built-in default beside
//! another, a configured default, or a configured default that is not installed.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::daemon::{DaemonProc, get_json, post_json};
use common::tools::{reelbox_cli, run_ok};
use common::{fixture, provision};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Installs `from` (a fixture folder) as model `name`: diffusion pipelines and voices are
/// told by their files; a bare `model.onnx` gets the manifest a pull leaves beside it.
fn install(models: &Path, name: &str, kind: &str, from: &Path) {
    let dir = models.join(name);
    std::fs::create_dir_all(&dir).expect("model dir");
    match kind {
        "diffusion" => {
            std::fs::remove_dir(&dir).expect("rmdir");
            std::os::unix::fs::symlink(from, &dir).expect("link");
        }
        "tts" => {
            std::fs::copy(from, dir.join(format!("{name}.onnx"))).expect("voice");
            std::fs::copy(from.with_extension("onnx.json"), dir.join(format!("{name}.onnx.json"))).expect("config");
        }
        _ => {
            let bytes = std::fs::read(from.join("model.onnx")).expect("fixture model");
            std::fs::write(dir.join("model.onnx"), &bytes).expect("model");
            let manifest = format!(
                "name = \"{name}\"\nkind = \"{kind}\"\n\n[[files]]\npath = \"model.onnx\"\nsize = {}\nsha256 = \"{}\"\n",
                bytes.len(),
                hex::encode(Sha256::digest(&bytes))
            );
            std::fs::write(models.join(format!("{name}.toml")), manifest).expect("manifest");
        }
    }
}

/// A fixture model of each kind under its name: `names` gives one name per kind.
fn models_named(home: &Path, names: &[(&str, &str)]) -> PathBuf {
    let models = home.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let mut seen = Vec::new();
    for (kind, name) in names {
        let (from, alt) = match *kind {
            "diffusion" => (fixture("models/tiny-sd"), common::source_tree().join("models/demo/shapes")),
            "tts" => (fixture("models/tiny-piper/en/tiny-en.onnx"), fixture("models/tiny-piper/de/tiny-de.onnx")),
            "lipsync" => (fixture("models/tiny-wav2lip"), fixture("models/tiny-wav2lip-alt")),
            "upscale" => (fixture("models/tiny-esrgan-x4"), fixture("models/tiny-esrgan-x2-fixed64")),
            _ => (fixture("models/tiny-face-detector"), fixture("models/tiny-face-detector")),
        };
        // A second model of a kind gets the other fixture, so the two are different files.
        install(&models, name, kind, if seen.contains(kind) { &alt } else { &from });
        seen.push(*kind);
    }
    models
}

/// A box over `models` with `config` (TOML) as its config file: the daemon and the CLI
/// share its data dir, so a `models default` choice counts for both.
struct Box_ {
    home: PathBuf,
    models: PathBuf,
    config: PathBuf,
    daemon: DaemonProc,
}

impl Box_ {
    fn start(home: &Path, models: &Path, config: &str) -> Self {
        let path = home.join("config.toml");
        std::fs::write(&path, config).expect("config");
        let runtime = provision::runtime();
        let env = [
            ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
            ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8")),
            ("REELBOX_CONFIG", path.to_str().expect("utf-8")),
        ];
        let daemon = DaemonProc::start(&home.join("data"), &env);
        Self { home: home.to_path_buf(), models: models.to_path_buf(), config: path, daemon }
    }

    fn cli(&self) -> std::process::Command {
        let mut cmd = reelbox_cli(&self.home, &self.models);
        cmd.env("REELBOX_CONFIG", &self.config).env("REELBOX_DATA_DIR", &self.daemon.data_dir);
        cmd
    }

    /// The default each kind is tagged with, by the API's listing, after checking that
    /// `reelbox models list --json` and `reelbox models default --json` say the same.
    async fn tagged(&self, http: &reqwest::Client) -> BTreeMap<String, String> {
        let tags = |list: &Value| -> BTreeMap<String, String> {
            let models = list["models"].as_array().expect("models");
            let tagged = models.iter().filter(|m| m["default"] == true);
            tagged
                .map(|m| (m["kind"].as_str().expect("kind").into(), m["name"].as_str().expect("name").into()))
                .collect()
        };
        let api = tags(&get_json(http, &self.daemon, "/api/v1/models").await);
        let out = run_ok(self.cli().args(["models", "list", "--json"]));
        let listed: Value = serde_json::from_slice(&out.stdout).expect("models list --json");
        assert_eq!(tags(&listed), api, "`models list` tags what the API tags");
        let out = run_ok(self.cli().args(["--json", "models", "default"]));
        let defaults: Value = serde_json::from_slice(&out.stdout).expect("models default --json");
        let defaults: BTreeMap<String, String> = defaults
            .as_object()
            .expect("object")
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        assert_eq!(defaults, api, "`models default` says what `models list` tags");
        api
    }

    /// The model each kind's request without `model` (or `voice`) runs, from the accepted
    /// jobs' params: a picture, speech, lip-sync (its model and face detector), upscale,
    /// face detection, and a render with a presenter and upscaling.
    async fn used(&self, http: &reqwest::Client) -> BTreeMap<String, Value> {
        // Inputs are checked at submission: a picture and a voice of this box's own.
        let picture = common::media::png(&common::media::test_picture(64, 64, 1));
        let picture = common::api::upload(&self.daemon, None, "face.png", picture).await["id"].clone();
        let voice = common::media::wav_bytes(common::media::speechy_16k(8_000), 16_000);
        let voice = common::api::upload(&self.daemon, None, "hello.wav", voice).await["id"].clone();
        let mut used = BTreeMap::new();
        let post = async |path: &str, body: Value| -> Value {
            let (status, job) = post_json(http, &self.daemon, path, body).await;
            assert_eq!(status, 202, "{path}: {job}");
            job["params"].clone()
        };
        let image = post("/api/v1/images", json!({"prompt": "a red circle", "steps": 1})).await;
        used.insert("image".into(), image["model"].clone());
        let speech = post("/api/v1/speech", json!({"text": "Hello."})).await;
        used.insert("speech".into(), speech["voice"].clone());
        let lipsync = post("/api/v1/lipsync", json!({"portrait": picture, "audio": voice})).await;
        used.insert("lipsync".into(), lipsync["model"].clone());
        used.insert("lipsync face".into(), lipsync["face_model"].clone());
        let upscale = post("/api/v1/upscale", json!({"input": picture})).await;
        used.insert("upscale".into(), upscale["model"].clone());
        let face = post("/api/v1/jobs", json!({"kind": "face_detect", "params": {"input": picture}})).await;
        used.insert("face_detect".into(), face["model"].clone());
        let render = json!({"script": "A red circle.", "width": 64, "height": 64, "steps": 1, "upscale": true,
            "presenter": {"portrait": picture, "face_box": [0, 0, 8, 8]}});
        let render = post("/api/v1/renders", render).await;
        for (stage, field) in
            [("diffusion", "model"), ("tts", "voice"), ("lipsync", "lipsync_model"), ("upscale", "upscale_model")]
        {
            used.insert(format!("render {stage}"), render[field].clone());
        }
        used
    }
}

/// What a request of each kind should have run, given the tagged defaults.
fn expected(tagged: &BTreeMap<String, String>) -> BTreeMap<String, Value> {
    let of = |kind: &str| json!(tagged.get(kind).unwrap_or_else(|| panic!("no {kind} default tagged: {tagged:?}")));
    [
        ("image", of("diffusion")),
        ("speech", of("tts")),
        ("lipsync", of("lipsync")),
        ("lipsync face", of("face")),
        ("upscale", of("upscale")),
        ("face_detect", of("face")),
        ("render diffusion", of("diffusion")),
        ("render tts", of("tts")),
        ("render lipsync", of("lipsync")),
        ("render upscale", of("upscale")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

const MINE: [(&str, &str); 5] = [
    ("diffusion", "my-sd"),
    ("tts", "my-voice"),
    ("lipsync", "my-lipsync"),
    ("upscale", "my-upscaler"),
    ("face", "my-face"),
];
const BUILT_IN: [(&str, &str); 5] = [
    ("diffusion", "demo-shapes"),
    ("tts", "en_US-joe-medium"),
    ("lipsync", "wav2lip"),
    ("upscale", "realesrgan-x4"),
    ("face", "ultraface-320"),
];

async fn check(home: &Path, names: &[(&str, &str)], config: &str, want: &[(&str, &str)]) -> Box_ {
    let models = models_named(home, names);
    let b = Box_::start(home, &models, config);
    let http = reqwest::Client::new();
    let tagged = b.tagged(&http).await;
    let want: BTreeMap<String, String> = want.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect();
    assert_eq!(tagged, want, "the tagged defaults");
    assert_eq!(b.used(&http).await, expected(&tagged), "requests without a model run the tagged defaults");
    b
}

#[tokio::test]
async fn the_only_installed_model_of_each_kind_is_its_default_and_is_used() {
    let home = tempfile::tempdir().expect("tempdir");
    check(home.path(), &MINE, "", &MINE).await;
}

#[tokio::test]
async fn a_built_in_default_beside_another_model_is_tagged_and_used() {
    let home = tempfile::tempdir().expect("tempdir");
    let both: Vec<(&str, &str)> = BUILT_IN.iter().chain(MINE.iter()).copied().collect();
    let b = check(home.path(), &both, "", &BUILT_IN).await;

    // A choice made with `reelbox models default` comes first, for the listing and requests.
    run_ok(b.cli().args(["models", "default", "upscale", "my-upscaler"]));
    let http = reqwest::Client::new();
    let tagged = b.tagged(&http).await;
    assert_eq!(tagged["upscale"], "my-upscaler", "{tagged:?}");
    assert_eq!(b.used(&http).await, expected(&tagged));
}

#[tokio::test]
async fn a_configured_default_wins_while_installed_and_is_passed_over_when_not() {
    let home = tempfile::tempdir().expect("tempdir");
    let both: Vec<(&str, &str)> = BUILT_IN.iter().chain(MINE.iter()).copied().collect();
    let config = "[defaults]\nimage_model = \"my-sd\"\nvoice = \"my-voice\"\nlipsync_model = \"my-lipsync\"\n\
                  upscale_model = \"my-upscaler\"\nface_model = \"my-face\"\n";
    check(home.path(), &both, config, &MINE).await;

    let other = tempfile::tempdir().expect("tempdir");
    let config = "[defaults]\nimage_model = \"sd-nowhere\"\nvoice = \"nobody\"\nlipsync_model = \"gone\"\n\
                  upscale_model = \"gone\"\nface_model = \"gone\"\n";
    check(other.path(), &both, config, &BUILT_IN).await;
}

#[tokio::test]
async fn with_several_models_and_no_default_a_request_must_name_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_named(home.path(), &[("upscale", "up-a"), ("upscale", "up-b")]);
    let b = Box_::start(home.path(), &models, "");
    let http = reqwest::Client::new();
    assert!(!b.tagged(&http).await.contains_key("upscale"), "no upscaler is tagged");
    let input = ulid::Ulid::new().to_string();
    let (s, e) = post_json(&http, &b.daemon, "/api/v1/upscale", json!({"input": input})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("model")), "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("up-a, up-b") && message.contains("reelbox models default upscale"), "{e}");
    let (s, e) = post_json(&http, &b.daemon, "/api/v1/images", json!({"prompt": "a red circle"})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("model")), "{e}");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("reelbox pull")), "{e}");
}

/// POSTs or PATCHes a profile as JSON: (status, body).
async fn profile_call(
    http: &reqwest::Client,
    d: &DaemonProc,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = http.request(method, d.at(path)).json(&body).send().await.expect("profile request");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test]
async fn a_profile_takes_an_installed_or_pullable_voice_and_its_render_waits_for_the_pull() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_named(home.path(), &[("diffusion", "demo-shapes"), ("tts", "my-voice")]);
    let b = Box_::start(home.path(), &models, "");
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;

    // A typo or a model of another kind is refused at once, naming the field and close names.
    let (s, e) = profile_call(
        &http,
        &b.daemon,
        post.clone(),
        "/api/v1/profiles",
        json!({"name": "anna", "voice": "en_US-joe-medum"}),
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("voice")), "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did you mean en_US-joe-medium") && message.contains("installed: my-voice"), "{e}");
    let (s, e) = profile_call(
        &http,
        &b.daemon,
        post.clone(),
        "/api/v1/profiles",
        json!({"name": "anna", "voice": "demo-shapes"}),
    )
    .await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("voice")), "a picture model is no voice: {e}");
    assert_eq!(get_json(&http, &b.daemon, "/api/v1/profiles").await, json!([]), "a refused profile is not kept");

    // A voice the catalog can pull is taken: clients make the profile before pulling.
    let (s, p) = profile_call(
        &http,
        &b.daemon,
        post.clone(),
        "/api/v1/profiles",
        json!({"name": "anna", "voice": "en_US-joe-medium"}),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/profiles/{id}");
    let (s, e) = profile_call(&http, &b.daemon, reqwest::Method::PATCH, &path, json!({"voice": "nobody"})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("voice")), "an update is checked too: {e}");

    // Its render is refused at submission, naming the profile, the pull that installs its
    // voice and the profile's other way on.
    let (s, e) =
        post_json(&http, &b.daemon, "/api/v1/renders", json!({"script": "A red circle.", "profile": id})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("profile")), "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    for said in ["reelbox pull en_US-joe-medium", "`reelbox profiles update anna --voice NAME`"] {
        assert!(message.contains(said), "{said} in {e}");
    }
    let script = home.path().join("script.txt");
    std::fs::write(&script, "A red circle.").expect("script");
    let out = b
        .cli()
        .args(["--url", &b.daemon.url, "render"])
        .arg(&script)
        .args(["--profile", &id, "-o"])
        .arg(home.path().join("film.mp4"))
        .output()
        .expect("run reelbox");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("voice") && err.contains("reelbox pull en_US-joe-medium"), "{err}");
    assert!(!home.path().join("film.mp4").exists());

    // Once the profile's voice is one that is installed, the same render is accepted.
    let (s, p) = profile_call(&http, &b.daemon, reqwest::Method::PATCH, &path, json!({"voice": "my-voice"})).await;
    assert_eq!(s, 200, "{p}");
    let render = json!({"script": "A red circle.", "profile": id, "width": 64, "height": 64, "steps": 1});
    let (s, job) = post_json(&http, &b.daemon, "/api/v1/renders", render).await;
    assert_eq!((s, job["params"]["voice"].as_str()), (202, Some("my-voice")), "{job}");

    // A picture model the catalog can pull is taken too; a picture from the profile says to pull it.
    let (s, p) =
        profile_call(&http, &b.daemon, reqwest::Method::PATCH, &path, json!({"image_model": "sd-turbo"})).await;
    assert_eq!(s, 200, "{p}");
    let (s, e) = post_json(&http, &b.daemon, "/api/v1/images", json!({"prompt": "a red circle", "profile": id})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("profile")), "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("reelbox pull sd-turbo") && message.contains("--image-model NAME"), "{e}");
    // A request's own model that is not pulled yet is refused naming its own field.
    let (s, e) =
        post_json(&http, &b.daemon, "/api/v1/images", json!({"prompt": "a red circle", "model": "sd-turbo"})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("model")), "{e}");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("reelbox pull sd-turbo")), "{e}");
}

/// A profile's model removed since (`reelbox rm`): the rm says which profiles name it, and a
/// picture or film with the profile is refused naming `profile` and the `profiles update`
/// that mends it (a picture model's refusal named `model`, a field the user never typed);
/// a request's own removed model is still refused naming `model`.
#[tokio::test]
async fn removing_a_model_a_profile_names_says_so_and_its_pictures_are_refused_naming_the_profile() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_named(
        home.path(),
        &[("diffusion", "my-sd"), ("diffusion", "other-sd"), ("tts", "my-voice"), ("upscale", "my-upscaler")],
    );
    let b = Box_::start(home.path(), &models, "[defaults]\nimage_model = \"other-sd\"\n");
    let http = reqwest::Client::new();
    let url = b.daemon.url.clone();
    let profile = |name: &str, extra: &[&str]| {
        let args = ["--url", &url, "profiles", "create", "--name", name, "--voice", "my-voice"];
        run_ok(b.cli().args(args).args(extra));
    };
    profile("anna", &["--image-model", "my-sd", "--upscale-model", "my-upscaler"]);
    profile("bob", &["--image-model", "my-sd"]);
    profile("carl", &[]);

    let out = run_ok(b.cli().args(["--url", &url, "rm", "my-sd"]));
    let said = String::from_utf8_lossy(&out.stdout);
    for name in ["anna", "bob"] {
        let line = format!("profile \"{name}\" names it (image_model)");
        assert!(said.contains(&line) && said.contains(&format!("profiles update {name} --image-model NAME")), "{said}");
    }
    assert!(!said.contains("carl"), "{said}");
    let out = run_ok(b.cli().args(["--url", &url, "--json", "rm", "my-upscaler"]));
    let said: Value = serde_json::from_slice(&out.stdout).expect("rm JSON");
    assert_eq!((&said["removed"], &said["profiles"][0]["name"]), (&json!(true), &json!("anna")), "{said}");
    assert_eq!(
        (said["profiles"][0]["field"].as_str(), said["profiles"].as_array().map(Vec::len)),
        (Some("upscale_model"), Some(1))
    );

    let picture = json!({"prompt": "a red circle", "profile": "anna", "steps": 1});
    let film = json!({"script": "A red circle.", "profile": "anna", "layout": "none", "width": 64, "height": 64});
    for (path, body) in [("/api/v1/images", picture), ("/api/v1/renders", film)] {
        let (s, e) = post_json(&http, &b.daemon, path, body).await;
        assert_eq!((s, e["error"]["field"].as_str()), (400, Some("profile")), "{path}: {e}");
        let message = e["error"]["message"].as_str().unwrap_or_default();
        for said in
            ["profile \"anna\" names diffusion model \"my-sd\"", "`reelbox profiles update anna --image-model NAME`"]
        {
            assert!(message.contains(said), "{path}: {said} in {e}");
        }
    }
    let out = b
        .cli()
        .args(["--url", &url, "image", "a red circle", "--profile", "bob", "-o"])
        .arg(home.path().join("bob.png"))
        .output()
        .expect("reelbox image");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("profiles update bob --image-model NAME"), "{err}");
    // A request's own model wins over the profile's and is checked as its own.
    let (s, e) =
        post_json(&http, &b.daemon, "/api/v1/images", json!({"prompt": "a cat", "profile": "bob", "model": "my-sd"}))
            .await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("model")), "{e}");
    let (s, job) = post_json(
        &http,
        &b.daemon,
        "/api/v1/images",
        json!({"prompt": "a cat", "profile": "bob", "model": "other-sd", "steps": 1}),
    )
    .await;
    assert_eq!((s, job["params"]["model"].as_str()), (202, Some("other-sd")), "{job}");
}

/// A profile's voice removed since (`reelbox rm VOICE`, which names the profiles that speak
/// with it): a render, or a lip-sync of text, with the profile is refused naming `profile`
/// and `profiles update NAME --voice NAME`, as for its removed models (the refusal named
/// `voice`, a field the user never typed, without a word of the profile); a lip-sync of
/// given audio needs no voice, a request's own voice wins, and its own removed voice is
/// refused naming `voice`.
#[tokio::test]
async fn a_profile_whose_voice_was_removed_is_refused_naming_the_profile_and_rm_names_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_named(
        home.path(),
        &[("diffusion", "demo-shapes"), ("tts", "my-voice"), ("tts", "other-voice"), ("lipsync", "my-lipsync")],
    );
    let b = Box_::start(home.path(), &models, "[defaults]\nvoice = \"other-voice\"\n");
    let http = reqwest::Client::new();
    let url = b.daemon.url.clone();
    for (name, voice) in [("anna", "my-voice"), ("bob", "other-voice")] {
        run_ok(b.cli().args(["--url", &url, "profiles", "create", "--name", name, "--voice", voice]));
    }

    let out = run_ok(b.cli().args(["--url", &url, "rm", "my-voice"]));
    let said = String::from_utf8_lossy(&out.stdout);
    for line in ["profile \"anna\" names it (voice): its renders are refused until", "update anna --voice NAME` names"]
    {
        assert!(said.contains(line), "{line} in {said}");
    }
    assert!(!said.contains("bob"), "{said}");

    let film = json!({"script": "A red circle.", "profile": "anna", "layout": "none", "width": 64, "height": 64});
    let (s, e) = post_json(&http, &b.daemon, "/api/v1/renders", film.clone()).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("profile")), "{e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    for said in [
        "profile \"anna\"'s voice \"my-voice\" is not installed: ",
        "`reelbox profiles update anna --voice NAME` gives the profile an installed one",
    ] {
        assert!(message.contains(said), "{said} in {e}");
    }
    assert!(!message.contains("--voice ''"), "a profile always has a voice: {e}");
    assert_eq!(e["error"]["model"]["name"], "my-voice", "the voice goes along as data: {e}");
    std::fs::write(home.path().join("script.txt"), "A red circle.").expect("script");
    let out = b
        .cli()
        .args(["--url", &url, "render", "script.txt", "--profile", "anna", "--layout", "none", "-o", "film.mp4"])
        .current_dir(home.path())
        .output()
        .expect("reelbox render");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("reelbox profiles update anna --voice NAME"), "{err}");
    assert!(!home.path().join("film.mp4").exists());

    // A lip-sync of text speaks with the profile's voice: refused alike. Given audio, it needs none.
    let picture = common::media::png(&common::media::test_picture(64, 64, 1));
    let portrait = common::api::upload(&b.daemon, None, "face.png", picture).await["id"].clone();
    let sound = common::media::wav_bytes(common::media::speechy_16k(8_000), 16_000);
    let sound = common::api::upload(&b.daemon, None, "hello.wav", sound).await["id"].clone();
    let talk = json!({"profile": "anna", "portrait": portrait, "face_box": [8, 8, 32, 32], "text": "Hello."});
    let (s, e) = post_json(&http, &b.daemon, "/api/v1/lipsync", talk).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("profile")), "{e}");
    assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("--voice NAME")), "{e}");
    let talk = json!({"profile": "anna", "portrait": portrait, "face_box": [8, 8, 32, 32], "audio": sound});
    let (s, job) = post_json(&http, &b.daemon, "/api/v1/lipsync", talk).await;
    assert_eq!(s, 202, "{job}");
    cancel(&http, &b.daemon, &job).await;

    // The request's own voice wins over the profile's, and is checked as its own.
    let (s, job) = post_json(&http, &b.daemon, "/api/v1/renders", merged(&film, json!({"voice": "other-voice"}))).await;
    assert_eq!((s, job["params"]["voice"].as_str()), (202, Some("other-voice")), "{job}");
    cancel(&http, &b.daemon, &job).await;
    let (s, e) = post_json(&http, &b.daemon, "/api/v1/renders", merged(&film, json!({"voice": "my-voice"}))).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("voice")), "{e}");
    let (s, job) = post_json(&http, &b.daemon, "/api/v1/renders", merged(&film, json!({"profile": "bob"}))).await;
    assert_eq!((s, job["params"]["voice"].as_str()), (202, Some("other-voice")), "{job}");
    cancel(&http, &b.daemon, &job).await;
}

/// `film` with `more`'s fields set.
fn merged(film: &Value, more: Value) -> Value {
    let mut out = film.clone();
    if let (Some(o), Value::Object(more)) = (out.as_object_mut(), more) {
        o.extend(more);
    }
    out
}

/// Cancels the accepted job `job`.
async fn cancel(http: &reqwest::Client, d: &DaemonProc, job: &Value) {
    let id = job["id"].as_str().expect("job id");
    let r = http.post(d.at(&format!("/api/v1/jobs/{id}/cancel"))).send().await.expect("cancel");
    assert_eq!(r.status(), 200);
}

/// Each top-level entry of `dir` with its size and time of change: what a write would move.
fn entries(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let list = std::fs::read_dir(dir).expect("data dir").flatten();
    list.map(|e| {
        let md = e.metadata().expect("metadata");
        (e.file_name().to_string_lossy().into_owned(), (md.len(), md.modified().expect("mtime")))
    })
    .collect()
}

/// `reelbox rm` with no daemon running reads the profiles from the data dir's store itself,
/// read-only, and names them in the same words and `--json` shape (it named none, so a user
/// who stopped the daemon to tidy models learnt nothing of the profiles left broken); a
/// daemon that holds the store but does not answer, or no data dir, leaves the rm naming
/// none, and the model removed all the same.
#[tokio::test]
async fn with_no_daemon_rm_names_the_profiles_from_the_store_itself_and_changes_nothing_there() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_named(
        home.path(),
        &[
            ("diffusion", "my-sd"),
            ("diffusion", "other-sd"),
            ("tts", "my-voice"),
            ("tts", "other-voice"),
            ("upscale", "my-upscaler"),
        ],
    );
    let config = "[defaults]\nimage_model = \"other-sd\"\nvoice = \"other-voice\"\n";
    let mut b = Box_::start(home.path(), &models, config);
    let url = b.daemon.url.clone();
    let profile = |name: &str, extra: &[&str]| {
        run_ok(b.cli().args(["--url", &url, "profiles", "create", "--name", name]).args(extra));
    };
    profile("anna", &["--voice", "my-voice", "--image-model", "my-sd", "--upscale-model", "my-upscaler"]);
    profile("bob", &["--voice", "my-voice"]);

    // Stopped, the daemon holds the store and does not answer: the model goes, no profile is named.
    let signal = |sig: &str| run_ok(std::process::Command::new("kill").args([sig, &b.daemon.pid().to_string()]));
    signal("-STOP");
    let out = b.cli().args(["--url", &url, "rm", "my-upscaler"]).output().expect("reelbox rm");
    signal("-CONT");
    let said = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said == "removed my-upscaler\n", "{said}{err}");
    // It says why it names none: an empty list would read as "no profile uses it".
    let held = format!("in use by PID {}, which does not answer here: the profiles that name", b.daemon.pid());
    assert!(err.contains(&held), "{err}");

    let (status, _) = b.daemon.terminate();
    assert!(status.success(), "{status}");
    let data = b.daemon.data_dir.clone();
    let before = entries(&data);
    let out = run_ok(b.cli().args(["--url", &url, "rm", "my-sd"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("removed my-sd\n"), "{said}");
    for line in ["profile \"anna\" names it (image_model): its renders", "update anna --image-model NAME` names"] {
        assert!(said.contains(line), "{line} in {said}");
    }
    assert!(!said.contains("bob"), "{said}");
    let out = run_ok(b.cli().args(["--url", &url, "--json", "rm", "my-voice"]));
    let said: Value = serde_json::from_slice(&out.stdout).expect("rm JSON");
    let named: Vec<(&str, &str)> = said["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .map(|p| {
            let keys: Vec<&String> = p.as_object().expect("a profile").keys().collect();
            assert_eq!(keys, ["field", "id", "name"], "the daemon's shape: {p}");
            (p["name"].as_str().expect("name"), p["field"].as_str().expect("field"))
        })
        .collect();
    assert_eq!(named, [("anna", "voice"), ("bob", "voice")], "{said}");
    assert_eq!(entries(&data), before, "the store is only read");

    // No data dir at all: none is made.
    let nowhere = home.path().join("nowhere");
    let out = run_ok(b.cli().env("REELBOX_DATA_DIR", &nowhere).args(["--url", &url, "rm", "other-voice"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "removed other-voice\n");
    assert!(!nowhere.exists());
}

/// After the daemon was killed outright (`kill -9`), its store needs redb's repair, which a
/// read-only open refuses: `reelbox rm` with no daemon named no profiles then. It opens the
/// store as the daemon does at start, repairing it, and names them; the daemon starts on it
/// after, with its profiles.
#[tokio::test]
async fn after_kill_9_rm_with_no_daemon_repairs_the_store_and_names_the_profiles() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_named(home.path(), &[("diffusion", "other-sd"), ("upscale", "my-upscaler")]);
    let mut b = Box_::start(home.path(), &models, "[defaults]\nimage_model = \"other-sd\"\n");
    let url = b.daemon.url.clone();
    let create = ["--url", &url, "profiles", "create", "--name", "anna", "--upscale-model", "my-upscaler"];
    run_ok(b.cli().args(create));
    b.daemon.kill9();
    // What the daemon left is what a read-only open refuses (the old `rm`'s open).
    let db = b.daemon.data_dir.join("reelbox.redb");
    assert!(matches!(redb::ReadOnlyDatabase::open(&db), Err(redb::DatabaseError::RepairAborted)), "needs repair");

    let out = run_ok(b.cli().args(["--url", &url, "rm", "my-upscaler"]));
    let said = String::from_utf8_lossy(&out.stdout);
    for line in [
        "removed my-upscaler\n",
        "profile \"anna\" names it (upscale_model): its renders are refused until",
        "profiles update anna --upscale-model NAME` names another",
    ] {
        assert!(said.contains(line), "{line} in {said}{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(redb::ReadOnlyDatabase::open(&db).is_ok(), "left repaired, as the daemon's start leaves it");
    let env =
        [("REELBOX_MODELS_DIR", models.to_str().expect("utf8")), ("REELBOX_CONFIG", b.config.to_str().expect("utf8"))];
    let d = DaemonProc::start(&b.daemon.data_dir, &env);
    let list = get_json(&reqwest::Client::new(), &d, "/api/v1/profiles").await;
    assert_eq!(list[0]["name"], "anna", "{list}");
}

#[tokio::test]
async fn gc_with_no_body_runs_with_its_defaults_and_a_wrong_body_names_the_field() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_named(home.path(), &[]);
    let b = Box_::start(home.path(), &models, "");
    let http = reqwest::Client::new();
    let url = b.daemon.at("/api/v1/gc");
    // `curl -X POST URL`: no body, no Content-Type (it was a 415); an empty JSON body too.
    for req in [http.post(&url), http.post(&url).header("content-type", "application/json").body("")] {
        let r = req.send().await.expect("gc");
        assert_eq!(r.status(), 200);
        let report: Value = r.json().await.expect("json");
        assert_eq!(report["dry_run"], false, "{report}");
    }
    let r = http.post(&url).body(r#"{"dry_run": true}"#).send().await.expect("gc");
    let report: Value = r.json().await.expect("json");
    assert_eq!(report["dry_run"], true, "a body without a Content-Type is read as JSON: {report}");
    let (s, e) = post_json(&http, &b.daemon, "/api/v1/gc", json!({"dry_run": "yes"})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("dry_run")), "{e}");
    let (s, e) = post_json(&http, &b.daemon, "/api/v1/gc", json!({"dry": true})).await;
    assert_eq!((s, e["error"]["field"].as_str()), (400, Some("dry")), "{e}");
    let r = http.post(&url).header("content-type", "text/plain").body("dry_run").send().await.expect("gc");
    assert_eq!(r.status(), 415, "a body of another type is still refused");
    let e: Value = r.json().await.expect("a JSON error");
    assert_eq!(e["error"]["code"], "unsupported_media_type", "{e}");
}
