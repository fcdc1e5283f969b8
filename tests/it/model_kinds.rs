//! Every model field takes only a model of its kind, on the real daemon: a lip-sync model
//! sent to the upscaler, named as a film's upscale model, voice or picture model (natively,
//! through the OpenAI routes or the CLI) is refused at submission naming the field and the
//! kind the model is, in the words `reelbox models default` uses. It was accepted and the
//! job failed minutes later on the graph's inputs ("expected one image input, found 2"), and
//! an upscaler named as a voice said "voice config not found".

use crate::common;

use std::process::Command;

use common::api::{call, upload};
use common::daemon::{DaemonProc, is_final, wait_job};
use common::media::{png, speechy_16k, test_picture, wav_bytes};
use common::render::portrait_png;
use common::tools::{import_bare, reelbox_cli};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `reelbox ARGS… --url <d>` with a clean environment; its stderr.
fn cli_err(cli: &mut Command, d: &DaemonProc) -> String {
    let out = cli.args(["--url", &d.at("")]).output().expect("reelbox");
    assert!(!out.status.success(), "{cli:?} was accepted: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_of_another_kind_is_refused_naming_the_field_and_its_kind() {
    let root = tempfile::tempdir().expect("tempdir");
    let home = root.path();
    // The tiny fixtures as a user's imports (`models import --kind`, as ComfyUI users bring
    // wav2lip_gan.pth and 4x-UltraSharp.pth), beside the render's own fixtures.
    let models = common::render::models_dir(home);
    import_bare(home, &models, "wav2lip_gan", "lipsync", &common::fixture("models/tiny-wav2lip"));
    import_bare(home, &models, "4x-UltraSharp", "upscale", &common::fixture("models/tiny-esrgan-x4"));
    let d = common::render::daemon(home, &models);
    let id = |v: Value| v["id"].as_str().expect("id").to_string();
    let picture = id(upload(&d, None, "in.png", png(&test_picture(64, 48, 1))).await);
    let portrait = id(upload(&d, None, "me.png", portrait_png()).await);
    let sound = id(upload(&d, None, "hello.wav", wav_bytes(speechy_16k(8_000), 16_000)).await);
    let film = |extra: Value| {
        let mut params = json!({"script": "Hello there.", "model": "tiny-sd", "width": 128, "height": 96});
        params.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        params
    };
    let presenter = json!({"portrait": portrait, "face_box": [24, 12, 80, 96]});

    let refused: [(&str, Value, &str, &str); 12] = [
        (
            "upscale",
            json!({"input": picture, "model": "wav2lip_gan"}),
            "model",
            "\"wav2lip_gan\" is a lipsync model, not upscale",
        ),
        ("upscale", json!({"input": picture, "model": "en_US-joe-medium"}), "model", "is a tts model, not upscale"),
        (
            "lipsync",
            json!({"portrait": portrait, "audio": sound, "face_box": [24, 12, 80, 96], "model": "4x-UltraSharp"}),
            "model",
            "\"4x-UltraSharp\" is an upscale model, not lipsync",
        ),
        ("face_detect", json!({"input": picture, "model": "wav2lip_gan"}), "model", "is a lipsync model, not face"),
        ("speech", json!({"text": "Hello.", "voice": "4x-UltraSharp"}), "voice", "is an upscale model, not tts"),
        (
            "image",
            json!({"prompt": "a cat", "model": "wav2lip_gan", "steps": 1}),
            "model",
            "is a lipsync model, not diffusion",
        ),
        (
            "render",
            film(json!({"upscale": true, "upscale_model": "wav2lip_gan"})),
            "upscale_model",
            "\"wav2lip_gan\" is a lipsync model, not upscale",
        ),
        (
            "render",
            film(json!({"presenter": presenter, "lipsync_model": "4x-UltraSharp"})),
            "lipsync_model",
            "is an upscale model, not lipsync",
        ),
        // Named, though no stage of this film would run it: still a mistake to say.
        (
            "render",
            film(json!({"lipsync_model": "4x-UltraSharp"})),
            "lipsync_model",
            "is an upscale model, not lipsync",
        ),
        ("render", film(json!({"model": "en_US-joe-medium"})), "model", "is a tts model, not diffusion"),
        ("render", film(json!({"voice": "4x-UltraSharp"})), "voice", "is an upscale model, not tts"),
        ("render", film(json!({"model": "wav2lip_gan"})), "model", "is a lipsync model, not diffusion"),
    ];
    for (kind, params, field, says) in refused {
        let body = json!({"kind": kind, "params": params});
        let (status, v) = call(None, Method::POST, d.at("/api/v1/jobs"), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind} {params}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(v["error"]["field"] == field && message.contains(says), "{kind} {params}: {v}");
        assert_eq!(v["error"]["model"]["state"], "other_kind", "{v}");
    }
    // The whole sentence, and as data the models of the kind the field takes.
    let body = json!({"kind": "render", "params": film(json!({"upscale": true, "upscale_model": "wav2lip_gan"}))});
    let (_, v) = call(None, Method::POST, d.at("/api/v1/jobs"), Some(body)).await;
    assert_eq!(
        v["error"]["message"],
        "upscale_model: \"wav2lip_gan\" is a lipsync model, not upscale; installed: 4x-UltraSharp"
    );
    assert_eq!(v["error"]["model"]["installed"], json!(["4x-UltraSharp"]), "{v}");
    let (_, jobs) = call(None, Method::GET, d.at("/api/v1/jobs"), None).await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "nothing was queued: {jobs}");

    // The OpenAI routes say the same, as a 400 on the parameter.
    let openai = [
        ("/v1/images/generations", json!({"prompt": "a cat", "model": "wav2lip_gan"}), "model", "is a lipsync model"),
        (
            "/v1/audio/speech",
            json!({"model": "tts-1", "input": "Hi.", "voice": "4x-UltraSharp"}),
            "voice",
            "is an upscale model",
        ),
        (
            "/v1/audio/speech",
            json!({"model": "wav2lip_gan", "input": "Hi.", "voice": "alloy"}),
            "model",
            "is a lipsync model",
        ),
    ];
    for (route, body, param, says) in openai {
        let (status, v) = call(None, Method::POST, d.at(route), Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {body}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(v["error"]["param"] == param && message.contains(says), "{route} {body}: {v}");
    }

    // The CLI, as the user typed it; `models default` refuses with the same words.
    std::fs::write(home.join("in.png"), png(&test_picture(64, 48, 2))).expect("picture");
    let mut up = reelbox_cli(home, &models);
    up.current_dir(home).args(["upscale", "in.png", "--model", "wav2lip_gan", "-o", "up.png"]);
    let err = cli_err(&mut up, &d);
    assert!(err.contains("\"wav2lip_gan\" is a lipsync model, not upscale"), "{err}");
    let mut say = reelbox_cli(home, &models);
    say.current_dir(home).args(["say", "Hello.", "--voice", "4x-UltraSharp", "--local", "-o", "x.wav"]);
    let err = cli_err(&mut say, &d);
    assert!(err.contains("\"4x-UltraSharp\" is an upscale model, not tts"), "{err}");
    let out = reelbox_cli(home, &models).args(["models", "default", "upscale", "wav2lip_gan"]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("\"wav2lip_gan\" is a lipsync model, not upscale"), "{err}");

    // Models of the field's kind still run: an imported one, and a folder whose bare
    // model.onnx tells no kind (its loader says whether it fits).
    for model in ["4x-UltraSharp", "tiny-esrgan-x4"] {
        let body = json!({"kind": "upscale", "params": {"input": picture, "model": model}});
        let (status, job) = call(None, Method::POST, d.at("/api/v1/jobs"), Some(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        let http = reqwest::Client::new();
        let done = wait_job(&http, &d, &id(job), std::time::Duration::from_secs(120), is_final).await;
        assert_eq!(done["state"], "succeeded", "{done}");
    }
}
