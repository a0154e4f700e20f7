//! `estafette-load plan`: the capacity model. From measured costs
//! (`costs.json`, written by `bench/scripts/capacity.sh`) and a traffic
//! profile (TOML), it simulates an N-node cluster through a week with
//! destination outages and node losses, finds the nodes needed for the
//! profile's targets, and checks its own arithmetic against the bench host's
//! measurements (`measured.json`). See `docs/capacity.md`.
//!
//! # Layout
//! - `costs`: `costs.json` and `measured.json`, checked; cost of any size by
//!   interpolation.
//! - `profile`: the traffic profile, cluster, retry schedule, events (TOML).
//! - `sim`: the fixed-step fluid simulation of one cluster through one scenario.
//! - `outcome`: what a simulation shows (peaks, drains, delays, timeline).
//! - `search`: the standard scenarios, nodes needed, one cluster's plan.
//! - `validate`: predicted vs measured on the bench host.
//! - `text`: the text table printed on stdout.
//! - `html`: the self-contained HTML report with SVG charts.

pub mod costs;
pub mod html;
pub mod outcome;
pub mod profile;
pub mod search;
pub mod sim;
pub mod text;
pub mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde::Serialize;

use self::costs::{Costs, Measured, SizeCost};
use self::profile::Profile;
use self::search::{ClusterPlan, Inputs};
use self::validate::Validation;

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An input file: `costs.json`, `measured.json` or the profile (the
    /// error names which).
    #[error(transparent)]
    Input(#[from] crate::file::FileError),
    /// A `--volumes` entry is not a number of messages.
    #[error("bad volume {0:?}: expected e.g. 300000, 300k, 28m or 1.5g (decimal multiples)")]
    Volume(String),
    /// The output directory or its files.
    #[error("{path}: {cause}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
}

/// Where the costs came from, as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostsSource {
    /// The file.
    pub path: String,
    /// Its note.
    pub note: String,
    /// True while it holds placeholder figures.
    pub placeholder: bool,
    /// The commit measured.
    pub commit: Option<String>,
    /// When.
    pub measured_at: Option<String>,
    /// Cores of the machine it was measured on.
    pub host_cores: f64,
}

/// A whole plan: one cluster, or one per region of a federation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The profile's name.
    pub profile: String,
    /// Its description.
    pub description: String,
    /// The costs used.
    pub costs: CostsSource,
    /// Size mix of the profile.
    pub sizes: String,
    /// Costs of the mix's mean message.
    pub mean_message: SizeCost,
    /// Messages per month over all clusters.
    pub messages_per_month: f64,
    /// True for a federation of regional clusters.
    pub federation: bool,
    /// `min_copies`.
    pub min_copies: u32,
    /// The clusters.
    pub clusters: Vec<ClusterPlan>,
    /// Nodes over all clusters.
    pub total_nodes: u32,
    /// Cores over all clusters.
    pub total_cores: f64,
    /// The bench host check, with `--measured`.
    pub validation: Option<Validation>,
    /// Nodes needed by volume (`--volumes`), one cluster of the profile's node shape each.
    pub sweep: Vec<SweepRow>,
}

/// Nodes needed for one volume, the rest of the profile unchanged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    /// Messages per month.
    pub messages_per_month: f64,
    /// Messages per second in the busiest minute.
    pub peak_msg_per_s: f64,
    /// Nodes needed.
    pub nodes: u32,
    /// Cores of each.
    pub cores_per_node: f64,
    /// False when `max_nodes` was reached.
    pub fits: bool,
    /// What decided the number.
    pub binding: String,
    /// Peak CPU demand per live node with one lost, at that number.
    pub cpu_one_lost: f64,
    /// Peak spool use per node with the biggest destination down a day.
    pub disk_day_outage: f64,
}

/// Parses a volume: `300000`, `300k`, `28m`, `1.5g` (decimal multiples).
///
/// # Errors
/// [`PlanError::Volume`].
pub fn parse_volume(s: &str) -> Result<f64, PlanError> {
    let t = s.trim().replace('_', "");
    let (num, mult) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 1e3),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 1e6),
        Some(b'g' | b'G') => (&t[..t.len() - 1], 1e9),
        _ => (t.as_str(), 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * mult <= 1e12 => Ok(v * mult),
        _ => Err(PlanError::Volume(s.to_string())),
    }
}

/// Reads the files and makes the plan.
///
/// # Errors
/// A [`PlanError`] naming the bad file and field.
pub fn plan_files(costs: &Path, profile: &Path, measured: Option<&Path>, volumes: &[f64]) -> Result<Plan, PlanError> {
    let c = Costs::load(costs)?;
    let p = Profile::load(profile)?;
    let m = measured.map(Measured::load).transpose()?;
    Ok(plan(&c, &costs.display().to_string(), &p, m.as_ref(), volumes))
}

/// Makes the plan: every cluster's nodes needed and standard scenarios, and
/// the nodes needed for each of `volumes`.
pub fn plan(c: &Costs, costs_path: &str, p: &Profile, measured: Option<&Measured>, volumes: &[f64]) -> Plan {
    let mean = c.mean_over(&p.size_shares());
    let inputs = Inputs {
        profile: p,
        cost: mean,
        commits_per_s: c.commits_per_s(),
    };
    let total = p.traffic.messages_per_month;
    let clusters: Vec<ClusterPlan> = if p.regions.is_empty() {
        vec![inputs.plan(&p.name, total)]
    } else {
        p.regions
            .iter()
            .map(|r| inputs.plan(&r.name, total * r.share))
            .collect()
    };
    let sweep = volumes
        .iter()
        .map(|&mpm| {
            let (nodes, fits, tried) = inputs.nodes_needed(mpm);
            let at = tried.iter().find(|t| t.nodes == nodes);
            let busiest = sim::hourly_rates(p, mpm).into_iter().fold(0.0, f64::max);
            SweepRow {
                messages_per_month: mpm,
                peak_msg_per_s: busiest / 3600.0 * p.traffic.peak_factor,
                nodes,
                cores_per_node: p.cluster.cores_per_node,
                fits,
                binding: search::binding(p.cluster.min_copies, nodes, fits, &tried, &p.cluster),
                cpu_one_lost: at.map_or(f64::NAN, |t| t.cpu_one_lost.max(t.commit_one_lost)),
                disk_day_outage: at.map_or(f64::NAN, |t| t.disk_day_outage),
            }
        })
        .collect();
    let total_nodes = clusters.iter().map(|k| k.nodes).sum();
    let total_cores = clusters.iter().map(|k| f64::from(k.nodes) * k.cores_per_node).sum();
    Plan {
        profile: p.name.clone(),
        description: p.description.clone(),
        costs: CostsSource {
            path: costs_path.to_string(),
            note: c.note.clone(),
            placeholder: c.placeholder,
            commit: c.commit.clone(),
            measured_at: c.measured_at.clone(),
            host_cores: c.host.cores,
        },
        sizes: p.traffic.sizes.clone(),
        mean_message: mean,
        messages_per_month: total,
        federation: !p.regions.is_empty(),
        min_copies: p.cluster.min_copies,
        clusters,
        total_nodes,
        total_cores,
        validation: measured.map(|m| validate::validate(c, m)),
        sweep,
    }
}

impl Plan {
    /// Writes `plan.json` and `plan.html` into `dir` (created if needed).
    ///
    /// # Errors
    /// [`PlanError::Write`] naming the file.
    pub fn write(&self, dir: &Path) -> Result<(), PlanError> {
        let w = |path: &Path, cause| PlanError::Write {
            path: path.display().to_string(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(|e| w(dir, e))?;
        let json_path = dir.join("plan.json");
        // Compact: the timelines make a pretty-printed federation plan tens of MB.
        let json = serde_json::to_string(self).map_err(|e| w(&json_path, std::io::Error::other(e)))?;
        std::fs::write(&json_path, json + "\n").map_err(|e| w(&json_path, e))?;
        let html_path = dir.join("plan.html");
        std::fs::write(&html_path, html::render(self)).map_err(|e| w(&html_path, e))?;
        Ok(())
    }
}
