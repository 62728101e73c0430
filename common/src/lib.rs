//! Shared mechanisms of the CNI plugin suite. Every kernel touch lives here,
//! one module per subsystem, so a fix lands once.

pub mod conntrack;
pub mod error;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod sysctl;

pub use error::{CniError, Context, Result};
