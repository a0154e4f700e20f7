//! One cluster's plan: the standard scenarios, the number of nodes needed,
//! and the runs reported at that number.
//!
//! Nodes needed: the smallest N, at least `min_copies + 1` so that losing one
//! node does not stop acceptance, such that
//! - with one node lost at the busiest hour, CPU demand and group-commit use
//!   per live node stay at or below `cluster.target_cpu` at the busiest minute;
//! - with the biggest destination down for a day, the spool of each node stays
//!   at or below `cluster.target_disk` of its disk.
//!
//! Both only get better with more nodes, so the search doubles N until it
//! fits and then bisects: a handful of simulations, not one per N.

use serde::Serialize;

use super::costs::SizeCost;
use super::profile::{Event, Profile};
use super::sim::{simulate, SimInput, SimResult};

/// The standard scenarios (and the profile's own) for one cluster size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Short name (`baseline`, `destination-down-1h`, ...).
    pub id: String,
    /// What happens, in words.
    pub title: String,
    /// The events.
    pub events: Vec<Event>,
}

/// One step of the search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchPoint {
    /// Nodes tried.
    pub nodes: u32,
    /// Peak CPU demand per live node, one node lost.
    pub cpu_one_lost: f64,
    /// Peak group-commit use per live node, one node lost.
    pub commit_one_lost: f64,
    /// Peak spool use per node, biggest destination down a day.
    pub disk_day_outage: f64,
    /// All within the targets.
    pub fits: bool,
}

/// A scenario and what it showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioRun {
    /// The scenario.
    pub scenario: Scenario,
    /// The run.
    pub result: SimResult,
}

/// The plan of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterPlan {
    /// The cluster (the profile's name, or a region's).
    pub name: String,
    /// Its messages per month.
    pub messages_per_month: f64,
    /// Messages in the busiest hour.
    pub busiest_hour_messages: f64,
    /// Messages per second in the busiest minute.
    pub peak_msg_per_s: f64,
    /// Nodes: the number needed, or `cluster.nodes` when the profile sets it.
    pub nodes: u32,
    /// True when `cluster.nodes` set it rather than the search.
    pub nodes_from_profile: bool,
    /// Nodes needed per the search (also computed when the profile sets `nodes`).
    pub nodes_needed: u32,
    /// Whether `nodes_needed` fits the targets (false: `max_nodes` reached).
    pub fits: bool,
    /// What decided the number: `min_copies + 1`, `cpu`, `commit`, `disk`.
    pub binding: String,
    /// Cores of each node.
    pub cores_per_node: f64,
    /// Spool disk of each node, GB.
    pub disk_gb_per_node: f64,
    /// `cluster.target_cpu`.
    pub target_cpu: f64,
    /// `cluster.target_disk`.
    pub target_disk: f64,
    /// The sizes tried.
    pub search: Vec<SearchPoint>,
    /// The scenarios at `nodes`.
    pub runs: Vec<ScenarioRun>,
}

impl ClusterPlan {
    /// The run of a standard scenario by id.
    pub fn run(&self, id: &str) -> Option<&ScenarioRun> {
        self.runs.iter().find(|r| r.scenario.id == id)
    }
}

/// Hours from Monday 00:00 to the busiest hour of Tuesday: the events start
/// there, a day into the run, so that the queue has reached its normal level.
pub fn busiest_start(p: &Profile) -> f64 {
    24.0 + p.busiest_hour() as f64
}

/// The standard scenarios: a baseline week, the biggest destination down 1 h
/// and 1 day, node 0 lost, zone 0 lost (with zones), then the profile's own.
pub fn scenarios(p: &Profile) -> Vec<Scenario> {
    let start = busiest_start(p);
    let big = p.destinations[p.biggest_destination()].name.clone();
    let down = |hours: f64| Event::DestinationDown {
        destination: big.clone(),
        start_hours: start,
        duration_hours: hours,
    };
    let lost = p.sim.node_loss_hours;
    let mut v = vec![
        Scenario {
            id: "baseline".into(),
            title: "a week, nothing goes wrong".into(),
            events: vec![],
        },
        Scenario {
            id: "destination-down-1h".into(),
            title: format!("{big} down for 1 h from the busiest hour"),
            events: vec![down(1.0)],
        },
        Scenario {
            id: "destination-down-1d".into(),
            title: format!("{big} down for 1 day from the busiest hour"),
            events: vec![down(24.0)],
        },
        Scenario {
            id: "node-loss".into(),
            title: format!("one node lost for {lost} h from the busiest hour"),
            events: vec![Event::NodeLoss {
                node: 0,
                start_hours: start,
                duration_hours: Some(lost),
            }],
        },
    ];
    if p.cluster.zones >= 2 {
        v.push(Scenario {
            id: "zone-loss".into(),
            title: format!("zone 0 lost for {lost} h from the busiest hour"),
            events: vec![Event::ZoneLoss {
                zone: 0,
                start_hours: start,
                duration_hours: Some(lost),
            }],
        });
    }
    for (i, s) in p.scenarios.iter().enumerate() {
        v.push(Scenario {
            id: format!("custom-{i}"),
            title: s.name.clone(),
            events: s.events.clone(),
        });
    }
    v
}

/// What the planner needs besides the profile.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The profile.
    pub profile: &'a Profile,
    /// Costs of the mix's mean message.
    pub cost: SizeCost,
    /// Group commits: messages per second per node.
    pub commits_per_s: f64,
}

impl Inputs<'_> {
    fn sim(&self, mpm: f64, nodes: u32, events: &[Event], timeline: bool, until_hours: Option<f64>) -> SimResult {
        simulate(&SimInput {
            until_hours,
            profile: self.profile,
            cost: self.cost,
            commits_per_s: self.commits_per_s,
            messages_per_month: mpm,
            nodes,
            events,
            timeline,
        })
    }

    /// Checks one cluster size against the targets.
    pub fn check(&self, mpm: f64, nodes: u32) -> SearchPoint {
        let p = self.profile;
        let sc = scenarios(p);
        let events = |id: &str| {
            sc.iter()
                .find(|s| s.id == id)
                .map(|s| s.events.clone())
                .unwrap_or_default()
        };
        // Each check stops an hour after its event: the peaks are within it.
        let until = |e: &[Event]| {
            e.iter()
                .map(|e| e.start_hours() + e.duration_hours().unwrap_or(0.0) + 1.0)
                .reduce(f64::max)
        };
        let (lost, day) = (events("node-loss"), events("destination-down-1d"));
        let lost = self.sim(mpm, nodes, &lost, false, until(&lost));
        let day = self.sim(mpm, nodes, &day, false, until(&day));
        let k = &p.cluster;
        SearchPoint {
            nodes,
            cpu_one_lost: lost.peak_cpu,
            commit_one_lost: lost.peak_commit,
            disk_day_outage: day.peak_disk_fraction,
            fits: lost.peak_cpu <= k.target_cpu
                && lost.peak_commit <= k.target_cpu
                && day.peak_disk_fraction <= k.target_disk
                && lost.refused <= 0.0,
        }
    }

    /// The smallest number of nodes that fits, with the points tried (sorted)
    /// and whether it fits at all below `cluster.max_nodes`.
    pub fn nodes_needed(&self, mpm: f64) -> (u32, bool, Vec<SearchPoint>) {
        let k = &self.profile.cluster;
        let lo_start = (k.min_copies + 1).max(2);
        let max = k.max_nodes.max(lo_start);
        let mut tried: Vec<SearchPoint> = Vec::new();
        let probe = |n: u32, tried: &mut Vec<SearchPoint>| {
            let pt = self.check(mpm, n);
            let fits = pt.fits;
            tried.push(pt);
            fits
        };
        if probe(lo_start, &mut tried) {
            return (lo_start, true, tried);
        }
        // Double until it fits: (lo, hi] holds the answer.
        let mut lo = lo_start;
        let mut hi = lo_start;
        loop {
            if hi >= max {
                tried.sort_by_key(|p| p.nodes);
                return (max, false, tried);
            }
            hi = (hi * 2).min(max);
            if probe(hi, &mut tried) {
                break;
            }
            lo = hi;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if probe(mid, &mut tried) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        tried.sort_by_key(|p| p.nodes);
        (hi, true, tried)
    }

    /// Plans one cluster of `mpm` messages a month.
    pub fn plan(&self, name: &str, mpm: f64) -> ClusterPlan {
        let p = self.profile;
        let k = &p.cluster;
        let (needed, fits, search) = self.nodes_needed(mpm);
        let nodes = k.nodes.unwrap_or(needed);
        let binding = binding(k.min_copies, needed, fits, &search, k);
        let runs = scenarios(p)
            .into_iter()
            .map(|mut s| {
                // A profile's own event may name a node the plan does not
                // have (the size was searched): say so rather than pretend.
                let missing: Vec<String> = s
                    .events
                    .iter()
                    .filter_map(|e| match e {
                        Event::NodeLoss { node, .. } if *node >= nodes => Some(node.to_string()),
                        _ => None,
                    })
                    .collect();
                if !missing.is_empty() {
                    s.title = format!("{} (node {} ignored: {nodes} nodes)", s.title, missing.join(", "));
                }
                let result = self.sim(mpm, nodes, &s.events, true, None);
                ScenarioRun { scenario: s, result }
            })
            .collect();
        let hourly = super::sim::hourly_rates(p, mpm);
        let busiest = hourly.iter().copied().fold(0.0, f64::max);
        ClusterPlan {
            name: name.to_string(),
            messages_per_month: mpm,
            busiest_hour_messages: busiest,
            peak_msg_per_s: busiest / 3600.0 * p.traffic.peak_factor,
            nodes,
            nodes_from_profile: k.nodes.is_some(),
            nodes_needed: needed,
            fits,
            binding,
            cores_per_node: k.cores_per_node,
            disk_gb_per_node: k.disk_gb_per_node,
            target_cpu: k.target_cpu,
            target_disk: k.target_disk,
            search,
            runs,
        }
    }
}

/// Why `needed` and not one fewer: the first target the size below missed.
pub(crate) fn binding(
    min_copies: u32,
    needed: u32,
    fits: bool,
    search: &[SearchPoint],
    k: &super::profile::Cluster,
) -> String {
    if !fits {
        return format!("does not fit within max_nodes = {}", k.max_nodes);
    }
    let Some(below) = search.iter().filter(|p| p.nodes < needed).max_by_key(|p| p.nodes) else {
        return format!("min_copies + 1 = {}", min_copies + 1);
    };
    let mut why = Vec::new();
    if below.cpu_one_lost > k.target_cpu {
        why.push("cpu");
    }
    if below.commit_one_lost > k.target_cpu {
        why.push("commit");
    }
    if below.disk_day_outage > k.target_disk {
        why.push("disk");
    }
    if why.is_empty() {
        why.push("refusals");
    }
    why.join("+")
}
