//! The render's own pieces: the plan, scene timing, presenter compositing and subtitle
//! cues. The render job (`kinds::render`) strings these together with the diffusion, TTS,
//! motion, lip-sync and upscale pipelines.

use image::RgbImage;
use image::imageops::FilterType;
use serde::{Deserialize, Serialize};

use crate::media::subtitles::{Cue, fit_cue};

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
    /// `line_columns` (see [`fit_cue`]). A title the voice ends a sentence at ("Dr.",
    /// "Mr.") is shown with the words it belongs to, not as a cue of its own.
    pub fn cues(&self, line_columns: usize) -> Vec<Cue> {
        let mut joined: Vec<(usize, Cue)> = Vec::new();
        for s in &self.sentences {
            match joined.last_mut() {
                Some((scene, cue)) if *scene == s.scene && is_title(&cue.text) => {
                    cue.text = format!("{} {}", cue.text, s.text);
                    cue.end_s = s.end;
                }
                _ => joined.push((s.scene, Cue::new(s.start, s.end, s.text.clone()))),
            }
        }
        joined.iter().flat_map(|(_, cue)| fit_cue(cue, line_columns)).collect()
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

/// A "sentence" that is only a short capitalised word with a full stop ("Dr.", "Mrs.",
/// "St."): a title or abbreviation the voice's sentence splitter took for an ending.
fn is_title(text: &str) -> bool {
    let t = text.trim();
    let Some(word) = t.strip_suffix('.') else { return false };
    !word.is_empty()
        && word.chars().count() <= 3
        && word.chars().all(char::is_alphabetic)
        && word.chars().next().is_some_and(char::is_uppercase)
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
    fn a_title_split_off_by_the_voice_is_shown_with_its_name() {
        let sentence = |scene, text: &str, start, end| TimedSentence { scene, text: text.into(), start, end };
        let t = Timeline {
            duration: 4.0,
            scenes: vec![(0.0, 3.0), (3.0, 4.0)],
            sentences: vec![
                sentence(0, "Dr.", 0.0, 0.6),
                sentence(0, "Smith is here.", 0.6, 2.0),
                sentence(0, "Yes.", 2.0, 3.0),
                sentence(1, "Go.", 3.0, 4.0),
            ],
            language: "eng".into(),
        };
        let cues = t.cues(42);
        let texts: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Dr. Smith is here.", "Yes.", "Go."]);
        assert_eq!((cues[0].start_s, cues[0].end_s), (0.0, 2.0));
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
