//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod compat;
pub mod daemon;
pub mod palette;
pub mod provision;
pub mod sse;
