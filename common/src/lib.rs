//! Shared mechanisms of the CNI plugin suite. Every kernel touch lives here,
//! one module per subsystem, so a fix lands once.

pub mod args;
pub mod error;
pub mod ipam;
pub mod ipnet;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod skel;
pub mod spec;
pub mod sysctl;

pub use error::{CniError, Context, Result};
