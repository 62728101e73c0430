//! CNI specification types: configuration, results, versions.

pub mod conf;
pub mod result;
pub mod version;

pub use conf::{fold_keys, from_fields, valid_name, Attachment, NetConf, NetConfList};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
