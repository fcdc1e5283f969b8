//! `reelbox render` as a hobbyist types it, against the real daemon: Ctrl-C stops the
//! render it started (and says how to go on), a box restarted under a render is waited for
//! and the film still saved, the profile by name with `--voice` and `--style`, and mistakes
//! named by the flag the user typed.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::{DaemonProc, get_json, is_final, wait_job};
use common::provision;
use common::render::{models_dir, portrait_png};
use common::tools::{Lines, reelbox_at, reelbox_beside};
use serde_json::{Value, json};

fn start(dir: &Path) -> DaemonProc {
    let models = models_dir(dir);
    common::render::daemon(dir, &models)
}

/// `reelbox render SCRIPT_ARG --url <d> ARGS…` on the tiny models, run from `dir`.
fn cli(d: &DaemonProc, dir: &Path, script_arg: &str, args: &[&str]) -> Command {
    let mut cmd = reelbox_beside(d, dir);
    cmd.args(["render", script_arg]).args(["--model", "tiny-sd", "--width", "128", "--height", "96"]).args(args);
    cmd
}

/// A command the CLI printed, run from `dir` as a user pastes it into a shell that names no
/// daemon (no `REELBOX_URL`, no config), its data dir kept in `dir`.
fn as_printed(dir: &Path, command: &str) -> std::process::Output {
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("reelbox"), "{command}");
    Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(words)
        .current_dir(dir)
        .env_remove("REELBOX_URL")
        .env_remove("REELBOX_KEY")
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .env("REELBOX_DATA_DIR", dir.join("pasted-data"))
        .stdin(Stdio::null())
        .output()
        .expect("reelbox")
}

/// `reelbox render` of `script` written to a file in `dir`.
fn render(d: &DaemonProc, dir: &Path, script: &str, args: &[&str]) -> Command {
    std::fs::write(dir.join("script.txt"), script).expect("script");
    cli(d, dir, "script.txt", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_render_and_a_retry_keeps_its_finished_stages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();
    let script = ["A red circle rolls slowly across a wide blue field."; 6].join("\n\n");
    let mut cli = render(&d, dir.path(), &script, &["-o", "film.mp4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("reelbox render");
    // Wait until the render has finished its narration, then press Ctrl-C.
    let id = loop {
        let jobs = get_json(&c, &d, "/api/v1/jobs").await;
        let narrated = jobs["jobs"].as_array().and_then(|a| a.first()).filter(|j| j["stages"][2]["state"] == "done");
        if let Some(job) = narrated {
            break job["id"].as_str().expect("id").to_string();
        }
        assert!(cli.try_wait().expect("poll").is_none(), "reelbox render ended before Ctrl-C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sent = Command::new("kill").args(["-INT", &cli.id().to_string()]).status().expect("kill");
    assert!(sent.success());
    let out = cli.wait_with_output().expect("reelbox render");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("job {id} canceled")), "{stderr}");
    // Before, the CLI died and the daemon went on rendering a film nobody would save.
    let canceled = wait_job(&c, &d, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(canceled["state"], "canceled", "{canceled}");
    assert!(!dir.path().join("film.mp4").exists());

    // What it says to run follows the job and saves the film where the render would have;
    // `jobs retry` only queued it, and nothing wrote film.mp4. Run as printed: the daemon is
    // on a port of its own, typed with --url, which the command carries (without it, it
    // went to the default address, where no daemon has this job).
    let retry = stderr.split('`').find(|s| s.contains(&format!("jobs retry {id}"))).expect("a retry command");
    assert!(retry.ends_with(&format!("jobs retry {id} -o film.mp4")), "{retry}");
    let out = as_printed(dir.path(), retry);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // It shows what the retry does, not the earlier try again (it printed plan, keyframes and
    // narration as started and done, and the stage it was canceled in as started twice).
    let stages = canceled["stages"].as_array().expect("stages");
    for (i, stage) in stages.iter().enumerate() {
        let label =
            format!("stage {}/{} {}", i + 1, stages.len(), stage["name"].as_str().expect("name").replace('_', " "));
        let started = said.matches(&format!("{label}: started")).count();
        if stage["state"] == "done" {
            assert!(!said.contains(&label), "{label} ran before the retry: {said}");
        } else {
            assert_eq!(started, 1, "{label}: {said}");
        }
    }
    let (format, seconds) = common::compat::ffprobe(&dir.path().join("film.mp4"));
    assert!(format.contains("mp4") && seconds > 1.0, "{format}, {seconds} s");
    assert!(dir.path().join("film.srt").is_file() && dir.path().join("film.vtt").is_file());
    let done = get_json(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    // `jobs get -o DIR` makes the folder (it was refused as missing), and a second film
    // goes into it beside the first: each is saved under the name the API and the web
    // studio download it as (both were film.mp4, and the second was refused).
    let mut second = render(&d, dir.path(), "A green square waits.", &["-o", "second.mp4"]);
    let out = second.output().expect("reelbox render");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let jobs = get_json(&c, &d, "/api/v1/jobs").await;
    let second = jobs["jobs"][0]["id"].as_str().expect("id").to_string();
    assert_ne!(second, id);
    for job in [&id, &second] {
        let out = reelbox_at(&d, dir.path(), &["jobs", "get", job, "-o", "films/monday"], Stdio::null());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let arts = get_json(&c, &d, &format!("/api/v1/jobs/{job}/artifacts")).await;
        let films: Vec<&str> = arts
            .as_array()
            .expect("artifacts")
            .iter()
            .filter(|a| a["name"].as_str().is_some_and(|n| n.starts_with("film.")))
            .filter_map(|a| a["download_name"].as_str())
            .collect();
        assert_eq!(films.len(), 3, "film, subtitles twice: {arts}");
        for name in films {
            assert!(name.starts_with("a-red-circle-") || name.starts_with("a-green-square-"), "{name}");
            assert!(
                dir.path().join("films/monday").join(name).is_file(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    // `jobs show` of the film says what a filmmaker asks of it on one screen (it listed 330
    // characters of artifact ids): the script, picture, models and voice, how long it took, the
    // film's length and size, its files by name, and how to save it.
    let out = reelbox_at(&d, dir.path(), &["jobs", "show", &id], Stdio::null());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = |label: &str| shown.lines().find(|l| l.starts_with(label)).unwrap_or_default().to_string();
    assert!(line("script ").contains("A red circle rolls slowly") && line("script ").contains("(+5 lines)"), "{shown}");
    assert!(line("picture ").contains("128x96, 25 fps"), "{shown}");
    assert!(line("models ").contains("pictures tiny-sd, voice "), "{shown}");
    assert!(!line("took ").is_empty(), "{shown}");
    assert!(line("film ").contains("s, ") && line("film ").ends_with('B'), "length and size: {shown}");
    let files = line("files ");
    assert!(files.contains("film.mp4 ") && files.contains("film.srt ") && files.contains("film.vtt "), "{shown}");
    // The daemon's --url goes with it: a bare `reelbox jobs get` reaches another address.
    assert!(shown.contains(&format!("reelbox --url {} jobs get {id}", d.at(""))), "{shown}");
    let ids = done["stages"][1]["artifacts"].as_array().expect("keyframes");
    assert!(ids.iter().filter_map(Value::as_str).all(|a| !shown.contains(a)), "no artifact ids: {shown}");
    assert!(shown.lines().all(|l| l.chars().count() <= 80), "one screen of 80 columns: {shown}");
    for i in 0..3 {
        assert_eq!(done["stages"][i]["finished_at"], canceled["stages"][i]["finished_at"], "stage {i} was redone");
    }
}

/// The box restarts under a render (an upgrade, a reboot): the laptop's CLI says once that
/// it waits for the job, goes on when the box answers again and saves the film. Off a
/// terminal (a script, a pipe) it says each stage on a line of its own as it goes.
#[test]
fn a_render_waits_through_a_box_restart_and_saves_its_film() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = start(dir.path());
    let bind = d.url.trim_start_matches("http://").to_string();
    let script = "A red circle rolls slowly across a wide blue field.";
    let mut cli = render(&d, dir.path(), script, &["-o", "restart-film.mp4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("reelbox render");
    let mut said = Lines::of(cli.stderr.take().expect("stderr"));
    // Before, a render off a terminal said nothing at all until it ended.
    assert!(said.until("keyframes: started"), "{}", said.seen.join("\n"));
    d.terminate();
    // Before, the CLI gave up 20 s into the downtime, told the laptop to start a daemon, and
    // saved no film of the job the box went on to finish.
    assert!(said.until("does not answer; still waiting for job"), "{}", said.rest());
    let _d = common::render::daemon_at(dir.path(), &dir.path().join("models"), &bind);
    let out = cli.wait_with_output().expect("reelbox render");
    let stderr = said.rest();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("answers again"), "{stderr}");
    assert_eq!(stderr.matches("does not answer").count(), 1, "said once: {stderr}");
    assert!(stderr.contains("mux: done"), "the stages after the restart are said too: {stderr}");
    let (format, seconds) = common::compat::ffprobe(&dir.path().join("restart-film.mp4"));
    assert!(format.contains("mp4") && seconds > 1.0, "{format}, {seconds} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_reach_the_render_and_mistakes_name_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .text("name", "anna")
        .text("face_box", "24,12,80,96")
        .part("portrait", reqwest::multipart::Part::bytes(portrait_png()).file_name("portrait.png"));
    let anna: Value =
        c.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile").json().await.expect("json");
    // The profile a presenter is made with reads back as it was typed.
    std::fs::write(dir.path().join("bo.png"), portrait_png()).expect("portrait");
    let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["profiles", "create", "--name", "bo", "--portrait", "bo.png", "--face-box", "24,12,80,96"])
        .args(["--url", &d.at("")])
        .current_dir(dir.path())
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .output()
        .expect("profiles create");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("face box 24,12,80,96\n"), "not Some([24, 12, 80, 96]): {stdout}");
    // Music at 44.1 kHz, as a song file has it.
    let tone = dir.path().join("tone.wav");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=5:sample_rate=44100"])
        .arg(&tone)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
    let out = render(&d, dir.path(), "Hello there.", &["--profile", "anna", "--voice", provision::JOE])
        .args(["--music", "tone.wav"])
        // No lip-sync model is installed under a default name here: the presenter stays out.
        .args(["--style", "flat colours", "--layout", "none", "--json", "-o", "hello.mp4"])
        .output()
        .expect("reelbox render");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said: Value = serde_json::from_slice(&out.stdout).expect("JSON line");
    let job = get_json(&c, &d, &format!("/api/v1/jobs/{}", said["job"].as_str().expect("job"))).await;
    assert_eq!(job["params"]["presenter"]["portrait"], anna["portrait"], "{job}");
    assert_eq!(job["params"]["voice"], provision::JOE);
    assert_eq!(job["params"]["style"], "flat colours");
    // `jobs show` names the profile the presenter came from (the job keeps only its portrait).
    let out = reelbox_at(&d, dir.path(), &["jobs", "show", said["job"].as_str().expect("job")], Stdio::null());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.lines().any(|l| l == "profile  anna"), "{shown}");
    assert!(dir.path().join("hello.mp4").is_file() && dir.path().join("hello.vtt").is_file());
    // The music keeps its treble: mixed at its 44.1 kHz, not the voice's 22.05 kHz.
    let info = reelbox::media::ffprobe::probe(&dir.path().join("hello.mp4")).expect("ffprobe");
    let audio = info.audio().expect("audio");
    assert_eq!((audio.sample_rate, audio.channels), (Some(44_100), Some(2)), "{audio:?}");

    // Music that is not audio was refused as `file: …`, a field the user never typed.
    std::fs::write(dir.path().join("notes.txt"), "not music").expect("notes");
    let out = render(&d, dir.path(), "Hello.", &["--music", "notes.txt", "-o", "m.mp4"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--music notes.txt: not a readable"), "{stderr}");
    assert!(!stderr.contains(": file: "), "{stderr}");
    // An MP4 written under another container's name was accepted (and would not play as one).
    let out = render(&d, dir.path(), "Hello.", &["-o", "film.mkv"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("-o film.mkv: the film is an MP4"), "{stderr}");
    let jobs = get_json(&c, &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "only the first render ran: {}", json!(jobs));

    // A sentence typed where the file goes says how to film one line: from standard input.
    let out = cli(&d, dir.path(), "A cat on a mat.", &["-o", "short.mp4"]).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("| reelbox --url {} render - -o film.mp4", d.at(""))), "{stderr}");
    // A film of that name is there: the one from standard input takes the next free name.
    std::fs::write(dir.path().join("film.mp4"), b"an earlier film").expect("earlier film");
    let mut child = cli(&d, dir.path(), "-", &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("reelbox render -");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"Hello.\n").expect("write script");
    // The end says where the film is, whole path and subtitle files.
    let out = child.wait_with_output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let film = dir.path().join("film-2.mp4");
    assert!(
        stdout.starts_with(&format!("{} (subtitles beside it: film-2.srt, film-2.vtt;", film.display())),
        "{stdout}"
    );
    assert_eq!(std::fs::read(dir.path().join("film.mp4")).expect("earlier film"), b"an earlier film");
}

/// Mistakes `reelbox render` refuses before anything is sent, in the user's words: a film
/// that is there (it was replaced without a word; the default `film.mp4` made each render
/// in a folder replace the last), an empty script, one longer than the box takes (it met
/// the 1 MB body limit first), a name of another container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_keeps_the_films_that_are_there_and_refuses_scripts_in_the_users_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let refused = |cmd: &mut Command| {
        let out = cmd.output().expect("reelbox render");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Without -o the film is named after its script, so `story.mp4` is the one at stake.
    std::fs::write(dir.path().join("story.txt"), "Hello there.").expect("script");
    std::fs::write(dir.path().join("story.mp4"), b"last week's film").expect("film");
    let stderr = refused(&mut cli(&d, dir.path(), "story.txt", &[]));
    assert!(stderr.contains("story.mp4 exists") && stderr.contains("--force"), "{stderr}");
    std::fs::write(dir.path().join("exist.srt"), b"1").expect("subtitles");
    let stderr = refused(&mut cli(&d, dir.path(), "story.txt", &["-o", "exist.mp4"]));
    assert!(stderr.contains("exist.srt exists") && stderr.contains("--force"), "{stderr}");

    std::fs::write(dir.path().join("empty.txt"), "\n  \n").expect("script");
    let stderr = refused(&mut cli(&d, dir.path(), "empty.txt", &["-o", "e.mp4"]));
    assert!(stderr.contains("empty.txt is empty"), "not the API's `script: is required`: {stderr}");

    let max = get_json(&reqwest::Client::new(), &d, "/api/v1/session").await["max_prompt_chars"]
        .as_u64()
        .expect("max_prompt_chars");
    std::fs::write(dir.path().join("long.txt"), "word ".repeat(max as usize / 5 + 10)).expect("script");
    let stderr = refused(&mut cli(&d, dir.path(), "long.txt", &["-o", "l.mp4"]));
    assert!(stderr.contains(&format!("at most {max}")) && stderr.contains("max_prompt_chars"), "{stderr}");

    let stderr = refused(&mut cli(&d, dir.path(), "story.txt", &["-o", "out.webm"]));
    assert!(stderr.contains(".mp4, .m4v or .mov"), "{stderr}");

    let jobs = get_json(&reqwest::Client::new(), &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "nothing was sent: {jobs}");
    assert_eq!(std::fs::read(dir.path().join("story.mp4")).expect("film"), b"last week's film");
}

/// README's first command, `reelbox demo -o FILE`, twice on one box: a family runs it again
/// (a second film, or after an upgrade) and it must not trip over the presenter profile the
/// first run made, since a key's profile names are one each, nor over the film it wrote
/// then. A file there that no demo wrote (a note, another render's film) is kept as `render`
/// keeps it, unless `--force`: the demo replaced whatever had the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_renders_again_on_a_box_where_it_ran_before() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::render::demo_models_dir(dir.path());
    let d = common::render::daemon(dir.path(), &models);
    let demo = |film: &Path, args: &[&str]| {
        common::tools::reelbox_cli(dir.path(), &models)
            .args(["--url", &d.at(""), "demo", "-o"])
            .arg(film)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("reelbox demo")
    };
    let film = dir.path().join("reelbox-demo.mp4");
    std::fs::write(&film, "notes for Sunday").expect("note");
    let holiday = dir.path().join("holiday.mp4");
    let holiday_arg = holiday.to_str().expect("utf-8");
    common::media::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=64x64:d=1",
        "-metadata",
        "title=Our holiday",
        holiday_arg,
    ]);
    for path in [&film, &holiday] {
        let before = std::fs::read(path).expect("the user's file");
        let out = demo(path, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        let refusal = format!("{} exists; give another -o FILE, or --force", path.display());
        assert!(stderr.contains(&refusal), "{stderr}");
        assert_eq!(std::fs::read(path).expect("the user's file"), before, "{} was kept", path.display());
    }
    let mut last = None;
    for (n, args) in [(1, &["--force"][..]), (2, &[][..])] {
        let out = demo(&film, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "demo run {n} failed: {stderr}");
        // A daemon that stays up is a place to go: its address is said.
        assert!(stderr.contains(&format!("queued on {}", d.url)), "{stderr}");
        let (format, seconds) = common::compat::ffprobe(&film);
        assert!(format.contains("mp4") && seconds > 5.0, "demo run {n}: {format}, {seconds} s");
        // Saved anew each time (a new file renamed over the name), not left as it was.
        let inode = std::fs::metadata(&film).expect("film").ino();
        assert_ne!(last.replace(inode), Some(inode), "demo run {n} wrote no new film");
    }
    let profiles = get_json(&reqwest::Client::new(), &d, "/api/v1/profiles").await;
    let presenters = profiles.as_array().expect("list").iter().filter(|p| p["name"] == "demo presenter").count();
    assert_eq!(presenters, 1, "{profiles}");
}

/// `reelbox demo` beside a daemon started with its own data dir (or on another box): the
/// demo set up this login's models dir, which that daemon never reads, and the render was
/// refused for a model "not installed" the user had just watched being installed. The
/// daemon pulls what the demo lacks into its own dir, and the film renders there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_beside_a_daemon_with_its_own_models_dir_has_that_daemon_pull_what_it_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joe = provision::joe_voice();
    let joe = joe.parent().expect("voice dir");
    // Each side has the voice (a pip pull in a test is slow); only the login has nothing else.
    let (theirs, mine) = (dir.path().join("daemon-models"), dir.path().join("login-models"));
    common::copy_dir(joe, &theirs.join(provision::JOE));
    common::copy_dir(joe, &mine.join(provision::JOE));
    let d = common::render::daemon(&dir.path().join("daemon"), &theirs);
    let film = dir.path().join("demo.mp4");
    let out = common::tools::reelbox_cli(dir.path(), &mine)
        .args(["--url", &d.at(""), "demo", "-o"])
        .arg(&film)
        .stdin(Stdio::null())
        .output()
        .expect("reelbox demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for model in ["demo-shapes", "demo-presenter", "demo-upscaler"] {
        assert!(stderr.contains(&format!("the daemon at {} pulls {model}", d.url)), "{model}: {stderr}");
        assert!(theirs.join(model).is_dir() && !mine.join(model).exists(), "{model} is the daemon's only");
    }
    assert!(!stderr.contains(&format!("pulls {}", provision::JOE)), "the voice it had is not pulled: {stderr}");
    let (format, seconds) = common::compat::ffprobe(&film);
    assert!(format.contains("mp4") && seconds > 5.0, "{format}, {seconds} s");
}

/// `reelbox demo` with no daemon running renders in a daemon it runs itself, whose loopback
/// address is gone when the command ends: it named that address, and users opened it. Now
/// it names none but the box's own (`bind`), and says how to see the film later, which
/// works: `reelbox serve` on the same data dir has the job and its film.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_without_a_daemon_names_no_address_that_dies_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::render::demo_models_dir(dir.path());
    let bind = format!("127.0.0.1:{}", crate::cluster_support::free_port());
    let film = dir.path().join("demo.mp4");
    let out = common::tools::reelbox_cli(dir.path(), &models)
        .env("REELBOX_BIND", &bind)
        .args(["demo", "-o"])
        .arg(&film)
        .stdin(Stdio::null())
        .output()
        .expect("reelbox demo");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    let addresses: Vec<&str> =
        said.split("http://").skip(1).filter_map(|rest| rest.split(['/', ' ', ';']).next()).collect();
    assert!(!addresses.is_empty() && addresses.iter().all(|a| *a == bind), "only {bind} is named: {said}");
    let id = said.split("job ").nth(1).and_then(|rest| rest.split([' ', ')', ';']).next()).expect("a job id");
    assert!(said.contains("reelbox serve") && said.contains(&format!("reelbox jobs show {id}")), "{said}");
    // Nothing else was queued on this box: no jobs ahead are made up.
    assert!(!said.contains("jobs ahead"), "{said}");

    // What it says to do works: the box's daemon on that data dir has the job and its film.
    let d = DaemonProc::start_at(&dir.path().join("cli-data"), &bind, &[]);
    let job = get_json(&reqwest::Client::new(), &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let films = get_json(&reqwest::Client::new(), &d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    assert!(films.as_array().is_some_and(|a| a.iter().any(|f| f["name"] == "film.mp4")), "{films}");
}

/// A film's lip-sync and upscale models are chosen from the CLI, and `jobs show` says which
/// models made it: a render with `--upscale` quietly used the built-in demo upscaler though
/// the user's own import was installed, and nothing but `--json` said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_film_runs_the_lipsync_and_upscale_models_named_and_jobs_show_says_which_ran() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let models = common::render::models_with_defaults_and_imports(home, "tiny-wav2lip");
    let d = common::render::daemon(home, &models);
    std::fs::write(home.join("anna.png"), portrait_png()).expect("portrait");
    let anna = ["profiles", "create", "--name", "anna", "--portrait", "anna.png", "--face-box", "24,12,80,96"];
    let made = reelbox_at(&d, home, &anna, Stdio::null());
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    let models_flags = ["--lipsync-model", "wav2lip_gan", "--upscale", "--upscale-model", "my-upscaler"];
    let out = render(&d, home, "Hello there.", &["--profile", "anna", "--voice", provision::JOE, "--json"])
        .args(models_flags)
        .args(["--fps", "10", "-o", "film.mp4"])
        .output()
        .expect("reelbox render");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said: Value = serde_json::from_slice(&out.stdout).expect("JSON line");
    let id = said["job"].as_str().expect("job").to_string();
    let job = get_json(&reqwest::Client::new(), &d, &format!("/api/v1/jobs/{id}")).await;
    let p = &job["params"];
    assert_eq!((&p["lipsync_model"], &p["upscale_model"]), (&json!("wav2lip_gan"), &json!("my-upscaler")), "{job}");
    // The presenter was made at the film's size over the named upscaler's ×4 (the demo
    // upscaler, the default, is ×2), and brought up to it.
    for (name, size) in [("composed.mp4", (32, 24)), ("upscaled.mp4", (128, 96))] {
        let bytes = common::render::artifact(&reqwest::Client::new(), &d, &id, name).await;
        std::fs::write(home.join(name), bytes).expect("write");
        let info = reelbox::media::ffprobe::probe(&home.join(name)).expect("ffprobe");
        let video = info.video().expect("video");
        assert_eq!((video.width, video.height), (Some(size.0), Some(size.1)), "{name}: {video:?}");
    }

    // `jobs show` names each model by what it made, within 80 columns.
    let out = reelbox_at(&d, home, &["jobs", "show", &id], Stdio::null());
    let shown = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("models ")).unwrap_or_else(|| panic!("no models line: {shown}"));
    assert_eq!(
        lines[at..at + 2],
        ["models   pictures tiny-sd, voice en_US-joe-medium, lip-sync wav2lip_gan", "         upscale my-upscaler"],
        "{shown}"
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{shown}");

    // A model of another kind is refused naming the flag typed; nothing is queued.
    let out = render(&d, home, "Hello.", &["--upscale", "--upscale-model", "wav2lip_gan", "-o", "bad.mp4"])
        .output()
        .expect("reelbox render");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--upscale-model: \"wav2lip_gan\" is a lipsync model, not upscale; installed:"),
        "{stderr}"
    );
    let jobs = get_json(&reqwest::Client::new(), &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");
}

/// A Japanese or German family's names and scripts line up: `profiles list` pads by display
/// columns (a CJK name pushed its row six columns right, an NFD `Zoë` one left), and
/// `jobs show` cuts a Japanese script's first line at 80 columns, not 56 characters (111),
/// and names the profile a render was made with among profiles sharing a portrait.
#[test]
fn wide_and_decomposed_names_line_up_and_jobs_show_stays_in_80_columns() {
    use unicode_width::UnicodeWidthStr;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    std::fs::write(dir.path().join("p.png"), portrait_png()).expect("portrait");
    for name in ["京都のおばあちゃん", "Zoe\u{308}", "anna"] {
        let out =
            reelbox_at(&d, dir.path(), &["profiles", "create", "--name", name, "--portrait", "p.png"], Stdio::null());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = reelbox_at(&d, dir.path(), &["profiles", "list"], Stdio::null());
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    let at = header.find("VOICE").expect("VOICE column");
    for row in lines {
        // The column after the name starts where its header does, in display columns.
        // The NFD name is kept as the NFC one it looks like.
        let name = ["京都のおばあちゃん", "Zo\u{eb}", "anna"].into_iter().find(|n| row.contains(n)).expect("a name");
        let after = row.find(name).expect("name") + name.len();
        let third = row[after..].trim_start();
        assert_eq!(row[..row.len() - third.len()].width(), at, "{table}");
    }

    // "Kyoto" is what the English voice says; the Japanese is shown, not spoken.
    let script =
        "Kyoto: 今日はとても良い天気ですね、おばあちゃんと一緒に京都の古いお寺を見に行きました。とても楽しかったです。";
    let args = ["--profile", "anna", "--layout", "none", "--json", "-o", "kyoto.mp4"];
    let out = render(&d, dir.path(), script, &args).output().expect("render");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said: Value = serde_json::from_slice(&out.stdout).expect("JSON line");
    let out = reelbox_at(&d, dir.path(), &["jobs", "show", said["job"].as_str().expect("job")], Stdio::null());
    let shown = String::from_utf8_lossy(&out.stdout);
    let line = shown.lines().find(|l| l.starts_with("script ")).unwrap_or_default();
    assert!(line.ends_with('…') && line.width() <= 80, "{} columns: {shown}", line.width());
    assert!(shown.lines().all(|l| l.width() <= 80), "one screen of 80 columns: {shown}");
    // The three profiles share one portrait (an upload is kept once): the profile named is
    // the one the render was made with, not the first with that portrait.
    assert!(shown.lines().any(|l| l == "profile  anna"), "{shown}");
}
