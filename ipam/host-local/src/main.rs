#![cfg_attr(not(test), no_main)]
//! host-local: an IPAM plugin that hands out addresses from configured ranges
//! and records each lease as a file under `<dataDir>/<network>/`, in the same
//! layout as the reference plugin so either can take over from the other.
//!
//! Every verb works under the network directory's flock, held from the first
//! read to the last write, so parallel ADDs (ours or the reference's) never
//! hand out one address twice.

use common::skel::{CmdArgs, Plugin};
use common::spec::{version, CniResult, Dns};
use common::{CniError, Result};

use host_local::disk::{self, DiskStore};
use host_local::{allocator, config, dns};

struct HostLocal;

impl Plugin for HostLocal {
    fn about(&self) -> String {
        format!("CNI host-local IPAM plugin {}", env!("CARGO_PKG_VERSION"))
    }

    /// The reference loads CNI_ARGS into `IPAMEnvArgs{IP}`: other keys need IgnoreUnknown.
    fn known_args(&self) -> &'static [&'static str] {
        &["IP"]
    }

    /// One address per range set, plus the configured routes and DNS.
    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let cfg = config::load(&a.conf, &a.args)?;
        // Read resolv.conf first: a bad path must fail before anything is taken.
        let dns = match &cfg.resolv_conf {
            Some(path) => dns::read_resolv_conf(path)?,
            None => Dns::default(),
        };
        let mut store = DiskStore::create(&cfg.data_dir.join(&cfg.name))?;
        let ips = allocator::allocate(&mut store, &cfg.ranges, &cfg.requested, &a.container_id, &a.ifname)?;
        // Built in the 1.1.0 shape; skel converts to the config's cniVersion.
        Ok(CniResult {
            cni_version: version::LATEST.into(),
            interfaces: Vec::new(),
            ips,
            routes: cfg.routes,
            dns,
        })
    }

    /// Release whatever (container, ifname) holds. Nothing held, or no
    /// directory at all, is success: DEL must be repeatable. Only the data dir
    /// is read from the config — ranges may have come from the runtime.
    fn del(&self, a: &CmdArgs) -> Result<()> {
        if a.conf.name_as_dir("host-local").is_err() {
            return Ok(()); // no ADD could have stored anything under this name
        }
        let dir = config::network_dir(&a.conf)?;
        let Some(mut store) = DiskStore::open_existing(&dir)? else { return Ok(()) };
        allocator::release(&mut store, &a.container_id, &a.ifname)?;
        Ok(())
    }

    /// The attachment must still hold at least one lease.
    fn check(&self, a: &CmdArgs) -> Result<()> {
        let dir = config::network_dir(&a.conf)?;
        let held = match DiskStore::open_existing(&dir)? {
            Some(store) => allocator::holds_any(&store, &a.container_id, &a.ifname)?,
            None => false,
        };
        if held {
            Ok(())
        } else {
            Err(CniError::internal(format!(
                "host-local: no address is allocated to container {} interface {} in {}",
                a.container_id,
                a.ifname,
                dir.display()
            )))
        }
    }

    /// Release every lease whose attachment the runtime no longer knows —
    /// the cure for addresses leaked by crashes and reboots.
    fn gc(&self, a: &CmdArgs) -> Result<()> {
        let dir = config::network_dir(&a.conf)?;
        let valid = a.conf.valid_attachments()?;
        let Some(mut store) = DiskStore::open_existing(&dir)? else { return Ok(()) };
        allocator::gc(&mut store, &valid).map(drop).map_err(|e| e.context("host-local GC"))
    }

    /// Ready when leases can be written.
    fn status(&self, a: &CmdArgs) -> Result<()> {
        let dir = config::network_dir(&a.conf)?;
        disk::check_writable(&dir).map_err(|e| {
            CniError::not_available(format!("host-local cannot store leases in {}: {e}", dir.display()))
        })
    }
}

common::plugin_main!(HostLocal);
