//! overlay's configuration and base64 as a library, so that the fuzz targets
//! (fuzz/) and the binary (main.rs) parse them with the same code.

pub mod b64;
pub mod config;
