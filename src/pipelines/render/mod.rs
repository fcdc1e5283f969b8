//! The render's own pieces: the plan, scene timing, presenter compositing and subtitle
//! cues. The render job (`kinds::render`) strings these together with the diffusion, TTS,
//! motion, lip-sync and upscale pipelines.

use image::RgbImage;
use image::imageops::FilterType;
use serde::{Deserialize, Serialize};

use crate::media::hyphenation::Hyphenation;
use crate::media::subtitles::{Cue, sentence_cues};

pub mod plan;

/// Where the presenter appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// The lip-synced presenter in the lower-right corner over the scene.
    Inset,
    /// The presenter fills the frame.
    Full,
    /// No presenter.
    None,
}

/// One narrated sentence on the film's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedSentence {
    pub scene: usize,
    pub text: String,
    pub start: f64,
    pub end: f64,
}

/// The narration's timeline: where each scene and sentence sits, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub duration: f64,
    /// `[start, end)` of each scene.
    pub scenes: Vec<(f64, f64)>,
    pub sentences: Vec<TimedSentence>,
    /// The voice's language as an ISO 639-2 code (`eng`, `deu`): the subtitle track's.
    /// Empty when unknown, and in timelines written before it was kept.
    #[serde(default)]
    pub language: String,
}

impl Timeline {
    /// Subtitle cues: one per sentence, or a long sentence in turns that fit lines of
    /// `line_columns`, or a sentence the voice cut inside the writer's with what follows
    /// it in its scene (see [`sentence_cues`]). The narration reads a title on ("Dr.
    /// Åsa"), so a title is in the sentence of the name it belongs to. A word wider than a
    /// line is cut between syllables in the film's language.
    pub fn cues(&self, line_columns: usize) -> Vec<Cue> {
        let hyphenation = Hyphenation::of(&self.language);
        self.sentences
            .chunk_by(|a, b| a.scene == b.scene)
            .flat_map(|scene| {
                let cues: Vec<Cue> = scene.iter().map(|s| Cue::new(s.start, s.end, s.text.clone())).collect();
                sentence_cues(&cues, line_columns, hyphenation)
            })
            .collect()
    }

    /// The film's title: its first sentence, see [`film_title`] (`None` for a film with
    /// nothing said).
    pub fn title(&self) -> Option<String> {
        film_title(&self.sentences.first()?.text)
    }

    /// Frames per scene at `fps` so that, with `transition` frames of crossfade between
    /// scenes, the whole film has exactly `round(duration · fps)` frames.
    pub fn scene_frames(&self, fps: u32, transition: usize) -> Vec<usize> {
        let total = total_frames(self.duration, fps);
        let n = self.scenes.len();
        if n == 0 {
            return Vec::new();
        }
        // Frame boundaries come from rounded scene starts, so rounding never drifts.
        let mut bounds: Vec<usize> =
            self.scenes.iter().map(|(s, _)| ((s * f64::from(fps)).round() as usize).min(total)).collect();
        bounds[0] = 0;
        bounds.push(total);
        (0..n)
            .map(|i| {
                let own = bounds[i + 1].saturating_sub(bounds[i]).max(1);
                if i + 1 < n { own + transition } else { own }
            })
            .collect()
    }
}

/// Most characters of a film's title (about what a file manager shows of a name).
pub const TITLE_CHARS: usize = 60;

/// A film's title from its first sentence as written, cut at a word to at most
/// [`TITLE_CHARS`] characters: what the mux writes as the film's `title` tag, and what
/// `reelbox demo` knows its own earlier film by (`plan::Plan::title`).
pub fn film_title(first_sentence: &str) -> Option<String> {
    let mut title = String::new();
    for word in first_sentence.split_whitespace() {
        if !title.is_empty() && title.chars().count() + 1 + word.chars().count() > TITLE_CHARS {
            title.push('…');
            break;
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
    }
    let title = title.trim_end_matches(['.', ',', ';', ':']).to_string();
    (!title.is_empty()).then_some(title)
}

/// Frames in `duration` seconds at `fps`, at least one.
pub fn total_frames(duration: f64, fps: u32) -> usize {
    ((duration.max(0.0) * f64::from(fps)).round() as usize).max(1)
}

/// Puts the presenter over a scene frame: `Full` replaces it (letterboxed to fit),
/// `Inset` scales the presenter to a third of the frame's width in the lower-right corner
/// with a margin, `None` leaves the scene as it is.
pub fn composite(scene: &RgbImage, presenter: &RgbImage, layout: Layout) -> RgbImage {
    let (w, h) = scene.dimensions();
    match layout {
        Layout::None => scene.clone(),
        Layout::Full => {
            let fitted = fit(presenter, w, h);
            let mut out = RgbImage::new(w, h);
            let (x, y) = ((w - fitted.width()) / 2, (h - fitted.height()) / 2);
            image::imageops::replace(&mut out, &fitted, i64::from(x), i64::from(y));
            out
        }
        Layout::Inset => {
            let inset = fit(presenter, (w / 3).max(1), (h / 3).max(1));
            let margin = (w / 40).max(1);
            let x = w.saturating_sub(inset.width() + margin);
            let y = h.saturating_sub(inset.height() + margin);
            let mut out = scene.clone();
            image::imageops::replace(&mut out, &inset, i64::from(x), i64::from(y));
            out
        }
    }
}

fn fit(img: &RgbImage, max_w: u32, max_h: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let scale = (f64::from(max_w) / f64::from(w.max(1))).min(f64::from(max_h) / f64::from(h.max(1)));
    let (nw, nh) = (((f64::from(w) * scale) as u32).max(1), ((f64::from(h) * scale) as u32).max(1));
    image::imageops::resize(img, nw, nh, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(scenes: &[(f64, f64)]) -> Timeline {
        Timeline {
            duration: scenes.last().map_or(0.0, |s| s.1),
            scenes: scenes.to_vec(),
            sentences: vec![],
            language: String::new(),
        }
    }

    #[test]
    fn scene_frames_add_up_to_the_narration_with_crossfades() {
        let t = timeline(&[(0.0, 1.23), (1.23, 2.5), (2.5, 4.01)]);
        let frames = t.scene_frames(25, 6);
        let total: usize = frames.iter().sum::<usize>() - 2 * 6;
        assert_eq!(total, total_frames(4.01, 25));
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn a_film_is_titled_by_its_first_sentence() {
        let sentence = |text: &str| TimedSentence { scene: 0, text: text.into(), start: 0.0, end: 1.0 };
        let mut t = timeline(&[(0.0, 1.0)]);
        assert_eq!(t.title(), None);
        t.sentences = vec![sentence("In 1987, Dr. Åsa Lindqvist arrived."), sentence("Then rain.")];
        assert_eq!(t.title().as_deref(), Some("In 1987, Dr. Åsa Lindqvist arrived"));
        t.sentences = vec![sentence(&"word ".repeat(30))];
        let long = t.title().unwrap_or_default();
        assert!(long.ends_with("word…") && long.chars().count() <= TITLE_CHARS + 1, "{long}");
    }

    #[test]
    fn inset_keeps_the_scene_outside_the_corner() {
        let scene = RgbImage::from_pixel(90, 60, image::Rgb([10, 20, 30]));
        let presenter = RgbImage::from_pixel(30, 30, image::Rgb([200, 0, 0]));
        let out = composite(&scene, &presenter, Layout::Inset);
        assert_eq!(out.get_pixel(0, 0), &image::Rgb([10, 20, 30]));
        assert_eq!(out.get_pixel(80, 50), &image::Rgb([200, 0, 0]));
        let full = composite(&scene, &presenter, Layout::Full);
        assert_eq!(full.get_pixel(45, 30), &image::Rgb([200, 0, 0]));
    }
}
