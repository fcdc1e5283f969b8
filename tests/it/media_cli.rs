//! `reelbox upscale`, `reelbox lipsync` and `reelbox image --init` as a hobbyist types them
//! against the real daemon: the local files are sent to the daemon, the jobs run in its
//! queue (where its GPU and loaded models are) and the results land at `-o` or beside the
//! input; `reelbox jobs get` saves a job's results by id; a file the daemon refuses is
//! named by the flag the user typed; a run refused and tried again sends its file once.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::daemon::{DaemonProc, get_json};
use common::media::{speechy_16k, wav_bytes};
use common::render::{models_dir, portrait_png};
use common::tools::{reelbox_cli, run_ok};

/// `reelbox ARGS --url <d>` run from `dir` on the tiny models.
fn cli(d: &DaemonProc, dir: &Path, models: &Path, args: &[&str]) -> Command {
    let mut cmd = reelbox_cli(dir, models);
    cmd.args(args).args(["--url", &d.at("")]).current_dir(dir);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upscale_lipsync_and_image_to_image_send_local_files_to_the_daemon() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let models = models_dir(dir);
    let d = common::render::daemon(dir, &models);
    std::fs::write(dir.join("photo.png"), portrait_png()).expect("photo");
    std::fs::write(dir.join("hello.wav"), wav_bytes(speechy_16k(8_000), 16_000)).expect("wav");

    // Upscaled beside the input when no -o is given.
    run_ok(&mut cli(&d, dir, &models, &["upscale", "photo.png", "--model", "tiny-esrgan-x4"]));
    let big = image::open(dir.join("photo-upscaled.png")).expect("the upscaled picture");
    assert_eq!((big.width(), big.height()), (512, 512), "×4");

    // A phone's video is told by its bytes, whatever it is called: upscaled to an MP4.
    let clip = dir.join("clip.3gp");
    let spec = "testsrc=size=32x24:rate=10:duration=0.3";
    let clip_s = clip.to_str().expect("utf8");
    common::media::ffmpeg(&["-f", "lavfi", "-i", spec, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4", clip_s]);
    run_ok(&mut cli(&d, dir, &models, &["upscale", "clip.3gp", "--model", "tiny-esrgan-x4"]));
    let video = reelbox::media::ffprobe::probe_with(&dir.join("clip-upscaled.mp4"), true).expect("an MP4");
    let video = video.video().expect("a video stream");
    assert_eq!((video.width, video.height), (Some(128), Some(96)), "×4");

    let args = ["lipsync", "photo.png", "--audio", "hello.wav", "--face-box", "24,12,80,96", "-o", "talk.mp4"];
    run_ok(cli(&d, dir, &models, &args).args(["--model", "tiny-wav2lip"]));
    let film = reelbox::media::ffprobe::probe_with(&dir.join("talk.mp4"), true).expect("ffprobe");
    let video = film.video().expect("a video stream");
    assert_eq!((video.width, video.height), (Some(128), Some(128)), "the portrait's size");
    assert!(film.audio().is_some() && film.duration_s.is_some_and(|s| s > 0.3), "{film:?}");

    let args = ["image", "a red circle", "--init", "photo.png", "--strength", "0.5", "-o", "edit.png"];
    run_ok(cli(&d, dir, &models, &args).args(["--model", "tiny-sd", "--width", "64", "--height", "64"]));
    assert!(image::open(dir.join("edit.png")).is_ok(), "the edited picture");

    // Each ran on the daemon, the picture to edit sent as an input of its own.
    let jobs = get_json(&reqwest::Client::new(), &d, "/api/v1/jobs").await;
    let jobs = jobs["jobs"].as_array().expect("jobs");
    let kinds: Vec<&str> =
        jobs.iter().filter(|j| j["state"] == "succeeded").filter_map(|j| j["kind"].as_str()).collect();
    assert_eq!(kinds, ["image", "lipsync", "upscale", "upscale"], "newest first: {jobs:?}");
    assert!(jobs[0]["params"]["init_image"].is_string(), "{}", jobs[0]);

    // Any job's results are fetched by id, as from another laptop: the edited picture
    // without its step previews; a second fetch does not overwrite them unless told to.
    let image_job = jobs[0]["id"].as_str().expect("id");
    std::fs::create_dir(dir.join("got")).expect("dir");
    let out = run_ok(&mut cli(&d, dir, &models, &["jobs", "get", image_job, "-o", "got"]));
    // Named as the API and the web studio download it: the prompt's first words and short id.
    let saved = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(saved.starts_with("got/a-red-circle-") && saved.ends_with("-image.png"), "{saved}");
    assert_eq!(std::fs::read(dir.join(&saved)).ok(), std::fs::read(dir.join("edit.png")).ok());
    let again = cli(&d, dir, &models, &["jobs", "get", image_job, "-o", "got"]).output().expect("run");
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"), "{again:?}");
    run_ok(&mut cli(&d, dir, &models, &["jobs", "get", image_job, "-o", "got", "--force"]));

    // A file the daemon will not take is named as the user gave it.
    std::fs::write(dir.join("notes.txt"), "not a picture").expect("notes");
    let out = cli(&d, dir, &models, &["image", "a cat", "--init", "notes.txt", "-o", "x.png"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--init notes.txt: not a readable"), "{stderr}");
    let out = cli(
        &d,
        dir,
        &models,
        &["lipsync", "photo.png", "--audio", "photo.png", "--face-box", "1,2,3,4", "--model", "tiny-wav2lip"],
    )
    .output()
    .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("audio") && stderr.contains("takes audio"), "{stderr}");
}

/// How many of the daemon's artifact files under `data` hold exactly `bytes`.
fn copies_of(data: &Path, bytes: &[u8]) -> usize {
    let shards = std::fs::read_dir(data.join("artifacts")).expect("artifacts dir").flatten();
    let files = shards.flat_map(|s| std::fs::read_dir(s.path()).into_iter().flatten().flatten());
    files.filter(|f| std::fs::read(f.path()).is_ok_and(|b| b == bytes)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upscale_refused_for_its_model_then_run_right_keeps_one_copy_of_the_photo() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let models = models_dir(dir);
    let d = common::render::daemon(dir, &models);
    let photo = portrait_png();
    std::fs::write(dir.join("photo.png"), &photo).expect("photo");

    let out = cli(&d, dir, &models, &["upscale", "photo.png", "--model", "nosuch"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("nosuch"), "{stderr}");
    run_ok(&mut cli(&d, dir, &models, &["upscale", "photo.png", "--model", "tiny-esrgan-x4"]));
    assert!(dir.join("photo-upscaled.png").is_file());
    assert_eq!(copies_of(&dir.join("data"), &photo), 1, "the retry stored the photo again");
}
