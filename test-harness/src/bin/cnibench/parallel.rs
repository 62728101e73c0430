//! Scenario 2: many ADDs at once, then as many DELs, on one bridge network —
//! cold (the bridge does not exist yet) and warm (it does).

use std::sync::Barrier;
use std::time::Instant;

use test_harness::{InvokeError, NetConfList, RuntimeConf, TestNs};

use crate::ctx::{ms, Ctx};
use crate::report::Section;
use crate::setup::{container_id, left_over, order, result_ip, rt_conf, state, verify, Impl, Net};

/// Wall time of one burst and what went wrong in it.
#[derive(Default)]
struct Burst {
    wall_ms: f64,
    failures: usize,
    first_error: Option<String>,
}

/// Run `op` for every container at once, each on its own thread inside the
/// host netns, released together by a barrier.
fn burst<T: Send>(
    imp: &Impl,
    confs: &[RuntimeConf],
    op: impl Fn(&test_harness::Runtime, &RuntimeConf) -> Result<T, InvokeError> + Sync,
) -> (Burst, Vec<Option<T>>) {
    let rt = imp.runtime();
    let ns = imp.host.netns().expect("host netns");
    let barrier = Barrier::new(confs.len() + 1);
    let (t0, outs) = std::thread::scope(|s| {
        let handles: Vec<_> = confs
            .iter()
            .map(|conf| {
                let (rt, ns, barrier, op) = (&rt, &ns, &barrier, &op);
                s.spawn(move || {
                    // This scoped thread lives and dies in the host netns.
                    // SAFETY: a valid netns fd; affects this thread only.
                    let entered = unsafe { libc::setns(ns.fd(), libc::CLONE_NEWNET) } == 0;
                    barrier.wait();
                    let r = if entered {
                        op(rt, conf)
                    } else {
                        Err(InvokeError { message: "setns failed".into(), ..Default::default() })
                    };
                    (Instant::now(), r)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        (t0, handles.into_iter().map(|h| h.join().expect("burst thread")).collect::<Vec<_>>())
    });
    let mut b = Burst::default();
    let mut results = Vec::new();
    for (end, r) in outs {
        b.wall_ms = b.wall_ms.max(ms(end - t0));
        match r {
            Ok(v) => results.push(Some(v)),
            Err(e) => {
                b.failures += 1;
                b.first_error.get_or_insert_with(|| e.to_string());
                results.push(None);
            }
        }
    }
    (b, results)
}

/// Per implementation and round: (cold ADD, cold DEL, warm ADD, warm DEL).
type Bursts = [Burst; 4];

fn round(ctx: &mut Ctx, k: usize, r: usize, ctrs: &[TestNs], sec: &mut Section) -> Bursts {
    let bridge = format!("cnipar{r}");
    let name = format!("bench-par{r}");
    let net = Net::Bridge { name: &name, bridge: &bridge, subnet: "10.77.4.0/24", portmap: false };
    let imp = &ctx.impls[k];
    let list: NetConfList = net.list(&imp.ipam_dir());
    let confs: Vec<RuntimeConf> = ctrs
        .iter()
        .enumerate()
        .map(|(i, c)| rt_conf(&container_id(20 + r as u32, i), c, "eth0", i, serde_json::Value::Null))
        .collect();
    let mut out: Vec<Burst> = Vec::new();
    let mut errors = Vec::new();
    let mut lefts = Vec::new();
    let before = state(imp, &name);
    for phase in ["cold", "warm"] {
        let (add, results) = burst(imp, &confs, |rt, c| rt.add_rt(&list, c));
        let mut ips = Vec::new();
        for (i, res) in results.iter().enumerate() {
            if let Some(res) = res {
                ips.extend(result_ip(res));
                if let Err(e) = verify(&ctrs[i], "eth0", res) {
                    errors.push(format!("{} {phase} parallel ADD #{i}: {e}", imp.name));
                }
            }
        }
        let n = ips.len();
        ips.sort();
        ips.dedup();
        if ips.len() != n {
            errors.push(format!("{} {phase} parallel ADD: {} duplicate addresses", imp.name, n - ips.len()));
        }
        let (del, _) = burst(imp, &confs, |rt, c| rt.del_rt(&list, c));
        for (what, b) in [("ADD", &add), ("DEL", &del)] {
            if let Some(e) = &b.first_error {
                errors.push(format!(
                    "{} {phase} parallel {what}: {} failures, first: {e}",
                    imp.name, b.failures
                ));
            }
        }
        out.push(add);
        out.push(del);
        lefts.push((phase, left_over(&before, &state(imp, &name))));
    }
    for (phase, left) in lefts {
        ctx.leftover(k, &format!("parallel DELs ({phase})"), &left, sec);
    }
    let imp = &ctx.impls[k];
    let _ = imp.host.ip(&["link", "del", &bridge]);
    let _ = std::fs::remove_dir_all(imp.ipam_dir().join(&name));
    for e in errors {
        sec.text(format!("**{e}**"));
        ctx.report.error(e);
    }
    let mut it = out.into_iter();
    [it.next().unwrap(), it.next().unwrap(), it.next().unwrap(), it.next().unwrap()]
}

pub fn parallel(ctx: &mut Ctx) {
    let probe = Net::Bridge { name: "x", bridge: "x", subnet: "10.77.4.0/24", portmap: false };
    let p = ctx.opts.parallel;
    let rounds = ctx.opts.rounds;
    let mut sec = Section::new(format!("2. {p} parallel ADDs, then DELs, on one bridge network"));
    let active = ctx.active(&probe.plugins(), &mut sec);
    if active.is_empty() {
        ctx.report.push(sec);
        return;
    }
    println!("== {p} parallel ADDs/DELs, {rounds} rounds ({})", ctx.names(&active).join(", "));
    sec.text(format!(
        "bridge + host-local + ipMasq. Per round and implementation: {p} ADDs released at once (one thread each, \
         in the host netns), every result verified and checked for duplicate addresses, then {p} DELs at once; \
         first with the bridge absent (cold), then again with it present (warm). Wall = from release to the last \
         return. {rounds} round(s), implementations alternating which goes first."
    ));
    let ctrs: Vec<Vec<TestNs>> =
        active.iter().map(|_| (0..p).map(|_| TestNs::new().expect("container netns")).collect()).collect();
    let mut all: Vec<Vec<Bursts>> = active.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for a in order(active.len(), r) {
            let b = round(ctx, active[a], r, &ctrs[a], &mut sec);
            all[a].push(b);
        }
    }
    let labels = ["ADD cold", "DEL cold", "ADD warm", "DEL warm"];
    let samples: Vec<Vec<Vec<Option<f64>>>> = (0..4)
        .map(|j| all.iter().map(|rs| rs.iter().map(|b| Some(b[j].wall_ms)).collect()).collect())
        .collect();
    let ops: Vec<(&str, &[Vec<Option<f64>>])> =
        labels.iter().zip(&samples).map(|(l, s)| (*l, s.as_slice())).collect();
    let (mut t, ratios) = ctx.latency_table(&active, &ops);
    t.header[3] = "median wall ms".into();
    t.header[4] = "p95 wall ms".into();
    sec.table(t);
    let mut f = crate::report::Table::new(&[
        "impl",
        "failed ADD cold",
        "failed DEL cold",
        "failed ADD warm",
        "failed DEL warm",
    ]);
    for (a, &k) in active.iter().enumerate() {
        let mut row = vec![ctx.impls[k].name.clone()];
        for j in 0..4 {
            row.push(all[a].iter().map(|b| b[j].failures).sum::<usize>().to_string());
        }
        f.row(row);
    }
    sec.table(f);
    for (op, name, ratio) in ratios {
        if op.starts_with("ADD") {
            ctx.report.target(
                format!("{p} parallel {op}: wall {name}/{}", ctx.base_name()),
                ratio,
                0.4,
                "ratio",
                "",
            );
        }
    }
    ctx.report.push(sec);
}
