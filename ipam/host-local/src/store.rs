//! What the allocator needs from lease storage, and what a lease says.
//!
//! A lease is one address held by one attachment. On disk its content is
//! `<containerID>\r\n<ifname>`; files written by very old reference versions
//! hold only the container ID, and those still count as the container's.

use std::net::IpAddr;

use common::Result;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub ip: IpAddr,
    pub container_id: String,
    /// None for an old lease that names only the container.
    pub ifname: Option<String>,
}

impl Lease {
    /// Read a lease's content as the reference does: whitespace-trimmed,
    /// `\r\n` between the two fields.
    pub fn parse(ip: IpAddr, content: &str) -> Lease {
        let content = content.trim();
        let (id, ifname) = match content.split_once("\r\n") {
            Some((id, ifname)) => (id, Some(ifname.to_string())),
            None => (content, None),
        };
        Lease { ip, container_id: id.to_string(), ifname }
    }

    /// Held by exactly this attachment.
    pub fn is(&self, id: &str, ifname: &str) -> bool {
        self.container_id == id.trim() && self.ifname.as_deref() == Some(ifname)
    }

    /// Whose it is, for a message: the container (its ID shortened to 12
    /// characters, as `docker ps` shows it) and the interface.
    pub fn owner(&self) -> String {
        let id = match self.container_id.char_indices().nth(12) {
            Some((i, _)) => format!("{}…", &self.container_id[..i]),
            None => self.container_id.clone(),
        };
        match &self.ifname {
            Some(ifname) => format!("container {id} ({ifname})"),
            None => format!("container {id}"),
        }
    }

    /// An old lease of this container (no interface recorded).
    pub fn is_legacy_of(&self, id: &str) -> bool {
        self.ifname.is_none() && self.container_id == id.trim()
    }
}

/// The bytes of a lease file, exactly as the reference writes them.
pub fn lease_content(id: &str, ifname: &str) -> String {
    format!("{}\r\n{ifname}", id.trim())
}

/// Lease storage. Callers hold whatever lock the store needs for the whole
/// operation, so a read-then-reserve sequence is consistent.
pub trait Store {
    /// Take `ip` for (id, ifname) unless somebody holds it (false then), and
    /// remember it as the round-robin cursor of range set `set`.
    fn reserve(&mut self, ip: IpAddr, id: &str, ifname: &str, set: usize) -> Result<bool>;
    /// The cursor of range set `set`; None when unknown or unreadable (round
    /// robin then restarts at the beginning, as in the reference).
    fn last_reserved(&self, set: usize) -> Option<IpAddr>;
    fn leases(&self) -> Result<Vec<Lease>>;
    /// Who holds `ip`, for a message; None when no lease of it can be read.
    fn holder(&self, ip: IpAddr) -> Option<Lease> {
        self.leases().ok()?.into_iter().find(|l| l.ip == ip)
    }
    /// The leases of (id, ifname), including old ones naming only the
    /// container: exactly, whoever wrote them (DEL, CHECK).
    fn leases_of(&self, id: &str, ifname: &str) -> Result<Vec<Lease>> {
        Ok(self.leases()?.into_iter().filter(|l| l.is(id, ifname) || l.is_legacy_of(id)).collect())
    }
    /// The same for ADD's duplicate check, where a store may answer from what
    /// it knows without reading every lease (see DiskStore's index); `sets`
    /// is how many range sets the configuration has.
    fn known_leases_of(&mut self, id: &str, ifname: &str, _sets: usize) -> Result<Vec<Lease>> {
        self.leases_of(id, ifname)
    }
    /// Drop the lease of `ip`; already gone is fine.
    fn release(&mut self, ip: IpAddr) -> Result<()>;
    /// The leases of `ips` were released (bookkeeping only).
    fn forget(&mut self, _ips: &[IpAddr]) {}
}

/// An in-memory store for allocator tests.
#[cfg(test)]
#[derive(Default, Debug)]
pub struct MemStore {
    pub files: std::collections::BTreeMap<IpAddr, String>,
    pub cursors: std::collections::HashMap<usize, IpAddr>,
    /// Make `release` of this address fail, to test error paths.
    pub fail_release: Option<IpAddr>,
}

#[cfg(test)]
impl Store for MemStore {
    fn reserve(&mut self, ip: IpAddr, id: &str, ifname: &str, set: usize) -> Result<bool> {
        if self.files.contains_key(&ip) {
            return Ok(false);
        }
        self.files.insert(ip, lease_content(id, ifname));
        self.cursors.insert(set, ip);
        Ok(true)
    }
    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        self.cursors.get(&set).copied()
    }
    fn leases(&self) -> Result<Vec<Lease>> {
        Ok(self.files.iter().map(|(ip, c)| Lease::parse(*ip, c)).collect())
    }
    fn release(&mut self, ip: IpAddr) -> Result<()> {
        if self.fail_release == Some(ip) {
            return Err(common::CniError::io(format!("cannot remove {ip}")));
        }
        self.files.remove(&ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_content_round_trips_and_old_files_are_understood() {
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(lease_content(" c1 ", "eth0"), "c1\r\neth0");
        let l = Lease::parse(ip, "c1\r\neth0");
        assert!(l.is("c1", "eth0") && !l.is("c1", "eth1") && !l.is("c2", "eth0") && !l.is_legacy_of("c1"));
        let old = Lease::parse(ip, "c1\n");
        assert_eq!(old.ifname, None);
        assert!(old.is_legacy_of("c1") && !old.is("c1", "eth0"));
    }
}
