//! What one VM (worker) knows for every request: the config, the compiled
//! rules, the shared hash seed and the stats, all set up in `on_configure`.

use crate::config::{CompiledRule, Config, KeySource};
use crate::key::Seed;
use crate::slots;
use crate::stats::Stats;
use filter_common::request::Fields;
use filter_common::{Metrics, SharedData};

/// Build it in `on_configure`; share it with `Rc`.
#[derive(Debug)]
pub struct RateLimiter {
    config: Config,
    rules: Vec<CompiledRule>,
    seed: Seed,
    stats: Stats,
    needs_identity: bool,
    /// The pseudo-headers some rule reads: each is a hostcall, so the
    /// others are not fetched.
    needs: Fields,
    created_slots: u64,
}

/// The request attributes the rules look at.
fn needs(rules: &[CompiledRule]) -> Fields {
    let mut n = Fields::default();
    for r in rules {
        let m = &r.rule.matcher;
        n.method |= !m.methods.is_empty();
        n.path |= m.prefix.is_some() || m.path.is_some();
        n.host |= m.host.is_some();
        for k in &r.rule.key {
            n.method |= matches!(k, KeySource::Method(_));
            n.path |= matches!(k, KeySource::Path(_));
        }
    }
    n
}

impl RateLimiter {
    /// Call from `on_configure` in every VM. Loads (or, in the first VM,
    /// creates) the hash seed and the slot tables in shared data, and
    /// defines every stat so they show as 0 from the start (a stat the host
    /// refuses refuses the config).
    /// `fresh_seed` must be random; it is used only if no seed exists yet.
    /// `now_ns` is the host's clock: a rule whose `slots` changed since the
    /// last configuration keeps reading its earlier slots for a while
    /// (`slots::update_layout`).
    pub fn configure(
        config: Config,
        shared: &mut dyn SharedData,
        metrics: &mut dyn Metrics,
        fresh_seed: [u8; 16],
        now_ns: u64,
    ) -> Result<Self, String> {
        let seed = slots::load_or_create_seed(shared, fresh_seed)?;
        let mut rules = config.compile();
        let mut created_slots = 0;
        for r in &mut rules {
            created_slots += u64::from(slots::prepare_table(shared, &r.rule.name, r.slots)?);
            r.previous =
                slots::update_layout(shared, &r.rule.name, r.slots, r.gcra.horizon_ns(), now_ns)?;
        }
        let stats = Stats::define(metrics, &rules).map_err(|e| format!("defining stats: {e}"))?;
        let needs_identity = rules.iter().any(|r| {
            r.rule
                .key
                .iter()
                .any(|k| matches!(k, KeySource::Identity(_)))
        });
        Ok(RateLimiter {
            needs: needs(&rules),
            config,
            rules,
            seed,
            stats,
            needs_identity,
            created_slots,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The rules, in config order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    pub fn seed(&self) -> &Seed {
        &self.seed
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The pseudo-headers the rules read.
    pub fn needs(&self) -> Fields {
        self.needs
    }

    /// Some rule keys on the caller's identity.
    pub fn needs_identity(&self) -> bool {
        self.needs_identity
    }

    /// Slots this VM created in shared data (0 when an earlier VM did).
    pub fn created_slots(&self) -> u64 {
        self.created_slots
    }
}
