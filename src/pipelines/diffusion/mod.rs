//! Stable Diffusion through ONNX Runtime: the optimum/diffusers ONNX layout, CLIP
//! tokenizer, pure-Rust schedulers and the text-to-image / image-to-image pipeline.

pub mod noise;
pub mod schedulers;
pub mod tokenizer;
