//! Soak: rounds of N parallel ADDs of the full chain on one network, GC with
//! every attachment valid (must remove nothing), some containers crashing
//! (their netns deleted, half of them also forgotten by the runtime's cache,
//! so only the plugins' own GC can clean them), parallel DELs of the others,
//! then GC with nothing valid — after which the node must be exactly as it
//! was before the first round. Every round asserts: no failed operation, no
//! address twice, the state of the attached containers consistent, no
//! leftovers. Latencies are reported per round, not asserted.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::chainlab::{ChainLab, LabSpec, Member};
use crate::chaos::Problem;
use crate::ns::TestNs;
use crate::state::{link_names, wait_until};

#[derive(Clone, Debug)]
pub struct SoakOpts {
    pub rounds: usize,
    pub parallel: usize,
    /// Containers per round whose netns disappears without a DEL.
    pub crash: usize,
    pub bin_dir: PathBuf,
    pub verbose: bool,
}

impl SoakOpts {
    pub fn new(rounds: usize, parallel: usize) -> SoakOpts {
        SoakOpts { rounds, parallel, crash: 4, bin_dir: crate::target_bin_dir(), verbose: false }
    }
}

/// Median, 95th percentile and maximum, in ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    pub median: f64,
    pub p95: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut v: Vec<Duration>) -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p95 = ((v.len() * 95).div_ceil(100)).clamp(1, v.len()) - 1;
        Spread { median: ms(v[v.len() / 2]), p95: ms(v[p95]), max: ms(v[v.len() - 1]) }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Round {
    pub add: Spread,
    pub del: Spread,
    /// Wall time of the whole parallel burst.
    pub add_burst: Duration,
    pub del_burst: Duration,
    pub gc_all_valid: Duration,
    pub gc_none_valid: Duration,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    pub parallel: usize,
    pub crash: usize,
    pub rounds: Vec<Round>,
    pub global: Vec<Problem>,
    pub took: Duration,
}

impl SoakReport {
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.rounds.iter().flat_map(|r| &r.problems).chain(&self.global)
    }

    pub fn count(&self, kind: &str) -> usize {
        self.problems().filter(|p| p.kind == kind).count()
    }

    pub fn ok(&self) -> bool {
        self.problems().next().is_none()
    }

    pub fn failures(&self) -> String {
        let mut s = String::new();
        for (i, r) in self.rounds.iter().enumerate() {
            for p in &r.problems {
                let _ = writeln!(s, "round {i}: {}: {}", p.kind, p.text);
            }
        }
        for p in &self.global {
            let _ = writeln!(s, "{}: {}", p.kind, p.text);
        }
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let ops = self.rounds.len() * self.parallel;
        let _ = writeln!(
            s,
            "{} rounds × {} parallel ADDs ({} ADDs, {} DELs, {} containers crashed and collected by GC) \
             in {:.0} s: failed operations {}, duplicate addresses {}, leftovers {}, \
             residents disturbed by GC {}.\n",
            self.rounds.len(),
            self.parallel,
            ops,
            ops - self.rounds.len() * self.crash,
            self.rounds.len() * self.crash,
            self.took.as_secs_f64(),
            self.count("add-failed") + self.count("del-failed") + self.count("gc-failed"),
            self.count("duplicate"),
            self.count("leftover"),
            self.count("not-intact"),
        );
        let _ = writeln!(
            s,
            "| round | ADD median | ADD p95 | ADD max | DEL median | DEL p95 | ADD burst | DEL burst | GC (all valid) | GC (none valid) | problems |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for (i, r) in self.rounds.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
                i + 1,
                r.add.median,
                r.add.p95,
                r.add.max,
                r.del.median,
                r.del.p95,
                ms(r.add_burst),
                ms(r.del_burst),
                ms(r.gc_all_valid),
                ms(r.gc_none_valid),
                r.problems.len()
            );
        }
        let _ = writeln!(s, "\n(ms; one chain ADD or DEL = 5 plugins + host-local, each its own process)");
        s
    }
}

pub fn run(opts: &SoakOpts) -> Result<SoakReport, String> {
    let start = Instant::now();
    let mut lab =
        ChainLab::new(&LabSpec { bin_dir: opts.bin_dir.clone(), ..LabSpec::new("soak", "cnisoak0", 202) })
            .map_err(|e| format!("lab: {e}"))?;
    let mut members = Vec::new();
    for i in 0..opts.parallel {
        members.push(lab.member(21000 + i as u16).map_err(|e| e.to_string())?);
    }
    // One warm-up round of a single container creates the state kept by
    // design (bridge, cursors, lock files); the pristine state is after it.
    {
        let m = &mut members[0];
        lab.add(&lab.rt, m).map_err(|e| format!("warm-up ADD: {e}"))?;
        lab.del(&lab.rt, m).map_err(|e| format!("warm-up DEL: {e}"))?;
    }
    let pristine = lab.snapshot();
    let mut report = SoakReport { parallel: opts.parallel, crash: opts.crash, ..Default::default() };
    for r in 0..opts.rounds {
        if crate::chaos::STOP.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let round = round(&mut lab, &mut members, opts, &pristine);
        if opts.verbose {
            eprintln!(
                "soak round {r}: ADD median {:.0} ms, DEL median {:.0} ms, problems {:?}",
                round.add.median, round.del.median, round.problems
            );
        }
        report.rounds.push(round);
    }
    let end = lab.snapshot();
    for d in end.diff(&pristine) {
        report.global.push(Problem { kind: "leftover", text: format!("after the last round: {d}") });
    }
    lab.stop_processes();
    report.took = start.elapsed();
    Ok(report)
}

fn round(
    lab: &mut ChainLab,
    members: &mut [Member],
    opts: &SoakOpts,
    pristine: &crate::chainlab::Snapshot,
) -> Round {
    let mut out = Round::default();
    let mut problem = |kind: &'static str, text: String| out.problems.push(Problem { kind, text });
    for m in members.iter_mut() {
        lab.fresh_identity(m);
    }

    // Parallel ADDs.
    let burst = Instant::now();
    let lab_ref = &*lab;
    let results: Vec<(Duration, Result<String, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = members
            .iter_mut()
            .map(|m| {
                s.spawn(move || {
                    let t = Instant::now();
                    let r = lab_ref
                        .add(&lab_ref.rt, m)
                        .map(|res| res.interfaces.get(1).map(|i| i.name.clone()).unwrap_or_default())
                        .map_err(|e| e.to_string());
                    (t.elapsed(), r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("ADD thread")).collect()
    });
    let add_burst = burst.elapsed();
    let mut veths = Vec::new();
    for (m, (_, r)) in members.iter().zip(&results) {
        match r {
            Ok(v) => veths.push(v.clone()),
            Err(e) => problem("add-failed", format!("ADD of {}: {e}", m.name)),
        }
    }
    let add = Spread::of(results.iter().map(|(d, _)| *d).collect());

    let attached: Vec<&Member> = members.iter().filter(|m| !m.ips.is_empty()).collect();
    for b in lab.check_attached(&attached, &Default::default()) {
        let kind = if b.starts_with("duplicate") { "duplicate" } else { "not-intact" };
        problem(kind, b);
    }
    if let (Some(a), Some(b)) = (attached.first(), attached.last()) {
        match lab.resolve(&a.ns, &b.name) {
            Some((0, n)) if n > 0 => {}
            other => problem("not-intact", format!("{} does not resolve {}: {other:?}", a.name, b.name)),
        }
    }

    // GC with everything valid removes nothing.
    let before = lab.snapshot();
    let valid: Vec<(&str, &str)> = attached.iter().map(|m| (m.id.as_str(), "eth0")).collect();
    let t = Instant::now();
    if let Err(errs) = lab.rt.gc(&lab.list, &valid) {
        for e in errs {
            problem("gc-failed", format!("GC with every attachment valid: {e}"));
        }
    }
    let gc_all_valid = t.elapsed();
    for d in lab.snapshot().diff(&before) {
        problem("not-intact", format!("GC with every attachment valid changed: {d}"));
    }

    // Some containers crash: their netns goes, nobody calls DEL; the runtime
    // forgets half of them too.
    let crash = opts.crash.min(members.len());
    let mut gone_veths = Vec::new();
    for (i, m) in members.iter_mut().take(crash).enumerate() {
        match TestNs::with_lo() {
            Ok(ns) => {
                drop(std::mem::replace(&mut m.ns, ns));
                if let Some(v) = veths.get(i) {
                    gone_veths.push(v.clone());
                }
            }
            Err(e) => problem("process", format!("new netns: {e}")),
        }
        if i % 2 == 1 {
            lab.drop_cache(m);
        }
    }
    // The kernel removes the host ends with the netns (asynchronously).
    if !wait_until(Duration::from_secs(20), || {
        let links = link_names(&lab.host);
        gone_veths.iter().all(|v| !links.contains(v))
    }) {
        problem("process", "the crashed containers' host veths outlived their netns by 20 s".into());
    }

    // Parallel DELs of the others.
    let burst = Instant::now();
    let lab_ref = &*lab;
    let dels: Vec<(Duration, Result<(), String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = members[crash..]
            .iter()
            .map(|m| {
                s.spawn(move || {
                    let t = Instant::now();
                    let r = lab_ref.del(&lab_ref.rt, m).map_err(|e| format!("DEL of {}: {e}", m.name));
                    (t.elapsed(), r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("DEL thread")).collect()
    });
    let del_burst = burst.elapsed();
    for (_, r) in &dels {
        if let Err(e) = r {
            problem("del-failed", e.clone());
        }
    }
    let del = Spread::of(dels.iter().map(|(d, _)| *d).collect());

    // GC with nothing valid collects the crashed ones.
    let t = Instant::now();
    if let Err(errs) = lab.rt.gc(&lab.list, &[]) {
        for e in errs {
            problem("gc-failed", format!("GC with no attachment valid: {e}"));
        }
    }
    let gc_none_valid = t.elapsed();
    for d in lab.snapshot().diff(pristine) {
        problem("leftover", d);
    }
    for m in members.iter() {
        let links = link_names(&m.ns);
        if links != ["lo"] {
            problem("leftover", format!("{} netns still has {links:?}", m.name));
        }
    }
    let problems = std::mem::take(&mut out.problems);
    Round { add, del, add_burst, del_burst, gc_all_valid, gc_none_valid, problems }
}
