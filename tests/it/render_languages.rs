//! A storyteller's scripts in German, Spanish and French, filmed with the tiny voices of
//! those languages on the real daemon, voice and ffmpeg, as the viewer meets them: the
//! subtitles (`.srt` beside the film) and the film's `title` tag read on through the
//! language's titles, abbreviations and ordinals.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::daemon::DaemonProc;
use common::render::models_dir;

/// Installs the tiny fixture voice of `lang` (`de`, `es`, `fr`) as `<lang>-tiny` in `models`.
fn install_voice(models: &Path, lang: &str) -> String {
    let name = format!("{lang}-tiny");
    let dir = models.join(&name);
    std::fs::create_dir_all(&dir).expect("voice dir");
    for ext in ["onnx", "onnx.json"] {
        let from = common::fixture(&format!("models/tiny-piper/{lang}/tiny-{lang}.{ext}"));
        std::fs::copy(from, dir.join(format!("{name}.{ext}"))).expect("voice file");
    }
    name
}

/// A daemon on the tiny models with the German, Spanish and French voices.
fn start(dir: &Path) -> DaemonProc {
    let models = models_dir(dir);
    for lang in ["de", "es", "fr"] {
        install_voice(&models, lang);
    }
    common::render::daemon(dir, &models)
}

/// `reelbox ARGS… --url <d>` run from `dir`, standard input from `stdin`.
fn reelbox(d: &DaemonProc, dir: &Path, args: &[&str], stdin: Stdio) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(args)
        .args(["--url", &d.at("")])
        .current_dir(dir)
        .env_remove("REELBOX_KEY")
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .stdin(stdin)
        .output()
        .expect("reelbox")
}

/// `reelbox render FILE --voice VOICE` of `script` (bytes as a file holds them) on the tiny
/// picture model; the film's path.
fn render(d: &DaemonProc, dir: &Path, name: &str, script: &[u8], voice: &str) -> PathBuf {
    std::fs::write(dir.join(format!("{name}.txt")), script).expect("script");
    let film = format!("{name}.mp4");
    let args = ["render", &format!("{name}.txt"), "-o", &film, "--voice", voice];
    let out = reelbox(
        d,
        dir,
        &[&args[..], &["--model", "tiny-sd", "--width", "448", "--height", "64"]].concat(),
        Stdio::null(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join(film)
}

/// The texts of the cues of the `.srt` beside `film`.
fn srt_cues(film: &Path) -> Vec<String> {
    let srt = std::fs::read_to_string(film.with_extension("srt")).expect("srt");
    srt.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let lines: Vec<&str> = block.lines().skip(2).collect();
            (!lines.is_empty()).then(|| lines.join(" "))
        })
        .collect()
}

/// The film's `title` tag, as players and file managers show it.
fn title(film: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format_tags=title", "-of", "default=nw=1:nk=1"])
        .arg(film)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn german_and_spanish_narration_reads_on_through_titles_abbreviations_and_ordinals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());

    // The cues were `Am 3.` (0.24 s) | `Oktober 1987 kam Dr. Müller nach Ærø – z.` | `B. mit
    // der Fähre Nr.` | `5.`, and the film was titled `Am 3`.
    let script = "Am 3. Oktober kam Dr. Müller – z. B. mit der Fähre Nr. 5. Oma lachte.\n\n\
                  Am 24. Dezember kam Nr. 7 zurück, d. h. u. a. mit Hans bzw. Grete.";
    let film = render(&d, dir.path(), "oma", script.as_bytes(), "de-tiny");
    assert_eq!(
        srt_cues(&film),
        [
            "Am 3. Oktober kam Dr. Müller – z. B. mit der Fähre Nr. 5.",
            "Oma lachte.",
            "Am 24. Dezember kam Nr. 7 zurück, d. h. u. a. mit Hans bzw. Grete."
        ]
    );
    assert_eq!(title(&film), "Am 3. Oktober kam Dr. Müller – z. B. mit der Fähre Nr. 5");

    // `El Sr.` | `García y la Sra.` | `López llegaron…`, titled `El Sr`; "etc." before a
    // capital still ends its sentence.
    let script = "El Sr. García y la Sra. López llegaron, p. ej. en tren. Compraron pan, leche, etc. Luego nada.";
    let film = render(&d, dir.path(), "cuento", script.as_bytes(), "es-tiny");
    assert_eq!(
        srt_cues(&film),
        ["El Sr. García y la Sra. López llegaron, p. ej. en tren.", "Compraron pan, leche, etc.", "Luego nada."]
    );
    assert_eq!(title(&film), "El Sr. García y la Sra. López llegaron, p. ej. en tren");
}
