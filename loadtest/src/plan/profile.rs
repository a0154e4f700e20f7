//! The traffic profile (TOML): how much mail, when, how big, to whom; the
//! cluster it runs on; the retry schedule; extra scenarios (events); and, for
//! a federation, the regions that each run their own cluster.
//!
//! Every table has defaults (the relay's defaults where the relay has the
//! setting), unknown keys are refused, and [`Profile::load`] checks the values
//! so that a bad profile is an error naming the field, never a strange plan.
//! See `bench/capacity/regional.toml` for a commented example.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::mix::SizeMix;

/// Why a profile cannot be used.
pub type ProfileError = crate::file::FileError;

fn default_sizes() -> String {
    "10k:60,100k:30,1m:9,10m:1".into()
}
/// Relative traffic by hour of a weekday (00:00..24:00): discharge letters and
/// reports leave the patient record during office hours, peaking late morning
/// and mid-afternoon, with nightly batches small.
fn default_hourly() -> Vec<f64> {
    vec![
        0.5, 0.4, 0.3, 0.3, 0.4, 0.6, 1.0, 2.5, 5.0, 7.5, 8.5, 8.5, 6.5, 6.5, 8.0, 8.5, 8.0, 6.5, 4.5, 3.0, 2.0, 1.5,
        1.0, 0.7,
    ]
}
fn default_weekend() -> f64 {
    0.15
}
fn default_peak() -> f64 {
    2.0
}
fn default_connections() -> f64 {
    8.0
}
fn default_per_connection() -> f64 {
    10.0
}
fn one() -> f64 {
    1.0
}

/// `[traffic]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Messages accepted per month (a month is 365.25/12 days of repeated weeks).
    pub messages_per_month: f64,
    /// Size mix, as `estafette-load send --size`. Default `"10k:60,100k:30,1m:9,10m:1"`.
    #[serde(default = "default_sizes")]
    pub sizes: String,
    /// 24 relative weights, one per hour of a weekday. Default: office hours.
    #[serde(default = "default_hourly")]
    pub hourly: Vec<f64>,
    /// A weekend hour carries this fraction of the same weekday hour. Default 0.15.
    #[serde(default = "default_weekend")]
    pub weekend_factor: f64,
    /// The busiest minute's rate over its hour's mean rate (1 to 60). Default 2.
    #[serde(default = "default_peak")]
    pub peak_factor: f64,
}

/// `[[destination]]`: a receiving domain (or a group of them: the long tail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Its name (a domain, or a label such as `"long tail"`).
    pub name: String,
    /// Its share of the messages (all shares add up to 1).
    pub share: f64,
    /// Connections each node opens to one of its domains (relay
    /// `outbound.max_connections`). Default 8.
    #[serde(default = "default_connections")]
    pub connections: f64,
    /// Messages per second one connection carries. Default 10.
    #[serde(default = "default_per_connection")]
    pub msg_per_s_per_connection: f64,
    /// Domains in the group, each with its own connections. Default 1.
    #[serde(default = "one")]
    pub domains: f64,
    /// What the receiving side takes at most over the whole cluster (msg/s).
    #[serde(default)]
    pub max_msg_per_s: Option<f64>,
    /// Share of delivery attempts answered 4yz while it is up (retried). Default 0.
    #[serde(default)]
    pub defer_rate: f64,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// Run this many nodes instead of searching for the number needed.
    pub nodes: Option<u32>,
    /// Cores of each node. Default 4.
    pub cores_per_node: f64,
    /// Spool disk of each node, GB (10^9 octets). Default 200.
    pub disk_gb_per_node: f64,
    /// Copies on stable storage before `250`. Default 2 (as the relay).
    pub min_copies: u32,
    /// Zones the nodes are spread over (node i in zone i mod zones). Default 1.
    pub zones: u32,
    /// Seconds before a silent node's mail is taken over. Default 60 (as the relay).
    pub takeover_after_secs: f64,
    /// Highest CPU (and group-commit) use allowed per node, with one node
    /// lost, at the busiest minute. Default 0.5.
    pub target_cpu: f64,
    /// Highest spool disk use allowed per node while the biggest destination
    /// is down for a day. Default 0.7.
    pub target_disk: f64,
    /// Give up the search above this many nodes. Default 200.
    pub max_nodes: u32,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            nodes: None,
            cores_per_node: 4.0,
            disk_gb_per_node: 200.0,
            min_copies: 2,
            zones: 1,
            takeover_after_secs: 60.0,
            target_cpu: 0.5,
            target_disk: 0.7,
            max_nodes: 200,
        }
    }
}

/// `[retry]`: the relay's schedule, and the sending MTAs' after a `451`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// First retry delay. Default 60 (relay `outbound.retry_first_secs`).
    pub first_secs: f64,
    /// Delays double up to this. Default 3600.
    pub cap_secs: f64,
    /// Give up (failure DSN) at this age. Default 432000 (5 days).
    pub max_age_secs: f64,
    /// A sender refused with `451` retries after this. Default 300 (Postfix
    /// `minimal_backoff_time`).
    pub sender_first_secs: f64,
    /// Its delays double up to this. Default 4000 (Postfix `maximal_backoff_time`).
    pub sender_cap_secs: f64,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            first_secs: 60.0,
            cap_secs: 3600.0,
            max_age_secs: 432_000.0,
            sender_first_secs: 300.0,
            sender_cap_secs: 4000.0,
        }
    }
}

impl Retry {
    /// Delay after `attempts` failed attempts (1 for the first): `first *
    /// 2^(attempts-1)`, capped (the relay's `RetryPolicy::base_delay`, no jitter).
    pub fn delay(first: f64, cap: f64, attempts: u32) -> f64 {
        let mut d = first;
        for _ in 1..attempts.max(1) {
            d *= 2.0;
            if d >= cap {
                return cap;
            }
        }
        d.min(cap)
    }
}

/// `[sim]`: how the simulation runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sim {
    /// Time step, seconds (a divisor of 60). Default 10.
    pub step_secs: u32,
    /// Days simulated, from a Monday 00:00. Default 7.
    pub days: f64,
    /// How long the standard node-loss and zone-loss scenarios last, hours. Default 24.
    pub node_loss_hours: f64,
    /// Timelines in the report are kept at this resolution, minutes. Default 15.
    pub sample_minutes: u32,
}

impl Default for Sim {
    fn default() -> Self {
        Self {
            step_secs: 10,
            days: 7.0,
            node_loss_hours: 24.0,
            sample_minutes: 15,
        }
    }
}

/// Something that goes wrong during a scenario. Times are hours since the
/// simulated Monday 00:00.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A destination refuses connections (every attempt fails, 4yz).
    DestinationDown {
        /// Its `name`.
        destination: String,
        /// Start, hours.
        start_hours: f64,
        /// How long, hours.
        duration_hours: f64,
    },
    /// A node stops (crash, lost machine): it accepts and delivers nothing.
    NodeLoss {
        /// Its index, 0-based.
        node: u32,
        /// Start, hours.
        start_hours: f64,
        /// How long, hours; absent: for good.
        #[serde(default)]
        duration_hours: Option<f64>,
    },
    /// Every node of a zone stops.
    ZoneLoss {
        /// The zone's index, 0-based.
        zone: u32,
        /// Start, hours.
        start_hours: f64,
        /// How long, hours; absent: for good.
        #[serde(default)]
        duration_hours: Option<f64>,
    },
}

impl Event {
    /// When it starts, hours.
    pub fn start_hours(&self) -> f64 {
        match self {
            Self::DestinationDown { start_hours, .. }
            | Self::NodeLoss { start_hours, .. }
            | Self::ZoneLoss { start_hours, .. } => *start_hours,
        }
    }

    /// How long it lasts, hours (`None`: for good).
    pub fn duration_hours(&self) -> Option<f64> {
        match self {
            Self::DestinationDown { duration_hours, .. } => Some(*duration_hours),
            Self::NodeLoss { duration_hours, .. } | Self::ZoneLoss { duration_hours, .. } => *duration_hours,
        }
    }
}

/// `[[scenario]]`: a scenario of the profile's own, run besides the standard ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomScenario {
    /// Its name in the report.
    pub name: String,
    /// What happens.
    #[serde(default, rename = "event")]
    pub events: Vec<Event>,
}

/// `[[region]]`: in a federation, one region's cluster and its share of the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Its name.
    pub name: String,
    /// Its share of `traffic.messages_per_month` (all shares add up to 1).
    pub share: f64,
}

/// A whole profile file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Its name in the report.
    pub name: String,
    /// One line saying what it is.
    #[serde(default)]
    pub description: String,
    /// `[traffic]`.
    pub traffic: Traffic,
    /// `[[destination]]`, at least one.
    #[serde(rename = "destination")]
    pub destinations: Vec<Destination>,
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: Cluster,
    /// `[retry]`.
    #[serde(default)]
    pub retry: Retry,
    /// `[sim]`.
    #[serde(default)]
    pub sim: Sim,
    /// `[[scenario]]`.
    #[serde(default, rename = "scenario")]
    pub scenarios: Vec<CustomScenario>,
    /// `[[region]]`: present, the profile is a federation of one cluster per region.
    #[serde(default, rename = "region")]
    pub regions: Vec<Region>,
}

/// Shares may be written rounded: they must add up to 1 within this.
const SHARE_TOLERANCE: f64 = 0.005;

struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ProfileError {
        ProfileError::invalid(self.path, field, message)
    }

    /// `lo <= v <= hi`, finite.
    fn range(&self, field: impl Into<String>, v: f64, lo: f64, hi: f64) -> Result<(), ProfileError> {
        if v.is_finite() && v >= lo && v <= hi {
            Ok(())
        } else {
            Err(self.err(field, format!("{v} is not within {lo}..={hi}")))
        }
    }

    fn positive(&self, field: impl Into<String>, v: f64) -> Result<(), ProfileError> {
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(self.err(field, format!("{v} is not a positive number")))
        }
    }

    fn shares(&self, field: &str, shares: impl Iterator<Item = f64>) -> Result<(), ProfileError> {
        let mut sum = 0.0;
        for (i, s) in shares.enumerate() {
            self.range(format!("{field}[{i}].share"), s, 0.0, 1.0)?;
            sum += s;
        }
        if (sum - 1.0).abs() > SHARE_TOLERANCE {
            return Err(self.err(
                format!("{field}.share"),
                format!("the shares add up to {sum:.4}, not 1"),
            ));
        }
        Ok(())
    }
}

impl Profile {
    /// Reads and checks a profile.
    ///
    /// # Errors
    /// A [`ProfileError`] naming the file and the field.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = crate::file::read(path)?;
        Self::parse(path, &text)
    }

    /// Parses and checks the text of a profile (`origin` names it in errors).
    ///
    /// # Errors
    /// A [`ProfileError`].
    pub fn parse(origin: &Path, text: &str) -> Result<Self, ProfileError> {
        let p: Self = toml::from_str(text).map_err(|e| ProfileError::parse(origin, e))?;
        p.check(origin)?;
        Ok(p)
    }

    /// The size mix as (size, share).
    pub fn size_shares(&self) -> Vec<(usize, f64)> {
        // `check` parsed it already; an empty mix is unreachable after it.
        SizeMix::parse(&self.traffic.sizes)
            .map(|m| m.shares())
            .unwrap_or_default()
    }

    /// The destination with the largest share (the first of equals).
    pub fn biggest_destination(&self) -> usize {
        let mut best = 0;
        for (i, d) in self.destinations.iter().enumerate() {
            if d.share > self.destinations[best].share {
                best = i;
            }
        }
        best
    }

    /// Hour of a weekday with the most traffic (the first of equals).
    pub fn busiest_hour(&self) -> usize {
        let h = &self.traffic.hourly;
        let mut best = 0;
        for (i, w) in h.iter().enumerate() {
            if *w > h[best] {
                best = i;
            }
        }
        best
    }

    fn check(&self, path: &Path) -> Result<(), ProfileError> {
        let c = Checker { path };
        let t = &self.traffic;
        c.range("traffic.messages_per_month", t.messages_per_month, 0.0, 1e12)?;
        SizeMix::parse(&t.sizes).map_err(|e| c.err("traffic.sizes", e.to_string()))?;
        if t.hourly.len() != 24 {
            return Err(c.err("traffic.hourly", format!("{} weights, not 24", t.hourly.len())));
        }
        for (i, w) in t.hourly.iter().enumerate() {
            c.range(format!("traffic.hourly[{i}]"), *w, 0.0, 1e12)?;
        }
        c.positive("traffic.hourly", t.hourly.iter().sum())?;
        c.range("traffic.weekend_factor", t.weekend_factor, 0.0, 10.0)?;
        c.range("traffic.peak_factor", t.peak_factor, 1.0, 60.0)?;

        if self.destinations.is_empty() {
            return Err(c.err("destination", "at least one destination is needed"));
        }
        c.shares("destination", self.destinations.iter().map(|d| d.share))?;
        for (i, d) in self.destinations.iter().enumerate() {
            let f = |name: &str| format!("destination[{i}].{name}");
            c.positive(f("connections"), d.connections)?;
            c.positive(f("msg_per_s_per_connection"), d.msg_per_s_per_connection)?;
            c.positive(f("domains"), d.domains)?;
            if let Some(m) = d.max_msg_per_s {
                c.positive(f("max_msg_per_s"), m)?;
            }
            c.range(f("defer_rate"), d.defer_rate, 0.0, 0.9)?;
            if self.destinations[..i].iter().any(|o| o.name == d.name) {
                return Err(c.err(f("name"), format!("{:?} appears twice", d.name)));
            }
        }

        let k = &self.cluster;
        if k.min_copies == 0 {
            return Err(c.err("cluster.min_copies", "must be at least 1"));
        }
        if let Some(n) = k.nodes {
            if n == 0 {
                return Err(c.err("cluster.nodes", "must be at least 1"));
            }
            if k.min_copies > n {
                return Err(c.err(
                    "cluster.min_copies",
                    format!("{} copies need at least as many nodes, not {n}", k.min_copies),
                ));
            }
        }
        if k.min_copies > k.max_nodes {
            return Err(c.err("cluster.min_copies", "more copies than cluster.max_nodes"));
        }
        if k.zones == 0 {
            return Err(c.err("cluster.zones", "must be at least 1"));
        }
        c.positive("cluster.cores_per_node", k.cores_per_node)?;
        c.positive("cluster.disk_gb_per_node", k.disk_gb_per_node)?;
        c.range("cluster.takeover_after_secs", k.takeover_after_secs, 1.0, 1e7)?;
        c.range("cluster.target_cpu", k.target_cpu, 0.01, 1.0)?;
        c.range("cluster.target_disk", k.target_disk, 0.01, 1.0)?;

        let r = &self.retry;
        c.range("retry.first_secs", r.first_secs, 1.0, 1e7)?;
        c.range("retry.cap_secs", r.cap_secs, r.first_secs, 1e7)?;
        c.range("retry.max_age_secs", r.max_age_secs, 1.0, 1e8)?;
        c.range("retry.sender_first_secs", r.sender_first_secs, 1.0, 1e7)?;
        c.range("retry.sender_cap_secs", r.sender_cap_secs, r.sender_first_secs, 1e7)?;

        let s = &self.sim;
        if s.step_secs == 0 || 60 % s.step_secs != 0 {
            return Err(c.err("sim.step_secs", format!("{} does not divide a minute", s.step_secs)));
        }
        c.range("sim.days", s.days, 1.0, 60.0)?;
        c.range("sim.node_loss_hours", s.node_loss_hours, 0.01, s.days * 24.0)?;
        if s.sample_minutes == 0 {
            return Err(c.err("sim.sample_minutes", "must be at least 1"));
        }

        for (i, sc) in self.scenarios.iter().enumerate() {
            for (j, e) in sc.events.iter().enumerate() {
                let f = |name: &str| format!("scenario[{i}].event[{j}].{name}");
                c.range(f("start_hours"), e.start_hours(), 0.0, s.days * 24.0)?;
                if let Some(d) = e.duration_hours() {
                    c.range(f("duration_hours"), d, 0.0, s.days * 24.0)?;
                }
                match e {
                    Event::DestinationDown { destination, .. }
                        if !self.destinations.iter().any(|d| &d.name == destination) =>
                    {
                        return Err(c.err(f("destination"), format!("no destination named {destination:?}")));
                    }
                    Event::ZoneLoss { zone, .. } if *zone >= k.zones => {
                        return Err(c.err(f("zone"), format!("zone {zone} of {} (0-based)", k.zones)));
                    }
                    Event::NodeLoss { node, .. } if k.nodes.is_some_and(|n| *node >= n) => {
                        return Err(c.err(f("node"), format!("node {node} of {:?} (0-based)", k.nodes)));
                    }
                    _ => {}
                }
            }
        }
        if !self.regions.is_empty() {
            c.shares("region", self.regions.iter().map(|r| r.share))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[traffic]
messages_per_month = 1000000
[[destination]]
name = "a"
share = 0.4
[[destination]]
name = "b"
share = 0.6
"#;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(Path::new("p.toml"), text)
    }

    fn field_of(e: ProfileError) -> String {
        e.to_string()
    }

    #[test]
    fn defaults_are_the_relays() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.cluster.min_copies, 2);
        assert_eq!(p.cluster.takeover_after_secs, 60.0);
        assert_eq!(p.retry.first_secs, 60.0);
        assert_eq!(p.retry.cap_secs, 3600.0);
        assert_eq!(p.retry.max_age_secs, 5.0 * 86400.0);
        assert_eq!(p.destinations[0].connections, 8.0);
        assert_eq!(p.biggest_destination(), 1);
        assert_eq!(p.traffic.hourly.len(), 24);
        let shares: f64 = p.size_shares().iter().map(|s| s.1).sum();
        assert!((shares - 1.0).abs() < 1e-9);
    }

    #[test]
    fn retry_delays_double_to_the_cap() {
        let d: Vec<f64> = (1..=8).map(|a| Retry::delay(60.0, 3600.0, a)).collect();
        assert_eq!(d, [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]);
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let e = field_of(parse(&MINIMAL.replace("[traffic]", "[traffic]\ncolour = 1")).unwrap_err());
        assert!(e.contains("colour"), "{e}");
        let e = field_of(parse(&MINIMAL.replace("share = 0.6", "share = 0.5")).unwrap_err());
        assert!(e.contains("destination.share") && e.contains("0.9"), "{e}");
        let e = field_of(parse(&format!("{MINIMAL}[cluster]\nnodes = 2\nmin_copies = 3\n")).unwrap_err());
        assert!(e.contains("cluster.min_copies"), "{e}");
        let e = field_of(parse(&MINIMAL.replace("[traffic]", "[traffic]\nhourly = [1, 2]")).unwrap_err());
        assert!(e.contains("traffic.hourly"), "{e}");
        let e = field_of(parse(&MINIMAL.replace("[traffic]", "[traffic]\nsizes = \"10q\"")).unwrap_err());
        assert!(e.contains("traffic.sizes"), "{e}");
        let e = field_of(parse(&format!("{MINIMAL}[sim]\nstep_secs = 7\n")).unwrap_err());
        assert!(e.contains("sim.step_secs"), "{e}");
        let ev = "[[scenario]]\nname = \"x\"\n[[scenario.event]]\nkind = \"destination_down\"\ndestination = \"zz\"\nstart_hours = 1\nduration_hours = 1\n";
        let e = field_of(parse(&format!("{MINIMAL}{ev}")).unwrap_err());
        assert!(e.contains("scenario[0].event[0].destination"), "{e}");
        let e = field_of(
            parse(&format!(
                "{MINIMAL}{}",
                ev.replace("zz", "a").replace("start_hours", "begin")
            ))
            .unwrap_err(),
        );
        assert!(e.contains("begin"), "{e}");
        let e = field_of(parse(&format!("{MINIMAL}[[region]]\nname = \"r\"\nshare = 0.5\n")).unwrap_err());
        assert!(e.contains("region.share"), "{e}");
    }
}
