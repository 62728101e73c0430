//! Chaos: kill a plugin of the full chain at a random or swept point of an
//! ADD or a DEL, then recover as a runtime does — DEL without prevResult
//! (the runtime lost or never wrote its cache), a fresh ADD, a normal DEL —
//! and require that every DEL succeeds, no address is handed out twice, and
//! nothing is left: links, addresses, nf_tables objects and elements, leases
//! and cursors, tuning's saved state, DNS records, DNS daemons, the runtime's
//! cache (see [`ChainLab::snapshot`]).
//!
//! Two phases: the victim alone on the network (its ADD creates the bridge's
//! nf_tables state and starts the DNS daemon, its DEL stops them), then with
//! resident containers attached the whole time, whose state must stay intact
//! through every kill.

use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::chainlab::{ChainLab, LabSpec, Member, Snapshot, PLUGINS};
use crate::exec::InvokeError;
use crate::faults::{self, Armed, Fault, KillPoint, Verb};
use crate::rng::Rng;
use crate::runtime::ExecRecord;
use crate::state::link_names;

/// Set (from a signal handler) to end a campaign after the current run, with
/// everything it created removed.
pub static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Debug)]
pub struct ChaosOpts {
    /// Runs killed a random time into a random plugin's exec.
    pub delay_runs: usize,
    /// Runs killed at a recorded syscall, spread evenly over all recorded
    /// points of every plugin, verb and phase; `None`: every point.
    pub sweep_runs: Option<usize>,
    /// Containers attached during the second phase.
    pub residents: usize,
    /// Kill only this binary (`bridge`, `host-local`, `portmap`, `firewall`,
    /// `tuning`, `dns-sidecar`): to reproduce a finding.
    pub only: Option<String>,
    pub seed: u64,
    pub bin_dir: PathBuf,
    /// Progress lines on stderr.
    pub verbose: bool,
}

impl ChaosOpts {
    pub fn new(delay_runs: usize, sweep_runs: Option<usize>) -> ChaosOpts {
        ChaosOpts {
            delay_runs,
            sweep_runs,
            residents: 3,
            only: None,
            seed: crate::rng::seed_from_time(),
            bin_dir: crate::target_bin_dir(),
            verbose: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Alone,
    Crowded,
}

/// How the faulted operation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The plugin died by `SIGKILL`.
    Killed,
    /// A process it started was killed and the plugin reported an error.
    ChildKilled(String),
    /// The kill came too late (or hit nothing): the operation succeeded.
    Completed,
    /// Failed for another reason (a finding when it happens).
    Failed(String),
}

/// A failed expectation of one run.
#[derive(Clone, Debug)]
pub struct Problem {
    /// `leftover`, `duplicate`, `del-failed`, `add-failed`, `not-intact`, `process`.
    pub kind: &'static str,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct RunRecord {
    pub index: usize,
    pub phase: Phase,
    pub verb: Verb,
    pub fault: Fault,
    pub outcome: Outcome,
    pub problems: Vec<Problem>,
    pub took: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct ChaosReport {
    pub seed: u64,
    pub runs: Vec<RunRecord>,
    /// Distinct kill points recorded per (phase, verb, binary).
    pub points: BTreeMap<(Phase, Verb, String), usize>,
    /// Median exec time per (phase, verb, plugin type) at the end of the phase
    /// (random delays are drawn over the recent median).
    pub timings: BTreeMap<(Phase, Verb, String), Duration>,
    /// Problems outside any run (set-up, the end state).
    pub global: Vec<Problem>,
    pub took: Duration,
}

impl ChaosReport {
    pub fn problems(&self) -> impl Iterator<Item = &Problem> {
        self.runs.iter().flat_map(|r| &r.problems).chain(&self.global)
    }

    pub fn count(&self, kind: &str) -> usize {
        self.problems().filter(|p| p.kind == kind).count()
    }

    pub fn ok(&self) -> bool {
        self.problems().next().is_none()
    }

    /// Every problem with its run, for a failing test's message.
    pub fn failures(&self) -> String {
        let mut s = String::new();
        for r in &self.runs {
            for p in &r.problems {
                let _ = writeln!(
                    s,
                    "run {} ({:?}, {} killed at {}; {:?}): {}: {}",
                    r.index,
                    r.phase,
                    r.verb.command(),
                    r.fault,
                    r.outcome,
                    p.kind,
                    p.text
                );
            }
        }
        for p in &self.global {
            let _ = writeln!(s, "{}: {}", p.kind, p.text);
        }
        let _ = writeln!(s, "seed {}", self.seed);
        s
    }

    /// The figures as markdown: runs and how they ended per verb, plugin
    /// and kind of kill; problems by kind.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let killed = self.runs.iter().filter(|r| r.outcome == Outcome::Killed).count();
        let child = self.runs.iter().filter(|r| matches!(r.outcome, Outcome::ChildKilled(_))).count();
        let _ = writeln!(
            s,
            "{} runs in {:.0} s (seed {}): {} plugins killed, {} killed a process the plugin started \
             (the plugin reported the error), {} completed before the kill.\n",
            self.runs.len(),
            self.took.as_secs_f64(),
            self.seed,
            killed,
            child,
            self.runs.len() - killed - child,
        );
        let _ = writeln!(
            s,
            "| kill | verb | plugin | runs | plugin killed | child killed | completed | failed otherwise |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|");
        let mut rows: BTreeMap<(&str, &str, String), [usize; 5]> = BTreeMap::new();
        for r in &self.runs {
            let (kind, plugin) = match &r.fault {
                Fault::Delay { plugin, .. } => ("random delay", plugin.clone()),
                Fault::Syscall(p) => ("syscall sweep", p.plugin.clone()),
                Fault::None => ("none", String::new()),
            };
            let row = rows.entry((kind, r.verb.command(), plugin)).or_default();
            row[0] += 1;
            let i = match r.outcome {
                Outcome::Killed => 1,
                Outcome::ChildKilled(_) => 2,
                Outcome::Completed => 3,
                Outcome::Failed(_) => 4,
            };
            row[i] += 1;
        }
        for ((kind, verb, plugin), n) in rows {
            let _ = writeln!(
                s,
                "| {kind} | {verb} | {plugin} | {} | {} | {} | {} | {} |",
                n[0], n[1], n[2], n[3], n[4]
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Problems: leftovers {}, duplicate addresses {}, failed DELs {}, failed ADDs after recovery {}, \
             residents disturbed {}, stray processes {}.",
            self.count("leftover"),
            self.count("duplicate"),
            self.count("del-failed"),
            self.count("add-failed"),
            self.count("not-intact"),
            self.count("process"),
        );
        if !self.timings.is_empty() {
            let _ = writeln!(s, "\nMedian exec time of each plugin (ms; random delays are drawn over it):\n");
            let _ = writeln!(s, "| phase | verb | plugin | ms |");
            let _ = writeln!(s, "|---|---|---|---:|");
            for ((phase, verb, ty), d) in &self.timings {
                let _ =
                    writeln!(s, "| {phase:?} | {} | {ty} | {:.1} |", verb.command(), d.as_secs_f64() * 1e3);
            }
        }
        if !self.points.is_empty() {
            let total: usize = self.points.values().sum();
            let _ = writeln!(s, "\nRecorded kill points (distinct syscall, n) per exec, {total} in all:\n");
            let _ = writeln!(s, "| phase | verb | binary | points |");
            let _ = writeln!(s, "|---|---|---|---:|");
            for ((phase, verb, bin), n) in &self.points {
                let _ = writeln!(s, "| {phase:?} | {} | {bin} | {n} |", verb.command());
            }
        }
        s
    }
}

/// A run of the plan: a fixed fault, or a delay to draw when it runs.
enum Planned {
    Fault(Fault),
    Delay { index: usize, fraction: f64 },
}

/// Run the chaos campaign: record the kill points of both phases (the
/// sweep is spread over all of them), then each phase's shuffled plan.
pub fn run(opts: &ChaosOpts) -> Result<ChaosReport, String> {
    let start = Instant::now();
    let mut c = Campaign::new(opts)?;
    let pristine = warm_up(&c.lab, &mut c.victim)?;
    let mut points = BTreeMap::new();
    for phase in [Phase::Alone, Phase::Crowded] {
        let p = if opts.sweep_runs == Some(0) {
            Vec::new()
        } else {
            c.record_phase(phase, opts.residents, opts.only.as_deref())?
        };
        points.insert(phase, p);
    }
    let total: usize = points.values().map(Vec::len).sum();
    let sweep_runs = opts.sweep_runs.unwrap_or(total).min(total);
    c.detach_residents();
    c.timings = Some(Timings::attach(&mut c.lab));
    for (phase, delays) in
        [(Phase::Alone, opts.delay_runs / 2), (Phase::Crowded, opts.delay_runs.div_ceil(2))]
    {
        if let Err(e) = c.enter(phase, opts.residents) {
            c.report.global.push(Problem { kind: "add-failed", text: e });
            break;
        }
        let here = &points[&phase];
        let plan = c.plan(here, sweep_runs * here.len() / total.max(1), delays, opts.only.as_deref());
        c.run_plan(phase, plan, opts.verbose);
    }
    c.detach_residents();
    for d in c.lab.snapshot().diff(&pristine) {
        c.report
            .global
            .push(Problem { kind: "leftover", text: format!("after the last container left: {d}") });
    }
    c.lab.stop_processes();
    c.report.took = start.elapsed();
    Ok(std::mem::take(&mut c.report))
}

struct Campaign {
    lab: ChainLab,
    rng: Rng,
    victim: Member,
    residents: Vec<Member>,
    report: ChaosReport,
    /// Set once the runs start.
    timings: Option<Timings>,
    /// Leases left by earlier runs (reported there), not to be reported again.
    stray: BTreeSet<IpAddr>,
}

impl Campaign {
    fn new(opts: &ChaosOpts) -> Result<Campaign, String> {
        let spec = LabSpec { bin_dir: opts.bin_dir.clone(), ..LabSpec::new("chaos", "cnichaos0", 201) };
        let mut lab = ChainLab::new(&spec).map_err(|e| format!("lab: {e}"))?;
        let victim = lab.member(20000).map_err(|e| e.to_string())?;
        Ok(Campaign {
            lab,
            rng: Rng::new(opts.seed),
            victim,
            residents: Vec::new(),
            report: ChaosReport { seed: opts.seed, ..Default::default() },
            timings: None,
            stray: BTreeSet::new(),
        })
    }

    /// Record the kill points of every plugin's ADD and DEL in `phase`.
    fn record_phase(
        &mut self,
        phase: Phase,
        residents: usize,
        only: Option<&str>,
    ) -> Result<Vec<(Verb, KillPoint)>, String> {
        if phase == Phase::Crowded {
            self.attach_residents(residents)?;
        }
        let baseline = warm_up(&self.lab, &mut self.victim)?;
        let mut all = Vec::new();
        for verb in [Verb::Add, Verb::Del] {
            for plugin in PLUGINS.iter().filter(|p| only.is_none_or(|o| o == **p)) {
                let p = record(&mut self.lab, &mut self.victim, &baseline, verb, plugin)?;
                self.report.points.insert((phase, verb, plugin.to_string()), p.len());
                all.extend(p.into_iter().map(|k| (verb, k)));
            }
        }
        Ok(all)
    }

    /// Residents as the phase wants them, and fresh exec times.
    fn enter(&mut self, phase: Phase, residents: usize) -> Result<(), String> {
        if phase == Phase::Crowded {
            self.attach_residents(residents)?;
        }
        warm_up(&self.lab, &mut self.victim)?;
        if let Some(t) = &mut self.timings {
            t.recent.clear();
            t.absorb(&self.lab);
        }
        Ok(())
    }

    /// `sweep` of `points`, evenly spread (a random offset per campaign),
    /// and `delays` random-delay runs, shuffled.
    fn plan(
        &mut self,
        points: &[(Verb, KillPoint)],
        sweep: usize,
        delays: usize,
        only: Option<&str>,
    ) -> Vec<(Verb, Planned)> {
        let mut plan = Vec::new();
        let offset = self.rng.below(1000) as f64 / 1000.0;
        for i in 0..sweep {
            let at = ((i as f64 + offset) * points.len() as f64 / sweep as f64) as usize;
            let (verb, p) = &points[at.min(points.len() - 1)];
            plan.push((*verb, Planned::Fault(Fault::Syscall(p.clone()))));
        }
        // The list places random delays can hit (host-local is not one: bridge execs it).
        let places: Vec<usize> = (0..self.lab.list.plugins.len())
            .filter(|&i| {
                let ty = self.lab.list.plugins[i]["type"].as_str().unwrap_or("");
                only.is_none_or(|o| o == ty || (o == "dns-sidecar" && ty == "dnsname"))
            })
            .collect();
        let delays = if places.is_empty() { 0 } else { delays };
        for _ in 0..delays {
            let verb = if self.rng.below(2) == 0 { Verb::Add } else { Verb::Del };
            let index = places[self.rng.below(places.len() as u64) as usize];
            plan.push((verb, Planned::Delay { index, fraction: self.rng.below(1000) as f64 / 1000.0 }));
        }
        self.rng.shuffle(&mut plan);
        plan
    }

    fn run_plan(&mut self, phase: Phase, plan: Vec<(Verb, Planned)>, verbose: bool) {
        let timings = self.timings.as_mut().expect("timings attached");
        let mut baseline = self.lab.snapshot();
        for (verb, planned) in plan {
            if STOP.load(Ordering::Relaxed) {
                break;
            }
            timings.absorb(&self.lab);
            let fault = match planned {
                Planned::Fault(f) => f,
                Planned::Delay { index, fraction } => {
                    // Uniform over the recent median duration of that exec;
                    // on a slower run the kill lands earlier in its work, on
                    // a faster one too late.
                    let median = timings.median(verb, index).unwrap_or(Duration::from_millis(5));
                    let plugin = self.lab.list.plugins[index]["type"].as_str().unwrap_or("?").to_string();
                    Fault::Delay { index, plugin, after: median.mul_f64(fraction) }
                }
            };
            let index = self.report.runs.len();
            let judge = (&baseline, &self.stray);
            let rec =
                run_one(&mut self.lab, &mut self.victim, &self.residents, judge, index, phase, verb, fault);
            if verbose {
                eprintln!(
                    "chaos run {index} {phase:?} {} {}: {:?} ({:.0} ms){}",
                    verb.command(),
                    rec.fault,
                    rec.outcome,
                    rec.took.as_secs_f64() * 1e3,
                    rec.problems
                        .iter()
                        .map(|p| format!("\n  {}: {:.300}", p.kind, p.text))
                        .collect::<String>()
                );
            }
            if !rec.problems.is_empty() {
                // Judge the next runs on their own.
                baseline = self.lab.snapshot();
                let held: BTreeSet<IpAddr> =
                    self.residents.iter().flat_map(|m| m.ips.iter().map(|i| i.addr)).collect();
                self.stray = self.lab.leases().into_keys().filter(|ip| !held.contains(ip)).collect();
            }
            self.report.runs.push(rec);
        }
        for &(verb, i) in timings.recent.keys() {
            let ty = self.lab.list.plugins[i]["type"].as_str().unwrap_or("?").to_string();
            if let Some(m) = timings.median(verb, i) {
                self.report.timings.insert((phase, verb, ty), m);
            }
        }
    }

    fn attach_residents(&mut self, n: usize) -> Result<(), String> {
        for i in 0..n {
            let mut m = self.lab.member(20001 + i as u16).map_err(|e| e.to_string())?;
            self.lab.add(&self.lab.rt, &mut m).map_err(|e| format!("resident ADD: {e}"))?;
            self.residents.push(m);
        }
        let alive: Vec<&Member> = self.residents.iter().collect();
        let bad = self.lab.check_attached(&alive, &self.stray);
        if !bad.is_empty() {
            return Err(format!("residents: {bad:?}"));
        }
        Ok(())
    }

    fn detach_residents(&mut self) {
        for m in self.residents.drain(..) {
            if let Err(e) = self.lab.del(&self.lab.rt, &m) {
                self.report.global.push(Problem { kind: "del-failed", text: format!("resident DEL: {e}") });
            }
        }
    }
}

/// A few clean ADD/DEL cycles (the bridge, cursors and lock files exist
/// from then on, by design), then the baseline the phase's runs are judged by.
fn warm_up(lab: &ChainLab, victim: &mut Member) -> Result<Snapshot, String> {
    for _ in 0..2 {
        lab.add(&lab.rt, victim).map_err(|e| format!("warm-up ADD: {e}"))?;
        lab.del(&lab.rt, victim).map_err(|e| format!("warm-up DEL: {e}"))?;
    }
    Ok(lab.snapshot())
}

/// Recent exec times of each plugin (by verb and place in the list), from
/// the lab's clean operations: random delays are drawn over their median, so
/// they follow the machine's speed as it changes.
struct Timings {
    log: Arc<Mutex<Vec<ExecRecord>>>,
    recent: BTreeMap<(Verb, usize), VecDeque<Duration>>,
}

impl Timings {
    /// Log the execs of `lab.rt` from now on.
    fn attach(lab: &mut ChainLab) -> Timings {
        let log: Arc<Mutex<Vec<ExecRecord>>> = Arc::default();
        lab.rt.exec_log = Some(log.clone());
        Timings { log, recent: BTreeMap::new() }
    }

    /// Take in what was logged since the last call (the last 25 per plugin and verb).
    fn absorb(&mut self, lab: &ChainLab) {
        for r in std::mem::take(&mut *self.log.lock().unwrap()) {
            let verb = if r.command == "ADD" { Verb::Add } else { Verb::Del };
            let Some(i) = lab.list.plugins.iter().position(|p| p["type"].as_str() == Some(r.plugin.as_str()))
            else {
                continue;
            };
            let q = self.recent.entry((verb, i)).or_default();
            q.push_back(r.wall);
            if q.len() > 25 {
                q.pop_front();
            }
        }
    }

    fn median(&self, verb: Verb, index: usize) -> Option<Duration> {
        let mut v: Vec<Duration> = self.recent.get(&(verb, index))?.iter().copied().collect();
        v.sort();
        v.get(v.len() / 2).copied()
    }
}

/// Record the trace of one clean `verb` with `plugin`'s execs traced.
fn record(
    lab: &mut ChainLab,
    victim: &mut Member,
    baseline: &Snapshot,
    verb: Verb,
    plugin: &str,
) -> Result<Vec<KillPoint>, String> {
    let traced = Armed::tracing(lab, plugin).map_err(|e| format!("tracing {plugin}: {e}"))?;
    lab.fresh_identity(victim);
    let _ = std::fs::remove_file(lab.strace_log());
    let res = match verb {
        Verb::Add => lab.add(&traced.rt, victim).map(drop),
        Verb::Del => lab.add(&lab.rt, victim).and_then(|_| lab.del(&traced.rt, victim)),
    };
    if let Some(bad) = traced.settle().first() {
        return Err(format!("traced {} of {plugin}: {bad}", verb.command()));
    }
    let trace = faults::read_trace(lab);
    res.map_err(|e| format!("traced {} of {plugin}: {e}", verb.command()))?;
    if verb == Verb::Add {
        lab.del(&lab.rt, victim).map_err(|e| format!("DEL after traced ADD: {e}"))?;
    }
    let diff = lab.snapshot().diff(baseline);
    if !diff.is_empty() {
        return Err(format!("traced {} of {plugin} left {diff:?}", verb.command()));
    }
    let trace = trace.map_err(|e| format!("reading the trace of {plugin}: {e}"))?;
    let points = faults::kill_points(plugin, &trace);
    if points.is_empty() {
        return Err(format!("no syscalls in the trace of {plugin}"));
    }
    Ok(points)
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    lab: &mut ChainLab,
    victim: &mut Member,
    residents: &[Member],
    (baseline, stray): (&Snapshot, &BTreeSet<IpAddr>),
    index: usize,
    phase: Phase,
    verb: Verb,
    fault: Fault,
) -> RunRecord {
    let start = Instant::now();
    let mut problems = Vec::new();
    let mut problem = |kind: &'static str, text: String| problems.push(Problem { kind, text });
    lab.fresh_identity(victim);
    if verb == Verb::Del {
        if let Err(e) = lab.add(&lab.rt, victim) {
            problem("add-failed", format!("ADD before the faulted DEL: {e}"));
        }
    }
    let _ = std::fs::remove_file(lab.strace_log());
    let outcome = match Armed::new(lab, &fault, verb) {
        Err(e) => {
            problem("process", format!("arming the fault: {e}"));
            Outcome::Failed(e.to_string())
        }
        Ok(armed) => {
            let res = match verb {
                Verb::Add => lab.add(&armed.rt, victim).map(drop),
                Verb::Del => lab.del(&armed.rt, victim),
            };
            for s in armed.settle() {
                problem("process", s);
            }
            classify(lab, &fault, res)
        }
    };

    // Recovery, as a runtime does: DEL without prevResult, until it succeeds.
    // The container is gone for the runtime then: so must be all its state
    // (judged before the fresh ADD, which reuses its ID and could hide
    // files left under its name).
    lab.drop_cache(victim);
    del_until_ok(lab, victim, "recovery DEL (no prevResult)", &mut problem);
    for p in gone(lab, victim, residents, baseline, stray, "after the recovery DEL") {
        problem(p.kind, p.text);
    }
    // A fresh ADD, then a normal DEL.
    match lab.add(&lab.rt, victim) {
        Ok(_) => {
            let mut alive: Vec<&Member> = residents.iter().collect();
            alive.push(victim);
            for b in lab.check_attached(&alive, stray) {
                let kind = if b.starts_with("duplicate") { "duplicate" } else { "not-intact" };
                problem(kind, format!("after the fresh ADD: {b}"));
            }
            let from = residents.first().map(|r| &r.ns).unwrap_or(&victim.ns);
            match lab.resolve(from, &victim.name) {
                Some((0, n)) if n > 0 => {}
                other => problem(
                    "not-intact",
                    format!("{} does not resolve after the fresh ADD: {other:?}", victim.name),
                ),
            }
        }
        Err(e) => problem("add-failed", format!("fresh ADD after recovery: {e}")),
    }
    del_until_ok(lab, victim, "DEL after the fresh ADD", &mut problem);
    for p in gone(lab, victim, residents, baseline, stray, "after the last DEL") {
        problem(p.kind, p.text);
    }
    RunRecord { index, phase, verb, fault, outcome, problems, took: start.elapsed() }
}

/// What is wrong once `victim` was deleted: anything of it left on the node
/// (the snapshot differs from `baseline`, its netns has more than `lo`, its
/// name resolves), residents not intact.
fn gone(
    lab: &ChainLab,
    victim: &Member,
    residents: &[Member],
    baseline: &Snapshot,
    stray: &BTreeSet<IpAddr>,
    when: &str,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem =
        |kind: &'static str, text: String| out.push(Problem { kind, text: format!("{when}: {text}") });
    for d in lab.snapshot().diff(baseline) {
        problem("leftover", d);
    }
    let links = link_names(&victim.ns);
    if links != ["lo"] {
        problem("leftover", format!("container netns still has links {links:?}"));
    }
    let alive: Vec<&Member> = residents.iter().collect();
    for b in lab.check_attached(&alive, stray) {
        problem("not-intact", format!("residents: {b}"));
    }
    if let Some(r) = residents.first() {
        match lab.resolve(&r.ns, &victim.name) {
            Some((3, 0)) => {}
            other => problem("leftover", format!("{} still resolves: {other:?}", victim.name)),
        }
        match lab.resolve(&r.ns, &r.name) {
            Some((0, n)) if n > 0 => {}
            other => problem("not-intact", format!("resident {} does not resolve: {other:?}", r.name)),
        }
    }
    out
}

/// DEL until it succeeds (a runtime retries); every failure is a problem.
fn del_until_ok(lab: &ChainLab, m: &Member, what: &str, problem: &mut impl FnMut(&'static str, String)) {
    for attempt in 1..=3 {
        match lab.del(&lab.rt, m) {
            Ok(()) => return,
            Err(e) => problem("del-failed", format!("{what}, attempt {attempt}: {e}")),
        }
    }
}

fn classify(lab: &ChainLab, fault: &Fault, res: Result<(), InvokeError>) -> Outcome {
    match res {
        Ok(()) => Outcome::Completed,
        Err(e) if e.exit_code == Some(128 + libc::SIGKILL) => Outcome::Killed,
        Err(e) => {
            let roles = match fault {
                Fault::Syscall(p) => faults::killed_roles(lab, &p.plugin),
                _ => Vec::new(),
            };
            if roles.is_empty() {
                Outcome::Failed(e.to_string())
            } else {
                Outcome::ChildKilled(format!("{} killed; {}: {}", roles.join(", "), e.plugin, e.msg()))
            }
        }
    }
}
