//! tuning's configuration and sysctl allowlist as a library, so that the
//! fuzz targets (fuzz/) and the binary (main.rs) run the same code.

pub mod allowlist;
pub mod config;
