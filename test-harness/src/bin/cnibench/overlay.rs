//! Scenario "overlay": two simulated nodes on a bridged underlay with a
//! two-member etcd cluster (test_harness::nodes), for the first plugin
//! directory that has `overlay`:
//! - ADD/DEL latency of an overlay container beside a bridge + host-local +
//!   ipMasq container on the same node, interleaved (a container of the
//!   overlay stays on each node throughout, so the agent is warm; the first
//!   ADD on a node — which starts the agent — is reported on its own);
//! - round trip (UDP echo) and TCP throughput, same node vs across nodes;
//! - the time from ADD on node A until node B reaches the new container
//!   (UDP probes every 0.5 ms from B, the echo bound before the ADD).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use test_harness::{conflist_value, Cluster, CniResult, NetConfList, Runtime, RuntimeConf, TestNs};

use crate::ctx::{ms, Ctx};
use crate::report::{Section, Table};
use crate::stats::{fmt_ms, median, percentile};

fn ip_of(r: &CniResult) -> String {
    r.ips.first().map(|ip| ip.address.addr.to_string()).unwrap_or_default()
}

fn udp_echo(ns: &TestNs, port: u16) -> std::io::Result<()> {
    let s = ns.run(move || UdpSocket::bind(("0.0.0.0", port)))??;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if n == 1 && buf[0] == b'q' {
                return;
            }
            let _ = s.send_to(&buf[..n], from);
        }
    });
    Ok(())
}

/// Median and p95 round trip (ms) of `n` UDP echoes from `from` to `to`.
fn rtt(from: &TestNs, to: SocketAddr, n: usize) -> Vec<f64> {
    from.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        for i in 0..n + 10 {
            let t = Instant::now();
            s.send_to(b"ping", to).ok()?;
            if s.recv(&mut buf).is_ok() && i >= 10 {
                out.push(ms(t.elapsed()));
            }
        }
        Some(out)
    })
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// TCP throughput (MB/s) of `bytes` sent from `from` to a sink at `to`.
fn throughput(from: &TestNs, sink_ns: &TestNs, to: SocketAddr, bytes: usize) -> Option<f64> {
    let l = sink_ns.run(move || TcpListener::bind(("0.0.0.0", to.port()))).ok()?.ok()?;
    let sink = std::thread::spawn(move || {
        let (mut s, _) = l.accept().ok()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        Some(got)
    });
    let secs = from
        .run(move || {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).ok()?;
            let chunk = vec![7u8; 1 << 16];
            let t = Instant::now();
            let mut sent = 0;
            while sent < bytes {
                s.write_all(&chunk).ok()?;
                sent += chunk.len();
            }
            s.shutdown(std::net::Shutdown::Write).ok()?;
            let mut rest = [0u8; 1];
            let _ = s.read(&mut rest);
            Some(t.elapsed().as_secs_f64())
        })
        .ok()
        .flatten()?;
    let got = sink.join().ok()??;
    Some(got as f64 / secs / 1e6)
}

struct Lab {
    cluster: Cluster,
    rts: Vec<Runtime>,
    overlay: NetConfList,
    bridge: NetConfList,
    _ipam: test_harness::TempDir,
}

fn lab(dir: &Path) -> std::io::Result<Lab> {
    let mut cluster = Cluster::bridged(2)?;
    cluster.start_etcd()?;
    let rts = cluster.nodes.iter().map(|n| n.runtime(vec![dir.to_path_buf()])).collect();
    let overlay = conflist_value(&json!({"cniVersion": "1.0.0", "name": "bench-ov", "plugins": [
        {"type": "overlay", "vni": 7001, "subnet": "10.96.0.0/16", "etcd": {"endpoints": cluster.endpoints()}}]}));
    let ipam = test_harness::TempDir::new()?;
    let bridge = conflist_value(&json!({"cniVersion": "1.0.0", "name": "bench-ovbr", "plugins": [
        {"type": "bridge", "bridge": "cnibr0", "isGateway": true, "isDefaultGateway": true, "ipMasq": true,
         "ipam": {"type": "host-local", "subnet": "10.97.0.0/24", "dataDir": ipam.path()}}]}));
    Ok(Lab { cluster, rts, overlay, bridge, _ipam: ipam })
}

pub fn overlay(ctx: &mut Ctx) {
    let mut sec = Section::new("Overlay: two nodes, etcd, VXLAN");
    let Some(k) = ctx.impls.iter().position(|i| i.missing(&["overlay", "bridge", "host-local"]).is_empty())
    else {
        sec.text("skipped: no plugin directory has `overlay`");
        ctx.report.push(sec);
        return;
    };
    let dir = ctx.impls[k].dir.clone();
    if std::process::Command::new("etcd").arg("--version").output().is_err() {
        sec.text("skipped: etcd is not installed (scripts/bench installs etcd-server)");
        ctx.report.push(sec);
        return;
    }
    println!("overlay: two nodes with etcd, plugins from {}", dir.display());
    let lab = match lab(&dir) {
        Ok(l) => l,
        Err(e) => {
            ctx.report.error(format!("overlay: setting up the nodes: {e}"));
            return;
        }
    };
    sec.text(format!(
        "Plugins from `{}` ({}). Two node namespaces on one underlay bridge, a two-member etcd cluster \
         (one member per node, in its netns). Overlay list: `overlay` alone; bridge list: bridge + host-local + \
         ipMasq, in the same node netns, interleaved container by container.",
        ctx.impls[k].name,
        dir.display()
    ));
    let n = ctx.opts.n;
    let mut errors = Vec::new();
    let add = |node: usize, list: &NetConfList, cid: &str, ctr: &TestNs| {
        let rt = &lab.rts[node];
        let conf = RuntimeConf::new(cid, ctr.path(), "eth0");
        let t = Instant::now();
        let r = rt.add_rt(list, &conf);
        (ms(t.elapsed()), r.map_err(|e| e.to_string()))
    };
    let del = |node: usize, list: &NetConfList, cid: &str, ctr: &TestNs| {
        let conf = RuntimeConf::new(cid, ctr.path(), "eth0");
        let t = Instant::now();
        let r = lab.rts[node].del_rt(list, &conf);
        (ms(t.elapsed()), r.map_err(|e| e.to_string()))
    };

    // Residents: one overlay container per node for the whole scenario.
    let residents: Vec<TestNs> = (0..2).map(|_| TestNs::with_lo().expect("netns")).collect();
    let mut first = Vec::new();
    let mut res_ips = Vec::new();
    for (i, ns) in residents.iter().enumerate() {
        let (t, r) = add(i, &lab.overlay, &format!("ovres{i}"), ns);
        match r {
            Ok(r) => res_ips.push(ip_of(&r)),
            Err(e) => errors.push(format!("overlay resident ADD on node{i}: {e}")),
        }
        first.push(t);
    }

    // 1. ADD/DEL latency beside bridge.
    let (mut ov_add, mut ov_del, mut br_add, mut br_del) = (vec![], vec![], vec![], vec![]);
    let ctrs: Vec<(TestNs, TestNs)> =
        (0..n).map(|_| (TestNs::with_lo().expect("netns"), TestNs::with_lo().expect("netns"))).collect();
    for (i, (o, b)) in ctrs.iter().enumerate() {
        let ov_first = i % 2 == 0;
        for step in 0..2 {
            if (step == 0) == ov_first {
                let (t, r) = add(0, &lab.overlay, &format!("ov{i}"), o);
                ov_add.push(t);
                if let Err(e) = r {
                    errors.push(format!("overlay ADD #{i}: {e}"));
                }
            } else {
                let (t, r) = add(0, &lab.bridge, &format!("br{i}"), b);
                br_add.push(t);
                if let Err(e) = r {
                    errors.push(format!("bridge ADD #{i}: {e}"));
                }
            }
        }
    }
    for (i, (o, b)) in ctrs.iter().enumerate() {
        let (t, r) = del(0, &lab.overlay, &format!("ov{i}"), o);
        ov_del.push(t);
        if let Err(e) = r {
            errors.push(format!("overlay DEL #{i}: {e}"));
        }
        let (t, r) = del(0, &lab.bridge, &format!("br{i}"), b);
        br_del.push(t);
        if let Err(e) = r {
            errors.push(format!("bridge DEL #{i}: {e}"));
        }
    }
    let mut t = Table::new(&["op", "plugin", "n", "median ms", "p95 ms"]);
    for (op, plugin, v) in [
        ("ADD", "overlay", &ov_add),
        ("ADD", "bridge", &br_add),
        ("DEL", "overlay", &ov_del),
        ("DEL", "bridge", &br_del),
    ] {
        t.row(vec![
            op.into(),
            plugin.into(),
            v.len().to_string(),
            fmt_ms(median(v)),
            fmt_ms(percentile(v, 95.0)),
        ]);
    }
    t.row(vec![
        "first ADD on a node (starts the agent)".into(),
        "overlay".into(),
        first.len().to_string(),
        fmt_ms(median(&first)),
        "".into(),
    ]);
    sec.table(t);

    // 2. Round trip and throughput: same node vs across nodes.
    let peer_same = TestNs::with_lo().expect("netns");
    let same = add(0, &lab.overlay, "ovsame", &peer_same).1.ok().map(|r| ip_of(&r));
    let bytes = if ctx.opts.tiny { 4 << 20 } else { 200 << 20 };
    let rounds = if ctx.opts.tiny { 50 } else { 1000 };
    let mut t = Table::new(&["path", "RTT median ms", "RTT p95 ms", "TCP MB/s"]);
    if let (Some(same), Some(remote)) = (same, res_ips.get(1).cloned()) {
        for (label, ns, ip, port) in
            [("same node", &peer_same, same, 7101u16), ("across nodes", &residents[1], remote, 7102)]
        {
            let _ = udp_echo(ns, port);
            let r = rtt(&residents[0], format!("{ip}:{port}").parse().unwrap(), rounds);
            let tp = throughput(&residents[0], ns, format!("{ip}:{}", port + 100).parse().unwrap(), bytes);
            if r.is_empty() || tp.is_none() {
                errors.push(format!("overlay: no traffic {label}"));
            }
            t.row(vec![
                label.into(),
                fmt_ms(median(&r)),
                fmt_ms(percentile(&r, 95.0)),
                tp.map(|x| format!("{x:.0}")).unwrap_or("–".into()),
            ]);
            let _ = ns
                .run(move || UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"q", ("127.0.0.1", port))));
        }
    }
    sec.table(t);

    // 3. From ADD on node A until node B reaches the container.
    let samples = if ctx.opts.tiny { 2 } else { 10 };
    let (mut from_start, mut from_return) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let ns = TestNs::with_lo().expect("netns");
        let port = 7300 + i as u16;
        if udp_echo(&ns, port).is_err() {
            continue;
        }
        let t0 = Instant::now();
        let (_, r) = add(0, &lab.overlay, &format!("ovnew{i}"), &ns);
        let returned = t0.elapsed();
        let Ok(r) = r else {
            errors.push(format!("overlay ADD (reachability #{i}) failed"));
            continue;
        };
        let to: SocketAddr = format!("{}:{port}", ip_of(&r)).parse().unwrap();
        let reached = residents[1]
            .run(move || {
                let s = UdpSocket::bind("0.0.0.0:0").ok()?;
                s.set_read_timeout(Some(Duration::from_micros(500))).ok()?;
                let mut buf = [0u8; 16];
                while t0.elapsed() < Duration::from_secs(10) {
                    s.send_to(b"probe", to).ok()?;
                    if s.recv(&mut buf).is_ok() {
                        return Some(t0.elapsed());
                    }
                }
                None
            })
            .ok()
            .flatten();
        match reached {
            Some(d) => {
                from_start.push(ms(d));
                from_return.push(ms(d.saturating_sub(returned)));
            }
            None => errors.push(format!("overlay: node B never reached the new container #{i}")),
        }
        let _ =
            ns.run(move || UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"q", ("127.0.0.1", port))));
        let _ = del(0, &lab.overlay, &format!("ovnew{i}"), &ns);
    }
    let mut t = Table::new(&["node B reaches a container ADDed on node A", "n", "median ms", "max ms"]);
    let max = |v: &[f64]| v.iter().cloned().fold(f64::NAN, f64::max);
    t.row(vec![
        "from the start of ADD".into(),
        from_start.len().to_string(),
        fmt_ms(median(&from_start)),
        fmt_ms(max(&from_start)),
    ]);
    t.row(vec![
        "after ADD returned".into(),
        from_return.len().to_string(),
        fmt_ms(median(&from_return)),
        fmt_ms(max(&from_return)),
    ]);
    sec.table(t);

    let _ = del(0, &lab.overlay, "ovsame", &peer_same);
    for (i, ns) in residents.iter().enumerate() {
        let _ = del(i, &lab.overlay, &format!("ovres{i}"), ns);
    }
    for n in &lab.cluster.nodes {
        let left = n.daemon_pids();
        if !left.is_empty() {
            errors.push(format!("overlay: {} daemons left on {}", left.len(), n.name));
        }
    }
    for e in errors {
        sec.text(format!("**{e}**"));
        ctx.report.error(e);
    }
    ctx.report.push(sec);
}
