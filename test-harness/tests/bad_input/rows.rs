//! The bad-input table: how each plugin is run (its profile) and its rows.
//!
//! A new plugin adds, here and only here: a `Profile` in [`profiles`]
//! (baseline request, the setup it needs, its fields and their types, a
//! neighbour attachment) and its own rows in [`rows`]; the rows every
//! plugin gets (environment, stdin, cniVersion, network name, wrong JSON
//! types of each field) are generated from the profile by [`generic`].
//! docs/bad-input.md shows this table; `BAD_INPUT_WRITE_DOCS=1` rewrites it.

// A table reads best as one push per row.
#![allow(clippy::vec_init_then_push)]

use serde_json::{json, Value};

use super::table::{Case, Expect, Fx, Neighbour, Profile, Row, Ty, Verb};
use test_harness::{veth, wait_until};
use Verb::*;

const SUBNET: &str = "10.99.0.0/24";
const HL_BOOKKEEPING: &[&str] = &["lock", "last_reserved_ip.", "cnirs-index"];

/// A bridge-like prevResult: the host-side `gw0` (holding the gateway) and
/// the container's interface.
pub fn prev(fx: &Fx, ifname: &str, ip: &str) -> Value {
    json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "gw0"}, {"name": ifname, "sandbox": fx.ctr.path_str()}],
        "ips": [{"address": ip, "gateway": "10.99.0.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.99.0.1"}]})
}

fn ipam(fx: &Fx) -> Value {
    json!({"type": "host-local", "subnet": SUBNET, "dataDir": fx.hl()})
}

fn setup_none(_: &Fx) {}

/// A container whose `lo` was up once (it keeps 127.0.0.1 and ::1 when down).
fn setup_lo(fx: &Fx) {
    fx.ctr.ip(&["link", "set", "lo", "up"]).unwrap();
    fx.ctr.ip(&["link", "set", "lo", "down"]).unwrap();
}

/// A host that forwards (as every container host does): bridge's
/// isGateway turns it on and, like the reference, never back off.
fn setup_forwarding(fx: &Fx) {
    fx.host.set_sysctl("net.ipv4.ip_forward", "1").unwrap();
    fx.host.set_sysctl("net.ipv6.conf.all.forwarding", "1").unwrap();
}

fn setup_master(fx: &Fx) {
    fx.host.ip(&["link", "add", "m0", "type", "veth", "peer", "name", "m0p"]).unwrap();
    fx.host.ip(&["link", "set", "m0", "up"]).unwrap();
    fx.host.ip(&["link", "set", "m0p", "up"]).unwrap();
}

/// Two host devices (veth ends, down, as DEL returns a device): `hd0` for
/// the rows, `hd1` for the neighbour.
fn setup_host_devices(fx: &Fx) {
    for d in ["hd0", "hd1"] {
        fx.host.ip(&["link", "add", d, "type", "veth", "peer", "name", &format!("{d}p")]).unwrap();
    }
}

/// The gateway `gw0` (10.99.0.1) on the host, and the container's `eth0`
/// and `eth1`, as bridge would have left them.
fn setup_chained(fx: &Fx) {
    fx.host.ip(&["link", "add", "gw0", "type", "veth", "peer", "name", "gw0p"]).unwrap();
    fx.host.ip(&["addr", "add", "10.99.0.1/24", "dev", "gw0"]).unwrap();
    fx.host.ip(&["addr", "add", "10.99.1.1/24", "dev", "gw0"]).unwrap();
    fx.host.ip(&["link", "set", "gw0", "up"]).unwrap();
    fx.host.ip(&["link", "set", "gw0p", "up"]).unwrap();
    for (c, h) in [("eth0", "vh0"), ("eth1", "vh1")] {
        veth(&fx.ctr, c, &fx.host, h).unwrap();
    }
}

/// Another network needs nothing else (its own state is found by name).
fn same_network_setup(_: &mut Case, _: &Fx) {}

/// ipvlan: the kernel refuses an address another ipvlan of the master has,
/// and a second network's host-local starts over where the neighbour is.
fn other_range(c: &mut Case, fx: &Fx) {
    c.conf["ipam"] = json!({"type": "host-local", "dataDir": fx.hl(),
                            "ranges": [[{"subnet": SUBNET, "rangeStart": "10.99.0.100"}]]});
}

/// dns-sidecar: a second network needs a gateway of its own (two servers
/// cannot listen on one address): 10.99.1.1, the container at 10.99.1.3.
fn second_gateway(c: &mut Case, fx: &Fx) {
    let mut p = prev(fx, "eth0", "10.99.1.3/24");
    p["ips"][0]["gateway"] = json!("10.99.1.1");
    c.conf["prevResult"] = p;
}

/// overlay: an underlay address (192.0.2.1 on `u0`) and a one-member etcd
/// on the host netns' own 127.0.0.1, which no other world can reach.
fn setup_overlay(fx: &Fx) {
    fx.host.ip(&["link", "add", "u0", "type", "veth", "peer", "name", "u0p"]).unwrap();
    fx.host.ip(&["addr", "add", "192.0.2.1/24", "dev", "u0"]).unwrap();
    fx.host.ip(&["link", "set", "u0", "up"]).unwrap();
    fx.host.ip(&["link", "set", "u0p", "up"]).unwrap();
    let log = std::fs::File::create(fx.private("etcd.log")).unwrap();
    let (mut cmd, _guard) = fx.host.command("etcd").unwrap();
    cmd.args(["--name", "n1", "--data-dir"])
        .arg(fx.private("etcd"))
        .args([
            "--listen-client-urls",
            "http://127.0.0.1:2379",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
        ])
        .args([
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
        ])
        .args(["--initial-cluster", "n1=http://127.0.0.1:2380", "--logger", "zap", "--log-outputs", "stderr"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    let child = cmd.spawn().expect("etcd (scripts/deps installs etcd-server)");
    fx.services.lock().unwrap().push(child);
    let healthy = wait_until(std::time::Duration::from_secs(30), || {
        fx.host
            .run(|| test_harness::nodes::http_get(([127, 0, 0, 1], 2379).into(), "/health"))
            .ok()
            .and_then(|r| r.ok())
            .is_some_and(|b| b.contains("\"health\":\"true\""))
    });
    assert!(
        healthy,
        "etcd did not start: {}",
        std::fs::read_to_string(fx.private("etcd.log")).unwrap_or_default()
    );
}

/// overlay: another network is another VNI and subnet (one network per VNI).
fn other_vni(c: &mut Case, _: &Fx) {
    c.conf["vni"] = json!(4243);
    c.conf["subnet"] = json!("10.97.0.0/24");
}

/// sbr and vrf: the container's `eth0` (10.99.0.3) and `eth1` (10.99.1.2)
/// with their addresses and the default route through eth0, as a main
/// plugin would have left them.
fn setup_addressed(fx: &Fx) {
    setup_chained(fx);
    fx.ctr.ip(&["addr", "add", "10.99.0.3/24", "dev", "eth0"]).unwrap();
    fx.ctr.ip(&["addr", "add", "10.99.1.2/24", "dev", "eth1"]).unwrap();
    fx.ctr.ip(&["route", "add", "default", "via", "10.99.0.1", "dev", "eth0"]).unwrap();
}

/// The prevResult of `eth1` at 10.99.1.2, its gateway 10.99.1.1.
fn prev_eth1(fx: &Fx) -> Value {
    let mut p = prev(fx, "eth1", "10.99.1.2/24");
    p["ips"][0]["gateway"] = json!("10.99.1.1");
    p["routes"][0]["gw"] = json!("10.99.1.1");
    p
}

fn no_caps(_: &Fx) -> Value {
    json!({})
}

pub fn profiles() -> Vec<Profile> {
    let mut v = vec![
        Profile {
            name: "loopback",
            chain: false,
            setup: setup_lo,
            baseline: |_| json!({"cniVersion": "1.0.0", "name": "net1", "type": "loopback"}),
            cap_args: no_caps,
            ifname: "lo",
            neighbour: None,
            fields: &[],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
        Profile {
            name: "host-local",
            chain: false,
            setup: setup_none,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge",
                    "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "dataDir": fx.hl()}})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |_, _| {} }),
            fields: &[
                ("ipam", Ty::Map),
                ("ipam.ranges", Ty::List),
                ("ipam.routes", Ty::List),
                ("ipam.dataDir", Ty::Str),
                ("ipam.resolvConf", Ty::Str),
                ("ipam.subnet", Ty::Str),
                ("ipam.rangeStart", Ty::Str),
                ("ipam.rangeEnd", Ty::Str),
                ("ipam.gateway", Ty::Str),
            ],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
        Profile {
            name: "bridge",
            chain: false,
            setup: setup_forwarding,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "bridge": "cnibr0",
                    "isGateway": true, "ipMasq": true, "macspoofchk": true, "ipam": ipam(fx)})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |_, _| {} }),
            fields: &[
                ("bridge", Ty::Str),
                ("isGateway", Ty::Bool),
                ("isDefaultGateway", Ty::Bool),
                ("forceAddress", Ty::Bool),
                ("ipMasq", Ty::Bool),
                ("ipMasqBackend", Ty::Str),
                ("mtu", Ty::Int),
                ("hairpinMode", Ty::Bool),
                ("promiscMode", Ty::Bool),
                ("vlan", Ty::Int),
                ("vlanTrunk", Ty::List),
                ("preserveDefaultVlan", Ty::Bool),
                ("enabledad", Ty::Bool),
                ("macspoofchk", Ty::Bool),
                ("disableContainerInterface", Ty::Bool),
                ("portIsolation", Ty::Bool),
                ("ipam", Ty::Map),
                ("dns", Ty::Map),
            ],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
        Profile {
            name: "macvlan",
            chain: false,
            setup: setup_master,
            baseline: |fx| json!({"cniVersion": "1.0.0", "name": "net1", "type": "macvlan", "master": "m0", "ipam": ipam(fx)}),
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |_, _| {} }),
            fields: &[
                ("master", Ty::Str),
                ("mode", Ty::Str),
                ("mtu", Ty::Int),
                ("mac", Ty::Str),
                ("linkInContainer", Ty::Bool),
                ("bcqueuelen", Ty::Int),
                ("ipam", Ty::Map),
            ],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
        Profile {
            name: "host-device",
            chain: false,
            setup: setup_host_devices,
            baseline: |fx| json!({"cniVersion": "1.0.0", "name": "net1", "type": "host-device", "device": "hd0", "ipam": ipam(fx)}),
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |c, _| c.conf["device"] = json!("hd1") }),
            fields: &[
                ("device", Ty::Str),
                ("hwaddr", Ty::Str),
                ("kernelpath", Ty::Str),
                ("pciBusID", Ty::Str),
                ("ipam", Ty::Map),
            ],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
        Profile {
            name: "tap",
            chain: false,
            setup: setup_none,
            baseline: |fx| json!({"cniVersion": "1.0.0", "name": "net1", "type": "tap", "ipam": ipam(fx)}),
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |_, _| {} }),
            fields: &[
                ("multiQueue", Ty::Bool),
                ("mtu", Ty::Int),
                ("mac", Ty::Str),
                ("owner", Ty::Int),
                ("group", Ty::Int),
                ("selinuxContext", Ty::Str),
                ("bridge", Ty::Str),
                ("ipam", Ty::Map),
            ],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
        Profile {
            name: "dummy",
            chain: false,
            setup: setup_none,
            baseline: |fx| json!({"cniVersion": "1.0.0", "name": "net1", "type": "dummy", "ipam": ipam(fx)}),
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |_, _| {} }),
            fields: &[("ipam", Ty::Map)],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
        Profile {
            name: "ipvlan",
            chain: false,
            setup: setup_master,
            baseline: |fx| json!({"cniVersion": "1.0.0", "name": "net1", "type": "ipvlan", "master": "m0", "ipam": ipam(fx)}),
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |_, _| {} }),
            fields: &[
                ("master", Ty::Str),
                ("mode", Ty::Str),
                ("mtu", Ty::Int),
                ("linkInContainer", Ty::Bool),
                ("ipam", Ty::Map),
            ],
            bookkeeping: HL_BOOKKEEPING,
            other_network: other_range,
        },
        Profile {
            name: "vlan",
            chain: false,
            setup: setup_master,
            baseline: |fx| json!({"cniVersion": "1.0.0", "name": "net1", "type": "vlan", "master": "m0", "vlanId": 100, "ipam": ipam(fx)}),
            cap_args: no_caps,
            ifname: "eth0",
            // One VLAN device per VLAN ID and master: the neighbour is on VLAN 101.
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |c, _| c.set("vlanId", json!(101)) }),
            fields: &[
                ("master", Ty::Str),
                ("vlanId", Ty::Int),
                ("mtu", Ty::Int),
                ("linkInContainer", Ty::Bool),
                ("ipam", Ty::Map),
            ],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
        Profile {
            name: "portmap",
            chain: false,
            setup: setup_chained,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "portmap",
                    "capabilities": {"portMappings": true},
                    "runtimeConfig": {"portMappings": [{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}]},
                    "prevResult": prev(fx, "eth0", "10.99.0.3/24")})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, fx| {
                    c.conf["prevResult"] = prev(fx, "eth1", "10.99.0.2/24");
                    c.conf["runtimeConfig"]["portMappings"][0]["hostPort"] = json!(8080);
                },
            }),
            fields: &[
                ("snat", Ty::Bool),
                ("masqAll", Ty::Bool),
                ("backend", Ty::Str),
                ("markMasqBit", Ty::Int),
                ("externalSetMarkChain", Ty::Str),
                ("conditionsV4", Ty::List),
                ("conditionsV6", Ty::List),
                ("runtimeConfig.portMappings", Ty::List),
            ],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
        Profile {
            name: "firewall",
            chain: false,
            setup: setup_chained,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "firewall",
                    "prevResult": prev(fx, "eth0", "10.99.0.3/24")})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, fx| c.conf["prevResult"] = prev(fx, "eth1", "10.99.0.2/24"),
            }),
            fields: &[
                ("backend", Ty::Str),
                ("ingressPolicy", Ty::Str),
                ("iptablesAdminChainName", Ty::Str),
                ("firewalldZone", Ty::Str),
            ],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
        Profile {
            name: "tuning",
            chain: false,
            setup: setup_chained,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "tuning", "dataDir": fx.state("tuning"),
                    "mtu": 1400, "prevResult": prev(fx, "eth0", "10.99.0.3/24")})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, fx| c.conf["prevResult"] = prev(fx, "eth1", "10.99.0.2/24"),
            }),
            fields: &[
                ("sysctl", Ty::Map),
                ("mac", Ty::Str),
                ("promisc", Ty::Bool),
                ("mtu", Ty::Int),
                ("allmulti", Ty::Bool),
                ("txQLen", Ty::Int),
                ("dataDir", Ty::Str),
            ],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
        Profile {
            name: "dns-sidecar",
            chain: false,
            setup: setup_chained,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "dns-sidecar", "domainName": "dns.test",
                    "capabilities": {"aliases": true}, "runtimeConfig": {"aliases": {"net1": ["web"]}},
                    "prevResult": prev(fx, "eth0", "10.99.0.3/24")})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, fx| {
                    c.conf["prevResult"] = prev(fx, "eth1", "10.99.0.2/24");
                    c.conf["runtimeConfig"]["aliases"]["net1"] = json!(["db"]);
                },
            }),
            fields: &[("domainName", Ty::Str)],
            bookkeeping: &[],
            other_network: second_gateway,
        },
        Profile {
            name: "overlay",
            chain: false,
            setup: setup_overlay,
            baseline: |_| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "overlay", "vni": 4242,
                    "subnet": "10.98.0.0/24", "vtepIP": "192.0.2.1",
                    "etcd": {"endpoints": ["http://127.0.0.1:2379"]}})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |_, _| {} }),
            fields: &[
                ("vni", Ty::Int),
                ("subnet", Ty::Str),
                ("gateway", Ty::Str),
                ("rangeStart", Ty::Str),
                ("rangeEnd", Ty::Str),
                ("mtu", Ty::Int),
                ("vtepIP", Ty::Str),
                ("node", Ty::Str),
                ("etcd", Ty::Map),
                ("leaseTTL", Ty::Int),
                ("ipMasq", Ty::Bool),
            ],
            bookkeeping: &[],
            other_network: other_vni,
        },
        Profile {
            name: "ptp",
            chain: false,
            setup: setup_forwarding,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "ptp", "ipMasq": true, "mtu": 1400,
                    "ipam": ipam(fx)})
            },
            cap_args: no_caps,
            ifname: "eth0",
            // Another network and subnet: one container cannot route one subnet
            // through two interfaces (and a network's masquerade rule per subnet
            // stays while the network has containers).
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, _| {
                    c.set("name", json!("net2"));
                    c.set("ipam.subnet", json!("10.98.0.0/24"));
                },
            }),
            fields: &[
                ("ipMasq", Ty::Bool),
                ("ipMasqBackend", Ty::Str),
                ("mtu", Ty::Int),
                ("ipam", Ty::Map),
                ("dns", Ty::Map),
            ],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
        Profile {
            // `table` set: ADD adds the rule only, so that ADD then DEL leaves
            // the container as it was (a table per address moves the main
            // table's routes and DEL, as the reference's, does not move
            // them back: the interface goes next). Rows without `table`
            // take the reference's default way.
            name: "sbr",
            chain: false,
            setup: setup_addressed,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "sbr", "table": 200,
                    "prevResult": prev(fx, "eth0", "10.99.0.3/24")})
            },
            cap_args: no_caps,
            ifname: "eth0",
            // The neighbour the default way: its routes in table 100.
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, fx| {
                    c.remove("table");
                    c.conf["prevResult"] = prev_eth1(fx);
                },
            }),
            fields: &[("table", Ty::Int), ("gateways", Ty::List), ("addSourceHints", Ty::Bool)],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
        Profile {
            name: "vrf",
            chain: false,
            setup: setup_addressed,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "vrf", "vrfname": "vrf0",
                    "prevResult": prev(fx, "eth0", "10.99.0.3/24")})
            },
            cap_args: no_caps,
            ifname: "eth0",
            // The neighbour made vrf0 (table 1); the row's interface joins it.
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, fx| c.conf["prevResult"] = prev_eth1(fx),
            }),
            fields: &[("vrfname", Ty::Str), ("table", Ty::Int)],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
        Profile {
            name: "podman-chain",
            chain: true,
            setup: setup_forwarding,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "plugins": [
                    {"type": "bridge", "bridge": "cnibr0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
                        "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                                 "ranges": [[{"subnet": SUBNET, "gateway": "10.99.0.1"}]], "dataDir": fx.hl()}},
                    {"type": "portmap", "capabilities": {"portMappings": true}},
                    {"type": "firewall"},
                    {"type": "tuning", "dataDir": fx.state("tuning"), "txQLen": 500},
                    {"type": "dns-sidecar", "domainName": "dns.test", "capabilities": {"aliases": true}}]})
            },
            cap_args: |_| {
                json!({"portMappings": [{"hostPort": 8081, "containerPort": 80, "protocol": "tcp"}],
                       "aliases": {"net1": ["web"]}})
            },
            ifname: "eth0",
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, _| {
                    c.cap_args["portMappings"][0]["hostPort"] = json!(8080);
                    c.cap_args["aliases"]["net1"] = json!(["db"]);
                },
            }),
            fields: &[],
            bookkeeping: HL_BOOKKEEPING,
            other_network: same_network_setup,
        },
    ];
    v.extend(static_dhcp_bandwidth_profiles());
    v
}

/// The container's `eth0` and `eth1` as veths whose host ends (`vh0`,
/// `vh1`) are ports of the bridge `lan0` (10.99.0.1/24), where dnsmasq
/// serves 10.99.0.100-150; the dhcp daemon listens on private/dhcp.sock.
/// Both are the world's services, with their files in private/.
fn setup_dhcp(fx: &Fx) {
    fx.host.ip(&["link", "add", "lan0", "type", "bridge"]).unwrap();
    fx.host.ip(&["addr", "add", "10.99.0.1/24", "dev", "lan0"]).unwrap();
    fx.host.ip(&["link", "set", "lan0", "up"]).unwrap();
    for (c, h) in [("eth0", "vh0"), ("eth1", "vh1")] {
        veth(&fx.ctr, c, &fx.host, h).unwrap();
        fx.host.ip(&["link", "set", h, "master", "lan0"]).unwrap();
    }
    let quiet = || std::process::Stdio::null();
    let (mut cmd, _guard) = fx.host.command("dnsmasq").unwrap();
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--port=0",
        "--user=root",
        "--interface=lan0",
        "--bind-interfaces",
        "--no-ping",
        "--dhcp-authoritative",
        "--dhcp-range=10.99.0.100,10.99.0.150,255.255.255.0,2m",
    ])
    .arg(format!("--dhcp-leasefile={}", fx.private("dnsmasq.leases").display()))
    .arg(format!("--log-facility={}", fx.private("dnsmasq.log").display()))
    .arg(format!("--pid-file={}", fx.private("dnsmasq.pid").display()))
    .stdin(quiet())
    .stdout(quiet())
    .stderr(quiet());
    let child = cmd.spawn().expect("dnsmasq (scripts/deps installs dnsmasq-base)");
    fx.services.lock().unwrap().push(child);
    let log = || std::fs::read_to_string(fx.private("dnsmasq.log")).unwrap_or_default();
    assert!(
        wait_until(std::time::Duration::from_secs(30), || log().contains("DHCP, sockets bound")),
        "{}",
        log()
    );
    let daemon_log = std::fs::File::create(fx.private("daemon.log")).unwrap();
    let (mut cmd, _guard) = fx.host.command(test_harness::target_bin_dir().join("dhcp")).unwrap();
    cmd.arg("daemon")
        .arg("-socketpath")
        .arg(fx.private("dhcp.sock"))
        .arg("-pidfile")
        .arg(fx.private("dhcp.pid"))
        .args(["-timeout", "2s"])
        .stdin(quiet())
        .stdout(quiet())
        .stderr(daemon_log);
    let child = cmd.spawn().expect("dhcp daemon (cargo build --workspace --bins)");
    fx.services.lock().unwrap().push(child);
    let sock = fx.private("dhcp.sock");
    let up = wait_until(std::time::Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    assert!(up, "{}", std::fs::read_to_string(fx.private("daemon.log")).unwrap_or_default());
}

/// bandwidth's prevResult: the container's `ifname` and its veth's host end.
fn bw_prev(fx: &Fx, ifname: &str, host_end: &str) -> Value {
    json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": host_end}, {"name": ifname, "sandbox": fx.ctr.path_str()}],
        "ips": [{"address": "10.99.0.3/24", "gateway": "10.99.0.1", "interface": 1}]})
}

fn static_dhcp_bandwidth_profiles() -> Vec<Profile> {
    vec![
        Profile {
            name: "static",
            chain: false,
            setup: setup_none,
            baseline: |_| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "macvlan", "ipam": {"type": "static",
                    "addresses": [{"address": "10.99.0.5/24", "gateway": "10.99.0.1"}],
                    "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.99.0.1"]}}})
            },
            cap_args: no_caps,
            ifname: "eth0",
            // No state: a neighbour would have nothing to lose.
            neighbour: None,
            fields: &[
                ("ipam", Ty::Map),
                ("ipam.addresses", Ty::List),
                ("ipam.routes", Ty::List),
                ("ipam.dns", Ty::Map),
            ],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
        Profile {
            name: "dhcp",
            chain: false,
            setup: setup_dhcp,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "macvlan",
                    "ipam": {"type": "dhcp", "daemonSocketPath": fx.private("dhcp.sock")}})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour { ifname: "eth1", adjust: |_, _| {} }),
            fields: &[
                ("ipam", Ty::Map),
                ("ipam.daemonSocketPath", Ty::Str),
                ("ipam.request", Ty::List),
                ("ipam.provide", Ty::List),
                ("ipam.priority", Ty::Int),
            ],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
        Profile {
            name: "bandwidth",
            chain: false,
            setup: setup_chained,
            baseline: |fx| {
                json!({"cniVersion": "1.0.0", "name": "net1", "type": "bandwidth",
                    "ingressRate": 8_000_000, "ingressBurst": 256_000,
                    "egressRate": 8_000_000, "egressBurst": 256_000,
                    "prevResult": bw_prev(fx, "eth0", "vh0")})
            },
            cap_args: no_caps,
            ifname: "eth0",
            neighbour: Some(Neighbour {
                ifname: "eth1",
                adjust: |c, fx| c.conf["prevResult"] = bw_prev(fx, "eth1", "vh1"),
            }),
            fields: &[
                ("ingressRate", Ty::Int),
                ("ingressBurst", Ty::Int),
                ("egressRate", Ty::Int),
                ("egressBurst", Ty::Int),
            ],
            bookkeeping: &[],
            other_network: same_network_setup,
        },
    ]
}

/// Plugins this kernel cannot run, and why: their rows run on a kernel that
/// can (Debian 12's 6.1 in the VM: scripts/vm-test).
pub fn kernel_lacks() -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    for (plugin, kind) in [("ipvlan", "ipvlan"), ("vlan", "vlan"), ("dummy", "dummy"), ("vrf", "vrf")] {
        if let Some(why) = test_harness::missing_link_kind(kind) {
            v.push((plugin, why));
        }
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        v.push(("tap", "this machine has no /dev/net/tun".into()));
    }
    v
}

/// Plugins that keep state in a directory named after the network: a name
/// longer than a file name (255 bytes) cannot work there.
fn name_is_a_dir(p: &str) -> bool {
    matches!(
        p,
        "host-local"
            | "bridge"
            | "macvlan"
            | "ipvlan"
            | "vlan"
            | "host-device"
            | "dns-sidecar"
            | "overlay"
            | "tap"
            | "dummy"
            | "ptp"
    )
}

/// Plugins whose CNI_IFNAME is free (not tied to a prevResult or an existing link).
fn ifname_is_free(p: &str) -> bool {
    matches!(
        p,
        "loopback"
            | "host-local"
            | "bridge"
            | "macvlan"
            | "ipvlan"
            | "vlan"
            | "host-device"
            | "overlay"
            | "static"
            | "tap"
            | "dummy"
            | "ptp"
    )
}

/// Plugins whose reference loads CNI_ARGS into a struct (libcni's
/// `LoadArgs`), or whose profile's IPAM (host-local) does: a key outside it
/// needs `IgnoreUnknown`. Every other reference plugin never looks at
/// CNI_ARGS, so any key goes.
pub fn strict_cni_args(p: &Profile) -> bool {
    matches!(p.name, "host-local" | "bridge" | "macvlan" | "tuning" | "static" | "dns-sidecar" | "overlay")
        || p.bookkeeping == HL_BOOKKEEPING
}

/// An unknown CNI_ARGS key, as cnitool passes it (no IgnoreUnknown).
fn unknown_cni_args_rows(p: &Profile) -> Vec<Row> {
    let n = p.name;
    let mut v = Vec::new();
    let unknown = Row::new(n, Add, "CNI_ARGS", "\"FROB=1\" (unknown key)").env("CNI_ARGS", "FROB=1");
    if strict_cni_args(p) {
        v.push(unknown.fails(4, &["unknown key \"FROB\"", "IgnoreUnknown"]));
        v.push(
            Row::new(n, Add, "CNI_ARGS", "\"IgnoreUnknown=1;FROB=1\"")
                .env("CNI_ARGS", "IgnoreUnknown=1;FROB=1")
                .works(),
        );
        if p.neighbour.is_some() {
            v.push(
                Row::new(n, Del, "CNI_ARGS", "\"FROB=1\" (DEL never fails over a key)")
                    .env("CNI_ARGS", "FROB=1")
                    .works(),
            );
        }
    } else {
        v.push(unknown.works());
        v.push(
            Row::new(n, Add, "CNI_ARGS", "\"K8S_POD_NAME=x\" (cnitool style)")
                .env("CNI_ARGS", "K8S_POD_NAME=x")
                .works(),
        );
    }
    v
}

fn long(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// The rows every plugin gets.
fn generic(p: &Profile) -> Vec<Row> {
    let n = p.name;
    let mut v = Vec::new();
    // --- the environment ---
    v.push(
        Row::new(n, Add, "CNI_COMMAND", "\"add\" (lower case)")
            .env("CNI_COMMAND", "add")
            .fails(4, &["unknown CNI_COMMAND: \"add\""]),
    );
    v.push(
        Row::new(n, Add, "CNI_CONTAINERID", "empty")
            .env("CNI_CONTAINERID", "")
            .fails(4, &["[CNI_CONTAINERID] missing"]),
    );
    for (input, id) in [
        ("\"-lead\" (leading dash)", "-lead".to_string()),
        ("\"a/b\"", "a/b".into()),
        ("\"a b\"", "a b".into()),
        ("a control character", "a\u{1}b".into()),
        ("non-ASCII \"ctr-ü\"", "ctr-ü".into()),
    ] {
        v.push(
            Row::new(n, Add, "CNI_CONTAINERID", input)
                .env("CNI_CONTAINERID", id)
                .fails(4, &["invalid characters in CNI_CONTAINERID"]),
        );
    }
    v.push(
        Row::new(n, Add, "CNI_CONTAINERID", "100,000 valid characters")
            .env("CNI_CONTAINERID", long('c', 100_000))
            .works(),
    );
    v.push(
        Row::new(n, Add, "CNI_CONTAINERID", "100,000 characters, then `/`")
            .env("CNI_CONTAINERID", format!("{}/", long('c', 100_000)))
            .fails(4, &["invalid characters in CNI_CONTAINERID", "(100001 bytes)"]),
    );
    v.push(Row::new(n, Add, "CNI_IFNAME", "empty").env("CNI_IFNAME", "").fails(4, &["[CNI_IFNAME] missing"]));
    for (input, name) in [
        ("\".\"", "."),
        ("\"..\"", ".."),
        ("\"a/b\"", "a/b"),
        ("\"a:b\"", "a:b"),
        ("\"a b\"", "a b"),
        ("\"eth0\\t\"", "eth0\t"),
    ] {
        v.push(
            Row::new(n, Add, "CNI_IFNAME", input).env("CNI_IFNAME", name).fails(4, &["invalid CNI_IFNAME"]),
        );
    }
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "16 bytes")
            .env("CNI_IFNAME", "abcdefghijklmnop")
            .fails(4, &["invalid CNI_IFNAME \"abcdefghijklmnop\"", "longer than 15 bytes"]),
    );
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "100,000 bytes")
            .env("CNI_IFNAME", long('e', 100_000))
            .fails(4, &["invalid CNI_IFNAME", "(100000 bytes)"]),
    );
    if ifname_is_free(n) {
        v.push(
            Row::new(n, Add, "CNI_IFNAME", "15 bytes (the longest)")
                .env("CNI_IFNAME", "abcdefghijklmno")
                .works(),
        );
    }
    v.push(Row::new(n, Add, "CNI_NETNS", "empty").env("CNI_NETNS", "").fails(4, &["[CNI_NETNS] missing"]));
    v.push(Row::new(n, Add, "CNI_PATH", "empty").env("CNI_PATH", "").fails(4, &["[CNI_PATH] missing"]));
    v.push(
        Row::new(n, Add, "CNI_ARGS", "\"IP\" (no `=`)")
            .env("CNI_ARGS", "IP")
            .fails(4, &["invalid CNI_ARGS pair \"IP\""]),
    );
    v.extend(unknown_cni_args_rows(p));
    v.push(
        Row::new(n, Add, "CNI_ARGS", "100,000 bytes without `=`")
            .env("CNI_ARGS", long('a', 100_000))
            .fails(4, &["invalid CNI_ARGS pair", "(100000 bytes)"]),
    );
    if p.neighbour.is_some() {
        v.push(
            Row::new(n, Del, "CNI_IFNAME", "16 bytes")
                .env("CNI_IFNAME", "abcdefghijklmnop")
                .fails(4, &["invalid CNI_IFNAME"]),
        );
        v.push(
            Row::new(n, Del, "CNI_CONTAINERID", "\"a/b\"")
                .env("CNI_CONTAINERID", "a/b")
                .fails(4, &["invalid characters in CNI_CONTAINERID"]),
        );
    }

    // --- stdin ---
    v.push(Row::new(n, Add, "stdin", "empty").stdin("").fails(6, &["EOF"]));
    v.push(Row::new(n, Add, "stdin", "`{`").stdin("{").fails(6, &["failed to parse network config"]));
    v.push(Row::new(n, Add, "stdin", "`[]`").stdin("[]").fails(6, &["not a JSON object"]));
    v.push(Row::new(n, Add, "stdin", "`null`").stdin("null").fails(6, &["not a JSON object"]));
    v.push(
        Row::new(n, Add, "stdin", "a valid config, then `x`")
            .with(|c, _| c.stdin = Some(format!("{} x", c.conf).into_bytes()))
            .fails(6, &["trailing characters"]),
    );
    v.push(
        Row::new(n, Add, "stdin", "not UTF-8")
            .with(|c, _| {
                let mut s = c.conf.to_string().into_bytes();
                s.insert(1, 0xff);
                c.stdin = Some(s);
            })
            .fails(6, &["not valid UTF-8 (byte 1)"]),
    );
    v.push(
        Row::new(n, Add, "stdin", "arrays nested 100,000 deep")
            .stdin(format!(
                r#"{{"cniVersion":"1.0.0","name":"net1","x":{}{}}}"#,
                long('[', 100_000),
                long(']', 100_000)
            ))
            .fails(6, &["recursion limit exceeded"]),
    );
    v.push(
        Row::new(n, Add, "stdin", "17 MiB (a valid config padded with spaces)")
            .with(|c, _| {
                let mut s = c.conf.to_string().into_bytes();
                s.resize(17 << 20, b' ');
                c.stdin = Some(s);
            })
            .fails(6, &["larger than 16 MiB"]),
    );

    // --- cniVersion ---
    v.push(
        Row::new(n, Add, "cniVersion", "\"9.9.9\"")
            .set("cniVersion", json!("9.9.9"))
            .fails(1, &["incompatible CNI versions", "\"9.9.9\""]),
    );
    v.push(
        Row::new(n, Add, "cniVersion", "\"1.0\"")
            .set("cniVersion", json!("1.0"))
            .fails(6, &["invalid cniVersion \"1.0\""]),
    );
    v.push(
        Row::new(n, Add, "cniVersion", "100 (a number)")
            .set("cniVersion", json!(100))
            .fails(6, &["\"cniVersion\" must be a string"]),
    );
    v.push(
        Row::new(n, Add, "cniVersion", "100,000 bytes")
            .set("cniVersion", json!(long('9', 100_000)))
            .fails(6, &["invalid cniVersion", "(100000 bytes)"]),
    );
    v.push(
        Row::new(n, Check, "cniVersion", "\"0.3.1\" (before CHECK)")
            .set("cniVersion", json!("0.3.1"))
            .fails(1, &["does not allow CHECK"]),
    );
    v.push(
        Row::new(n, Status, "cniVersion", "\"1.0.0\" (before STATUS)").fails(1, &["does not allow STATUS"]),
    );

    // --- the network name ---
    v.push(Row::new(n, Add, "name", "missing").remove("name").fails(7, &["missing network name"]));
    v.push(Row::new(n, Add, "name", "empty").set("name", json!("")).fails(7, &["missing network name"]));
    for (input, name) in [
        ("\"a/b\"", "a/b"),
        ("\"..\"", ".."),
        ("\"a b\"", "a b"),
        ("a control character", "a\u{7}b"),
        ("non-ASCII \"netz-ü\"", "netz-ü"),
        ("\"-x\" (leading dash)", "-x"),
    ] {
        v.push(Row::new(n, Add, "name", input).set("name", json!(name)).fails(7, &["invalid network name"]));
    }
    v.push(
        Row::new(n, Add, "name", "5 (a number)")
            .set("name", json!(5))
            .fails(6, &["\"name\" must be a string"]),
    );
    let other = p.other_network;
    v.push(
        Row::new(n, Add, "name", "255 bytes (the longest file name)")
            .set("name", json!(long('n', 255)))
            .with(other)
            .works(),
    );
    let too_long = Row::new(n, Add, "name", "256 bytes").set("name", json!(long('n', 256))).with(other);
    v.push(if name_is_a_dir(n) {
        too_long.fails(7, &["network name", "(256 bytes)", "at most 255 bytes"])
    } else {
        too_long.works()
    });
    if name_is_a_dir(n) {
        // Nothing can have been stored under such a name: DEL has nothing to do.
        v.push(
            Row::new(n, Del, "name", "256 bytes").set("name", json!(long('n', 256))).never_added().works(),
        );
    }
    v.push(
        Row::new(n, Add, "name", "100,000 bytes, then `/`")
            .set("name", json!(format!("{}/", long('n', 100_000))))
            .fails(7, &["invalid network name", "(100001 bytes)"]),
    );

    // --- every field with a value of the wrong JSON type ---
    for (field, ty) in p.fields {
        let (value, shown) = ty.wrong();
        let key = field.rsplit('.').next().unwrap();
        v.push(Row::new(n, Add, field, shown).set(field, value).fails(7, &[&format!("word:{key}")]));
    }
    v
}

/// prevResult rows for the chained plugins.
fn prev_result_rows(n: &'static str) -> Vec<Row> {
    vec![
        Row::new(n, Add, "prevResult", "5 (a number)")
            .set("prevResult", json!(5))
            .fails(6, &["invalid prevResult"]),
        Row::new(n, Add, "prevResult", "an IP that is no address")
            .set("prevResult", json!({"cniVersion": "1.0.0", "ips": [{"address": "10.99.0.300/24"}]}))
            .fails(6, &["invalid prevResult"]),
        Row::new(n, Add, "prevResult", "cniVersion \"9.9.9\"")
            .set("prevResult", json!({"cniVersion": "9.9.9", "ips": []}))
            .fails(6, &["invalid prevResult", "9.9.9"]),
        Row::new(n, Add, "prevResult", "a 0.2.0 result in a 1.0.0 config (converted)")
            .with(|c, fx| {
                c.conf["prevResult"] =
                    json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.99.0.3/24", "gateway": "10.99.0.1"}});
                // 0.2.0 has no interfaces: the container's is the only one there is.
                let _ = fx;
            })
            .works(),
    ]
}

/// Every row of the table.
pub fn rows(profiles: &[Profile]) -> Vec<Row> {
    let mut v = Vec::new();
    for p in profiles.iter().filter(|p| !p.chain) {
        v.extend(generic(p));
    }
    v.extend(loopback());
    v.extend(host_local());
    v.extend(bridge());
    v.extend(bridge_vlan());
    v.extend(static_ipam());
    v.extend(dhcp());
    v.extend(bandwidth());
    v.extend(macvlan());
    v.extend(ipvlan());
    v.extend(vlan());
    v.extend(host_device());
    v.extend(tap());
    v.extend(dummy());
    v.extend(portmap());
    v.extend(firewall());
    v.extend(tuning());
    v.extend(dns_sidecar());
    v.extend(overlay());
    v.extend(sbr());
    v.extend(vrf());
    v.extend(ptp());
    v.extend(podman_chain());
    // bandwidth's buckets stay on the host veth after DEL (they go with the
    // veth, as in the reference) and the world's veths stay: after a row
    // that added (one that worked, or a DEL/CHECK/GC row's own attachment),
    // the next row gets a fresh world.
    let adds = |r: &Row| matches!(r.expect, Expect::Works) || (r.verb != Add && !r.never_added);
    for r in v.iter_mut().filter(|r| r.profile == "bandwidth" && adds(r)) {
        r.prepares = true;
    }
    // Each plugin's rows together (the order of docs/bad-input.md).
    v.sort_by_key(|r| profiles.iter().position(|p| p.name == r.profile));
    v
}

fn loopback() -> Vec<Row> {
    vec![Row::new("loopback", Add, "prevResult", "5 (a number)")
        .set("prevResult", json!(5))
        .fails(6, &["invalid prevResult"])]
}

fn host_local() -> Vec<Row> {
    let n = "host-local";
    let range = |r: Value| move |c: &mut Case, _: &Fx| c.set("ipam.ranges", json!([[r.clone()]]));
    let mut v = Vec::new();
    for (input, subnet, msg) in [
        ("\"10.99.0.0/33\"", "10.99.0.0/33", "10.99.0.0/33"),
        ("\"2001:db8::/129\"", "2001:db8::/129", "2001:db8::/129"),
        ("\"10.99.0.0\" (no prefix)", "10.99.0.0", "no prefix length"),
        ("\"10.99.0.5/24\" (host bits)", "10.99.0.5/24", "host bits are set"),
        ("\"10.99.0.0/31\" (too small)", "10.99.0.0/31", "too small to allocate from"),
        ("\"10.99.0.0/-1\"", "10.99.0.0/-1", "10.99.0.0/-1"),
    ] {
        v.push(Row::new(n, Add, "subnet", input).with(range(json!({"subnet": subnet}))).fails(7, &[msg]));
    }
    v.push(
        Row::new(n, Add, "subnet", "\"10.98.0.0/30\" (the smallest)")
            .with(range(json!({"subnet": "10.98.0.0/30"})))
            .works(),
    );
    v.push(Row::new(n, Add, "subnet", "\"0.0.0.0/0\"").with(range(json!({"subnet": "0.0.0.0/0"}))).works());
    v.push(
        Row::new(n, Add, "rangeStart/rangeEnd", "rangeStart after rangeEnd")
            .with(range(json!({"subnet": SUBNET, "rangeStart": "10.99.0.9", "rangeEnd": "10.99.0.8"})))
            .fails(7, &["rangeStart 10.99.0.9 is after rangeEnd 10.99.0.8"]),
    );
    v.push(
        Row::new(n, Add, "rangeStart", "outside the subnet")
            .with(range(json!({"subnet": SUBNET, "rangeStart": "10.98.0.9"})))
            .fails(7, &["rangeStart 10.98.0.9 is outside the subnet"]),
    );
    v.push(
        Row::new(n, Add, "rangeEnd", "outside the subnet")
            .with(range(json!({"subnet": SUBNET, "rangeEnd": "10.100.0.1"})))
            .fails(7, &["rangeEnd 10.100.0.1 is outside the subnet"]),
    );
    v.push(
        Row::new(n, Add, "gateway", "\"x\"")
            .with(range(json!({"subnet": SUBNET, "gateway": "x"})))
            .fails(7, &["gateway \"x\" is not an IP address"]),
    );
    v.push(
        Row::new(n, Add, "ranges", "`[]`")
            .set("ipam.ranges", json!([]))
            .fails(7, &["no IP ranges specified"]),
    );
    v.push(
        Row::new(n, Add, "ranges", "`[[]]`").set("ipam.ranges", json!([[]])).fails(7, &["empty range set"]),
    );
    v.push(
        Row::new(n, Add, "ranges", "two overlapping range sets")
            .set("ipam.ranges", json!([[{"subnet": SUBNET}], [{"subnet": "10.99.0.0/16"}]]))
            .fails(7, &["overlaps with range set 1"]),
    );
    v.push(
        Row::new(n, Add, "ranges", "one set of 100,000 disjoint /30 ranges")
            .raw("ipam.ranges", || {
                let set: Vec<String> = (0..100_000u32)
                    .map(|i| {
                        format!(
                            r#"{{"subnet":"10.{}.{}.{}/30"}}"#,
                            100 + i / 16384,
                            (i / 64) % 256,
                            (i % 64) * 4
                        )
                    })
                    .collect();
                format!("[[{}]]", set.join(","))
            })
            .works(),
    );
    v.push(
        Row::new(n, Add, "routes", "a route to \"bogus\"")
            .set("ipam.routes", json!([{"dst": "bogus"}]))
            .fails(7, &["\"routes\"", "bogus"]),
    );
    v.push(
        Row::new(n, Add, "dataDir", "an ordinary file")
            .with(|c, fx| c.set("ipam.dataDir", json!(fx.outside("victim"))))
            .fails(5, &["cannot create data directory", "Not a directory"]),
    );
    v.push(
        Row::new(n, Add, "dataDir", "a symlink loop")
            .prepare(|c, fx| {
                let l = fx.private("loop");
                std::os::unix::fs::symlink(&l, &l).unwrap();
                c.set("ipam.dataDir", json!(l));
            })
            .fails(5, &["cannot create data directory", "symbolic links"]),
    );
    v.push(
        Row::new(n, Add, "dataDir", "\"rel/dir\" (relative)")
            .set("ipam.dataDir", json!("rel/dir"))
            .fails(7, &["dataDir \"rel/dir\"", "absolute"]),
    );
    v.push(
        Row::new(n, Add, "dataDir", "100,000 bytes")
            .set("ipam.dataDir", json!(format!("/{}", long('d', 100_000))))
            .fails(7, &["invalid dataDir", "(100001 bytes)", "longer than a path"]),
    );
    v.push(
        Row::new(n, Add, "resolvConf", "missing file")
            .with(|c, fx| c.set("ipam.resolvConf", json!(fx.private("nope"))))
            .fails(7, &["cannot read resolvConf", "No such file"]),
    );
    v.push(
        Row::new(n, Add, "resolvConf", "a FIFO nobody writes")
            .prepare(|c, fx| {
                let f = fx.private("fifo");
                assert!(std::process::Command::new("mkfifo").arg(&f).status().unwrap().success());
                c.set("ipam.resolvConf", json!(f));
            })
            .fails(7, &["cannot read resolvConf", "not a regular file"]),
    );
    v.push(
        Row::new(n, Add, "resolvConf", "/dev/zero (endless)")
            .set("ipam.resolvConf", json!("/dev/zero"))
            .fails(7, &["cannot read resolvConf", "not a regular file"]),
    );
    v.push(
        Row::new(n, Add, "CNI_ARGS IP", "\"10.99.0.300\"")
            .env("CNI_ARGS", "IP=10.99.0.300")
            .fails(7, &["cannot understand ip \"10.99.0.300\""]),
    );
    v.push(
        Row::new(n, Add, "CNI_ARGS IP", "outside every range")
            .env("CNI_ARGS", "IP=10.98.0.5")
            .fails(7, &["10.98.0.5"]),
    );
    v.push(Row::new(n, Add, "CNI_ARGS IP", "the neighbour's address").env("CNI_ARGS", "IP=10.99.0.2").fails(
        999,
        &[
            "requested IP address 10.99.0.2 is not available",
            "already allocated to container 0e1ghb0a0e1g… (eth1)",
        ],
    ));
    v.push(
        Row::new(n, Add, "runtimeConfig.ips", "[\"bogus\"]")
            .set("runtimeConfig.ips", json!(["bogus"]))
            .fails(7, &["runtimeConfig.ips", "\"bogus\""]),
    );
    v.push(
        Row::new(n, Add, "runtimeConfig.ips", "\"10.99.0.5\" (not a list)")
            .set("runtimeConfig.ips", json!("10.99.0.5"))
            .fails(7, &["runtimeConfig.ips", "not a list"]),
    );
    v.push(
        Row::new(n, Add, "runtimeConfig.ipRanges", "a /33")
            .set("runtimeConfig.ipRanges", json!([[{"subnet": "10.98.0.0/33"}]]))
            .fails(7, &["10.98.0.0/33"]),
    );
    for (input, at) in [
        ("cursor `last_reserved_ip.0` a symlink", "hl/net1/last_reserved_ip.0"),
        ("`cnirs-index` a symlink", "hl/net1/cnirs-index"),
        ("`cnirs-index.tmp` a symlink", "hl/net1/cnirs-index.tmp"),
        ("the next address's lease file a symlink", "hl/net1/10.99.0.3"),
    ] {
        v.push(Row::new(n, Add, "planted state", input).prepare(move |c, fx| fx.plant_link(c, at)).works());
    }
    v.push(
        Row::new(n, Add, "planted state", "`lock` a symlink")
            .prepare(|c, fx| {
                let lock = std::path::PathBuf::from(fx.state("hl/net1/lock"));
                std::fs::remove_file(&lock).unwrap();
                fx.plant_link(c, "hl/net1/lock");
            })
            .works(),
    );
    v.push(
        Row::new(n, Add, "planted state", "a stray `last_reserved_ip.300000`")
            .prepare(|_, fx| {
                std::fs::write(fx.state("hl/net1/last_reserved_ip.300000"), "10.99.0.200").unwrap()
            })
            .works(),
    );
    v.push(
        Row::new(n, Gc, "cni.dev/valid-attachments", "\"x\"")
            .set("cniVersion", json!("1.1.0"))
            .set_key("cni.dev/valid-attachments", json!("x"))
            .fails(7, &["valid-attachments"]),
    );
    v.push(
        Row::new(n, Gc, "cni.dev/valid-attachments", "a containerID of 5")
            .set("cniVersion", json!("1.1.0"))
            .set_key("cni.dev/valid-attachments", json!([{"containerID": 5, "ifname": "eth0"}]))
            .fails(7, &["valid-attachments"]),
    );
    v.push(
        Row::new(n, Status, "dataDir", "an ordinary file")
            .set("cniVersion", json!("1.1.0"))
            .with(|c, fx| c.set("ipam.dataDir", json!(fx.outside("victim"))))
            .fails(50, &["cannot store leases"]),
    );
    v
}

fn bridge() -> Vec<Row> {
    let n = "bridge";
    let mut v = Vec::new();
    for (input, name) in [("16 bytes", "abcdefghijklmnop"), ("\"a/b\"", "a/b"), ("\"a b\"", "a b")] {
        v.push(
            Row::new(n, Add, "bridge", input).set("bridge", json!(name)).fails(7, &["invalid bridge name"]),
        );
    }
    v.push(
        Row::new(n, Add, "bridge", "an existing link that is no bridge")
            .set("bridge", json!("lo"))
            .fails(7, &["\"lo\"", "not a bridge"]),
    );
    for (input, mtu, msg) in [
        ("67 (below the minimum 68)", json!(67), "67"),
        ("65536", json!(65536), "65536"),
        ("-1", json!(-1), "\"mtu\""),
        ("1e100", json!(1e100), "\"mtu\""),
    ] {
        v.push(Row::new(n, Add, "mtu", input).set("mtu", mtu).fails(7, &[msg]));
    }
    v.push(Row::new(n, Add, "vlan", "-1").set("vlan", json!(-1)).fails(7, &["invalid VLAN ID -1"]));
    v.push(Row::new(n, Add, "vlan", "4095").set("vlan", json!(4095)).fails(7, &["invalid VLAN ID 4095"]));
    v.push(
        Row::new(n, Add, "vlanTrunk", "id 0")
            .set("vlanTrunk", json!([{"id": 0}]))
            .fails(7, &["invalid vlanTrunk ID 0"]),
    );
    v.push(
        Row::new(n, Add, "vlanTrunk", "id 4095")
            .set("vlanTrunk", json!([{"id": 4095}]))
            .fails(7, &["invalid vlanTrunk ID 4095"]),
    );
    v.push(
        Row::new(n, Add, "vlanTrunk", "minID 10 > maxID 5")
            .set("vlanTrunk", json!([{"minID": 10, "maxID": 5}]))
            .fails(7, &["invalid vlanTrunk range 10-5"]),
    );
    v.push(
        Row::new(n, Add, "vlanTrunk", "minID without maxID")
            .set("vlanTrunk", json!([{"minID": 10}]))
            .fails(7, &["need both minID and maxID"]),
    );
    v.push(
        Row::new(n, Add, "ipMasqBackend", "\"bogus\"")
            .set("ipMasqBackend", json!("bogus"))
            .fails(7, &["invalid ipMasqBackend \"bogus\""]),
    );
    v.push(
        Row::new(n, Add, "hairpinMode + promiscMode", "both true")
            .set("hairpinMode", json!(true))
            .set("promiscMode", json!(true))
            .fails(7, &["hairpin mode and promiscuous mode"]),
    );
    v.push(
        Row::new(n, Add, "disableContainerInterface", "with an ipam")
            .set("disableContainerInterface", json!(true))
            .fails(7, &["disableContainerInterface"]),
    );
    v.push(
        Row::new(n, Add, "ipam.type", "\"../host-local\"")
            .set("ipam.type", json!("../host-local"))
            .fails(7, &["invalid plugin type \"../host-local\""]),
    );
    v.push(
        Row::new(n, Add, "ipam.type", "not on CNI_PATH")
            .set("ipam.type", json!("no-such-ipam"))
            .fails(7, &["failed to find plugin \"no-such-ipam\" in path ["]),
    );
    v.push(
        Row::new(n, Add, "CNI_PATH", "a directory without the ipam plugin")
            .with(|c, fx| {
                c.env.insert("CNI_PATH".into(), fx.private("cache").to_string_lossy().into_owned());
            })
            .fails(7, &["failed to find plugin \"host-local\" in path ["]),
    );
    v.push(
        Row::new(n, Add, "CNI_PATH", "an ipam plugin that prints garbage")
            .prepare(|c, fx| {
                let dir = fx.private("garbage-bin");
                std::fs::create_dir_all(&dir).unwrap();
                let p = dir.join("host-local");
                std::fs::write(&p, "#!/bin/sh\necho 'this is no JSON'\n").unwrap();
                std::os::unix::fs::PermissionsExt::set_mode(
                    &mut std::fs::metadata(&p).unwrap().permissions(),
                    0o755,
                );
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
                c.env.insert("CNI_PATH".into(), dir.to_string_lossy().into_owned());
            })
            .fails(6, &["failed to parse host-local result"]),
    );
    v.push(
        Row::new(n, Add, "CNI_PATH", "an ipam plugin that fails printing 100,000 bytes of garbage")
            .prepare(|c, fx| {
                let dir = fx.private("garbage-bin");
                std::fs::create_dir_all(&dir).unwrap();
                let p = dir.join("host-local");
                let script = "#!/bin/sh\nhead -c 100000 /dev/zero | tr '\\0' g\nexit 3\n";
                std::fs::write(&p, script).unwrap();
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
                c.env.insert("CNI_PATH".into(), dir.to_string_lossy().into_owned());
            })
            .fails(999, &["host-local ADD failed (exit 3) and printed no CNI error", "(100000 bytes)"]),
    );
    v.push(ifname_taken(n));
    v.push(
        Row::new(n, Add, "args.cni.mac", "\"zz\"")
            .set("args.cni.mac", json!("zz"))
            .fails(7, &["invalid MAC address \"zz\""]),
    );
    v.push(
        Row::new(n, Add, "args.cni.mac", "a multicast MAC")
            .set("args.cni.mac", json!("01:00:5e:00:00:01"))
            .fails(7, &["01:00:5e:00:00:01"]),
    );
    v.push(
        Row::new(n, Add, "CNI_ARGS MAC", "100,000 bytes")
            .env("CNI_ARGS", format!("MAC={}", long('f', 100_000)))
            .fails(7, &["invalid MAC address", "(100000 bytes)"]),
    );
    v.push(
        Row::new(n, Add, "dns", "{\"nameservers\": \"x\"}")
            .set("dns", json!({"nameservers": "x"}))
            .fails(7, &["invalid \"dns\""]),
    );
    v
}

/// bridge's VLAN fields (rows that fail before the kernel is asked, so they
/// run on kernels without bridge VLAN filtering too).
fn bridge_vlan() -> Vec<Row> {
    let n = "bridge";
    vec![Row::new(n, Add, "vlan + isGateway", "bridge of 15 bytes: its VLAN gateway's name would be 18")
        .set("bridge", json!("cnibridge123456"))
        .set("vlan", json!(10))
        .fails(7, &["gateway of VLAN 10", "\"cnibridge123456.10\"", "longer than 15 bytes"])]
}

fn macvlan() -> Vec<Row> {
    let n = "macvlan";
    let mut v = on_master(n, "master \"lo\"");
    v.push(
        Row::new(n, Add, "master", "empty, and no default route")
            .set("master", json!(""))
            .fails(7, &["no master given and no default route interface"]),
    );
    v.push(
        Row::new(n, Add, "mode", "\"bogus\"")
            .set("mode", json!("bogus"))
            .fails(7, &["unknown macvlan mode \"bogus\""]),
    );
    v.push(
        Row::new(n, Add, "mac", "\"zz\"").set("mac", json!("zz")).fails(7, &["invalid MAC address \"zz\""]),
    );
    v.push(
        Row::new(n, Add, "mac", "a multicast MAC")
            .set("mac", json!("01:00:5e:00:00:01"))
            .fails(7, &["01:00:5e:00:00:01"]),
    );
    v.push(Row::new(n, Add, "bcqueuelen", "-1").set("bcqueuelen", json!(-1)).fails(7, &["\"bcqueuelen\""]));
    v.push(
        Row::new(n, Add, "bcqueuelen", "4294967296")
            .set("bcqueuelen", json!(4294967296u64))
            .fails(7, &["\"bcqueuelen\""]),
    );
    v
}

fn host_device() -> Vec<Row> {
    let n = "host-device";
    let by = |key: &'static str, value: Value| {
        move |c: &mut Case, _: &Fx| {
            c.remove("device");
            c.set(key, value.clone());
        }
    };
    let mut v = Vec::new();
    v.push(
        Row::new(n, Add, "device", "does not exist")
            .set("device", json!("nope0"))
            .fails(7, &["failed to find host device: no interface \"nope0\""]),
    );
    v.push(
        Row::new(n, Add, "device", "16 bytes")
            .set("device", json!("abcdefghijklmnop"))
            .fails(7, &["invalid device name \"abcdefghijklmnop\""]),
    );
    v.push(
        Row::new(n, Add, "device", "\"lo\" (cannot leave its netns)")
            .set("device", json!("lo"))
            .fails(7, &["host device \"lo\" is the loopback device"]),
    );
    v.push(
        Row::new(n, Add, "device", "missing, and no other selector")
            .remove("device")
            .fails(7, &["specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\""]),
    );
    v.push(
        Row::new(n, Add, "device/hwaddr", "both given")
            .set("hwaddr", json!("02:00:00:00:00:99"))
            .fails(7, &["only one of", "(got \"device\" and \"hwaddr\")"]),
    );
    v.push(
        Row::new(n, Add, "hwaddr", "\"zz\"")
            .with(by("hwaddr", json!("zz")))
            .fails(7, &["invalid hwaddr \"zz\""]),
    );
    v.push(
        Row::new(n, Add, "hwaddr", "no device has it")
            .with(by("hwaddr", json!("02:00:00:00:00:99")))
            .fails(7, &["no interface with MAC 02:00:00:00:00:99"]),
    );
    for (input, path) in
        [("\"/etc/passwd\"", "/etc/passwd"), ("\"/sys/devices/../../etc\"", "/sys/devices/../../etc")]
    {
        v.push(
            Row::new(n, Add, "kernelpath", input)
                .with(by("kernelpath", json!(path)))
                .fails(7, &["must be absolute and begin with /sys/devices/"]),
        );
    }
    v.push(
        Row::new(n, Add, "kernelpath", "no such device")
            .with(by("kernelpath", json!("/sys/devices/virtual/net/nope0")))
            .fails(7, &["nothing at \"/sys/devices/virtual/net/nope0\""]),
    );
    v.push(
        Row::new(n, Add, "pciBusID", "\"../../x\"")
            .with(by("pciBusID", json!("../../x")))
            .fails(7, &["invalid pciBusID \"../../x\""]),
    );
    v.push(
        Row::new(n, Add, "pciBusID", "no such PCI device")
            .with(by("pciBusID", json!("0000:ff:1f.7")))
            .fails(7, &["no PCI device \"0000:ff:1f.7\""]),
    );
    v.push(
        Row::new(n, Add, "runtimeConfig.deviceID", "5 (a number)")
            .with(by("runtimeConfig.deviceID", json!(5)))
            .fails(7, &["runtimeConfig.deviceID must be a string"]),
    );
    v.push(
        Row::new(n, Add, "runtimeConfig.deviceID", "no such device")
            .with(by("runtimeConfig.deviceID", json!("0000:ff:1f.7")))
            .fails(7, &["neither a PCI nor an auxiliary device"]),
    );
    v.push(
        Row::new(n, Add, "runtimeConfig.deviceID", "given with \"device\"")
            .set("runtimeConfig.deviceID", json!("0000:ff:1f.7"))
            .fails(7, &["both name a device"]),
    );
    v.push(ifname_taken(n));
    // DEL finds the device by its alias: a config ADD would refuse does not keep it in the container.
    v.push(Row::new(n, Del, "device", "missing (a config ADD refuses)").remove("device").works());
    v
}

/// Rows of a plugin that makes `CNI_IFNAME` in the container itself.
/// ADD with `CNI_IFNAME` already taken in the container: refused, and the
/// interface that was there is left as it was.
fn ifname_taken(n: &'static str) -> Row {
    Row::new(n, Add, "CNI_IFNAME", "already exists in the container")
        .prepare(|_, fx| {
            fx.ctr.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]).map(drop).unwrap()
        })
        .fails(999, &["already has an interface named \"eth0\""])
}

fn own_link_rows(n: &'static str) -> Vec<Row> {
    vec![
        ifname_taken(n),
        Row::new(n, Add, "CNI_IFNAME", "\"eth%d\" (a kernel name template)")
            .env("CNI_IFNAME", "eth%d")
            .fails(4, &["invalid CNI_IFNAME \"eth%d\"", "template"]),
        Row::new(n, Add, "ipam.type", "not on CNI_PATH (after the link is made)")
            .set("ipam.type", json!("no-such-ipam"))
            .fails(7, &["failed to find plugin \"no-such-ipam\""]),
    ]
}

fn tap() -> Vec<Row> {
    let n = "tap";
    let mut v = own_link_rows(n);
    for (input, mtu, msg) in [
        ("67 (below the minimum 68)", json!(67), "invalid MTU 67"),
        ("65522 (above a tap's 65521)", json!(65522), "must be 68-65521"),
        ("-1", json!(-1), "invalid MTU -1"),
        ("1e100", json!(1e100), "\"mtu\""),
    ] {
        v.push(Row::new(n, Add, "mtu", input).set("mtu", mtu).fails(7, &[msg]));
    }
    v.push(Row::new(n, Add, "mtu", "65521 (the largest)").set("mtu", json!(65521)).works());
    for field in ["owner", "group"] {
        v.push(Row::new(n, Add, field, "-1").set(field, json!(-1)).fails(7, &[&format!("\"{field}\"")]));
        v.push(
            Row::new(n, Add, field, "4294967295 ((uid_t)-1)")
                .set(field, json!(4294967295u64))
                .fails(7, &[&format!("invalid {field} 4294967295")]),
        );
        v.push(
            Row::new(n, Add, field, "4294967296")
                .set(field, json!(4294967296u64))
                .fails(7, &[&format!("\"{field}\"")]),
        );
        v.push(Row::new(n, Add, field, "0 (root)").set(field, json!(0)).works());
    }
    v.push(
        Row::new(n, Add, "mac", "\"zz\"").set("mac", json!("zz")).fails(7, &["invalid MAC address \"zz\""]),
    );
    v.push(
        Row::new(n, Add, "mac", "a multicast MAC")
            .set("mac", json!("01:00:5e:00:00:01"))
            .fails(7, &["01:00:5e:00:00:01"]),
    );
    v.push(
        Row::new(n, Add, "CNI_ARGS MAC", "100,000 bytes")
            .env("CNI_ARGS", format!("MAC={}", long('f', 100_000)))
            .fails(7, &["invalid MAC address", "(100000 bytes)"]),
    );
    v.push(
        Row::new(n, Add, "bridge", "no such link in the container")
            .set("bridge", json!("nope0"))
            .fails(7, &["bridge \"nope0\" in the container netns: no such interface"]),
    );
    v.push(
        Row::new(n, Add, "bridge", "\"lo\" (no bridge)")
            .set("bridge", json!("lo"))
            .fails(7, &["\"lo\" in the container netns is not a bridge"]),
    );
    v.push(
        Row::new(n, Add, "bridge", "16 bytes")
            .set("bridge", json!("abcdefghijklmnop"))
            .fails(7, &["invalid bridge name"]),
    );
    v.push(
        Row::new(n, Add, "selinuxContext", "a context, on a host without SELinux")
            .set("selinuxContext", json!("system_u:system_r:svirt_t:s0"))
            .fails(7, &["needs SELinux, which is not enabled on this host"]),
    );
    v.push(
        Row::new(n, Add, "selinuxContext", "a NUL byte")
            .set("selinuxContext", json!("a\u{0}b"))
            .fails(7, &["NUL"]),
    );
    v.push(Row::new(n, Check, "prevResult", "missing").remove("prevResult").fails(7, &["needs prevResult"]));
    v
}

fn dummy() -> Vec<Row> {
    let n = "dummy";
    let mut v = own_link_rows(n);
    v.push(Row::new(n, Add, "ipam", "missing").remove("ipam").fails(7, &["requires an IPAM configuration"]));
    v.push(
        Row::new(n, Add, "ipam", "`{}`").set("ipam", json!({})).fails(7, &["requires an IPAM configuration"]),
    );
    v.push(Row::new(n, Check, "prevResult", "missing").remove("prevResult").fails(7, &["needs prevResult"]));
    v
}

/// What ipvlan and vlan share with macvlan: the master, the MTU, linkInContainer, CNI_IFNAME.
/// The rows of every plugin that makes its device on a master (macvlan,
/// ipvlan, vlan); `lo_msg`: what refusing `lo` as the master says.
fn on_master(n: &'static str, lo_msg: &'static str) -> Vec<Row> {
    let mut v = Vec::new();
    v.push(
        Row::new(n, Add, "master", "does not exist")
            .set("master", json!("nope0"))
            .fails(7, &["failed to look up master \"nope0\"", "no such interface"]),
    );
    v.push(
        Row::new(n, Add, "master", "16 bytes")
            .set("master", json!("abcdefghijklmnop"))
            .fails(7, &["invalid master name"]),
    );
    v.push(Row::new(n, Add, "master", "\"lo\" (no Ethernet)").set("master", json!("lo")).fails(7, &[lo_msg]));
    for (input, mtu, msg) in [
        ("67 (below the minimum 68)", json!(67), "67"),
        ("1501 (above the master's 1500)", json!(1501), "master MTU(1500)"),
        ("-1", json!(-1), "-1"),
        ("1e100", json!(1e100), "\"mtu\""),
    ] {
        v.push(Row::new(n, Add, "mtu", input).set("mtu", mtu).fails(7, &[msg]));
    }
    v.push(Row::new(n, Add, "mtu", "68 (the minimum)").set("mtu", json!(68)).works());
    v.push(
        Row::new(n, Add, "linkInContainer", "true, master only on the host")
            .set("linkInContainer", json!(true))
            .fails(7, &["master \"m0\"", "in the container netns"]),
    );
    v.push(ifname_taken(n));
    v
}

fn ipvlan() -> Vec<Row> {
    let n = "ipvlan";
    let mut v = on_master(n, "master \"lo\" is a loopback device: an ipvlan needs an Ethernet master");
    v.push(
        Row::new(n, Add, "master", "empty, and no default route")
            .set("master", json!(""))
            .fails(7, &["no master given and no default route interface"]),
    );
    for mode in ["bogus", "L2"] {
        v.push(
            Row::new(n, Add, "mode", &format!("{mode:?}"))
                .set("mode", json!(mode))
                .fails(7, &["unknown ipvlan mode", "must be l2, l3 or l3s"]),
        );
    }
    v.push(
        Row::new(n, Add, "prevResult", "two interfaces, no master, no ipam")
            .remove("master")
            .remove("ipam")
            .set("prevResult", json!({"cniVersion": "1.0.0", "interfaces": [{"name": "m0"}, {"name": "m1"}]}))
            .fails(7, &["prevResult lacks a single named interface"]),
    );
    v.push(
        Row::new(n, Add, "master", "a bridge port (the kernel: EBUSY)")
            .prepare(|_, fx| {
                fx.host.ip(&["link", "add", "br9", "type", "bridge"]).unwrap();
                fx.host.ip(&["link", "add", "m9", "type", "veth", "peer", "name", "m9p"]).unwrap();
                fx.host.ip(&["link", "set", "m9", "master", "br9"]).unwrap();
            })
            .set("master", json!("m9"))
            .fails(999, &["Device or resource busy", "cannot carry ipvlans"]),
    );
    v
}

fn vlan() -> Vec<Row> {
    let n = "vlan";
    let mut v = on_master(n, "master \"lo\" is a loopback device: a VLAN needs an Ethernet master");
    v.push(Row::new(n, Add, "master", "absent").remove("master").fails(7, &["\"master\" field is required"]));
    for (input, id, msg) in [
        ("4095 (reserved)", json!(4095), "invalid VLAN ID 4095 (must be between 0 and 4094)"),
        ("-1", json!(-1), "invalid VLAN ID -1"),
        ("65636 (past u16)", json!(65636), "invalid VLAN ID 65636"),
        ("1e100", json!(1e100), "\"vlanId\""),
    ] {
        v.push(Row::new(n, Add, "vlanId", input).set("vlanId", id).fails(7, &[msg]));
    }
    v.push(Row::new(n, Add, "vlanId", "0 (priority tags only)").set("vlanId", json!(0)).works());
    v.push(
        Row::new(n, Add, "vlanId", "101, the neighbour's on this master")
            .set("vlanId", json!(101))
            .fails(999, &["File exists", "one per VLAN ID and master"]),
    );
    v
}

fn portmap() -> Vec<Row> {
    let n = "portmap";
    let pm = |m: Value| move |c: &mut Case, _: &Fx| c.set("runtimeConfig.portMappings", json!([m.clone()]));
    let mut v = Vec::new();
    v.extend(prev_result_rows(n));
    v.push(Row::new(n, Add, "prevResult", "missing").remove("prevResult").fails(7, &["prevResult"]));
    v.push(
        Row::new(n, Add, "backend", "\"bogus\"")
            .set("backend", json!("bogus"))
            .fails(7, &["unknown backend \"bogus\""]),
    );
    v.push(
        Row::new(n, Add, "markMasqBit", "32")
            .set("markMasqBit", json!(32))
            .fails(7, &["invalid markMasqBit 32"]),
    );
    v.push(
        Row::new(n, Add, "markMasqBit", "-1")
            .set("markMasqBit", json!(-1))
            .fails(7, &["invalid markMasqBit -1"]),
    );
    v.push(
        Row::new(n, Add, "conditionsV4", "[\"-s 1.2.3.4\"]")
            .set("conditionsV4", json!(["-s 1.2.3.4"]))
            .fails(2, &["conditionsV4 is not supported"]),
    );
    for (input, m, msg) in [
        ("hostPort 0", json!({"hostPort": 0, "containerPort": 80}), "hostPort 0 is out of range 1-65535"),
        ("hostPort 65536", json!({"hostPort": 65536, "containerPort": 80}), "hostPort 65536 is out of range"),
        ("hostPort -1", json!({"hostPort": -1, "containerPort": 80}), "hostPort -1 is out of range"),
        (
            "hostPort 1e100",
            json!({"hostPort": 1e100, "containerPort": 80}),
            "hostPort 1e+100 is not a port number",
        ),
        (
            "hostPort \"80\"",
            json!({"hostPort": "80", "containerPort": 80}),
            "hostPort \"80\" is not a port number",
        ),
        ("hostPort missing", json!({"containerPort": 80}), "hostPort is missing"),
        ("containerPort 0", json!({"hostPort": 80, "containerPort": 0}), "containerPort 0 is out of range"),
        (
            "protocol \"icmp\"",
            json!({"hostPort": 80, "containerPort": 80, "protocol": "icmp"}),
            "unknown protocol \"icmp\"",
        ),
        (
            "protocol 6",
            json!({"hostPort": 80, "containerPort": 80, "protocol": 6}),
            "protocol 6 is not a string",
        ),
        (
            "hostIP \"localhost\"",
            json!({"hostPort": 80, "containerPort": 80, "hostIP": "localhost"}),
            "hostIP \"localhost\" is not an IP address",
        ),
        (
            "hostIP of 100,000 bytes",
            json!({"hostPort": 80, "containerPort": 80, "hostIP": long('1', 100_000)}),
            "(100000 bytes)",
        ),
    ] {
        v.push(Row::new(n, Add, "portMappings", input).with(pm(m)).fails(7, &["portMappings[0]", msg]));
    }
    v.push(
        Row::new(n, Add, "portMappings", "hostPort 65535")
            .with(pm(json!({"hostPort": 65535, "containerPort": 65535})))
            .works(),
    );
    v.push(
        Row::new(n, Add, "portMappings", "an entry that is no object")
            .set("runtimeConfig.portMappings", json!([80]))
            .fails(7, &["portMappings[0] is not an object"]),
    );
    v.push(
        Row::new(n, Add, "portMappings", "an object, not a list")
            .set("runtimeConfig.portMappings", json!({"hostPort": 80}))
            .fails(7, &["portMappings must be a list"]),
    );
    v.push(
        Row::new(n, Add, "portMappings", "one host port to two container ports")
            .set(
                "runtimeConfig.portMappings",
                json!([{"hostPort": 8082, "containerPort": 80}, {"hostPort": 8082, "containerPort": 81}]),
            )
            .fails(7, &["portMappings[1]", "8082/tcp is mapped twice"]),
    );
    v.push(
        Row::new(n, Add, "portMappings", "the neighbour's host port")
            .set("runtimeConfig.portMappings", json!([{"hostPort": 8080, "containerPort": 80}]))
            .fails(999, &["host port 8080/tcp is already mapped for container", NEIGHBOUR_SHORT]),
    );
    v.push(
        Row::new(n, Add, "portMappings", "200,000 identical entries")
            .raw("runtimeConfig.portMappings", || {
                format!("[{}]", vec![r#"{"hostPort":8082,"containerPort":80}"#; 200_000].join(","))
            })
            .works(),
    );
    v
}

/// How messages name the neighbour container (its ID, perhaps shortened).
const NEIGHBOUR_SHORT: &str = "0e1ghb0a0e1g";

fn firewall() -> Vec<Row> {
    let n = "firewall";
    let mut v = prev_result_rows(n);
    v.push(
        Row::new(n, Add, "prevResult", "missing").remove("prevResult").fails(7, &["prevResult is missing"]),
    );
    v.push(
        Row::new(n, Add, "backend", "\"bogus\"")
            .set("backend", json!("bogus"))
            .fails(7, &["unknown firewall backend \"bogus\""]),
    );
    v.push(
        Row::new(n, Add, "backend", "\"firewalld\"")
            .set("backend", json!("firewalld"))
            .fails(2, &["\"firewalld\" is not supported"]),
    );
    v.push(
        Row::new(n, Add, "ingressPolicy", "\"bogus\"")
            .set("ingressPolicy", json!("bogus"))
            .fails(7, &["unknown ingressPolicy \"bogus\""]),
    );
    v.push(
        Row::new(n, Add, "ingressPolicy", "\"isolated\", prevResult's bridge \"a/b\"")
            .set("ingressPolicy", json!("isolated"))
            .with(|c, _| c.conf["prevResult"]["interfaces"][0]["name"] = json!("a/b"))
            .fails(7, &["invalid bridge name \"a/b\" in prevResult"]),
    );
    v.push(
        Row::new(n, Del, "backend", "\"bogus\" (DEL finds the state by tag)")
            .set("backend", json!("bogus"))
            .works(),
    );
    v
}

fn tuning() -> Vec<Row> {
    let n = "tuning";
    let mut v = prev_result_rows(n);
    v.push(
        Row::new(n, Add, "prevResult", "missing").remove("prevResult").fails(7, &["prevResult is missing"]),
    );
    for (input, mtu, msg) in [
        ("67 (below the minimum 68)", json!(67), "67"),
        ("65536", json!(65536), "invalid mtu 65536"),
        ("-1", json!(-1), "invalid mtu -1"),
        ("1e100", json!(1e100), "\"mtu\""),
    ] {
        v.push(Row::new(n, Add, "mtu", input).set("mtu", mtu).fails(7, &[msg]));
    }
    v.push(Row::new(n, Add, "mtu", "68 (the minimum)").set("mtu", json!(68)).works());
    v.push(Row::new(n, Add, "mtu", "65535 (the maximum)").set("mtu", json!(65535)).works());
    v.push(
        Row::new(n, Add, "args.cni.mtu", "\"x\"")
            .set("args.cni.mtu", json!("x"))
            .fails(7, &["args.cni.mtu must be an integer"]),
    );
    v.push(Row::new(n, Add, "txQLen", "-1").set("txQLen", json!(-1)).fails(7, &["invalid txQLen -1"]));
    v.push(
        Row::new(n, Add, "txQLen", "4294967296")
            .set("txQLen", json!(4294967296u64))
            .fails(7, &["invalid txQLen 4294967296"]),
    );
    v.push(
        Row::new(n, Add, "mac", "\"zz\"").set("mac", json!("zz")).fails(7, &["invalid MAC address \"zz\""]),
    );
    v.push(
        Row::new(n, Add, "mac", "a multicast MAC")
            .set("mac", json!("01:00:5e:00:00:01"))
            .fails(7, &["01:00:5e:00:00:01"]),
    );
    v.push(
        Row::new(n, Add, "sysctl", "\"kernel.hostname\"")
            .set("sysctl", json!({"kernel.hostname": "x"}))
            .fails(7, &["\"kernel.hostname\"", "only net.*"]),
    );
    v.push(
        Row::new(n, Add, "sysctl", "\"net/../kernel/x\"")
            .set("sysctl", json!({"net/../kernel/x": "1"}))
            .fails(7, &["\"..\""]),
    );
    v.push(
        Row::new(n, Add, "sysctl", "a key that does not exist")
            .set("sysctl", json!({"net.ipv4.nope": "1"}))
            .fails(7, &["net.ipv4.nope does not exist"]),
    );
    v.push(
        Row::new(n, Add, "sysctl", "a key of 100,000 bytes")
            .set("sysctl", json!({format!("net.{}", long('a', 100_000)): "1"}))
            .fails(7, &["invalid net sysctl key", "too long"]),
    );
    v.push(
        Row::new(n, Add, "sysctl", "a value that is a number")
            .set("sysctl", json!({"net.ipv4.conf.IFNAME.arp_notify": 1}))
            .fails(7, &["\"sysctl\""]),
    );
    v.push(
        Row::new(n, Add, "sysctl", "a value the kernel refuses (\"abc\")")
            .set("sysctl", json!({"net.ipv4.conf.IFNAME.arp_notify": "abc"}))
            .fails(7, &["net.ipv4.conf.IFNAME.arp_notify", "\"abc\""]),
    );
    v.push(
        Row::new(n, Add, "sysctl", "the second of two refused")
            .set(
                "sysctl",
                json!({"net.ipv4.conf.IFNAME.arp_notify": "1", "net.ipv4.conf.IFNAME.arp_ignore": "abc"}),
            )
            .fails(7, &["arp_ignore", "\"abc\""]),
    );
    v.push(
        Row::new(n, Add, "dataDir", "\"rel/dir\" (relative)")
            .set("dataDir", json!("rel/dir"))
            .fails(7, &["dataDir \"rel/dir\"", "absolute"]),
    );
    v.push(
        Row::new(n, Add, "dataDir", "an ordinary file")
            .with(|c, fx| c.set("dataDir", json!(fx.outside("victim"))))
            .fails(5, &["victim is not a directory"]),
    );
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "not in the container")
            .env("CNI_IFNAME", "eth9")
            .fails(999, &["\"eth9\" not found"]),
    );
    v.push(
        Row::new(n, Add, "planted state", "the saved-state file a symlink")
            .prepare(|c, fx| fx.plant_link(c, &format!("tuning/{}:eth0.json", super::table::CID)))
            .works(),
    );
    v.push(
        Row::new(n, Add, "planted state", "its temporary file a symlink")
            .prepare(|c, fx| fx.plant_link(c, &format!("tuning/{}:eth0.json.tmp", super::table::CID)))
            .works(),
    );
    v
}

/// The request for a container on a second network, `net2` (10.99.1.0/24).
fn net2(c: &mut Case, fx: &Fx) {
    c.conf["name"] = json!("net2");
    c.conf["runtimeConfig"]["aliases"] = json!({"net2": ["web"]});
    second_gateway(c, fx);
}

fn dns_sidecar() -> Vec<Row> {
    let n = "dns-sidecar";
    let mut v = prev_result_rows(n);
    v.push(Row::new(n, Add, "prevResult", "missing").remove("prevResult").fails(7, &["no prevResult"]));
    v.push(
        Row::new(n, Add, "prevResult", "no address for CNI_IFNAME")
            .with(|c, fx| c.conf["prevResult"] = prev(fx, "eth1", "10.99.0.3/24"))
            .fails(7, &["no IP address for interface eth0"]),
    );
    v.push(
        Row::new(n, Add, "domainName", "\"bad domain\"")
            .set("domainName", json!("bad domain"))
            .fails(7, &["invalid domainName \"bad domain\""]),
    );
    v.push(
        Row::new(n, Add, "domainName", "300 bytes")
            .set("domainName", json!(format!("{}.test", long('a', 295))))
            .fails(7, &["invalid domainName", "(300 bytes)"]),
    );
    v.push(
        Row::new(n, Add, "runtimeConfig.aliases", "100,000 aliases")
            .raw("runtimeConfig.aliases", || {
                let names: Vec<String> = (0..100_000).map(|i| format!("\"alias{i}\"")).collect();
                format!(r#"{{"net1":[{}]}}"#, names.join(","))
            })
            .works(),
    );
    v.push(
        Row::new(n, Add, "runtimeConfig.aliases", "5 (a number)")
            .set("runtimeConfig.aliases", json!(5))
            .works(),
    );
    v.push(
        Row::new(n, Add, "CNI_ARGS K8S_POD_NAME", "\"bad name!\"")
            .env("CNI_ARGS", "K8S_POD_NAME=bad name!")
            .works(),
    );
    v.push(
        Row::new(n, Add, "planted state", "`records.json.tmp` a symlink")
            .prepare(|c, fx| fx.plant_link(c, "dns/net1/records.json.tmp"))
            .works(),
    );
    v.push(
        Row::new(n, Add, "planted state", "`records.json` a symlink (of a new network)")
            .with(net2)
            .prepare(|c, fx| {
                fx.plant_link(c, "dns/net2/records.json");
                c.planted.push(fx.state("dns/net2").into());
            })
            .works(),
    );
    v.push(
        Row::new(n, Add, "planted state", "a new network's directory a symlink")
            .with(net2)
            .prepare(|c, fx| {
                let at = std::path::PathBuf::from(fx.state("dns/net2"));
                std::os::unix::fs::symlink(fx.outside(""), &at).unwrap();
                c.planted.push(at);
            })
            .works(),
    );
    v.push(Row::new(n, Del, "domainName", "\"bad domain\"").set("domainName", json!("bad domain")).works());
    v
}

fn overlay() -> Vec<Row> {
    let n = "overlay";
    let mut v = Vec::new();
    for (field, input, value, msg) in [
        ("vni", "0", json!(0), "vni 0 is out of range (1-16777215)"),
        ("vni", "16777216", json!(16777216), "vni 16777216 is out of range"),
        ("subnet", "\"10.98.0.0/31\"", json!("10.98.0.0/31"), "too small (at most /30)"),
        ("subnet", "100,000 bytes", json!(long('1', 100_000)), "(100000 bytes)"),
        ("gateway", "outside the subnet", json!("10.99.0.1"), "gateway 10.99.0.1 is not a usable address"),
        ("mtu", "575", json!(575), "mtu 575 is out of range (576-65535)"),
        ("mtu", "65536", json!(65536), "mtu 65536 is out of range"),
        ("leaseTTL", "1", json!(1), "leaseTTL 1 is out of range"),
        ("leaseTTL", "3601", json!(3601), "leaseTTL 3601 is out of range"),
        ("vtepIP", "127.0.0.1", json!("127.0.0.1"), "vtepIP 127.0.0.1 cannot be a tunnel endpoint"),
        ("node", "100,000 bytes, then `/`", json!(format!("{}/", long('n', 100_000))), "(100001 bytes)"),
        ("etcd", "no endpoints", json!({"endpoints": []}), "at least one URL"),
        (
            "etcd",
            "an endpoint without http://",
            json!({"endpoints": ["127.0.0.1:2379"]}),
            "is not an http:// or https:// URL",
        ),
        (
            "etcd",
            "timeoutMs 99",
            json!({"endpoints": ["http://127.0.0.1:2379"], "timeoutMs": 99}),
            "timeoutMs 99 is out of range",
        ),
    ] {
        v.push(Row::new(n, Add, field, input).set(field, value).fails(7, &[msg]));
    }
    v.push(
        Row::new(n, Add, "etcd", "nothing listening (a retry may work)")
            .set("etcd", json!({"endpoints": ["http://127.0.0.1:1"], "timeoutMs": 500}))
            .fails(11, &["127.0.0.1:1"]),
    );
    v.push(
        Row::new(n, Add, "vni", "the neighbour network's, on another network")
            .set("name", json!("net2"))
            .set("subnet", json!("10.97.0.0/24"))
            .fails(7, &["4242"]),
    );
    v
}

fn ptp() -> Vec<Row> {
    let n = "ptp";
    let static_ipam = |a: Value| json!({"type": "static", "addresses": [a]});
    let mut v = Vec::new();
    for (input, mtu, msg) in [
        ("67 (below the minimum 68)", json!(67), "invalid mtu 67"),
        ("65536", json!(65536), "invalid mtu 65536"),
        ("-1", json!(-1), "\"mtu\""),
        ("1e100", json!(1e100), "\"mtu\""),
    ] {
        v.push(Row::new(n, Add, "mtu", input).set("mtu", mtu).fails(7, &[msg]));
    }
    v.push(Row::new(n, Add, "mtu", "68 (the minimum)").set("mtu", json!(68)).works());
    v.push(
        Row::new(n, Add, "ipMasqBackend", "\"bogus\"")
            .set("ipMasqBackend", json!("bogus"))
            .fails(7, &["invalid ipMasqBackend \"bogus\""]),
    );
    v.push(Row::new(n, Add, "ipam", "missing").remove("ipam").fails(7, &["needs an \"ipam\" section"]));
    v.push(
        Row::new(n, Add, "ipam", "static, an address without a gateway")
            .set("ipam", static_ipam(json!({"address": "10.99.0.5/24"})))
            .fails(7, &["IPAM gave 10.99.0.5/24 no gateway"]),
    );
    v.push(
        Row::new(n, Add, "ipam", "static, the gateway is the address")
            .set("ipam", static_ipam(json!({"address": "10.99.0.5/24", "gateway": "10.99.0.5"})))
            .fails(7, &["the container's own address"]),
    );
    v.push(
        Row::new(n, Add, "ipam.routes", "a route through another gateway")
            .set("ipam.routes", json!([{"dst": "192.168.0.0/16", "gw": "10.99.0.254"}]))
            .fails(7, &["the route to 192.168.0.0/16 goes through 10.99.0.254"]),
    );
    v.push(
        Row::new(n, Add, "ipam.type", "not on CNI_PATH")
            .set("ipam.type", json!("no-such-ipam"))
            .fails(7, &["failed to find plugin \"no-such-ipam\""]),
    );
    v.push(ifname_taken(n));
    v.push(
        Row::new(n, Add, "dns", "{\"nameservers\": \"x\"}")
            .set("dns", json!({"nameservers": "x"}))
            .fails(7, &["invalid \"dns\""]),
    );
    v.push(
        Row::new(n, Check, "prevResult", "missing")
            .remove("prevResult")
            .fails(7, &["ptp CHECK needs prevResult"]),
    );
    v
}

fn sbr() -> Vec<Row> {
    let n = "sbr";
    let mut v = prev_result_rows(n);
    v.push(
        Row::new(n, Add, "prevResult", "missing")
            .remove("prevResult")
            .fails(7, &["chained plugin", "prevResult is missing"]),
    );
    v.push(
        Row::new(n, Add, "prevResult", "no address for CNI_IFNAME")
            .with(|c, fx| c.conf["prevResult"] = prev_eth1(fx))
            .fails(999, &["no IP addresses supplied on interface: eth0"]),
    );
    for (input, table) in [("0", json!(0)), ("-1", json!(-1)), ("4294967296", json!(4294967296u64))] {
        v.push(
            Row::new(n, Add, "table", input)
                .set("table", table)
                .fails(7, &["table must be a routing table number from 1 to 4294967295"]),
        );
    }
    v.push(Row::new(n, Add, "table", "4294967295 (the last)").set("table", json!(4294967295u64)).works());
    for (input, gws, msg) in [
        ("[\"bogus\"]", json!(["bogus"]), "invalid static gateway IP address: \"bogus\""),
        ("an entry of 100,000 bytes", json!([long('1', 100_000)]), "(100000 bytes)"),
        ("[5]", json!([5]), "word:gateways"),
        ("three entries", json!(["10.99.0.1", "10.99.0.2", "fd00::1"]), "more than 2 entries"),
        ("two IPv4 gateways", json!(["10.99.0.1", "10.99.0.2"]), "multiple IPv4 addresses"),
    ] {
        v.push(Row::new(n, Add, "gateways", input).set("gateways", gws).fails(7, &[msg]));
    }
    // The reference's way (a table per address): a failure half-way puts
    // back the rule it added first.
    v.push(
        Row::new(n, Add, "gateways", "one off the interface's subnets (a table per address)")
            .remove("table")
            .set("gateways", json!(["192.0.2.1"]))
            .fails(999, &["adding the default route via 192.0.2.1 to table 101"]),
    );
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "not in the container (a table per address)")
            .remove("table")
            .env("CNI_IFNAME", "eth9")
            .with(|c, fx| c.conf["prevResult"] = prev(fx, "eth9", "10.99.0.3/24"))
            .fails(999, &["finding eth9"]),
    );
    v.push(Row::new(n, Del, "table", "\"x\" (a config ADD refuses)").set("table", json!("x")).works());
    v.push(Row::new(n, Del, "prevResult", "missing").remove("prevResult").works());
    v
}

fn vrf() -> Vec<Row> {
    let n = "vrf";
    let mut v = prev_result_rows(n);
    v.push(
        Row::new(n, Add, "prevResult", "missing")
            .remove("prevResult")
            .fails(7, &["chained plugin", "missing prevResult"]),
    );
    for (input, name, msg) in [
        ("missing", None, "valid vrf name (vrfname)"),
        ("empty", Some(json!("")), "valid vrf name (vrfname)"),
        ("16 bytes", Some(json!("abcdefghijklmnop")), "at most 15 bytes"),
        ("\"a/b\"", Some(json!("a/b")), "cannot contain /"),
        ("\"..\"", Some(json!("..")), "cannot be . or .."),
        ("100,000 bytes", Some(json!(long('v', 100_000))), "(100000 bytes)"),
    ] {
        let row = Row::new(n, Add, "vrfname", input);
        let row = match name {
            Some(name) => row.set("vrfname", name),
            None => row.remove("vrfname"),
        };
        v.push(row.fails(7, &[msg]));
    }
    v.push(
        Row::new(n, Add, "vrfname", "the neighbour's interface (a veth)")
            .set("vrfname", json!("eth1"))
            .fails(7, &["eth1 is a veth in the container, not a VRF"]),
    );
    v.push(
        Row::new(n, Add, "table", "another than the existing VRF's")
            .set("table", json!(7))
            .fails(7, &["VRF vrf0 already exist with different routing table 1"]),
    );
    v.push(
        Row::new(n, Add, "table", "the table of another VRF, for a new one")
            .set("vrfname", json!("vrf1"))
            .set("table", json!(1))
            .fails(7, &["table 1 is the table of VRF vrf0"]),
    );
    for (input, table) in [("-1", json!(-1)), ("4294967296", json!(4294967296u64))] {
        v.push(Row::new(n, Add, "table", input).set("table", table).fails(7, &["word:table"]));
    }
    v.push(
        Row::new(n, Add, "vrfname", "a new VRF (the next free table)").set("vrfname", json!("vrf1")).works(),
    );
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "not in the container")
            .env("CNI_IFNAME", "eth9")
            .with(|c, fx| c.conf["prevResult"] = prev(fx, "eth9", "10.99.0.3/24"))
            .fails(999, &["could not get link eth9"]),
    );
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "already in another VRF (a new one named)")
            .env("CNI_IFNAME", "eth1")
            .set("vrfname", json!("vrf1"))
            .with(|c, fx| c.conf["prevResult"] = prev_eth1(fx))
            .fails(999, &["interface eth1 has already a master set: vrf0"]),
    );
    // Nothing can have been added under these: DEL has nothing to do.
    v.push(
        Row::new(n, Del, "vrfname", "missing (a config ADD refuses)").remove("vrfname").never_added().works(),
    );
    v.push(
        Row::new(n, Del, "vrfname", "a VRF that does not exist")
            .set("vrfname", json!("vrf9"))
            .never_added()
            .works(),
    );
    v
}

fn podman_chain() -> Vec<Row> {
    let n = "podman-chain";
    vec![
        Row::new(n, Add, "portMappings", "hostPort 0")
            .cap("portMappings", json!([{"hostPort": 0, "containerPort": 80}]))
            .fails_in("portmap", 7, &["hostPort 0 is out of range"]),
        Row::new(n, Add, "portMappings", "one host port to two container ports")
            .cap(
                "portMappings",
                json!([{"hostPort": 8082, "containerPort": 80}, {"hostPort": 8082, "containerPort": 81}]),
            )
            .fails_in("portmap", 7, &["mapped twice"]),
        Row::new(n, Add, "portMappings", "the neighbour's host port")
            .cap("portMappings", json!([{"hostPort": 8080, "containerPort": 80}]))
            .fails_in(
                "portmap",
                999,
                &["host port 8080/tcp is already mapped for container", NEIGHBOUR_SHORT],
            ),
        Row::new(n, Add, "portMappings", "20,000 identical entries")
            .with(|c, _| {
                c.cap_args["portMappings"] =
                    json!(vec![json!({"hostPort": 8082, "containerPort": 80, "protocol": "udp"}); 20_000])
            })
            .works(),
        Row::new(n, Add, "aliases", "10,000 aliases")
            .with(|c, _| {
                let names: Vec<String> = (0..10_000).map(|i| format!("alias{i}")).collect();
                c.cap_args["aliases"] = json!({"net1": names});
            })
            .works(),
        Row::new(n, Add, "ips", "[\"bogus\"]")
            .with(|c, _| {
                c.conf["plugins"][0]["capabilities"] = json!({"ips": true});
                c.cap_args["ips"] = json!(["bogus"]);
            })
            .fails_in("bridge", 7, &["runtimeConfig.ips", "\"bogus\""]),
        Row::new(n, Add, "mac", "\"zz\"")
            .with(|c, _| {
                c.conf["plugins"][0]["capabilities"] = json!({"mac": true});
                c.cap_args["mac"] = json!("zz");
            })
            .fails_in("bridge", 7, &["invalid MAC address \"zz\""]),
    ]
}

fn static_ipam() -> Vec<Row> {
    let n = "static";
    let addr = |a: Value| move |c: &mut Case, _: &Fx| c.set("ipam.addresses", json!([a.clone()]));
    let mut v = Vec::new();
    for (input, a, msg) in [
        ("\"10.99.0.5\" (no prefix)", json!({"address": "10.99.0.5"}), "\"10.99.0.5\""),
        ("\"10.99.0.5/33\"", json!({"address": "10.99.0.5/33"}), "\"10.99.0.5/33\""),
        ("missing", json!({"gateway": "10.99.0.1"}), "CIDR notation"),
        ("100,000 bytes", json!({"address": long('1', 100_000)}), "(100000 bytes)"),
    ] {
        v.push(Row::new(n, Add, "addresses[].address", input).with(addr(a)).fails(7, &["address", msg]));
    }
    for (input, a, msg) in [
        ("\"x\"", json!({"address": "10.99.0.5/24", "gateway": "x"}), "gateway \"x\" is not an IP address"),
        (
            "100,000 bytes",
            json!({"address": "10.99.0.5/24", "gateway": long('1', 100_000)}),
            "(100000 bytes)",
        ),
    ] {
        v.push(Row::new(n, Add, "addresses[].gateway", input).with(addr(a)).fails(7, &[msg]));
    }
    v.push(
        Row::new(n, Add, "addresses", "an entry that is no object")
            .set("ipam.addresses", json!([5]))
            .fails(7, &["word:addresses"]),
    );
    v.push(Row::new(n, Add, "addresses", "none").set("ipam.addresses", json!([])).works());
    v.push(
        Row::new(n, Add, "addresses", "two IPv4 in a 0.2.0 config")
            .set("cniVersion", json!("0.2.0"))
            .set("ipam.addresses", json!([{"address": "10.99.0.5/24"}, {"address": "10.99.0.6/24"}]))
            .fails(7, &["more than 1 address per family"]),
    );
    v.push(
        Row::new(n, Add, "addresses", "10,000 addresses")
            .raw("ipam.addresses", || {
                let a: Vec<String> = (0..10_000u32)
                    .map(|i| {
                        format!(r#"{{"address":"10.{}.{}.{}/8"}}"#, 100 + i / 65536, (i / 256) % 256, i % 256)
                    })
                    .collect();
                format!("[{}]", a.join(","))
            })
            .works(),
    );
    v.push(
        Row::new(n, Add, "routes", "a route to \"bogus\"")
            .set("ipam.routes", json!([{"dst": "bogus"}]))
            .fails(7, &["word:routes", "bogus"]),
    );
    v.push(
        Row::new(n, Add, "dns", "nameservers \"x\" (not a list)")
            .set("ipam.dns", json!({"nameservers": "x"}))
            .fails(7, &["word:dns"]),
    );
    for (input, args, msg) in [
        ("IP=10.99.0.300/24", "IP=10.99.0.300/24", "\"10.99.0.300/24\""),
        ("IP of 100,000 bytes", "IP=@", "(100000 bytes)"),
        ("GATEWAY=x", "IP=10.99.0.7/24;GATEWAY=x", "invalid gateway address (CNI_ARGS GATEWAY): \"x\""),
    ] {
        let args = args.replace('@', &long('1', 100_000));
        v.push(Row::new(n, Add, "CNI_ARGS", input).env("CNI_ARGS", args).fails(7, &[msg]));
    }
    v.push(
        Row::new(n, Add, "CNI_ARGS", "IP=10.99.0.7/24;GATEWAY=10.99.0.1")
            .env("CNI_ARGS", "IP=10.99.0.7/24;GATEWAY=10.99.0.1")
            .works(),
    );
    for (what, path) in [("args.cni.ips", "args.cni.ips"), ("runtimeConfig.ips", "runtimeConfig.ips")] {
        v.push(
            Row::new(n, Add, what, "[\"bogus\"]").set(path, json!(["bogus"])).fails(7, &[what, "\"bogus\""]),
        );
        v.push(Row::new(n, Add, what, "[5]").set(path, json!([5])).fails(7, &[what, "is not a string"]));
        v.push(
            Row::new(n, Add, what, "\"10.99.0.5/24\" (not a list)")
                .set(path, json!("10.99.0.5/24"))
                .fails(7, &[what, "not a list"]),
        );
        v.push(
            Row::new(n, Add, what, "a string of 100,000 bytes (not a list)")
                .set(path, json!(long('1', 100_000)))
                .fails(7, &[what, "(100000 bytes)"]),
        );
    }
    v.push(Row::new(n, Check, "prevResult", "missing").fails(7, &["prevResult"]));
    v.push(
        Row::new(n, Check, "prevResult", "without the configured address")
            .set("prevResult", json!({"cniVersion": "1.0.0", "ips": [{"address": "10.99.0.6/24"}]}))
            .fails(999, &["address 10.99.0.5/24 of interface eth0 is not in prevResult"]),
    );
    v.push(
        Row::new(n, Del, "addresses", "[\"bogus\"] (DEL has nothing to release)")
            .set("ipam.addresses", json!(["bogus"]))
            .works(),
    );
    v
}

fn dhcp() -> Vec<Row> {
    let n = "dhcp";
    let mut v = Vec::new();
    v.push(
        Row::new(n, Add, "daemonSocketPath", "no daemon there (a retry may work)")
            .with(|c, fx| c.set("ipam.daemonSocketPath", json!(fx.private("nobody.sock"))))
            .fails(11, &["cannot reach the DHCP daemon", "nobody.sock"]),
    );
    v.push(
        Row::new(n, Add, "daemonSocketPath", "an ordinary file")
            .with(|c, fx| c.set("ipam.daemonSocketPath", json!(fx.outside("victim"))))
            .fails(11, &["cannot reach the DHCP daemon", "victim"]),
    );
    v.push(
        Row::new(n, Add, "daemonSocketPath", "100,000 bytes")
            .set("ipam.daemonSocketPath", json!(format!("/{}", long('s', 100_000))))
            .fails(7, &["daemonSocketPath", "(100001 bytes)"]),
    );
    v.push(
        Row::new(
            n,
            Add,
            "daemonSocketPath",
            "the daemon's socket by a path longer than a socket address holds (107 bytes)",
        )
        .with(|c, fx| {
            let long = format!("{}{}/dhcp.sock", fx.private("").display(), "/.".repeat(150));
            c.set("ipam.daemonSocketPath", json!(long));
        })
        .works(),
    );
    v.push(
        Row::new(n, Del, "daemonSocketPath", "no daemon there (nothing to release)")
            .with(|c, fx| c.set("ipam.daemonSocketPath", json!(fx.private("nobody.sock"))))
            .never_added()
            .works(),
    );
    v.push(
        Row::new(n, Status, "daemonSocketPath", "no daemon there")
            .set("cniVersion", json!("1.1.0"))
            .with(|c, fx| c.set("ipam.daemonSocketPath", json!(fx.private("nobody.sock"))))
            .fails(50, &["cannot reach the DHCP daemon"]),
    );
    for (input, req, msg) in [
        ("option \"bogus\"", json!([{"option": "bogus"}]), "\"bogus\""),
        ("option 300", json!([{"option": "300"}]), "300"),
        ("option of 100,000 bytes", json!([{"option": long('o', 100_000)}]), "(100000 bytes)"),
    ] {
        v.push(Row::new(n, Add, "request", input).set("ipam.request", req).fails(7, &["request", msg]));
    }
    for (input, p, msg) in [
        ("option \"bogus\"", json!([{"option": "bogus", "value": "x"}]), "\"bogus\""),
        (
            "a value of 256 bytes",
            json!([{"option": "host-name", "value": long('h', 256)}]),
            "256 bytes, at most 255",
        ),
    ] {
        v.push(Row::new(n, Add, "provide", input).set("ipam.provide", p).fails(7, &["provide", msg]));
    }
    v.push(
        Row::new(n, Add, "provide", "host-name from CNI_ARGS K8S_POD_NAME")
            .set("ipam.provide", json!([{"option": "host-name", "fromArg": "K8S_POD_NAME"}]))
            .env("CNI_ARGS", "K8S_POD_NAME=web-1")
            .works(),
    );
    v.push(Row::new(n, Add, "priority", "-1").set("ipam.priority", json!(-1)).fails(7, &["priority", "-1"]));
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "not in the container")
            .env("CNI_IFNAME", "eth9")
            .fails(999, &["eth9"]),
    );
    v
}

fn bandwidth() -> Vec<Row> {
    let n = "bandwidth";
    let mut v = Vec::new();
    v.extend(
        prev_result_rows(n).into_iter().filter(|r| r.input != "a 0.2.0 result in a 1.0.0 config (converted)"),
    );
    v.push(
        Row::new(n, Add, "prevResult", "missing").remove("prevResult").fails(7, &["prevResult is missing"]),
    );
    v.push(
        Row::new(n, Add, "prevResult", "a 0.2.0 result in a 1.0.0 config (no interfaces)")
            .set("prevResult", json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.99.0.3/24"}}))
            .fails(999, &["prevResult lists no interfaces"]),
    );
    v.push(
        Row::new(n, Add, "prevResult", "without the container's host end")
            .with(|c, fx| c.conf["prevResult"] = prev(fx, "eth0", "10.99.0.3/24"))
            .fails(999, &["host end vh0 is not among prevResult's host interfaces"]),
    );
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "not in the container")
            .env("CNI_IFNAME", "eth9")
            .fails(999, &["eth9"]),
    );
    v.push(
        Row::new(n, Add, "CNI_IFNAME", "no veth (lo)")
            .env("CNI_IFNAME", "lo")
            .fails(999, &["lo has no veth peer"]),
    );
    for (input, key, value, msg) in [
        (
            "rate without a burst",
            "ingressBurst",
            json!(0),
            "ingressRate is set, so ingressBurst must be set too",
        ),
        ("-1", "egressRate", json!(-1), "egressRate must be a whole number"),
        ("1e100", "ingressRate", json!(1e100), "ingressRate must be a whole number"),
        ("7 (below a byte per second)", "ingressRate", json!(7), "ingressRate must be at least 8"),
        ("4 GB", "egressBurst", json!(34_359_738_360u64), "egressBurst cannot be more than 4GB"),
        ("8 bits at 1 Gbit/s", "ingressBurst", json!(8), "ingressBurst of 8 bits is too small"),
    ] {
        let row = Row::new(n, Add, key, input).set(key, value);
        let row =
            if input == "8 bits at 1 Gbit/s" { row.set("ingressRate", json!(1_000_000_000u64)) } else { row };
        v.push(row.fails(7, &[msg]));
    }
    v.push(
        Row::new(n, Add, "every value", "0 (nothing to shape)")
            .set("ingressRate", json!(0))
            .set("ingressBurst", json!(0))
            .set("egressRate", json!(0))
            .set("egressBurst", json!(0))
            .works(),
    );
    let own_removed = |c: &mut Case, _: &Fx| {
        for k in ["ingressRate", "ingressBurst", "egressRate", "egressBurst"] {
            c.remove(k);
        }
    };
    v.push(
        Row::new(n, Add, "runtimeConfig.bandwidth", "capitalized keys, as containerd's CRI sends them")
            .with(own_removed)
            .set("runtimeConfig.bandwidth", json!({"IngressRate": 8_000_000, "IngressBurst": 256_000}))
            .works(),
    );
    v.push(
        Row::new(n, Add, "runtimeConfig.bandwidth", "5 (a number)")
            .with(own_removed)
            .set("runtimeConfig.bandwidth", json!(5))
            .fails(7, &["runtimeConfig.bandwidth must be an object"]),
    );
    v.push(
        Row::new(n, Add, "planted state", "an ifb of its name already there")
            .prepare(|_, fx| {
                fx.host.ip(&["link", "add", &bw_ifb("net1", super::table::CID), "type", "ifb"]).unwrap();
            })
            .fails(999, &["left by an earlier ADD"]),
    );
    v
}

/// bandwidth's ifb name (the reference's): `bwp` + 12 hex digits of SHA-512(network + container ID).
fn bw_ifb(network: &str, cid: &str) -> String {
    let digest = test_harness::sha512::sha512(format!("{network}{cid}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("bwp{hex}")
}
