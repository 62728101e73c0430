//! [`FakeIpam`]: the IPAM delegate of the fake kernel, holding leases per
//! (container ID, ifname) as host-local does.

use std::cell::RefCell;
use std::rc::Rc;

use super::{Lease, World};
use crate::ipam::Ipam;
use crate::ipnet::IpNet;
use crate::skel::CmdArgs;
use crate::spec::{CniResult, IpConfig};
use crate::{CniError, Result};

/// The fake IPAM delegate (see [`FakeKernel::ipam`](super::FakeKernel::ipam)).
#[derive(Clone)]
pub struct FakeIpam {
    w: Rc<RefCell<World>>,
}

impl FakeIpam {
    pub(super) fn new(w: Rc<RefCell<World>>) -> FakeIpam {
        FakeIpam { w }
    }

    fn call(&self, op: &str, plugin: &str, args: &CmdArgs) -> Result<std::cell::RefMut<'_, World>> {
        let mut w = self.w.borrow_mut();
        let (cid, ifname) = (&args.container_id, &args.ifname);
        w.call(usize::MAX, op, format_args!("{plugin} {cid}/{ifname}"))
            .map_err(|e| CniError::internal(format!("{plugin}: {e}")))?;
        Ok(w)
    }
}

fn held(l: &Lease, args: &CmdArgs) -> bool {
    l.container_id == args.container_id && l.ifname == args.ifname
}

impl Ipam for FakeIpam {
    fn add(&mut self, plugin: &str, args: &CmdArgs) -> Result<CniResult> {
        let mut w = self.call("ipam_add", plugin, args)?;
        if w.leases.iter().any(|l| held(l, args)) {
            return Err(CniError::internal(format!(
                "{plugin}: {}/{} already has an address",
                args.container_id, args.ifname
            )));
        }
        let result = match &w.ipam_result {
            Some(r) => r.clone(),
            None => {
                // The lowest free 10.88.0.x, from .2 (.1 is the gateway).
                let taken = |x: u8| {
                    let ip: std::net::IpAddr = format!("10.88.0.{x}").parse().unwrap();
                    w.leases.iter().any(|l| l.result.ips.iter().any(|i| i.address.addr == ip))
                };
                let x = (2..=254)
                    .find(|x| !taken(*x))
                    .ok_or_else(|| CniError::internal("10.88.0.0/16 is full"))?;
                let ip = IpConfig {
                    address: IpNet { addr: format!("10.88.0.{x}").parse().unwrap(), prefix: 16 },
                    gateway: Some("10.88.0.1".parse().unwrap()),
                    interface: None,
                };
                CniResult { ips: vec![ip], ..CniResult::default() }
            }
        };
        let lease = Lease { container_id: args.container_id.clone(), ifname: args.ifname.clone(), result };
        w.leases.push(lease);
        Ok(w.leases.last().unwrap().result.clone())
    }

    fn del(&mut self, plugin: &str, args: &CmdArgs) -> Result<()> {
        let mut w = self.call("ipam_del", plugin, args)?;
        w.leases.retain(|l| !held(l, args));
        Ok(())
    }

    fn check(&mut self, plugin: &str, args: &CmdArgs) -> Result<()> {
        let w = self.call("ipam_check", plugin, args)?;
        if w.leases.iter().any(|l| held(l, args)) {
            Ok(())
        } else {
            Err(CniError::internal(format!("{plugin}: no lease for {}/{}", args.container_id, args.ifname)))
        }
    }
}
