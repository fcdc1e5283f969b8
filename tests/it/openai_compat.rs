//! The OpenAI-compatible API against the real daemon, real models and real HTTP: the
//! official Python client generates a picture and speech; errors come in OpenAI's shape;
//! a client that hangs up cancels its job; a picture's `url` opens it without a key until
//! it expires or its key is revoked, opens nothing else, and counts against its key's rate.

use crate::common;

use std::time::{Duration, Instant};

use common::api::{call, create_key, keyed_client};
use common::compat::{TINY_SD, ffprobe, models_dir, run_client, start_daemon, start_daemon_at, start_daemon_with};
use common::daemon::DaemonProc;
use common::provision::JOE;
use reqwest::Method;
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(c: &reqwest::Client, d: &DaemonProc, path: &str, body: Value) -> reqwest::Response {
    c.post(d.at(path)).json(&body).send().await.expect("request")
}

/// A daemon on `data` and `models` with `config.toml` (in `data`) holding `toml`.
fn start_configured(data: &std::path::Path, models: &std::path::Path, toml: &str) -> DaemonProc {
    let config = data.join("config.toml");
    std::fs::write(&config, toml).expect("config");
    start_daemon_with(data, models, &[("REELBOX_CONFIG", config.to_str().expect("utf-8"))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_client_gets_a_png_of_the_asked_size_and_playable_speech() {
    let models = models_dir(true);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let out = tempfile::tempdir().expect("out dir");
    let args = vec![d.url.clone(), out.path().to_string_lossy().into_owned(), TINY_SD.to_string()];
    let summary = run_client("openai_client.py", args).await;
    assert_eq!(summary["image_size"], json!([96, 64]), "{summary}");
    assert_eq!(summary["image_count"], 1);
    assert_eq!(summary["default_quality"], "medium", "the quality used, though none was asked");
    assert_eq!(summary["bad_size"], json!({"status": 400, "param": "size", "type": "invalid_request_error"}));
    assert_eq!(
        summary["gpt"],
        json!({"output_format": "jpeg", "size": "64x64", "quality": "xhigh", "background": "opaque", "total_tokens": 0})
    );
    assert_eq!(
        summary["image_events"],
        json!(["image_generation.partial_image", "image_generation.completed", "image_generation.completed"])
    );
    assert_eq!(summary["speech_events"], json!(["speech.audio.delta", "speech.audio.done"]));
    assert_eq!(summary["edit"], json!({"size": [96, 64], "reported": "96x64"}));
    assert_eq!(summary["variation"], json!({"status": 404, "mentions_edit": true}));
    assert_eq!(summary["no_v1"], json!({"status": 404, "says_v1": true}));
    assert_eq!(summary["retrieved"], json!(["gpt-image-1", "dall-e-3", "tts-1", TINY_SD]));
    let jpeg = image::open(out.path().join("image.jpeg")).expect("the JPEG decodes");
    assert_eq!((jpeg.width(), jpeg.height()), (64, 64));
    let jpeg_bytes = std::fs::read(out.path().join("image.jpeg")).expect("jpeg");
    assert_eq!(image::guess_format(&jpeg_bytes).ok(), Some(image::ImageFormat::Jpeg));
    assert_eq!(ffprobe(&out.path().join("speech-sse.wav")).0, "wav");
    let ids: Vec<&str> = summary["models"].as_array().expect("models").iter().filter_map(Value::as_str).collect();
    assert!(ids.contains(&TINY_SD) && ids.contains(&JOE), "{ids:?}");

    let png = image::open(out.path().join("image.png")).expect("the b64_json decodes to a picture");
    assert_eq!((png.width(), png.height()), (96, 64));
    let (wav_format, wav_secs) = ffprobe(&out.path().join("speech.wav"));
    assert_eq!(wav_format, "wav");
    let (mp3_format, mp3_secs) = ffprobe(&out.path().join("speech.mp3"));
    assert_eq!(mp3_format, "mp3");
    // Two requests are two syntheses, and a Piper voice's durations are drawn with noise (its
    // noise_w): the same line came out 2.67 s and 2.93 s in one CI run. Some 15 % either way is
    // that noise plus the MP3's encoder padding; a cut or doubled MP3 is far outside it.
    assert!(wav_secs > 1.0 && (wav_secs - mp3_secs).abs() < 0.15 * wav_secs, "wav {wav_secs} s, mp3 {mp3_secs} s");

    // The requests ran as ordinary jobs, visible in the native API.
    let jobs: Value = http().get(d.at("/api/v1/jobs")).send().await.expect("jobs").json().await.expect("json");
    let kinds: Vec<&str> = jobs["jobs"].as_array().expect("jobs").iter().filter_map(|j| j["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "image").count(), 4, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "speech").count(), 3, "{kinds:?}");
    // The edit was an image-to-image job from the uploaded picture.
    let edits = jobs["jobs"].as_array().expect("jobs").iter().filter(|j| j["params"]["init_image"].is_string()).count();
    assert_eq!(edits, 1, "{jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_formats_are_converted_and_pcm_is_24_khz_s16le() {
    let models = models_dir(true);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let speak = |format: &'static str| {
        let c = c.clone();
        let url = d.at("/v1/audio/speech");
        async move {
            // Without noise Piper speaks the same samples every time, so formats compare exactly.
            let body = json!({"model": "tts-1", "voice": JOE, "input": "One two three.", "response_format": format,
                "noise_scale": 0.0, "noise_w": 0.0});
            let resp = c.post(url).json(&body).send().await.expect("speech");
            assert_eq!(resp.status(), 200, "{format}");
            let ct = resp.headers()["content-type"].to_str().expect("ct").to_string();
            (ct, resp.bytes().await.expect("bytes").to_vec())
        }
    };
    let (wav_ct, wav) = speak("wav").await;
    assert_eq!(wav_ct, "audio/wav");
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("a WAV");
    let wav_secs = reader.duration() as f64 / f64::from(reader.spec().sample_rate);
    let (pcm_ct, pcm) = speak("pcm").await;
    assert_eq!(pcm_ct, "audio/pcm");
    assert_eq!(pcm.len() % 2, 0);
    let pcm_secs = pcm.len() as f64 / 2.0 / 24_000.0;
    assert!((pcm_secs - wav_secs).abs() < 0.01, "pcm {pcm_secs} s vs wav {wav_secs} s");
    let dir = tempfile::tempdir().expect("tempdir");
    for (format, ct, probed) in
        [("opus", "audio/ogg", "ogg"), ("flac", "audio/flac", "flac"), ("aac", "audio/aac", "aac")]
    {
        let (got_ct, bytes) = speak(format).await;
        assert_eq!(got_ct, ct);
        let path = dir.path().join(format!("speech.{format}"));
        std::fs::write(&path, bytes).expect("write");
        assert_eq!(ffprobe(&path).0, probed, "{format}");
    }
    // speed 2.0 → length_scale 0.5: about half as long.
    let fast = post(
        &c,
        &d,
        "/v1/audio/speech",
        json!({"model": "tts-1", "voice": JOE, "input": "One two three.", "response_format": "wav", "speed": 2.0,
            "noise_scale": 0.0, "noise_w": 0.0}),
    )
    .await;
    let fast = fast.bytes().await.expect("bytes");
    let r = hound::WavReader::new(std::io::Cursor::new(&fast)).expect("a WAV");
    let fast_secs = r.duration() as f64 / f64::from(r.spec().sample_rate);
    assert!(fast_secs < wav_secs * 0.75, "speed 2 gave {fast_secs} s vs {wav_secs} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_in_openais_shape_naming_the_param() {
    let (models, data) = (models_dir(false), tempfile::tempdir().expect("tempdir"));
    // A small body limit, so the over-limit body below is small too: a multi-megabyte one
    // can still be on its way when the daemon answers and closes (a broken pipe, not a 413).
    let d = start_configured(data.path(), models.path(), "[limits]\nmax_body_bytes = 4096\n");
    let c = http();
    let cases = [
        ("/v1/images/generations", json!({"prompt": "x", "size": "64x63"}), 400, Some("size")),
        ("/v1/images/generations", json!({"prompt": "x", "model": "sdxl-base"}), 404, Some("model")),
        ("/v1/images/generations", json!({"prompt": "x", "response_format": "jpeg"}), 400, Some("response_format")),
        ("/v1/images/generations", json!({"prompt": "x", "quality": "ultra"}), 400, Some("quality")),
        ("/v1/images/generations", json!({"size": "64x64"}), 400, Some("prompt")),
        // A value of the wrong type is named too (it was `param: null`).
        ("/v1/images/generations", json!({"prompt": "x", "n": "2"}), 400, Some("n")),
        ("/v1/images/generations", json!({"prompt": "x", "seed": "lucky"}), 400, Some("seed")),
        ("/v1/audio/speech", json!({"input": "hi", "voice": "alloy", "speed": "fast"}), 400, Some("speed")),
        ("/v1/audio/speech", json!({"model": "tts-1", "input": "hi", "voice": "robot"}), 400, Some("voice")),
        (
            "/v1/audio/speech",
            json!({"model": "tts-1", "input": "hi", "voice": "alloy", "speed": 9}),
            400,
            Some("speed"),
        ),
        (
            "/v1/audio/speech",
            json!({"model": "tts-1", "input": "hi", "voice": "alloy", "response_format": "ogg"}),
            400,
            Some("response_format"),
        ),
    ];
    for (path, body, status, param) in cases {
        let resp = post(&c, &d, path, body.clone()).await;
        assert_eq!(resp.status().as_u16(), status, "{path} {body}");
        let err: Value = resp.json().await.expect("json");
        let e = &err["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{err}");
        assert!(e["type"].is_string() && e.get("code").is_some(), "{err}");
        assert_eq!(e["param"].as_str(), param, "{path} {body}: {err}");
    }
    // Past limits.max_body_bytes: 413 in OpenAI's shape (it was axum's plain text).
    let huge = json!({"prompt": "x".repeat(5000)});
    let resp = post(&c, &d, "/v1/images/generations", huge).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.json::<Value>().await.expect("413 is JSON")["error"]["code"], "body_too_large");
    let resp = c.post(d.at("/v1/images/generations")).body("{not json").send().await.expect("request");
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let list: Value = c.get(d.at("/v1/models")).send().await.expect("models").json().await.expect("json");
    assert_eq!(list["object"], "list");
    let tiny = list["data"].as_array().expect("data").iter().find(|m| m["id"] == TINY_SD).expect("tiny-sd listed");
    assert_eq!(tiny["object"], "model");
    assert_eq!(tiny["owned_by"], "reelbox");
    let missing = c.get(d.at("/v1/models/nope")).send().await.expect("model");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.expect("json")["error"]["type"], "not_found_error");
    // A client behind an HTTPS proxy that left out /v1 is told the base URL it uses, on the
    // OpenAI paths and on the `/models` it shares with ComfyUI.
    let proxied = |req: reqwest::RequestBuilder| {
        req.header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "studio.example")
            .header("x-stainless-lang", "python")
    };
    for req in [c.post(d.at("/images/generations")).json(&json!({"prompt": "x"})), c.get(d.at("/models"))] {
        let resp = proxied(req).send().await.expect("request");
        assert_eq!(resp.status(), 404);
        let err: Value = resp.json().await.expect("json");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("base_url https://studio.example/v1"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_raises_not_found_for_an_unknown_speech_model_and_reads_every_refusal() {
    let (models, data) = (models_dir(true), tempfile::tempdir().expect("tempdir"));
    let d = start_daemon(data.path(), models.path());
    let summary = run_client("openai_refusals.py", vec![d.url.clone()]).await;
    // An unknown speech model is refused as an unknown image model is (it was spoken).
    let speech = &summary["speech_model"];
    assert_eq!(
        (&speech["class"], &speech["status"], &speech["param"], &speech["code"]),
        (&json!("NotFoundError"), &json!(404), &json!("model"), &json!("model_not_found")),
        "{summary}"
    );
    // A 405 on a /v1 route is in OpenAI's shape, so the SDK reads its type and code.
    let wrong = &summary["wrong_method"];
    assert_eq!(
        (&wrong["status"], &wrong["type"], &wrong["code"]),
        (&json!(405), &json!("invalid_request_error"), &json!("method_not_allowed")),
        "{summary}"
    );
    // What is not served lists every route that is, edits included.
    let chat = &summary["chat"];
    assert_eq!(chat["class"], "NotFoundError", "{summary}");
    let listed = chat["message"].as_str().unwrap_or_default();
    for path in ["/v1/images/generations", "/v1/images/edits", "/v1/audio/speech", "/v1/models"] {
        assert!(listed.contains(path), "{path} missing: {listed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_key_is_refused_in_openais_shape() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    // The first key (made keyless from loopback) makes every later request need one.
    let created = post(&c, &d, "/api/v1/keys", json!({"name": "admin", "scope": "admin"})).await;
    assert_eq!(created.status(), 201);
    for key in [None, Some("rb_not_a_key")] {
        let mut req = c.get(d.at("/v1/models"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("models");
        assert_eq!(resp.status(), 401, "{key:?}");
        assert!(resp.headers().contains_key("www-authenticate"), "{key:?}");
        let err: Value = resp.json().await.expect("json");
        // OpenAI SDKs raise AuthenticationError from this shape (not the native `{"code","message"}`).
        assert_eq!(err["error"]["type"], "authentication_error", "{err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("key")), "{err}");
        assert!(err["error"].get("param").is_some() && err["error"]["code"].is_string(), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_responses_point_at_the_artifact_through_the_callers_host() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let body = json!({"prompt": "a red door", "model": TINY_SD, "size": "64x64", "n": 2, "seed": 7, "steps": 6,
        "negative_prompt": "blurry", "response_format": "url"});
    let resp = c
        .post(d.at("/v1/images/generations"))
        .header("host", "studio.lan:8470")
        .json(&body)
        .send()
        .await
        .expect("generate");
    assert_eq!(resp.status(), 200);
    let job_id = resp.headers()["x-reelbox-job"].to_str().expect("job header").to_string();
    let v: Value = resp.json().await.expect("json");
    assert!(v["created"].as_i64().is_some_and(|t| t > 1_600_000_000));
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    for item in data {
        let url = item["url"].as_str().expect("url");
        let path =
            url.strip_prefix("http://studio.lan:8470").unwrap_or_else(|| panic!("{url} ignores the Host header"));
        assert!(path.starts_with("/api/v1/artifacts/"), "{url}");
        let bytes = c.get(d.at(path)).send().await.expect("download").bytes().await.expect("bytes");
        let png = image::load_from_memory(&bytes).expect("a picture");
        assert_eq!((png.width(), png.height()), (64, 64));
    }
    // The extensions reached the job.
    let job: Value =
        c.get(d.at(&format!("/api/v1/jobs/{job_id}"))).send().await.expect("job").json().await.expect("json");
    assert_eq!((job["params"]["seed"].as_u64(), job["params"]["steps"].as_u64()), (Some(7), Some(6)));
    assert_eq!(job["params"]["negative_prompt"], "blurry");
    // Nothing streamed, so the job made no step previews: its artifacts are the two pictures.
    let (_, artifacts) = call(None, Method::GET, d.at(&format!("/api/v1/jobs/{job_id}/artifacts")), None).await;
    let names: Vec<&str> = artifacts.as_array().expect("list").iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("preview")), "{names:?}");
    // Both compatibility layers are described in the OpenAPI document.
    let doc: Value = c.get(d.at("/openapi.json")).send().await.expect("doc").json().await.expect("json");
    for path in ["/v1/images/generations", "/v1/audio/speech", "/v1/models", "/prompt", "/history/{prompt_id}", "/ws"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from /openapi.json");
    }
    // Each route's body is its own: the OpenAI ones were described by the native schemas of
    // the same name (`text` instead of `input`, no `size`).
    let body_fields = |path: &str| {
        let schema = &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        let name = schema.as_str().and_then(|r| r.rsplit('/').next()).unwrap_or_default().to_string();
        doc["components"]["schemas"][&name]["properties"].clone()
    };
    let speech = body_fields("/v1/audio/speech");
    assert!(speech.get("input").is_some() && speech.get("response_format").is_some(), "{speech}");
    assert!(body_fields("/v1/images/generations").get("size").is_some());
    assert!(body_fields("/api/v1/speech").get("text").is_some(), "the native body keeps its own schema");
    let listed =
        &doc["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
    let name = listed.as_str().and_then(|r| r.rsplit('/').next()).unwrap_or_default();
    assert!(doc["components"]["schemas"][name]["properties"].get("data").is_some(), "/v1/models answers `data`");
}

/// The `url`s of pictures `client` asks `d` for.
async fn picture_urls(client: &reqwest::Client, d: &DaemonProc, n: u32) -> (Vec<String>, Value) {
    let body = json!({"prompt": "a red door", "model": TINY_SD, "size": "64x64", "n": n, "steps": 2,
        "response_format": "url"});
    let resp = client.post(d.at("/v1/images/generations")).json(&body).send().await.expect("generate");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    let urls =
        v["data"].as_array().expect("data").iter().map(|i| i["url"].as_str().expect("url").to_string()).collect();
    (urls, v)
}

/// The error code of a refused plain GET of `url` (no key), and its status.
async fn refused(url: &str) -> (u16, Value) {
    let resp = http().get(url).send().await.expect("get");
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap_or_default()["error"]["code"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_url_opens_without_a_key_until_it_expires_and_opens_nothing_else() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let mut d = start_daemon(data.path(), models.path());
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let keyed = keyed_client(&admin);
    let (urls, answer) = picture_urls(&keyed, &d, 2).await;
    // Asked for no quality, the answer says the one used, as OpenAI's do.
    assert_eq!(answer["quality"], "medium", "{answer}");

    // Fetched as an `<img src>` or `requests.get(url)` would: no key, the picture's bytes.
    for url in &urls {
        let resp = http().get(url).send().await.expect("get");
        assert_eq!(resp.status(), 200, "{url}");
        assert_eq!(resp.headers()["content-type"], "image/png");
        let bytes = resp.bytes().await.expect("bytes");
        let (path, _) = url.split_once('?').expect("a signed link");
        let with_key = keyed.get(path).send().await.expect("get").bytes().await.expect("bytes");
        assert_eq!(bytes, with_key, "the artifact's own bytes");
    }
    // Without its signature the artifact needs a key, as before.
    let (path, query) = urls[0].split_once('?').expect("a signed link");
    assert_eq!(refused(path).await.0, 401);
    // An altered link opens nothing: another picture's id, a later expiry, another signature.
    let other = urls[1].split_once('?').expect("a signed link").0;
    let expires: u64 = query.split('&').find_map(|p| p.strip_prefix("expires=")).expect("expires").parse().expect("n");
    let sig = query.split('&').find_map(|p| p.strip_prefix("sig=")).expect("sig");
    let flipped = format!("{}{}", &sig[..sig.len() - 1], if sig.ends_with('0') { '1' } else { '0' });
    for altered in [
        format!("{other}?{query}"),
        format!("{path}?expires={}&sig={sig}", expires + 3600),
        format!("{path}?expires={expires}&sig={flipped}"),
        format!("{path}?expires={expires}"),
    ] {
        assert_eq!(refused(&altered).await, (403, json!("bad_link")), "{altered}");
    }
    // A link opens the bytes only: not the metadata, not a listing.
    assert_eq!(refused(&format!("{path}/meta?{query}")).await.0, 401);
    let base = path.split("/api/").next().expect("base");
    assert_eq!(refused(&format!("{base}/api/v1/jobs?{query}")).await.0, 401);

    // The box's secret is kept in its data dir: links outlive a restart.
    let bind = d.url.trim_start_matches("http://").to_string();
    d.terminate();
    let config = data.path().join("config.toml");
    std::fs::write(&config, "[openai]\nimage_url_lifetime_s = 1\n").expect("config");
    let env = [("REELBOX_CONFIG", config.to_str().expect("utf-8 path"))];
    let d = start_daemon_at(data.path(), models.path(), &bind, &env);
    assert_eq!(http().get(&urls[0]).send().await.expect("get").status(), 200, "after a restart");
    // Past `openai.image_url_lifetime_s` a link is refused, saying it expired.
    let (short, _) = picture_urls(&keyed, &d, 1).await;
    let mut ended = None;
    for _ in 0..80 {
        match refused(&short[0]).await {
            (200, _) => tokio::time::sleep(Duration::from_millis(250)).await,
            other => {
                ended = Some(other);
                break;
            }
        }
    }
    assert_eq!(ended, Some((403, json!("link_expired"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_url_counts_against_its_keys_rate_and_stops_when_the_key_is_revoked() {
    let (models, data) = (models_dir(false), tempfile::tempdir().expect("tempdir"));
    // A token every 5 s: a burst of fetches cannot be refilled while it is sent.
    let d = start_configured(data.path(), models.path(), "[limits]\nrequests_per_second = 0.2\nrequest_burst = 4\n");
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (kid_id, kid) = create_key(&d, Some(&admin), json!({"name": "kid"})).await;
    let (urls, _) = picture_urls(&keyed_client(&kid), &d, 1).await;
    let url = &urls[0];
    assert!(url.contains(&format!("&key={kid_id}&")), "the link names the key that shared it: {url}");
    assert_eq!(http().get(url).send().await.expect("get").status(), 200, "the link opens the picture");

    // Fetched over and over (a link posted where many fetch it), it is held to the kid's rate.
    let mut limited = None;
    for _ in 0..10 {
        let resp = http().get(url).send().await.expect("get");
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let limited = limited.expect("ten fetches in a row at 0.2/s with a burst of 4 were never refused");
    assert!(limited.headers().contains_key("retry-after"), "{:?}", limited.headers());
    let v: Value = limited.json().await.expect("json");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("key \"kid\"")), "{v}");
    // It is the kid's own bucket: the kid's requests wait too, other keys' do not.
    assert_eq!(call(Some(&kid), Method::GET, d.at("/api/v1/jobs"), None).await.0, 429);
    assert_eq!(call(Some(&admin), Method::GET, d.at("/api/v1/jobs"), None).await.0, 200);

    // Revoked, the kid's key takes its links with it, and the refusal says so.
    let (status, v) = call(Some(&admin), Method::DELETE, d.at(&format!("/api/v1/keys/{kid_id}")), None).await;
    assert_eq!(status, 200, "{v}");
    let resp = http().get(url).send().await.expect("get");
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "link_revoked", "{v}");
    let said = v["error"]["message"].as_str().unwrap_or_default();
    assert!(said.starts_with("the key that shared this link (\"kid\") was revoked at "), "{said}");
    assert!(said.contains("by key \"admin\"") && said.contains("ask for the picture again"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_canceled_under_a_waiting_client_tells_the_sdks_not_to_send_it_again() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    assert_eq!(c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status(), 200);
    let body = json!({"prompt": "a red door", "model": TINY_SD, "size": "64x64"});
    let request = c.post(d.at("/v1/images/generations")).json(&body).send();
    let waiting = tokio::spawn(async move { request.await.expect("request") });
    let t0 = Instant::now();
    let job = loop {
        let jobs: Value =
            c.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs").json().await.expect("json");
        if let Some(id) = jobs["jobs"][0]["id"].as_str() {
            break id.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no job queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let canceled = c.post(d.at(&format!("/api/v1/jobs/{job}/cancel"))).send().await.expect("cancel");
    assert_eq!(canceled.status(), 200);
    let resp = waiting.await.expect("join");
    // The SDKs retry a 409 (and a 5xx) unless told not to: each retry was a new job.
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.headers().get("x-should-retry").and_then(|v| v.to_str().ok()), Some("false"));
    let err: Value = resp.json().await.expect("json");
    let said = err["error"]["message"].as_str().unwrap_or_default();
    assert!(said.ends_with("was canceled by its owner"), "the client is told who canceled it: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_raises_auth_and_rate_limit_errors_and_its_retry_waits_out_retry_after() {
    let (models, data) = (models_dir(false), tempfile::tempdir().expect("tempdir"));
    let d = start_configured(data.path(), models.path(), "[limits]\nrequests_per_second = 0.35\nrequest_burst = 2\n");
    let created = post(&http(), &d, "/api/v1/keys", json!({"name": "laptop", "scope": "admin"})).await;
    assert_eq!(created.status(), 201);
    let key = created.json::<Value>().await.expect("json")["key"].as_str().expect("key").to_string();
    let summary = run_client("openai_limits.py", vec![d.url.clone(), key]).await;
    assert_eq!(summary["wrong_key"], json!({"status": 401, "type": "authentication_error"}));
    // 1 / 0.35 = 2.86 s to the next token, less what the first requests took: Retry-After
    // rounds it up (it rounded down, and the SDK's one retry came too early and was refused
    // again: the script then fails with RateLimitError).
    let limited = &summary["rate_limited"];
    assert_eq!((limited["status"].as_u64(), limited["code"].as_str()), (Some(429), Some("rate_limited")), "{summary}");
    let retry_after = limited["retry_after"].as_f64().expect("retry_after");
    assert!((2.0..=3.0).contains(&retry_after), "{summary}");
    assert!(summary["retried_after_s"].as_f64().is_some_and(|s| s >= retry_after - 0.2), "{summary}");
}
