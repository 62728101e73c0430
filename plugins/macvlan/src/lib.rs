//! macvlan's configuration as a library, so that the fuzz targets (fuzz/)
//! and the binary (main.rs) parse it with the same code.

pub mod config;
