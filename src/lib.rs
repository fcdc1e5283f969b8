//! reelbox: a private AI film studio for a home GPU box.
//!
//! Data flows one way: `api` → `store`/`scheduler` → worker → `kinds` → `pipelines` →
//! `engine`/`media` → `store`. Pipelines never touch HTTP; the API never touches ort.

pub mod api;
pub mod busy;
pub mod client;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod disk;
pub mod durable;
pub mod engine;
pub mod error_text;
pub mod gpu;
pub mod jobs;
pub mod kinds;
pub mod media;
pub mod models;
pub mod pipelines;
pub mod scheduler;
pub mod setup;
pub mod store;
pub mod sweeper;
pub mod text;
pub mod time;
pub mod tls;
pub mod tui;
