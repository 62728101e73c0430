//! host-local's parts as a library, so that the fuzz targets (fuzz/) and the
//! binary (main.rs) run the same configuration and lease-file code.

pub mod allocator;
pub mod config;
pub mod disk;
pub mod dns;
pub mod store;
