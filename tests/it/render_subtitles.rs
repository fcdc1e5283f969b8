//! The film's subtitles as a viewer meets them, on the real daemon with real ffmpeg: a
//! long sentence on a narrow film is shown in turns of at most two lines, each while its
//! words are spoken, a word wider than the film is cut to fit, and a title the voice
//! pauses after ("Dr.") stays with its name; the film seeks to every two seconds and to
//! each scene's start, and its subtitle track is labelled in the voice's language. Films
//! in German, French, Spanish and Japanese are subtitled as written: a quotation the voice
//! cut is one cue with the words that go on, no cue starts with closing punctuation, text
//! without spaces gets none, no-break spaces stay, and a long compound fills its lines,
//! cut between its syllables.

use crate::common;

use common::render::{artifact, models_dir, rendered, tiny_voice};
use reelbox::media::ffprobe::probe_with;
use serde_json::{Value, json};

/// `HH:MM:SS.mmm` as seconds.
fn seconds(t: &str) -> f64 {
    t.split(':').fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap_or(f64::NAN))
}

/// The cues of a WebVTT file: (start, end, text with its lines joined by spaces).
fn vtt_cues(vtt: &str) -> Vec<(f64, f64, String)> {
    vtt.split("\n\n")
        .filter_map(|block| {
            let mut lines = block.lines();
            let (start, end) = lines.next()?.split_once(" --> ")?;
            Some((seconds(start), seconds(end), lines.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sentence_on_a_narrow_film_is_subtitled_in_turns_that_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    let d = common::render::daemon(dir.path(), &models);
    let c = reqwest::Client::new();
    let script = "This is a rather long sentence that should wrap onto several lines on a narrow film \
                  because it keeps going.\n\nSupercalifragilisticexpialidocious is long. Dr. Jones agrees.";
    // A phone-shaped film: 13 columns a line at the burned-in size (16/288 of its height).
    let body = json!({"script": script, "model": "tiny-sd", "steps": 2, "width": 128, "height": 256,
                      "burn_subtitles": true});
    let id = rendered(&c, &d, body).await;

    let timeline: Value = serde_json::from_slice(&artifact(&c, &d, &id, "timeline.json").await).expect("timeline");
    let sentences = timeline["sentences"].as_array().expect("sentences");
    // The narration reads on through a title ("Dr. Jones" is one sentence): three spoken.
    assert_eq!(sentences.len(), 3, "{timeline}");
    let vtt = String::from_utf8(artifact(&c, &d, &id, "film.vtt").await).expect("utf8");
    let cues = vtt_cues(&vtt);
    assert!(cues.len() >= 5, "the first sentence alone is 9 lines on this film: {cues:?}");
    for (_, _, text) in &cues {
        // Two lines of at most 13 columns and the space between them.
        assert!(text.chars().count() <= 27, "a cue covers more than two lines: {text:?}\n{vtt}");
        assert!(text.split_whitespace().all(|w| w.chars().count() <= 13), "a word wider than the film: {text:?}");
    }
    // Every word once, in order, and each sentence's turns fill its time without a gap.
    let shown: Vec<&str> = cues.iter().map(|(_, _, t)| t.as_str()).collect();
    let spoken: Vec<&str> = sentences.iter().filter_map(|s| s["text"].as_str()).collect();
    assert_eq!(shown.join(" ").replace("- ", ""), spoken.join(" "), "{vtt}");
    let start = |s: &Value| s["start"].as_f64().expect("start");
    let end = |s: &Value| s["end"].as_f64().expect("end");
    assert!((cues[0].0 - start(&sentences[0])).abs() < 0.002, "{vtt}");
    assert!((cues[cues.len() - 1].1 - end(&sentences[sentences.len() - 1])).abs() < 0.002, "{vtt}");
    // A title is shown with the name it belongs to, not flashed alone.
    assert!(cues.iter().any(|(_, _, t)| t.starts_with("Dr. Jones")), "{vtt}");
    for pair in cues.windows(2) {
        assert!(pair[1].0 >= pair[0].1 - 0.001, "cues overlap: {pair:?}");
        assert!(pair[1].0 > pair[0].0, "each turn starts later than the last: {pair:?}");
    }
    let word_at = |word: &str| cues.iter().find(|(_, _, t)| t.contains(word)).map(|c| c.0).expect("word shown");
    assert!(word_at("film") > word_at("rather"), "later words are shown later");

    // The film carries the same turns as its subtitle track, and is a film a browser plays
    // from the first byte: H.264 yuv420p, AAC, the index (moov) before the media (mdat).
    let film = artifact(&c, &d, &id, "film.mp4").await;
    let path = dir.path().join("film.mp4");
    std::fs::write(&path, &film).expect("write");
    let info = probe_with(&path, true).expect("ffprobe");
    let v = info.video().expect("video");
    assert_eq!((v.codec_name.as_str(), v.pix_fmt.as_deref()), ("h264", Some("yuv420p")));
    assert_eq!(info.audio().expect("audio").codec_name, "aac");
    let narration = timeline["duration"].as_f64().expect("duration");
    let frames = v.frames.expect("frames") as f64;
    assert!((frames - (narration * 25.0).round()).abs() <= 1.0, "{frames} frames for {narration} s");
    let at = |tag: &[u8]| film.windows(4).position(|w| w == tag).expect("mp4 box");
    assert!(at(b"moov") < at(b"mdat"), "+faststart: the index comes first");
    // Keyframes every two seconds and at the second scene's start, so a viewer skipping
    // lands where they aimed (x264's default put one every ten seconds, none at scenes).
    let frames = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=key_frame", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let frames: Value = serde_json::from_slice(&frames.stdout).expect("ffprobe json");
    let keys: Vec<usize> = frames["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .enumerate()
        .filter(|(_, f)| f["key_frame"] == 1)
        .map(|(i, _)| i)
        .collect();
    assert!(keys.windows(2).all(|k| k[1] - k[0] <= 50), "keyframes at frames {keys:?}");
    let second = (timeline["scenes"][1][0].as_f64().expect("scene 2 start") * 25.0).round() as usize;
    assert!(keys.contains(&second), "no keyframe at scene 2 (frame {second}): {keys:?}");
    let packets = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "s:0", "-count_packets", "-show_entries"])
        .args(["stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    let n: usize = String::from_utf8_lossy(&packets.stdout).trim().parse().expect("packet count");
    // mov_text writes an empty sample for each gap between cues; at least one per cue.
    assert!(n >= cues.len(), "{n} subtitle samples for {} cues", cues.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subtitle_track_is_labelled_in_the_voice_s_language() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    tiny_voice(&models, "de");
    let d = common::render::daemon(dir.path(), &models);
    let c = reqwest::Client::new();
    let body = json!({"script": "Guten Abend.", "voice": "de_DE-tiny", "model": "tiny-sd", "steps": 2,
                      "width": 64, "height": 64});
    let id = rendered(&c, &d, body).await;
    let path = dir.path().join("film.mp4");
    std::fs::write(&path, artifact(&c, &d, &id, "film.mp4").await).expect("write");
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "s:0", "-show_entries", "stream_tags=language", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe");
    // It said `eng` for every film: a player offered "English" subtitles under German speech.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "deu");
}

/// The texts of a SubRip file's cues, each cue's lines joined by line breaks.
fn srt_texts(srt: &str) -> Vec<String> {
    srt.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.lines().skip(2).collect::<Vec<_>>().join("\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn films_in_other_languages_are_subtitled_as_they_are_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    let (de, fr, es) = (tiny_voice(&models, "de"), tiny_voice(&models, "fr"), tiny_voice(&models, "es"));
    let d = common::render::daemon(dir.path(), &models);
    let c = reqwest::Client::new();
    // A square film: 26 columns a line, as the tester's burned-in film.
    let srt = async |voice: &str, script: &str| {
        let body = json!({"script": script, "voice": voice, "model": "tiny-sd", "steps": 2, "width": 64, "height": 64});
        let id = rendered(&c, &d, body).await;
        let srt = String::from_utf8(artifact(&c, &d, &id, "film.srt").await).expect("utf8");
        let cues = srt_texts(&srt);
        for cue in &cues {
            // It was `, rief Oma.`, `, dijo ella…`, `» dit-il…`: what closed a quotation
            // opened the next cue.
            assert!(!cue.starts_with([',', '.', ';', ':', '!', '?', '»', '“', '”', '’', ')', ']']), "{srt}");
        }
        cues
    };

    let german =
        srt(&de, "„Komm her!“, rief Oma. Sie ging.\n\nDie Donaudampfschifffahrtsgesellschaft grüßt Zoë.").await;
    // The compound was `Die Donaudampfschifffahrtsges-` | `ellschaft grüßt Zoë.`: two cues,
    // the first line cut short, then `Die Donaudampfschifffahrt-` | `sgesellschaft…`, cut by
    // width. Now it fills its line to the last syllable that fits, in the voice's German,
    // and the word's pieces share a cue.
    let compound = ["Die Donaudampfschiff-\nfahrtsgesellschaft grüßt", "Zoë."];
    assert_eq!(german, [&["„Komm her!“, rief Oma.", "Sie ging."][..], &compound].concat());

    let nbsp = "Elle a crié\u{a0}: «\u{202f}Attention, mon petit Zoë\u{202f}!\u{a0}» Mais le chat dormait.";
    let french = srt(&fr, &format!("{nbsp}\n\n« Bonjour, Zoë ! » dit-il… Puis — plus rien.")).await;
    // Every U+00A0 and U+202F was an ordinary space, and a line could end at one.
    assert_eq!(french.join(" "), format!("{nbsp} « Bonjour, Zoë ! » dit-il… Puis — plus rien."), "{french:?}");
    assert_eq!(french.last().map(String::as_str), Some("« Bonjour, Zoë ! » dit-il… Puis — plus rien."));

    let spanish = srt(&es, "«¡Qué calor!», dijo ella… ¿Y después?").await;
    assert_eq!(spanish, ["«¡Qué calor!», dijo ella… ¿Y después?"]);

    let kyoto =
        "今日はとても良い天気ですね、おばあちゃんと一緒に京都の古いお寺を見に行きました。とても楽しかったです。";
    // The English voice says only "Kyoto" (it does not read Japanese); all of it is shown.
    let japanese = srt("en_US-joe-medium", &format!("Kyoto: {kyoto}")).await;
    let mut shown = japanese.clone();
    shown[0] = shown[0].strip_prefix("Kyoto:").expect("the spoken word first").trim_start().to_string();
    // It was `今日はとても良い天気ですね 、おばあちゃんと一緒に京都` | `の古いお寺を見に行きました 。`.
    assert_eq!(shown.concat().replace('\n', ""), kyoto, "no space added: {japanese:?}");
    for cue in &japanese {
        let lines: Vec<&str> = cue.lines().collect();
        assert!(lines.len() <= 2, "{japanese:?}");
        for line in lines {
            assert!(line.chars().map(|c| if c.is_ascii() { 1 } else { 2 }).sum::<usize>() <= 26, "{japanese:?}");
            assert!(!line.starts_with(['、', '。']), "{japanese:?}");
        }
    }
}
