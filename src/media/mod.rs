//! Media in and out: images, audio decoding and resampling, mel spectrograms, ffmpeg.
//!
//! `audio` decodes (symphonia), resamples (rubato) and writes WAV; `mix` lays narration
//! over a ducked music bed; `mel` is Wav2Lip's spectrogram; `subtitles` writes SRT and
//! WebVTT, its lines broken where `lines` says a line may end (a long word between the
//! syllables `hyphenation` finds in the film's language); `ffmpeg` encodes and decodes video through the system binary and `ffprobe`
//! describes media files; `picture` reads a user's picture upright (EXIF orientation) and
//! refuses formats it cannot read saying what to send; `visual` opens an input that may be
//! an image or a video; `resize` resamples a picture without a model (ComfyUI's "Upscale
//! Image" methods);
//! `probe` checks uploads at the API edge; `diff` measures how far two outputs are apart;
//! `morph` grows and shrinks a grey picture (an inpainting mask).

pub mod audio;
pub mod diff;
pub mod ffmpeg;
pub mod ffprobe;
pub mod hyphenation;
pub mod lines;
pub mod mel;
pub mod mix;
pub mod morph;
pub mod picture;
pub mod probe;
pub mod resize;
pub mod subtitles;
pub mod visual;

pub use audio::{Audio, AudioError, decode_bytes, decode_file, write_wav};
pub use ffmpeg::{
    FfmpegError, FrameRate, H264Encoder, VideoInfo, VideoOptions, VideoReader, VideoWriter, WrittenVideo,
};
pub use ffprobe::{MediaInfo, StreamInfo};
pub use mix::{Ducking, mix_with_ducking};
pub use subtitles::{Cue, to_srt, to_webvtt};
