//! Media in and out: images, audio decoding and resampling, mel spectrograms, ffmpeg.

pub mod probe;
