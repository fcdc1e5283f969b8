//! The integration tests, as one test binary. Each module was its own test crate once:
//! 44 binaries of ~0.5 GB each (every one linking reelbox and its dependencies) filled
//! CI's disk and spent minutes linking. Tests that change the process's environment
//! (`runtime_missing.rs` unsets `ORT_DYLIB_PATH`, `pull_pip.rs` points pip at local
//! wheels) stay binaries of their own, since every test here shares one process.
//! Run one module with `cargo test --test it MODULE::`.

#[path = "../common/mod.rs"]
mod common;

mod cluster_support;

mod api_conventions;
mod api_fuzz;
mod api_models;
mod api_wire;
mod architecture;
mod auth;
mod byo_ckpt;
mod byo_diffusion;
mod byo_import;
mod byo_lora;
mod byo_mistakes;
mod byo_onnx;
mod byo_sdxl;
mod cancel_reasons;
mod cancel_running;
mod catalog;
mod cli;
mod cli_box;
mod cluster;
mod cluster_box_models;
mod cluster_creds;
mod cluster_grow;
mod cluster_permissions;
mod cluster_render;
mod cluster_restarts;
mod cluster_security;
mod cluster_telemetry;
mod cluster_waiting;
mod comfy_compat;
mod comfy_hires;
mod comfy_scale;
mod comfy_upscale;
mod cpu_memory;
mod crash;
mod defaults;
mod demo_models;
mod diffusion_image_kind;
mod diffusion_reference;
mod disk_space;
mod diskfull;
mod durable_core;
mod engine;
mod face_detect;
mod family_keys;
mod family_profiles;
mod frozen_db;
mod gpu_check;
mod gpu_placement;
mod hf_hub;
mod image_refine;
mod job_inputs;
mod media;
mod media_cli;
mod model_kinds;
mod models;
mod openai_compat;
mod openai_rejoin;
mod ops_cli;
mod ops_metrics;
mod origin;
mod phone_pictures;
mod pipelines;
mod piper_parity;
mod piper_voices;
mod presets;
mod profile_model;
mod profile_stage_models;
mod quotas;
mod refusal_shapes;
mod render;
mod render_cli;
mod render_languages;
mod render_scripts;
mod render_subtitles;
mod render_views;
mod render_voice;
mod retention;
mod service_start;
mod setup;
mod setup_offline;
mod speech_kind;
mod systemd;
mod top_client;
mod top_daily;
mod top_snapshots;
mod top_tmux;
mod tts;
mod upload_dedupe;
mod uploads;
mod web_a11y;
mod web_i18n;
mod web_photo;
mod web_picture_pass;
mod web_session;
mod web_studio;
mod web_studio_forms;
