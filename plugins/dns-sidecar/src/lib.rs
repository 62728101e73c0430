//! dns-sidecar: the CNI plugin and the per-network DNS server in one crate.
//! See `main.rs` for the design and README.md for the operator's view.

pub mod config;
pub mod forward;
pub mod plugin;
pub mod resolv;
pub mod server;
pub mod sock;
pub mod state;
pub mod table;
pub mod wire;
