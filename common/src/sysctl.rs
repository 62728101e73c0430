//! Sysctl reads and writes through /proc/sys. Network sysctls resolve in the
//! netns of the thread that opens the file, so call these inside `Netns::run`
//! for container settings.
//!
//! Keys are given as a slash path (`net/ipv4/conf/eth0/arp_notify`) because
//! interface names may contain dots.

use std::io;
use std::path::PathBuf;

fn path_of(key: &str) -> io::Result<PathBuf> {
    if key.is_empty() || key.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid sysctl key {key:?}")));
    }
    Ok(PathBuf::from("/proc/sys").join(key))
}

pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path_of(key)?, value)
        .map_err(|e| io::Error::new(e.kind(), format!("setting sysctl {key}={value}: {e}")))
}

pub fn read(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path_of(key)?)?.trim_end().to_string())
}

/// Convert a dotted key (`net.ipv4.ip_forward`) to the slash form.
pub fn dotted_to_path(key: &str) -> String {
    key.replace('.', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_proc_sys() {
        assert!(path_of("net/../../etc/passwd").is_err());
        assert!(path_of("").is_err());
        assert!(path_of("net//x").is_err());
        assert_eq!(path_of("net/ipv4/ip_forward").unwrap(), PathBuf::from("/proc/sys/net/ipv4/ip_forward"));
    }

    #[test]
    fn reads_a_real_sysctl() {
        assert!(read("net/ipv4/ip_forward").unwrap() == "0" || read("net/ipv4/ip_forward").unwrap() == "1");
    }
}
