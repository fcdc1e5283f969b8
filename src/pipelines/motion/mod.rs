//! Motion from keyframes: each scene's still becomes a clip (a camera move by default, an
//! image-to-video model later, through [`ImageToVideo`]), and clips are joined with
//! crossfades. Everything here is a pure function of its inputs and the seed.

use image::RgbImage;
use tokio_util::sync::CancellationToken;

use crate::pipelines::{Canceled, check_cancel};

pub mod camera;

pub use camera::{CameraMove, Easing, camera_frame};

/// Why making motion failed.
#[derive(Debug, thiserror::Error)]
pub enum MotionError {
    #[error("invalid clip: {0}")]
    Input(String),
    #[error("image-to-video model {model} failed: {reason}")]
    Model { model: String, reason: String },
    #[error("canceled")]
    Canceled,
}

impl From<Canceled> for MotionError {
    fn from(_: Canceled) -> Self {
        MotionError::Canceled
    }
}

/// A stream of frames; errors end it.
pub type Frames<'a> = Box<dyn Iterator<Item = Result<RgbImage, MotionError>> + Send + 'a>;

/// What clip to make from a keyframe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSpec {
    pub duration_s: f64,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    /// Chooses the motion; the same seed gives the same frames.
    pub seed: u64,
}

impl ClipSpec {
    /// Frames in the clip: `round(duration · fps)`, at least one.
    pub fn frame_count(&self) -> usize {
        ((self.duration_s.max(0.0) * f64::from(self.fps)).round() as usize).max(1)
    }

    fn check(&self) -> Result<(), MotionError> {
        if self.width == 0 || self.height == 0 || self.fps == 0 || !self.duration_s.is_finite() {
            return Err(MotionError::Input(format!(
                "{}x{} at {} fps for {} s",
                self.width, self.height, self.fps, self.duration_s
            )));
        }
        Ok(())
    }
}

/// Turns a keyframe into a clip. The camera move ([`CameraMotion`]) is the built-in one;
/// an image-to-video model implements this trait to slot into the render unchanged.
pub trait ImageToVideo: Send + Sync {
    /// Short name for logs and job events.
    fn name(&self) -> &str;
    /// The clip's frames, `spec.frame_count()` of them at `spec`'s size.
    fn animate<'a>(
        &'a self,
        keyframe: &'a RgbImage,
        spec: ClipSpec,
        cancel: &'a CancellationToken,
    ) -> Result<Frames<'a>, MotionError>;
}

/// The default motion: a seeded camera move over the still keyframe.
#[derive(Debug, Clone, Copy, Default)]
pub struct CameraMotion;

/// Time in [0, 1] of frame `i` of `n`: first frame at 0, last at 1.
pub fn frame_time(i: usize, n: usize) -> f64 {
    if n <= 1 { 0.0 } else { i as f64 / (n - 1) as f64 }
}

impl ImageToVideo for CameraMotion {
    fn name(&self) -> &str {
        "camera"
    }

    fn animate<'a>(
        &'a self,
        keyframe: &'a RgbImage,
        spec: ClipSpec,
        cancel: &'a CancellationToken,
    ) -> Result<Frames<'a>, MotionError> {
        spec.check()?;
        if keyframe.width() == 0 || keyframe.height() == 0 {
            return Err(MotionError::Input("the keyframe is empty".into()));
        }
        let mv = CameraMove::from_seed(spec.seed);
        let n = spec.frame_count();
        Ok(Box::new((0..n).map(move |i| {
            check_cancel(cancel)?;
            Ok(camera_frame(keyframe, &mv, frame_time(i, n), spec.width, spec.height))
        })))
    }
}

/// `a` faded towards `b` by `alpha` ∈ [0, 1]: `round((1 − α)·a + α·b)` per channel.
pub fn crossfade(a: &RgbImage, b: &RgbImage, alpha: f32) -> Result<RgbImage, MotionError> {
    if a.dimensions() != b.dimensions() {
        return Err(MotionError::Input(format!(
            "cannot crossfade {}x{} into {}x{}",
            a.width(),
            a.height(),
            b.width(),
            b.height()
        )));
    }
    let alpha = alpha.clamp(0.0, 1.0);
    let raw = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f32::from(x) * (1.0 - alpha) + f32::from(y) * alpha).round().clamp(0.0, 255.0) as u8);
    RgbImage::from_raw(a.width(), a.height(), raw.collect())
        .ok_or_else(|| MotionError::Input("frame buffer size mismatch".into()))
}

/// Frames in a sequence of clips of `lengths` joined by `transition` overlapping frames.
/// A clip's frames used in the fade-in are not available for its fade-out, so very short
/// clips shorten the transitions around them.
pub fn sequence_length(lengths: &[usize], transition: usize) -> usize {
    let mut total = 0usize;
    let mut available = 0usize;
    for (i, &n) in lengths.iter().enumerate() {
        let overlap = if i == 0 { 0 } else { transition.min(n).min(available) };
        total += n - overlap;
        available = n - overlap;
    }
    total
}

/// Clips played one after another; the last `transition` frames of each clip crossfade
/// into the first frames of the next (frame j of k blends at (j+1)/(k+1), so an odd
/// transition's middle frame is the exact average). Lazy: one transition's frames are
/// held at a time.
pub struct Sequence<'a> {
    clips: std::collections::VecDeque<Frames<'a>>,
    current: Option<Frames<'a>>,
    held: std::collections::VecDeque<RgbImage>,
    transition: usize,
    out: std::collections::VecDeque<RgbImage>,
    failed: bool,
}

impl<'a> Sequence<'a> {
    /// Joins `clips` with `transition`-frame crossfades.
    pub fn new(clips: Vec<Frames<'a>>, transition: usize) -> Self {
        let mut clips: std::collections::VecDeque<_> = clips.into();
        let current = clips.pop_front();
        Self { clips, current, held: Default::default(), transition, out: Default::default(), failed: false }
    }

    /// Fills `out` with at least one frame unless the sequence is over.
    fn advance(&mut self) -> Result<(), MotionError> {
        while self.out.is_empty() {
            let Some(clip) = self.current.as_mut() else {
                self.out.extend(self.held.drain(..));
                return Ok(());
            };
            match clip.next().transpose()? {
                Some(frame) => {
                    // Hold back the most recent frames: they may be the start of a crossfade.
                    self.held.push_back(frame);
                    if self.held.len() > self.transition || self.clips.is_empty() {
                        self.out.extend(self.held.pop_front());
                    }
                }
                None => {
                    self.current = self.clips.pop_front();
                    let Some(next) = self.current.as_mut() else { continue };
                    let mut incoming = Vec::with_capacity(self.held.len());
                    while incoming.len() < self.held.len() {
                        match next.next().transpose()? {
                            Some(f) => incoming.push(f),
                            None => break,
                        }
                    }
                    // A next clip shorter than the transition shortens it.
                    let k = incoming.len();
                    while self.held.len() > k {
                        self.out.extend(self.held.pop_front());
                    }
                    for (j, (a, b)) in self.held.drain(..).zip(incoming).enumerate() {
                        self.out.push_back(crossfade(&a, &b, (j + 1) as f32 / (k + 1) as f32)?);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Iterator for Sequence<'_> {
    type Item = Result<RgbImage, MotionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.out.is_empty() && !self.failed {
            if let Err(e) = self.advance() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        self.out.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn solid(v: u8, n: usize) -> Frames<'static> {
        Box::new((0..n).map(move |i| Ok(RgbImage::from_pixel(2, 1, Rgb([v, i as u8, 0])))))
    }

    #[test]
    fn sequence_overlaps_clips_by_the_transition() {
        let frames: Vec<RgbImage> =
            Sequence::new(vec![solid(0, 5), solid(200, 4)], 3).collect::<Result<_, _>>().expect("frames");
        assert_eq!(frames.len(), sequence_length(&[5, 4], 3));
        assert_eq!(frames.len(), 6);
        // 2 plain frames of clip A, 3 blends at 1/4, 1/2, 3/4, then the rest of B.
        let reds: Vec<u8> = frames.iter().map(|f| f.get_pixel(0, 0).0[0]).collect();
        assert_eq!(reds, vec![0, 0, 50, 100, 150, 200]);
        // The middle blend mixes A's frame 3 with B's frame 1.
        assert_eq!(frames[3].get_pixel(0, 0).0[1], 2);
    }

    #[test]
    fn short_clips_shorten_the_transition() {
        let n = Sequence::new(vec![solid(0, 4), solid(90, 1), solid(10, 3)], 2).count();
        assert_eq!(n, sequence_length(&[4, 1, 3], 2));
        // B's single frame is used up fading in, so C starts without a fade.
        assert_eq!(n, 7);
    }
}
