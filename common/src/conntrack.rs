//! conntrack
