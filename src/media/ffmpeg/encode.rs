//! Encoding: RGB frames piped into ffmpeg, muxed with sound and subtitles into an MP4.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread::JoinHandle;

use image::RgbImage;

use crate::busy::{self, Busy};

use super::{FfmpegError, H264Encoder, capture, ffmpeg_program, status_text};

/// A frame rate as a fraction, so NTSC rates (30000/1001) stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    pub num: u32,
    pub den: u32,
}

impl FrameRate {
    /// The nearest fraction to `fps`: whole numbers, the NTSC family (×1000/1001), else
    /// millihertz.
    pub fn from_f64(fps: f64) -> Self {
        let fps = if fps.is_finite() && fps > 0.0 { fps.min(1000.0) } else { 25.0 };
        let ntsc = fps * 1001.0 / 1000.0;
        if (fps - fps.round()).abs() < 1e-3 {
            Self { num: fps.round() as u32, den: 1 }
        } else if (ntsc - ntsc.round()).abs() < 1e-3 {
            Self { num: ntsc.round() as u32 * 1000, den: 1001 }
        } else {
            Self { num: (fps * 1000.0).round() as u32, den: 1000 }
        }
    }

    /// Frames per second.
    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den.max(1))
    }
}

impl From<u32> for FrameRate {
    fn from(fps: u32) -> Self {
        Self { num: fps, den: 1 }
    }
}

impl std::fmt::Display for FrameRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 { write!(f, "{}", self.num) } else { write!(f, "{}/{}", self.num, self.den) }
    }
}

/// What to encode: frame geometry, quality, and the streams to mux in.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoOptions {
    pub width: u32,
    pub height: u32,
    pub fps: FrameRate,
    pub encoder: H264Encoder,
    /// Constant quality (x264 CRF / NVENC CQ): lower is better; 18–23 is typical.
    pub quality: u8,
    /// A file whose first audio stream (if it has one) is encoded as AAC.
    pub audio: Option<PathBuf>,
    /// An ffmpeg audio filter the sound goes through first (a film's loudness, see
    /// [`super::loudness`]).
    pub audio_filter: Option<String>,
    /// The file's `title` tag, which players and file managers show.
    pub title: Option<String>,
    /// An SRT or WebVTT file added as a selectable `mov_text` subtitle stream.
    pub subtitles: Option<PathBuf>,
    /// ISO 639-2 language of the subtitle stream.
    pub subtitle_language: String,
    /// An SRT or WebVTT file drawn onto the frames (libass).
    pub burn_subtitles: Option<PathBuf>,
    /// End the file with the shortest stream (else the longest decides).
    pub shortest: bool,
    /// Seconds at which a keyframe must start (a film's scenes), besides the regular ones.
    pub keyframes_at: Vec<f64>,
    /// At most this many frames between keyframes (`None`: the encoder's default, 250 for
    /// x264, ten seconds at 25 fps: a player seeking there decodes from the last one).
    pub keyframe_interval: Option<u32>,
}

impl VideoOptions {
    /// libx264 at quality 20, no audio or subtitles.
    pub fn new(width: u32, height: u32, fps: impl Into<FrameRate>) -> Self {
        Self {
            width,
            height,
            fps: fps.into(),
            encoder: H264Encoder::Libx264,
            quality: 20,
            audio: None,
            audio_filter: None,
            title: None,
            subtitles: None,
            subtitle_language: "eng".into(),
            burn_subtitles: None,
            shortest: false,
            keyframes_at: Vec::new(),
            keyframe_interval: None,
        }
    }
}

/// Escapes a path for use as a filter option value inside a filtergraph (two levels).
fn filter_path(path: &Path) -> String {
    let mut level1 = String::new();
    for c in path.display().to_string().chars() {
        if matches!(c, '\\' | '\'' | ':') {
            level1.push('\\');
        }
        level1.push(c);
    }
    let mut level2 = String::new();
    for c in level1.chars() {
        if matches!(c, '\\' | '\'' | '[' | ']' | ',' | ';') {
            level2.push('\\');
        }
        level2.push(c);
    }
    level2
}

/// The full ffmpeg argument list for `opts` writing `output`.
pub fn encode_args(opts: &VideoOptions, output: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"].map(String::from).to_vec();
    let size = format!("{}x{}", opts.width, opts.height);
    a.extend(["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", &size].map(String::from));
    a.extend(["-framerate".to_string(), opts.fps.to_string(), "-i".into(), "pipe:0".into()]);
    let mut next_input = 1;
    let audio_input = opts.audio.as_ref().map(|p| {
        a.extend(super::LOCAL_INPUT.map(String::from));
        a.extend(["-i".to_string(), p.display().to_string()]);
        next_input += 1;
        next_input - 1
    });
    let sub_input = opts.subtitles.as_ref().map(|p| {
        a.extend(super::LOCAL_INPUT.map(String::from));
        a.extend(["-i".to_string(), p.display().to_string()]);
        next_input += 1;
        next_input - 1
    });
    a.extend(["-map", "0:v:0"].map(String::from));
    if let Some(i) = audio_input {
        // `?`: an audio source without an audio stream (a silent video) is not an error.
        a.extend(["-map".to_string(), format!("{i}:a:0?")]);
    }
    if let Some(i) = sub_input {
        a.extend(["-map".to_string(), format!("{i}:s:0")]);
    }
    let mut filters = Vec::new();
    if opts.width % 2 == 1 || opts.height % 2 == 1 {
        // yuv420p needs even sizes; pad one black row/column rather than lose pixels.
        filters.push("pad=ceil(iw/2)*2:ceil(ih/2)*2".to_string());
    }
    if let Some(p) = &opts.burn_subtitles {
        filters.push(format!("subtitles=filename={}", filter_path(p)));
    }
    if !filters.is_empty() {
        a.extend(["-vf".to_string(), filters.join(",")]);
    }
    let q = opts.quality.to_string();
    match opts.encoder {
        H264Encoder::Libx264 => a.extend(["-c:v", "libx264", "-preset", "medium", "-crf", &q].map(String::from)),
        H264Encoder::Nvenc => a.extend(
            ["-c:v", opts.encoder.codec(), "-preset", "p5", "-rc", "vbr", "-cq", &q, "-b:v", "0"].map(String::from),
        ),
    }
    if let Some(g) = opts.keyframe_interval {
        a.extend(["-g".to_string(), g.max(1).to_string()]);
    }
    if !opts.keyframes_at.is_empty() {
        let times: Vec<String> = opts.keyframes_at.iter().map(|t| format!("{:.3}", t.max(0.0))).collect();
        a.extend(["-force_key_frames".to_string(), times.join(",")]);
    }
    a.extend(["-pix_fmt", "yuv420p"].map(String::from));
    if audio_input.is_some() {
        if let Some(f) = &opts.audio_filter {
            a.extend(["-af".to_string(), f.clone()]);
        }
        a.extend(["-c:a", "aac", "-b:a", "192k"].map(String::from));
    }
    if let Some(title) = &opts.title {
        a.extend(["-metadata".to_string(), format!("title={title}")]);
    }
    if sub_input.is_some() {
        a.extend(["-c:s".to_string(), "mov_text".into()]);
        a.extend(["-metadata:s:s:0".to_string(), format!("language={}", opts.subtitle_language)]);
    }
    if opts.shortest {
        a.push("-shortest".into());
    }
    a.extend(["-movflags", "+faststart", "-f", "mp4"].map(String::from));
    a.push(output.display().to_string());
    a
}

/// An MP4 being written: push RGB frames, then `finish`. Dropping it unfinished stops
/// ffmpeg and leaves no promise about the file.
pub struct VideoWriter {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    output: PathBuf,
    width: u32,
    height: u32,
    frames: u64,
    encoder: H264Encoder,
}

/// What a finished video holds.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenVideo {
    pub path: PathBuf,
    pub frames: u64,
    pub encoder: H264Encoder,
}

impl VideoWriter {
    /// Starts ffmpeg writing `output` (an `.mp4`).
    pub fn create(output: &Path, opts: &VideoOptions) -> Result<Self, FfmpegError> {
        if opts.width == 0 || opts.height == 0 || opts.fps.num == 0 || opts.fps.den == 0 {
            return Err(FfmpegError::Options(format!(
                "size {}x{} at {} fps must be positive",
                opts.width, opts.height, opts.fps
            )));
        }
        for (what, file) in
            [("audio", &opts.audio), ("subtitles", &opts.subtitles), ("burn_subtitles", &opts.burn_subtitles)]
        {
            if let Some(f) = file.as_ref().filter(|f| !f.is_file()) {
                return Err(FfmpegError::Options(format!("{what} file {} does not exist", f.display())));
            }
        }
        let program = ffmpeg_program();
        let args = encode_args(opts, output);
        tracing::debug!(?program, args = args.join(" "), "starting ffmpeg encoder");
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FfmpegError::Spawn { program: program.display().to_string(), source })?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().map(capture);
        Ok(Self {
            child,
            stdin,
            stderr,
            output: output.to_path_buf(),
            width: opts.width,
            height: opts.height,
            frames: 0,
            encoder: opts.encoder,
        })
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Appends one frame; it must have the video's size.
    pub fn push(&mut self, frame: &RgbImage) -> Result<(), FfmpegError> {
        if frame.dimensions() != (self.width, self.height) {
            return Err(FfmpegError::FrameSize {
                index: self.frames,
                got_w: frame.width(),
                got_h: frame.height(),
                width: self.width,
                height: self.height,
            });
        }
        let written = match self.stdin.as_mut() {
            Some(stdin) => busy::timed(Busy::Ffmpeg, || stdin.write_all(frame.as_raw())),
            None => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "encoder input closed")),
        };
        if let Err(e) = written {
            // ffmpeg quit early; its stderr says why, our broken pipe does not.
            self.stdin = None;
            let status = self.child.wait().ok();
            let mut stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
            if stderr.is_empty() {
                stderr = e.to_string();
            }
            return Err(FfmpegError::Encode { output: self.output.clone(), status: status_text(status), stderr });
        }
        self.frames += 1;
        Ok(())
    }

    /// Closes the input, waits for ffmpeg and checks it succeeded.
    pub fn finish(mut self) -> Result<WrittenVideo, FfmpegError> {
        drop(self.stdin.take());
        let status = busy::timed(Busy::Ffmpeg, || self.child.wait()).ok();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.is_some_and(|s| s.success()) {
            return Err(FfmpegError::Encode { output: self.output.clone(), status: status_text(status), stderr });
        }
        if !stderr.is_empty() {
            tracing::debug!(output = %self.output.display(), %stderr, "ffmpeg finished with messages");
        }
        Ok(WrittenVideo { path: self.output.clone(), frames: self.frames, encoder: self.encoder })
    }
}

impl Drop for VideoWriter {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            // Unfinished (error or cancel): stop ffmpeg instead of letting it encode a stub.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Encodes `frames` (with `opts`' audio and subtitles) into `output` in one call.
pub fn write_video<'a>(
    output: &Path,
    opts: &VideoOptions,
    frames: impl IntoIterator<Item = &'a RgbImage>,
) -> Result<WrittenVideo, FfmpegError> {
    let mut writer = VideoWriter::create(output, opts)?;
    for frame in frames {
        writer.push(frame)?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_paths_are_escaped_for_both_levels() {
        assert_eq!(filter_path(Path::new("/tmp/a b/subs.srt")), "/tmp/a b/subs.srt");
        assert_eq!(filter_path(Path::new("/t/x:y.srt")), "/t/x\\\\:y.srt");
        assert_eq!(filter_path(Path::new("/t/it's,[1].srt")), "/t/it\\\\\\'s\\,\\[1\\].srt");
    }

    #[test]
    fn frame_rates_stay_exact_fractions() {
        assert_eq!(FrameRate::from_f64(25.0).to_string(), "25");
        assert_eq!(FrameRate::from_f64(30000.0 / 1001.0).to_string(), "30000/1001");
        assert_eq!(FrameRate::from_f64(12.5).to_string(), "12500/1000");
    }

    #[test]
    fn args_map_audio_and_subtitles_and_pad_odd_sizes() {
        let mut o = VideoOptions::new(101, 50, 25);
        o.audio = Some("a.wav".into());
        o.subtitles = Some("s.srt".into());
        let args = encode_args(&o, Path::new("out.mp4")).join(" ");
        assert!(args.contains("-map 0:v:0 -map 1:a:0? -map 2:s:0"), "{args}");
        assert!(args.contains("-vf pad=ceil(iw/2)*2:ceil(ih/2)*2"), "{args}");
        assert!(args.contains("-c:s mov_text"), "{args}");
        assert!(args.ends_with("-movflags +faststart -f mp4 out.mp4"), "{args}");
        assert!(args.contains("-protocol_whitelist file,pipe -i a.wav"), "file inputs stay local: {args}");
    }

    #[test]
    fn an_audio_filter_and_a_title_go_into_the_mux() {
        let mut o = VideoOptions::new(64, 64, 25);
        o.audio = Some("a.wav".into());
        o.audio_filter = Some("volume=2dB".into());
        o.title = Some("A red circle".into());
        let args = encode_args(&o, Path::new("out.mp4"));
        assert!(args.windows(2).any(|w| w == ["-af", "volume=2dB"]), "{args:?}");
        assert!(args.windows(2).any(|w| w == ["-metadata", "title=A red circle"]), "{args:?}");
    }
}
