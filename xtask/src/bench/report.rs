//! The figures (raw, as JSON) and the Markdown report: medians, ratios to
//! the ceiling and to native, memory, start time, module sizes, and the
//! issue's targets side by side with what was measured. Nothing here
//! asserts: a missed target is a line in the report.

use super::loadgen::{Closed, Open, CONNECTIONS};
use super::machine::Machine;
use super::setups::{Setup, Side};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub repeats: usize,
    pub closed_secs: u32,
    pub open_secs: u32,
    pub warmup_secs: u32,
    pub tokens_per_alg: u64,
    pub connections: u32,
}

impl Profile {
    pub fn new(quick: bool) -> Profile {
        if quick {
            Profile {
                repeats: 2,
                closed_secs: 2,
                open_secs: 2,
                warmup_secs: 1,
                tokens_per_alg: 4_000,
                connections: CONNECTIONS,
            }
        } else {
            Profile {
                repeats: 3,
                closed_secs: 8,
                open_secs: 6,
                warmup_secs: 3,
                tokens_per_alg: 12_000,
                connections: CONNECTIONS,
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleSize {
    pub name: String,
    /// `None` when the module failed to build.
    pub bytes: Option<u64>,
    pub wasm_opt: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupResult {
    pub id: String,
    pub label: String,
    pub side: Side,
    pub config: String,
    pub modules: Vec<String>,
    pub native: Option<String>,
    /// From spawning Envoy to `/ready` answering 200 (includes compiling
    /// and starting the wasm VMs: one on the main thread, one per worker).
    pub ready_ms: Option<u64>,
    pub rss_idle: Option<u64>,
    pub rss_after: Option<u64>,
    pub rss_peak: Option<u64>,
    /// Envoy's live heap after the runs (tcmalloc's `allocated` from the
    /// admin `/memory`): RSS also counts pages the allocator keeps after
    /// V8 frees its compiler's memory.
    pub heap_allocated: Option<u64>,
    /// The filters' own counters after the runs (wasm stats, jwt_authn's
    /// cache hits, rate limiter outcomes), to check a workload did what it
    /// says (e.g. that unique tokens missed every cache).
    pub stats: BTreeMap<String, i64>,
    pub not_measured: Option<String>,
}

impl SetupResult {
    pub fn new(s: &Setup) -> SetupResult {
        SetupResult {
            id: s.id.into(),
            label: s.label.into(),
            side: s.side,
            config: s.options.config.clone(),
            modules: s.modules.iter().map(|m| m.to_string()).collect(),
            native: s.native.map(str::to_string),
            ready_ms: None,
            rss_idle: None,
            rss_after: None,
            rss_peak: None,
            heap_allocated: None,
            stats: BTreeMap::new(),
            not_measured: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub workload: String,
    pub setup: String,
    pub closed: Vec<Closed>,
    pub open: Vec<Open>,
    /// Open loop at the workload's common rate (see `Results::common_rates`).
    pub open_common: Vec<Open>,
    pub errors: Vec<String>,
    pub not_measured: Option<String>,
}

impl CaseResult {
    pub fn new(workload: &str, setup: &str) -> CaseResult {
        CaseResult {
            workload: workload.into(),
            setup: setup.into(),
            closed: vec![],
            open: vec![],
            open_common: vec![],
            errors: vec![],
            not_measured: None,
        }
    }
    pub fn rps(&self) -> Option<f64> {
        median(self.closed.iter().map(Closed::rps).collect())
    }
    /// Envoy's CPU µs per request, median over runs.
    pub fn cpu(&self) -> Option<f64> {
        median(
            self.closed
                .iter()
                .filter_map(Closed::cpu_us_per_request)
                .collect(),
        )
    }
    pub fn p50(&self) -> Option<f64> {
        median(self.open.iter().map(|o| o.p50_us).collect())
    }
    pub fn p99(&self) -> Option<f64> {
        median(self.open.iter().map(|o| o.p99_us).collect())
    }
    pub fn p50_common(&self) -> Option<f64> {
        median(self.open_common.iter().map(|o| o.p50_us).collect())
    }
    pub fn p99_common(&self) -> Option<f64> {
        median(self.open_common.iter().map(|o| o.p99_us).collect())
    }
    /// Share of responses that were not 2xx or failed, over all runs.
    pub fn failure_share(&self) -> f64 {
        let total: u64 = self.closed.iter().map(|c| c.requests).sum();
        let failed: u64 = self.closed.iter().map(Closed::failures).sum();
        failed as f64 / total.max(1) as f64
    }
    /// Only the 200 path counts: a configuration answering 401 or 429 fast
    /// would otherwise look good.
    pub fn valid(&self) -> bool {
        self.failure_share() < 0.001
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkloadInfo {
    pub id: String,
    pub label: String,
    /// Whether oha (open loop) could send it: only fixed headers.
    pub open_loop: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub mode: String,
    pub command: String,
    pub machine: Machine,
    pub envoy: String,
    pub wrk: String,
    pub oha: String,
    pub profile: Profile,
    pub modules: Vec<ModuleSize>,
    pub workloads: Vec<WorkloadInfo>,
    pub setups: Vec<SetupResult>,
    pub cases: Vec<CaseResult>,
    /// The open-loop rate per workload: half the ceiling's median req/s.
    pub open_rates: BTreeMap<String, f64>,
    /// For [`LATENCY_WORKLOAD`]: half the slowest valid configuration's
    /// median req/s, a rate where no configuration queues.
    pub common_rates: BTreeMap<String, f64>,
    pub elapsed_secs: u64,
}

/// The workload the latency target is judged on.
pub const LATENCY_WORKLOAD: &str = "repeated-rs256";

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let mid = v.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(mid)
    } else {
        Some((v.get(n / 2 - 1).copied()? + mid) / 2.0)
    }
}

impl Results {
    fn case(&self, workload: &str, setup: &str) -> Option<&CaseResult> {
        self.cases
            .iter()
            .find(|c| c.workload == workload && c.setup == setup)
    }
    fn measured(&self, workload: &str, setup: &str) -> Option<&CaseResult> {
        if self.idle_module(setup) {
            return None;
        }
        self.case(workload, setup)
            .filter(|c| c.not_measured.is_none() && c.valid() && !c.closed.is_empty())
    }
    /// One of ours that served requests without moving any of its counters:
    /// a stub glue, or a config that matched nothing. Its figures would
    /// flatter it, so they are shown but left out of ratios and targets.
    fn idle_module(&self, setup: &str) -> bool {
        self.setup(setup).is_some_and(|s| {
            s.side == Side::Ours
                && s.not_measured.is_none()
                && !s.stats.keys().any(|k| k.starts_with("wasmcustom."))
        })
    }
    fn rps(&self, workload: &str, setup: &str) -> Option<f64> {
        self.measured(workload, setup)?.rps()
    }
    fn cpu(&self, workload: &str, setup: &str) -> Option<f64> {
        self.measured(workload, setup)?.cpu()
    }
    /// Envoy CPU µs per request over the ceiling's: the filters' cost.
    fn cost(&self, workload: &str, setup: &str) -> Option<f64> {
        Some(self.cpu(workload, setup)? - self.cpu(workload, "ceiling")?)
    }
    /// Throughput ratio judged by CPU per request (`b`'s CPU / `a`'s).
    fn cpu_ratio(&self, workload: &str, a: &str, b: &str) -> Option<f64> {
        ratio(self.cpu(workload, b), self.cpu(workload, a))
    }
    fn p50(&self, workload: &str, setup: &str) -> Option<f64> {
        self.measured(workload, setup)?.p50()
    }
    fn p50_common(&self, workload: &str, setup: &str) -> Option<f64> {
        self.measured(workload, setup)?.p50_common()
    }
    fn setup(&self, id: &str) -> Option<&SetupResult> {
        self.setups.iter().find(|s| s.id == id)
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?).filter(|r| r.is_finite())
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("–".into(), f)
}

fn mib(b: Option<u64>) -> String {
    b.map_or("–".into(), |b| format!("{:.1}", b as f64 / 1048576.0))
}

pub fn markdown(r: &Results, json: &Path) -> String {
    let mut s = String::new();
    let p = &r.profile;
    let m = &r.machine;
    let _ = writeln!(s, "## Latest run ({})\n", r.mode);
    let _ = writeln!(
        s,
        "- **When / what:** {}, commit `{}` plus any uncommitted changes in the work tree at that time.",
        m.date_utc, m.commit
    );
    let _ = writeln!(
        s,
        "- **Machine:** {} × {}, {} memory, {}; load average at the start {} (the machine was shared: see Noise below).",
        m.nproc, m.cpu, m.memory, m.kernel, m.load_average
    );
    let _ = writeln!(
        s,
        "- **Envoy:** `{}`, `--concurrency 1`, pinned with `taskset -c 0`.",
        r.envoy
    );
    let _ = writeln!(
        s,
        "- **Load:** `{}` closed loop: `taskset -c 1 wrk -t1 -c{} -d{}s -s <workload>.lua`; `{}` open loop: `taskset -c 1 oha -c{} -q <rate> --latency-correction -z {}s` at half the ceiling's median req/s for that workload.",
        r.wrk, p.connections, p.closed_secs, r.oha, p.connections, p.open_secs
    );
    let _ = writeln!(
        s,
        "- **Runs:** {} rounds per configuration, interleaved (reversed every other round), after a {} s warm-up; medians shown. Command: `{}` ({} s in all). Raw figures: `{}`.",
        p.repeats,
        p.warmup_secs,
        r.command,
        r.elapsed_secs,
        json.strip_prefix(crate::tools::root()).unwrap_or(json).display()
    );
    let _ = writeln!(s);

    for w in &r.workloads {
        let (wid, wlabel) = (&w.id, &w.label);
        let cases: Vec<&CaseResult> = r.cases.iter().filter(|c| &c.workload == wid).collect();
        if cases.is_empty() {
            continue;
        }
        let rate = r.open_rates.get(wid);
        let _ = writeln!(s, "### {wlabel}\n");
        match rate {
            Some(rate) => {
                let _ = writeln!(s, "Open loop at {rate:.0} req/s.\n");
            }
            None if !w.open_loop => {
                let _ = writeln!(
                    s,
                    "No open loop: the headers vary per request, which oha cannot do (latency under closed-loop saturation is in the JSON).\n"
                );
            }
            None => {}
        }
        let _ = writeln!(
            s,
            "| configuration | req/s | × ceiling | × native | CPU µs/req | CPU µs over ceiling | × native by CPU | p50 µs | p99 µs | p50 added µs | notes |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        let ceiling = r.rps(wid, "ceiling");
        let ceiling_p50 = r.p50(wid, "ceiling");
        for c in &cases {
            let label = r
                .setup(&c.setup)
                .map_or(c.setup.as_str(), |s| s.label.as_str());
            if let Some(why) = &c.not_measured {
                let _ = writeln!(
                    s,
                    "| {label} | – | – | – | – | – | – | – | not measured: {} |",
                    why.replace('|', "/")
                );
                continue;
            }
            let rps = c.rps();
            let native = r.setup(&c.setup).and_then(|s| s.native.clone());
            let vs_native = native.as_deref().and_then(|n| ratio(rps, r.rps(wid, n)));
            let cost = if c.setup == "ceiling" {
                None
            } else {
                r.cost(wid, &c.setup)
            };
            let vs_native_cpu = native
                .as_deref()
                .and_then(|n| r.cpu_ratio(wid, &c.setup, n));
            let p50 = c.p50();
            let added = match (p50, ceiling_p50) {
                (Some(a), Some(b)) if c.setup != "ceiling" => Some(a - b),
                _ => None,
            };
            let mut notes = Vec::new();
            if !c.valid() {
                notes.push(format!(
                    "**invalid: {:.1}% of responses failed or were not 2xx**",
                    c.failure_share() * 100.0
                ));
            }
            if let (false, Some(rate)) = (c.open.is_empty(), rate) {
                let achieved =
                    median(c.open.iter().map(|o| o.achieved_rps).collect()).unwrap_or(0.0);
                if achieved < 0.95 * rate {
                    notes.push(format!("open loop reached only {achieved:.0} req/s"));
                }
            }
            if r.idle_module(&c.setup) {
                notes.push(
                    "**did no work: none of its counters moved (stub glue?); left out of ratios and targets**"
                        .into(),
                );
            }
            if !c.errors.is_empty() {
                notes.push(format!("{} run(s) failed", c.errors.len()));
            }
            let _ = writeln!(
                s,
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                opt(rps, |v| format!("{v:.0}")),
                opt(ratio(rps, ceiling), |v| format!("{v:.2}")),
                opt(vs_native, |v| format!("{v:.2}")),
                opt(c.cpu(), |v| format!("{v:.1}")),
                opt(cost, |v| format!("{v:+.1}")),
                opt(vs_native_cpu, |v| format!("{v:.2}")),
                opt(p50, |v| format!("{v:.0}")),
                opt(c.p99(), |v| format!("{v:.0}")),
                opt(added, |v| format!("{v:+.0}")),
                notes.join("; ")
            );
        }
        let _ = writeln!(s);
        if let Some(rate) = r.common_rates.get(wid) {
            latency_at_common_rate(&mut s, r, wid, &cases, *rate);
        }
    }

    let _ = writeln!(s, "### Memory and start time\n");
    let _ = writeln!(
        s,
        "Envoy's resident memory with one worker (so one wasm VM per plugin on the main thread and one on the worker), its live heap (tcmalloc's `allocated` in the admin `/memory`: RSS also holds pages the allocator keeps after V8 frees its compiler's memory), and the time from spawning Envoy to `/ready` (compiling and starting the VMs included), each configuration started alone.\n"
    );
    let _ = writeln!(
        s,
        "| configuration | RSS idle MiB | RSS after load MiB | peak MiB | over ceiling MiB | live heap MiB | over ceiling MiB | ready ms | over ceiling ms |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = r.setup("ceiling");
    for st in &r.setups {
        if let Some(why) = &st.not_measured {
            let _ = writeln!(
                s,
                "| {} | – | – | – | – | – | – | – | not measured: {} |",
                st.label,
                why.replace('|', "/")
            );
            continue;
        }
        let over = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:+.1}", (a as f64 - b as f64) / 1048576.0),
            _ => "–".into(),
        };
        let over_rss = over(st.rss_after, base.and_then(|b| b.rss_after));
        let over_heap = over(st.heap_allocated, base.and_then(|b| b.heap_allocated));
        let over_ms = match (st.ready_ms, base.and_then(|b| b.ready_ms)) {
            (Some(a), Some(b)) => format!("{:+}", a as i64 - b as i64),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {over_rss} | {} | {over_heap} | {} | {over_ms} |",
            st.label,
            mib(st.rss_idle),
            mib(st.rss_after),
            mib(st.rss_peak),
            mib(st.heap_allocated),
            st.ready_ms.map_or("–".into(), |v| v.to_string()),
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "### Module sizes\n");
    let _ = writeln!(s, "| module | KiB | wasm-opt |");
    let _ = writeln!(s, "|---|---:|---|");
    for md in &r.modules {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            md.name,
            md.bytes.map_or("build failed".into(), |b| format!(
                "{:.1}",
                b as f64 / 1024.0
            )),
            if md.wasm_opt {
                "yes"
            } else {
                "no (binaryen not installed)"
            }
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "### Targets of issue 6\n");
    let _ = writeln!(s, "| target | measured | met |");
    let _ = writeln!(s, "|---|---|---|");
    for (target, measured, met) in targets(r) {
        let _ = writeln!(
            s,
            "| {target} | {measured} | {} |",
            match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "not measured",
            }
        );
    }
    s
}

/// The targets, each as (what, measured, met?).
fn targets(r: &Results) -> Vec<(String, String, Option<bool>)> {
    let mut out = Vec::new();
    let rep = LATENCY_WORKLOAD;
    let x = |v: Option<f64>| opt(v, |v| format!("{v:.2}×"));
    // Throughput targets are judged by CPU per request when it was read:
    // on a shared machine req/s measures the neighbours too.
    let both = |w: &str, ours: &str, native: &str| -> (String, Option<f64>) {
        let by_rps = ratio(r.rps(w, ours), r.rps(w, native));
        let by_cpu = r.cpu_ratio(w, ours, native);
        (
            format!("{} by req/s, {} by CPU/req", x(by_rps), x(by_cpu)),
            by_cpu.or(by_rps),
        )
    };
    for ours in ["ours-chain", "ours-chain-filters"] {
        let (text, v) = both(rep, ours, "native-chain");
        out.push((
            format!("{ours}: throughput ≥ 1.0× the native chain, repeated token"),
            text,
            v.map(|v| v >= 1.0),
        ));
    }
    let added = |id: &str| Some(r.p50(rep, id)? - r.p50(rep, "ceiling")?);
    let (ours, native) = (added("ours-chain"), added("native-chain"));
    out.push((
        "ours-chain: p50 added over the ceiling ≤ native chain's + 20 µs".into(),
        match (ours, native) {
            (Some(o), Some(n)) => format!("{o:+.0} µs vs {n:+.0} µs"),
            _ => "–".into(),
        },
        ours.zip(native).map(|(o, n)| o <= n + 20.0),
    ));
    let added = |id: &str| Some(r.p50_common(rep, id)? - r.p50_common(rep, "ceiling")?);
    let (ours, native) = (added("ours-chain"), added("native-chain"));
    let rate = r.common_rates.get(rep).copied();
    out.push((
        format!(
            "… the same at {} req/s, a rate every configuration sustains",
            opt(rate, |v| format!("{v:.0}"))
        ),
        match (ours, native) {
            (Some(o), Some(n)) => format!("{o:+.0} µs vs {n:+.0} µs"),
            _ => "–".into(),
        },
        ours.zip(native).map(|(o, n)| o <= n + 20.0),
    ));
    let (text, v) = both(rep, "ours-chain", "native-jwt-nocache");
    out.push((
        "ours-chain ≥ 1.5× native jwt_authn without jwt_cache_config, repeated token".into(),
        text,
        v.map(|v| v >= 1.5),
    ));
    for (w, alg) in [("cold-rs256", "RS256"), ("cold-es256", "ES256")] {
        // EdDSA has no target: native and host crypto differ there.
        let (text, v) = both(w, "ours-jwt", "native-jwt");
        out.push((
            format!("jwt-auth, unique {alg} tokens: ≥ 0.8× native jwt_authn"),
            text,
            v.map(|v| v >= 0.8),
        ));
    }
    let mem = match (
        r.setup("ours-chain").and_then(|s| s.rss_after),
        r.setup("native-chain").and_then(|s| s.rss_after),
    ) {
        (Some(o), Some(n)) => Some((o as f64 - n as f64) / 1048576.0),
        _ => None,
    };
    let heap = match (
        r.setup("ours-chain").and_then(|s| s.heap_allocated),
        r.setup("native-chain").and_then(|s| s.heap_allocated),
    ) {
        (Some(o), Some(n)) => format!(" (live heap {:+.1} MiB)", (o as f64 - n as f64) / 1048576.0),
        _ => String::new(),
    };
    out.push((
        "ours-chain memory ≤ native chain's + 5 MiB (one worker)".into(),
        opt(mem, |v| format!("{v:+.1} MiB RSS{heap}")),
        mem.map(|v| v <= 5.0),
    ));
    for (w, id, what) in [
        ("ratelimit-1-key", "ours-ratelimit", "rate-limit, 1 key"),
        (
            "ratelimit-1m-keys",
            "ours-ratelimit",
            "rate-limit, 1,000,000 keys",
        ),
        ("audit", "ours-audit", "audit-log with its HTTP sink"),
    ] {
        let cost = r.cost(w, id).or(match (r.rps(w, id), r.rps(w, "ceiling")) {
            (Some(a), Some(b)) => Some(1e6 / a - 1e6 / b),
            _ => None,
        });
        out.push((
            format!("{what}: ≤ 5 µs per request (Envoy CPU µs/req over the ceiling's)"),
            opt(cost, |v| format!("{v:.1} µs")),
            cost.map(|v| v <= 5.0),
        ));
    }
    out
}

/// p50/p99 at the common rate, where no configuration queues: what each
/// one adds to a request, rather than to a backlog.
fn latency_at_common_rate(
    s: &mut String,
    r: &Results,
    wid: &str,
    cases: &[&CaseResult],
    rate: f64,
) {
    let _ = writeln!(
        s,
        "Open loop again at {rate:.0} req/s, half the slowest configuration's capacity, so that no configuration queues:\n"
    );
    let _ = writeln!(s, "| configuration | p50 µs | p99 µs | p50 added µs |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let ceiling = r.p50_common(wid, "ceiling");
    for c in cases.iter().filter(|c| !c.open_common.is_empty()) {
        let label = r
            .setup(&c.setup)
            .map_or(c.setup.as_str(), |st| st.label.as_str());
        let p50 = r.p50_common(wid, &c.setup);
        let added = p50.zip(ceiling).map(|(p, b)| p - b);
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} |",
            opt(p50, |v| format!("{v:.0}")),
            opt(c.p99_common(), |v| format!("{v:.0}")),
            opt(added, |v| format!("{v:+.0}")),
        );
    }
    let _ = writeln!(s);
}
