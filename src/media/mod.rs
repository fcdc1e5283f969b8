//! Media in and out: audio decoding, resampling and mixing, the Wav2Lip mel spectrogram,
//! subtitle files, and video through the system ffmpeg (encode, decode, probe).

pub mod audio;
pub mod ffmpeg;
pub mod mel;
pub mod mix;
pub mod probe;
pub mod subtitles;
pub mod visual;

pub use audio::{Audio, AudioError, decode_bytes, decode_file, write_wav};
pub use ffmpeg::{
    FfmpegError, FrameRate, H264Encoder, VideoInfo, VideoOptions, VideoReader, VideoWriter, WrittenVideo,
};
pub use mix::{Ducking, mix_with_ducking};
pub use probe::{MediaInfo, StreamInfo, probe};
pub use subtitles::{Cue, to_srt, to_webvtt};
