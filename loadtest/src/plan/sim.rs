//! The simulation: a fixed-step fluid model of one cluster over a simulated
//! week (or `sim.days`), fed the profile's traffic and a scenario's events.
//!
//! Messages move as cohorts (a count, possibly fractional, that arrived in the
//! same step for the same destination with the same attempt count), never one
//! by one: 280 million messages a month are a few hundred thousand cohorts.
//! Each step: nodes that fail put their share of the queue on hold (until
//! `takeover_after`, or their return when there is no copy elsewhere); senders
//! offer the new mail and their retries; the cluster accepts what `min_copies`,
//! CPU and group commit allow (the rest is refused with `451` and comes back on
//! the sender's schedule); each destination takes what its connections carry,
//! oldest first, and every failed attempt is rescheduled on the relay's retry
//! schedule or bounced at `max_age`.
//!
//! Nodes are symmetric: the load balancer spreads sessions and rendezvous
//! hashing spreads copies and deliveries evenly over the live nodes, so the
//! model keeps one CPU and disk figure per live node, not one per node.

use std::collections::{BTreeMap, VecDeque};

use super::costs::SizeCost;
use super::outcome::Hist;
pub use super::outcome::{Delays, DestinationPeak, Drain, Sample, SimResult};
use super::profile::{Event, Profile, Retry};

/// Days in a month: 365.25 / 12.
pub const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

/// A cohort smaller than this (messages) that fails again is delivered
/// instead of retried: thousandths of a message are not worth tracking.
const DUST: f64 = 1e-3;

/// A backlog is wholly drained when less than this many of its messages remain.
const DRAINED_BELOW: f64 = 0.5;

/// A backlog is drained (the queue back to normal) when this share of it is
/// left: the last few messages are those that met a 4yz again on their first
/// attempt after the recovery and wait a full retry delay more.
const DRAINED_SHARE: f64 = 0.01;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimInput<'a> {
    /// The profile (traffic shape, destinations, cluster, retry, sim settings).
    pub profile: &'a Profile,
    /// Costs of the mean message of the profile's size mix.
    pub cost: SizeCost,
    /// Messages one node commits per second at most (group commit).
    pub commits_per_s: f64,
    /// This cluster's messages per month (a region's share in a federation).
    pub messages_per_month: f64,
    /// Nodes.
    pub nodes: u32,
    /// What goes wrong.
    pub events: &'a [Event],
    /// Keep a timeline for charts.
    pub timeline: bool,
    /// Stop after this many hours instead of `sim.days` (the search needs
    /// only the busy hours around its event).
    pub until_hours: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Cohort {
    /// Step of the sender's first try.
    arrival: u32,
    count: f64,
    /// Failed attempts so far (relay attempts; for a sender cohort, refusals).
    attempts: u32,
    /// Was on a node when it was lost.
    held: bool,
}

#[derive(Debug, Default)]
struct Dest {
    waiting: BTreeMap<u32, Vec<Cohort>>,
    ready: VecDeque<Cohort>,
    ready_count: f64,
    queued: f64,
    peak: f64,
    /// Steps during which it is down: [start, end).
    down: Vec<(u32, u32)>,
    drains: Vec<DrainTrack>,
}

#[derive(Debug)]
struct DrainTrack {
    end: u32,
    started: bool,
    backlog: f64,
    remaining: f64,
    /// When 99 % was gone.
    done: Option<u32>,
    /// When all of it was gone.
    last: Option<u32>,
}

impl DrainTrack {
    fn mark(&mut self, now: u32) {
        if self.done.is_none() && self.remaining <= (self.backlog * DRAINED_SHARE).max(DRAINED_BELOW) {
            self.done = Some(now);
        }
        if self.last.is_none() && self.remaining < DRAINED_BELOW {
            self.last = Some(now);
        }
    }
}

impl Dest {
    fn is_down(&self, s: u32) -> bool {
        self.down.iter().any(|(a, b)| (*a..*b).contains(&s))
    }

    /// A cohort leaves the queue (delivered, bounced or stranded).
    fn remove(&mut self, c: &Cohort, count: f64, now: u32) {
        self.queued -= count;
        for d in &mut self.drains {
            if d.started && c.arrival < d.end && d.last.is_none() {
                d.remaining -= count;
                d.mark(now);
            }
        }
    }
}

/// A node's absence: [start, end) in steps, `end` None for good.
#[derive(Debug, Clone, Copy)]
struct Down {
    node: u32,
    start: u32,
    end: Option<u32>,
}

fn steps_of(secs: f64, step: f64) -> u32 {
    (secs / step).ceil().max(0.0).min(f64::from(u32::MAX / 2)) as u32
}

/// Runs one scenario.
pub fn simulate(input: &SimInput<'_>) -> SimResult {
    let p = input.profile;
    let step = f64::from(p.sim.step_secs);
    let days_steps = steps_of(p.sim.days * 86400.0, step);
    let total_steps = input
        .until_hours
        .map_or(days_steps, |h| steps_of(h * 3600.0, step).min(days_steps));
    let nodes = input.nodes.max(1);
    let mc = p.cluster.min_copies;
    let cost = &input.cost;
    let accept_ms = cost.accept_cpu_ms + f64::from(mc.saturating_sub(1)) * cost.replicate_cpu_ms;
    let hourly = hourly_rates(p, input.messages_per_month);
    let peak = p.traffic.peak_factor;
    let takeover = steps_of(p.cluster.takeover_after_secs, step).max(1);
    let max_age = steps_of(p.retry.max_age_secs, step);
    let hours_to_step = |h: f64| steps_of(h * 3600.0, step);

    let mut dests: Vec<Dest> = p.destinations.iter().map(|_| Dest::default()).collect();
    let mut downs: Vec<Down> = Vec::new();
    let (mut window_start, mut window_end) = (u32::MAX, 0u32);
    let mut focus = p.biggest_destination();
    let mut focus_set = false;
    for e in input.events {
        let start = hours_to_step(e.start_hours());
        let end = e.duration_hours().map(|d| start + hours_to_step(d));
        window_start = window_start.min(start);
        window_end = window_end.max(end.unwrap_or(total_steps));
        match e {
            Event::DestinationDown { destination, .. } => {
                if let Some(i) = p.destinations.iter().position(|d| &d.name == destination) {
                    let end = end.unwrap_or(total_steps);
                    dests[i].down.push((start, end));
                    dests[i].drains.push(DrainTrack {
                        end,
                        started: false,
                        backlog: 0.0,
                        remaining: 0.0,
                        done: None,
                        last: None,
                    });
                    if !focus_set {
                        focus = i;
                        focus_set = true;
                    }
                }
            }
            Event::NodeLoss { node, .. } => downs.push(Down {
                node: *node,
                start,
                end,
            }),
            Event::ZoneLoss { zone, .. } => {
                let zones = p.cluster.zones.max(1);
                for node in (0..nodes).filter(|n| n % zones == *zone) {
                    downs.push(Down { node, start, end });
                }
            }
        }
    }
    let is_down = |node: u32, s: u32| {
        downs
            .iter()
            .any(|d| d.node == node && s >= d.start && d.end.is_none_or(|e| s < e))
    };
    let live_at = |s: u32| (0..nodes).filter(|n| !is_down(*n, s)).count() as u32;

    let mut sender: BTreeMap<u32, Vec<(usize, Cohort)>> = BTreeMap::new();
    let mut all = Hist::default();
    let mut window = Hist::default();
    let mut held_hist = Hist::default();
    let mut r = SimResult {
        nodes,
        offered: 0.0,
        accepted: 0.0,
        delivered: 0.0,
        bounced: 0.0,
        refused: 0.0,
        deferred_at_sender: 0.0,
        stranded: 0.0,
        left_at_end: 0.0,
        peak_cpu: 0.0,
        peak_cpu_at_hours: 0.0,
        peak_commit: 0.0,
        peak_queue: 0.0,
        peak_queue_by_destination: Vec::new(),
        peak_disk_bytes_per_node: 0.0,
        peak_disk_fraction: 0.0,
        drains: Vec::new(),
        delay: None,
        window_delay: None,
        held_delay: None,
        timeline: Vec::new(),
    };
    let sample_steps = (p.sim.sample_minutes * 60 / p.sim.step_secs).max(1);
    let mut sample: Option<Sample> = None;
    let disk_bytes = p.cluster.disk_gb_per_node * 1e9;
    let mut live_before = nodes;

    for s in 0..total_steps {
        let live = if downs.is_empty() { nodes } else { live_at(s) };
        // 1. Nodes lost at this step: their share of every queue is held.
        let lost: Vec<Down> = if downs.is_empty() {
            Vec::new()
        } else {
            downs
                .iter()
                .filter(|d| d.start == s && (s == 0 || !is_down(d.node, s - 1)))
                .copied()
                .collect()
        };
        if !lost.is_empty() && live_before > 0 {
            let mut groups: Vec<(Option<u32>, f64)> = Vec::new();
            for d in &lost {
                // With a copy elsewhere, a shadow promotes it after takeover_after
                // (or the node returns first); without, only its return frees it.
                let until = if mc >= 2 {
                    Some(d.end.map_or(s + takeover, |e| e.min(s + takeover)))
                } else {
                    d.end
                };
                match groups.iter_mut().find(|g| g.0 == until) {
                    Some(g) => g.1 += 1.0,
                    None => groups.push((until, 1.0)),
                }
            }
            let lb = f64::from(live_before);
            for d in &mut dests {
                hold(d, &groups, lb, s, &mut r.stranded);
            }
        }
        live_before = live;

        // 2. Due retries move to the ready queue, oldest first (before the new mail).
        for d in &mut dests {
            while let Some(e) = d.waiting.first_entry() {
                if *e.key() > s {
                    break;
                }
                for c in e.remove() {
                    d.ready_count += c.count;
                    d.ready.push_back(c);
                }
            }
            for t in &mut d.drains {
                if !t.started && s >= t.end {
                    t.started = true;
                    t.backlog = d.queued;
                    t.remaining = d.queued;
                    t.mark(s);
                }
            }
        }

        // 3. Senders offer new mail and their retries.
        let new = arrivals(&hourly, peak, s, step);
        r.offered += new;
        let mut offers: Vec<(usize, Cohort)> = p
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let c = Cohort {
                    arrival: s,
                    count: new * d.share,
                    attempts: 0,
                    held: false,
                };
                (i, c)
            })
            .collect();
        while let Some(e) = sender.first_entry() {
            if *e.key() > s {
                break;
            }
            offers.extend(e.remove());
        }
        let offered: f64 = offers.iter().map(|(_, c)| c.count).sum();

        // 4. Acceptance: enough live nodes for min_copies, then CPU and commits.
        let cap_ms = f64::from(live) * p.cluster.cores_per_node * step * 1000.0;
        let commit_cap = f64::from(live) * input.commits_per_s * step;
        let accept_need = offered * accept_ms;
        let commit_need = offered * f64::from(mc);
        let frac = if offered <= 0.0 {
            1.0
        } else if live == 0 || live < mc {
            // Too few nodes for min_copies: `451 4.3.0`, never a silent downgrade.
            0.0
        } else {
            (cap_ms / accept_need.max(1e-300))
                .min(commit_cap / commit_need.max(1e-300))
                .min(1.0)
        };
        for (i, c) in offers {
            let ok = c.count * frac;
            let no = c.count - ok;
            if ok > 0.0 {
                r.accepted += ok;
                let d = &mut dests[i];
                d.queued += ok;
                d.ready_count += ok;
                d.ready.push_back(Cohort {
                    count: ok,
                    attempts: 0,
                    ..c
                });
            }
            if no > 0.0 {
                r.refused += no;
                if c.attempts == 0 {
                    r.deferred_at_sender += no;
                }
                let attempts = c.attempts + 1;
                let delay = Retry::delay(p.retry.sender_first_secs, p.retry.sender_cap_secs, attempts);
                let at = s + steps_of(delay, step).max(1);
                sender.entry(at).or_default().push((
                    i,
                    Cohort {
                        count: no,
                        attempts,
                        ..c
                    },
                ));
            }
        }
        let accepted_ms = offered * frac * accept_ms;

        // 5. Delivery: each destination's connections, then the CPU left.
        let mut wanted = vec![0.0; dests.len()];
        for (i, d) in dests.iter_mut().enumerate() {
            if d.is_down(s) {
                // Connections refused: every due attempt fails at once. The
                // circuit breaker parks the destination, so this costs no CPU.
                while let Some(c) = d.ready.pop_front() {
                    fail(d, c, c.count, s, step, max_age, p, &mut r.bounced);
                }
                d.ready_count = 0.0;
                continue;
            }
            let dst = &p.destinations[i];
            let mut rate = f64::from(live) * dst.connections * dst.msg_per_s_per_connection * dst.domains;
            if let Some(m) = dst.max_msg_per_s {
                rate = rate.min(m);
            }
            wanted[i] = d.ready_count.min(rate * step);
        }
        let deliver_need: f64 = wanted.iter().sum::<f64>() * cost.deliver_cpu_ms;
        let left_ms = (cap_ms - accepted_ms).max(0.0);
        let dfrac = if deliver_need > 0.0 {
            (left_ms / deliver_need).min(1.0)
        } else {
            1.0
        };
        for (i, d) in dests.iter_mut().enumerate() {
            let mut budget = wanted[i] * dfrac;
            let defer = p.destinations[i].defer_rate;
            while budget > 1e-12 {
                let Some(mut c) = d.ready.pop_front() else { break };
                let take = c.count.min(budget);
                budget -= take;
                d.ready_count -= take;
                let failed = take * defer;
                let (ok, failed) = if failed < DUST {
                    (take, 0.0)
                } else {
                    (take - failed, failed)
                };
                if failed > 0.0 {
                    fail(d, c, failed, s, step, max_age, p, &mut r.bounced);
                }
                if ok > 0.0 {
                    let delay = s - c.arrival;
                    all.add(delay, ok);
                    if (window_start..window_end).contains(&c.arrival) {
                        window.add(delay, ok);
                    }
                    if c.held {
                        held_hist.add(delay, ok);
                    }
                    r.delivered += ok;
                    d.remove(&c, ok, s);
                }
                c.count -= take;
                if c.count > 1e-12 {
                    d.ready.push_front(c);
                    break;
                }
            }
            if d.ready.is_empty() {
                d.ready_count = 0.0;
            }
        }

        // 6. What this step cost and left.
        let cpu = if cap_ms > 0.0 {
            // Demand, not use: above 1 the node is overloaded (refusing or
            // falling behind). A refusal for want of copies costs next to nothing.
            let accept_demand = if live < mc { 0.0 } else { accept_need };
            (accept_demand + deliver_need) / cap_ms
        } else {
            0.0
        };
        let commit = if commit_cap > 0.0 && live >= mc {
            commit_need / commit_cap
        } else {
            0.0
        };
        if cpu > r.peak_cpu {
            r.peak_cpu = cpu;
            r.peak_cpu_at_hours = f64::from(s) * step / 3600.0;
        }
        r.peak_commit = r.peak_commit.max(commit);
        let mut queue = 0.0;
        for d in &mut dests {
            d.peak = d.peak.max(d.queued);
            queue += d.queued;
        }
        r.peak_queue = r.peak_queue.max(queue);
        let disk = if live > 0 {
            queue * cost.spool_bytes_per_queued * f64::from(mc.min(live.max(1))) / f64::from(live)
        } else {
            0.0
        };
        r.peak_disk_bytes_per_node = r.peak_disk_bytes_per_node.max(disk);
        if input.timeline {
            let fq = dests.get(focus).map_or(0.0, |d| d.queued);
            let smp = sample.get_or_insert(Sample {
                hours: 0.0,
                live,
                cpu: 0.0,
                queue: 0.0,
                focus_queue: 0.0,
                disk_per_node: 0.0,
            });
            smp.live = smp.live.min(live);
            smp.cpu = smp.cpu.max(cpu);
            smp.queue = smp.queue.max(queue);
            smp.focus_queue = smp.focus_queue.max(fq);
            smp.disk_per_node = smp.disk_per_node.max(disk);
            smp.hours = f64::from(s + 1) * step / 3600.0;
            if (s + 1) % sample_steps == 0 {
                r.timeline.extend(sample.take());
            }
        }
    }
    r.timeline.extend(sample.take());

    r.left_at_end =
        dests.iter().map(|d| d.queued).sum::<f64>() + sender.values().flatten().map(|(_, c)| c.count).sum::<f64>();
    r.peak_disk_fraction = r.peak_disk_bytes_per_node / disk_bytes;
    for (d, spec) in dests.iter().zip(&p.destinations) {
        r.peak_queue_by_destination.push(DestinationPeak {
            destination: spec.name.clone(),
            peak_queue: d.peak,
        });
        for t in &d.drains {
            r.drains.push(Drain {
                destination: spec.name.clone(),
                recovered_at_hours: f64::from(t.end) * step / 3600.0,
                backlog: t.backlog,
                drain_secs: t.done.map(|done| f64::from(done.saturating_sub(t.end)) * step),
                last_secs: t.last.map(|last| f64::from(last.saturating_sub(t.end)) * step),
            });
        }
    }
    r.delay = all.summary(step);
    r.window_delay = window.summary(step);
    r.held_delay = held_hist.summary(step);
    r
}

/// Splits every queued cohort of `d`: each group of lost nodes holds
/// `nodes / live_before` of it until its time (`None`: for good, stranded).
fn hold(d: &mut Dest, groups: &[(Option<u32>, f64)], live_before: f64, s: u32, stranded: &mut f64) {
    let mut all: Vec<(u32, Cohort)> = Vec::new();
    for (k, v) in std::mem::take(&mut d.waiting) {
        all.extend(v.into_iter().map(|c| (k, c)));
    }
    all.extend(d.ready.drain(..).map(|c| (s, c)));
    d.ready_count = 0.0;
    for (next, c) in all {
        let mut rest = c.count;
        for (until, n) in groups {
            let part = c.count * n / live_before;
            rest -= part;
            match until {
                Some(u) => d.waiting.entry(next.max(*u)).or_default().push(Cohort {
                    count: part,
                    held: true,
                    ..c
                }),
                None => {
                    *stranded += part;
                    d.remove(&c, part, s);
                }
            }
        }
        if rest > 1e-12 {
            let c = Cohort { count: rest, ..c };
            if next <= s {
                d.ready_count += rest;
                d.ready.push_back(c);
            } else {
                d.waiting.entry(next).or_default().push(c);
            }
        }
    }
}

/// `count` of cohort `c` failed an attempt at step `s`: retried on the
/// relay's schedule (never later than its expiry), or bounced once it is
/// `max_age` old (the relay's `RetryPolicy::next_attempt`).
#[allow(clippy::too_many_arguments)]
fn fail(d: &mut Dest, c: Cohort, count: f64, s: u32, step: f64, max_age: u32, p: &Profile, bounced: &mut f64) {
    let expiry = c.arrival.saturating_add(max_age);
    if s >= expiry {
        *bounced += count;
        d.remove(&c, count, s);
        return;
    }
    let attempts = c.attempts + 1;
    let delay = Retry::delay(p.retry.first_secs, p.retry.cap_secs, attempts);
    let at = (s + steps_of(delay, step).max(1)).min(expiry);
    d.waiting.entry(at).or_default().push(Cohort { count, attempts, ..c });
}

/// Messages per hour for each hour of the week (Monday 00:00 first).
pub fn hourly_rates(p: &Profile, messages_per_month: f64) -> Vec<f64> {
    let t = &p.traffic;
    let weights: Vec<f64> = (0..168)
        .map(|h| {
            let w = t.hourly[h % 24];
            if h / 24 >= 5 {
                w * t.weekend_factor
            } else {
                w
            }
        })
        .collect();
    let sum: f64 = weights.iter().sum();
    let week = messages_per_month * 7.0 / DAYS_PER_MONTH;
    weights
        .iter()
        .map(|w| if sum > 0.0 { week * w / sum } else { 0.0 })
        .collect()
}

/// Messages first offered during step `s`: the hour's rate, with minute 30 of
/// every hour at `peak` times the hour's mean and the other minutes lower so
/// that the hour's total is kept.
fn arrivals(hourly: &[f64], peak: f64, s: u32, step: f64) -> f64 {
    let t = f64::from(s) * step;
    let hour = (t / 3600.0) as usize % hourly.len().max(1);
    let minute = (t / 60.0) as u64 % 60;
    let factor = if minute == 30 { peak } else { (60.0 - peak) / 59.0 };
    hourly.get(hour).copied().unwrap_or(0.0) / 3600.0 * step * factor
}
