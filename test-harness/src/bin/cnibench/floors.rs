//! Scenario 6: the floors. A static no-op exec (what any process start
//! costs here) and the kernel work of a bridge and of a ptp ADD/DEL done
//! in-process with common's netlink and nf_tables layers, without any plugin.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::netlink::rtnl::{AddrOpts, Route, Rtnl};
use common::netns::Netns;
use common::nft::{key, BaseChain, Batch, DataType, Elem, Family, Hook, Nft, SetSpec, Table as NftTable};
use test_harness::{TempDir, TestNs};

use crate::ctx::{ms, Ctx};
use crate::report::{Section, Table};
use crate::start::version_exec;
use crate::stats::{fmt_ms, median, percentile};

/// A static no-op: what starting any process costs here.
const NOOP_C: &str = "int main(void) { return 0; }\n";

/// A static exec wrapper for measuring peak RSS. Exec'd from a runtime with
/// vfork (Rust's and Go's spawn), a process inherits its parent's RSS high
/// water mark into ru_maxrss at exec. So the wrapper, linked in place of a
/// plugin (argv[0] = its name), forks a fresh child that execs the real
/// plugin from $CNIBENCH_REAL_DIR, and writes that child's wait4 rusage
/// (which includes any IPAM plugin it waited for) to $CNIBENCH_USAGE_DIR.
const RSSWRAP_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
  const char *real = getenv("CNIBENCH_REAL_DIR"), *usage = getenv("CNIBENCH_USAGE_DIR");
  const char *cmd = getenv("CNI_COMMAND");
  const char *name = strrchr(argv[0], '/');
  name = name ? name + 1 : argv[0];
  char path[4096], out[4096];
  if (!real || !usage) return 127;
  snprintf(path, sizeof path, "%s/%s", real, name);
  pid_t pid = fork();
  if (pid < 0) return 127;
  if (pid == 0) { argv[0] = path; execv(path, argv); _exit(127); }
  int st; struct rusage ru;
  if (wait4(pid, &st, 0, &ru) < 0) return 127;
  snprintf(out, sizeof out, "%s/%s.%s.%d", usage, name, cmd ? cmd : "-", (int)pid);
  FILE *f = fopen(out, "w");
  if (f) {
    fprintf(f, "%ld %ld %ld\n", ru.ru_maxrss, (long)(ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec),
            (long)(ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec));
    fclose(f);
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
"#;

/// Build a static C program named `name` with gcc into `dir`; None when impossible.
fn build_static(dir: &TempDir, name: &str, src: &str) -> Option<PathBuf> {
    let c = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&c, src).ok()?;
    let out = Command::new("gcc").args(["-static", "-O2", "-s", "-o"]).arg(&bin).arg(&c).output().ok()?;
    if out.status.success() {
        Some(bin)
    } else {
        eprintln!("{name} not built (gcc -static): {}", String::from_utf8_lossy(&out.stderr).trim());
        None
    }
}

/// The static no-op and the RSS wrapper.
pub fn build_helpers(dir: &TempDir) -> (Option<PathBuf>, Option<PathBuf>) {
    (build_static(dir, "noop", NOOP_C), build_static(dir, "rsswrap", RSSWRAP_C))
}

const BRIDGE: &str = "cnifl0";
const NFT_SETUP: &str = "table inet cnibench_floor {
  set m4 { type ipv4_addr; }
  chain postrouting { type nat hook postrouting priority srcnat; ip saddr @m4 ip daddr != 10.77.10.0/24 masquerade; }
}";

/// The steps of one ADD and one DEL with their durations (ms).
struct Steps {
    add: Vec<(&'static str, f64)>,
    del: Vec<(&'static str, f64)>,
}

fn kernel_work(ctr: &TestNs, bridge: u32, ip: Ipv4Addr) -> Result<Steps, String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |x: &dyn std::fmt::Display| format!("{what}: {x}")
    };
    let table = NftTable::new(Family::Inet, "cnibench_floor");
    let ctr_ns = Netns::open(ctr.path()).map_err(|x| e("netns")(&x))?;
    let host_ns = Netns::current().map_err(|x| e("netns")(&x))?;
    let host_name = format!("vethfl{:08x}", u32::from(ip));
    let mut add = Vec::new();
    let t = Instant::now();
    let mut cnl = Rtnl::in_netns(&ctr_ns).map_err(|x| e("container netlink")(&x))?;
    let mut nl = Rtnl::open().map_err(|x| e("netlink")(&x))?;
    add.push(("open netlink sockets", ms(t.elapsed())));
    let t = Instant::now();
    cnl.add_veth("eth0", &host_name, Some(host_ns.fd()), None, None).map_err(|x| e("veth")(&x))?;
    add.push(("create veth pair (peer into host)", ms(t.elapsed())));
    let t = Instant::now();
    let port = nl.link_by_name(&host_name).map_err(|x| e("host veth")(&x))?;
    nl.set_master(port.index, bridge).map_err(|x| e("enslave")(&x))?;
    nl.set_up(port.index).map_err(|x| e("up")(&x))?;
    add.push(("enslave host end, up", ms(t.elapsed())));
    let t = Instant::now();
    let link = cnl.link_by_name("eth0").map_err(|x| e("eth0")(&x))?;
    cnl.add_addr(link.index, IpAddr::V4(ip), 24, &AddrOpts::default()).map_err(|x| e("addr")(&x))?;
    cnl.set_up(link.index).map_err(|x| e("up")(&x))?;
    let mut r = common::netlink::rtnl::Route::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    r.gateway = Some(IpAddr::V4(Ipv4Addr::new(10, 77, 10, 1)));
    r.oif = Some(link.index);
    cnl.add_route(&r).map_err(|x| e("route")(&x))?;
    add.push(("container address, up, default route", ms(t.elapsed())));
    let t = Instant::now();
    let mut nft = Nft::open().map_err(|x| e("nft")(&x))?;
    let mut b = Batch::new();
    b.add_elements(&table, "m4", &[Elem::new(key::ip(IpAddr::V4(ip))).comment("floor eth0")]);
    nft.commit(&b).map_err(|x| e("nft add")(&x))?;
    add.push(("nf_tables set element (open, commit)", ms(t.elapsed())));
    let t = Instant::now();
    drop(nft);
    add.push(("close the nf_tables socket", ms(t.elapsed())));
    let t = Instant::now();
    drop((cnl, nl));
    add.push(("close the netlink sockets", ms(t.elapsed())));

    let mut del = Vec::new();
    let t = Instant::now();
    let mut cnl = Rtnl::in_netns(&ctr_ns).map_err(|x| e("container netlink")(&x))?;
    cnl.del_link_by_name("eth0").map_err(|x| e("del veth")(&x))?;
    drop(cnl);
    del.push(("delete veth pair", ms(t.elapsed())));
    let t = Instant::now();
    let mut nft = Nft::open().map_err(|x| e("nft")(&x))?;
    let mut b = Batch::new();
    b.delete_elements(&table, "m4", &[key::ip(IpAddr::V4(ip))]);
    nft.commit(&b).map_err(|x| e("nft del")(&x))?;
    del.push(("delete nf_tables set element (open, commit)", ms(t.elapsed())));
    let t = Instant::now();
    drop(nft);
    del.push(("close the nf_tables socket", ms(t.elapsed())));
    Ok(Steps { add, del })
}

/// The ptp gateway every host end carries (a /32), in the masquerade's subnet.
const PTP_GW: Ipv4Addr = Ipv4Addr::new(10, 77, 10, 1);

/// What a ptp + ipMasq ADD/DEL asks of the kernel: a veth pair whose host end
/// holds the gateway and a route to the container, the container's address
/// without its subnet route and its routes through the gateway.
fn ptp_kernel_work(ctr: &TestNs, ip: Ipv4Addr) -> Result<Steps, String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |x: &dyn std::fmt::Display| format!("{what}: {x}")
    };
    let table = NftTable::new(Family::Inet, "cnibench_floor");
    let ctr_ns = Netns::open(ctr.path()).map_err(|x| e("netns")(&x))?;
    let host_ns = Netns::current().map_err(|x| e("netns")(&x))?;
    let host_name = format!("vethfp{:08x}", u32::from(ip));
    let (gw, ip) = (IpAddr::V4(PTP_GW), IpAddr::V4(ip));
    let mut add = Vec::new();
    let t = Instant::now();
    let mut cnl = Rtnl::in_netns(&ctr_ns).map_err(|x| e("container netlink")(&x))?;
    let mut nl = Rtnl::open().map_err(|x| e("netlink")(&x))?;
    add.push(("open netlink sockets", ms(t.elapsed())));
    let t = Instant::now();
    cnl.add_veth("eth0", &host_name, Some(host_ns.fd()), None, None).map_err(|x| e("veth")(&x))?;
    add.push(("create veth pair (peer into host)", ms(t.elapsed())));
    let t = Instant::now();
    let host_end = nl.link_by_name(&host_name).map_err(|x| e("host veth")(&x))?;
    nl.set_up(host_end.index).map_err(|x| e("up")(&x))?;
    nl.add_addr(host_end.index, gw, 32, &AddrOpts::default()).map_err(|x| e("gateway")(&x))?;
    let mut to_ctr = Route::new(ip, 32);
    (to_ctr.oif, to_ctr.scope) = (Some(host_end.index), libc::RT_SCOPE_HOST);
    nl.add_route(&to_ctr).map_err(|x| e("host route")(&x))?;
    add.push(("host end up, gateway /32, route to the container", ms(t.elapsed())));
    let t = Instant::now();
    let link = cnl.link_by_name("eth0").map_err(|x| e("eth0")(&x))?;
    let opts = AddrOpts { noprefixroute: true, ..Default::default() };
    cnl.add_addr(link.index, ip, 24, &opts).map_err(|x| e("addr")(&x))?;
    cnl.set_up(link.index).map_err(|x| e("up")(&x))?;
    let mut to_gw = Route::new(gw, 32);
    (to_gw.oif, to_gw.scope, to_gw.src) = (Some(link.index), libc::RT_SCOPE_LINK, Some(ip));
    let mut subnet = Route::new(IpAddr::V4(Ipv4Addr::new(10, 77, 10, 0)), 24);
    (subnet.gateway, subnet.oif, subnet.src) = (Some(gw), Some(link.index), Some(ip));
    let mut default = Route::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    (default.gateway, default.oif) = (Some(gw), Some(link.index));
    for r in [&to_gw, &subnet, &default] {
        cnl.add_route(r).map_err(|x| e("route")(&x))?;
    }
    add.push(("container address, up, routes through the gateway", ms(t.elapsed())));
    let t = Instant::now();
    let mut nft = Nft::open().map_err(|x| e("nft")(&x))?;
    let mut b = Batch::new();
    b.add_elements(&table, "m4", &[Elem::new(key::ip(ip)).comment("floor ptp eth0")]);
    nft.commit(&b).map_err(|x| e("nft add")(&x))?;
    drop(nft);
    add.push(("nf_tables set element (open, commit, close)", ms(t.elapsed())));
    let t = Instant::now();
    drop((cnl, nl));
    add.push(("close the netlink sockets", ms(t.elapsed())));

    let mut del = Vec::new();
    let t = Instant::now();
    let mut cnl = Rtnl::in_netns(&ctr_ns).map_err(|x| e("container netlink")(&x))?;
    cnl.del_link_by_name("eth0").map_err(|x| e("del veth")(&x))?;
    drop(cnl);
    del.push(("delete veth pair (its addresses and routes go along)", ms(t.elapsed())));
    let t = Instant::now();
    let mut nft = Nft::open().map_err(|x| e("nft")(&x))?;
    let mut b = Batch::new();
    b.delete_elements(&table, "m4", &[key::ip(ip)]);
    nft.commit(&b).map_err(|x| e("nft del")(&x))?;
    drop(nft);
    del.push(("delete nf_tables set element (open, commit, close)", ms(t.elapsed())));
    Ok(Steps { add, del })
}

/// Rows `op`, `step`, median and p95 for each step of `runs`, then the total.
fn step_rows(t: &mut Table, op: &str, runs: &[Vec<(&str, f64)>]) {
    let Some(first) = runs.first() else { return };
    for (j, (step, _)) in first.iter().enumerate() {
        let v: Vec<f64> = runs.iter().map(|r| r[j].1).collect();
        t.row(vec![op.into(), step.to_string(), fmt_ms(median(&v)), fmt_ms(percentile(&v, 95.0))]);
    }
    let tot: Vec<f64> = runs.iter().map(|r| r.iter().map(|s| s.1).sum()).collect();
    t.row(vec![op.into(), "**total**".into(), fmt_ms(median(&tot)), fmt_ms(percentile(&tot, 95.0))]);
}

pub fn floors(ctx: &mut Ctx) {
    let mut sec = Section::new("6. Floors");
    let runs = ctx.opts.start_runs;
    if ctx.noop_ms.is_empty() {
        if let Some(n) = ctx.noop.clone() {
            ctx.noop_ms = (0..runs).filter_map(|_| version_exec(&n)).collect();
        }
    }
    match ctx.noop_ms.is_empty() {
        true => sec.text("Static no-op exec: skipped (gcc -static could not build one)."),
        false => sec.text(format!(
            "Static C no-op exec (`gcc -static`, same spawn/read/reap path as the plugins): median {} ms, p95 {} ms \
             over {} runs.",
            fmt_ms(median(&ctx.noop_ms)),
            fmt_ms(percentile(&ctx.noop_ms, 95.0)),
            ctx.noop_ms.len()
        )),
    }
    let n = ctx.opts.n;
    println!("== floors: kernel work of a bridge and a ptp ADD/DEL in-process ({n} times each)");
    let host = TestNs::with_lo().expect("netns");
    let setup = || -> std::io::Result<u32> {
        host.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        host.ip(&["addr", "add", "10.77.10.1/24", "dev", BRIDGE])?;
        host.ip(&["link", "set", BRIDGE, "up"])?;
        let out = host.spawn(&["nft", "-f", "-"], NFT_SETUP.as_bytes())?;
        if !out.success() {
            return Err(std::io::Error::other(format!("nft -f: {}", out.stderr)));
        }
        let idx = host.run(|| Rtnl::open().and_then(|mut nl| nl.link_by_name(BRIDGE)).map(|l| l.index))?;
        idx.map_err(|e| std::io::Error::other(e.to_string()))
    };
    let bridge = match setup() {
        Ok(b) => b,
        Err(e) => {
            sec.text(format!("Kernel work: skipped ({e})."));
            ctx.report.push(sec);
            return;
        }
    };
    let mut add: Vec<Vec<(&str, f64)>> = Vec::new();
    let mut del: Vec<Vec<(&str, f64)>> = Vec::new();
    for i in 0..n {
        let ctr = TestNs::new().expect("netns");
        let ip = Ipv4Addr::new(10, 77, 10, 2 + i as u8);
        match host.run(|| kernel_work(&ctr, bridge, ip)).map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(s) => {
                add.push(s.add);
                del.push(s.del);
            }
            Err(e) => {
                let e = format!("floor kernel work #{i}: {e}");
                ctx.report.error(e.clone());
                sec.text(e);
                break;
            }
        }
    }
    // ptp's kernel work, in the same host netns (the bridge is not used).
    let mut ptp_add: Vec<Vec<(&str, f64)>> = Vec::new();
    let mut ptp_del: Vec<Vec<(&str, f64)>> = Vec::new();
    for i in 0..n {
        let ctr = TestNs::new().expect("netns");
        let ip = Ipv4Addr::new(10, 77, 10, 2 + i as u8);
        match host.run(|| ptp_kernel_work(&ctr, ip)).map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(s) => {
                ptp_add.push(s.add);
                ptp_del.push(s.del);
            }
            Err(e) => {
                let e = format!("floor ptp kernel work #{i}: {e}");
                ctx.report.error(e.clone());
                sec.text(e);
                break;
            }
        }
    }
    // loopback's kernel work: lo up in a fresh netns.
    let mut lo_up = Vec::new();
    for _ in 0..n {
        let ctr = TestNs::new().expect("netns");
        let r = (|| -> Result<f64, String> {
            let ns = Netns::open(ctr.path()).map_err(|e| e.to_string())?;
            let t = Instant::now();
            let mut nl = Rtnl::in_netns(&ns).map_err(|e| e.to_string())?;
            let lo = nl.link_by_name("lo").map_err(|e| e.to_string())?;
            nl.set_up(lo.index).map_err(|e| e.to_string())?;
            drop(nl);
            Ok(ms(t.elapsed()))
        })();
        lo_up.extend(r.ok());
    }
    // The same element, committed in a batch that also "ensures" the table,
    // chain and set (re-adds of existing objects): does the socket close wait?
    let mut ensure: Vec<(f64, f64)> = Vec::new();
    for i in 0..n {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 77, 10, 200 + (i % 50) as u8));
        let r = host.run(|| -> Result<(f64, f64), String> {
            let table = NftTable::new(Family::Inet, "cnibench_floor");
            let t = Instant::now();
            let mut nft = Nft::open().map_err(|e| e.to_string())?;
            let mut b = Batch::new();
            b.add_table(&table)
                .add_chain(&table, "postrouting", Some(BaseChain::nat(Hook::Postrouting, 100)))
                .add_set(&table, &SetSpec::set("m4", &[DataType::IPV4_ADDR]))
                .add_elements(&table, "m4", &[Elem::new(key::ip(ip))]);
            nft.commit(&b).map_err(|e| e.to_string())?;
            let commit = ms(t.elapsed());
            let t = Instant::now();
            drop(nft);
            let close = ms(t.elapsed());
            let mut nft = Nft::open().map_err(|e| e.to_string())?;
            let mut b = Batch::new();
            b.delete_elements(&table, "m4", &[key::ip(ip)]);
            nft.commit(&b).map_err(|e| e.to_string())?;
            Ok((commit, close))
        });
        match r.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(x) => ensure.push(x),
            Err(e) => {
                sec.text(format!("ensure-batch experiment: {e}"));
                break;
            }
        }
    }
    let mut t = Table::new(&["op", "step", "median ms", "p95 ms"]);
    step_rows(&mut t, "ADD", &add);
    step_rows(&mut t, "DEL", &del);
    if !lo_up.is_empty() {
        t.row(vec![
            "loopback ADD".into(),
            "lo up in a fresh netns (open socket, lookup, set up, close)".into(),
            fmt_ms(median(&lo_up)),
            fmt_ms(percentile(&lo_up, 95.0)),
        ]);
    }
    if !ensure.is_empty() {
        let (c, cl): (Vec<f64>, Vec<f64>) = ensure.into_iter().unzip();
        t.row(vec![
            "ADD'".into(),
            "element + re-add of existing table, chain, set (open, commit)".into(),
            fmt_ms(median(&c)),
            fmt_ms(percentile(&c, 95.0)),
        ]);
        t.row(vec![
            "ADD'".into(),
            "close the nf_tables socket after that".into(),
            fmt_ms(median(&cl)),
            fmt_ms(percentile(&cl, 95.0)),
        ]);
    }
    sec.text(format!(
        "Kernel work alone: what a bridge + ipMasq ADD/DEL asks of the kernel, done in-process with common's \
         Rtnl and Nft ({n} containers, bridge present, masquerade set and rule in place; no IPAM, no process)."
    ));
    sec.table(t);
    if !ptp_add.is_empty() {
        let mut t = Table::new(&["op", "step", "median ms", "p95 ms"]);
        step_rows(&mut t, "ADD", &ptp_add);
        step_rows(&mut t, "DEL", &ptp_del);
        sec.text(format!(
            "Kernel work alone of a ptp + ipMasq ADD/DEL ({n} containers, IPv4, same masquerade set): the veth \
             pair, the gateway and the route to the container on the host end, the container's address and its \
             three routes through the gateway; no waiting for the carrier, no IPAM, no process."
        ));
        sec.table(t);
    }
    ctx.report.push(sec);
}
