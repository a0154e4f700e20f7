//! The plan as one self-contained HTML page (inline CSS, charts as inline SVG
//! drawn with plotters, no script, no external resource), written beside
//! `plan.json`: the capacity table, each cluster's scenarios with charts of
//! queue, disk and CPU over the simulated week, the node search, and the
//! validation against the bench host.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::search::ClusterPlan;
use super::sim::Sample;
use super::text::{bytes, count, delays, drain, drains, loss_p99, pct};
use super::Plan;

const WIDTH: u32 = 860;
const HEIGHT: u32 = 300;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a chart.
struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// Draw a dot at each point (few points: the search, the validation).
    dots: bool,
}

/// A chart of lines over a shared x axis, with an optional dashed limit.
struct Chart<'a> {
    x_desc: &'a str,
    y_desc: &'a str,
    y_fmt: &'a dyn Fn(f64) -> String,
    series: Vec<Series>,
    /// Dashed horizontal lines: limits and targets.
    limits: Vec<(f64, String)>,
}

impl Chart<'_> {
    fn svg(&self) -> String {
        let pts = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
        for (x, y) in pts {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
            y1 = y1.max(*y);
        }
        if x0 > x1 {
            return "<p>No data.</p>".into();
        }
        for (l, _) in &self.limits {
            y1 = y1.max(*l);
        }
        if x1 - x0 < 1e-9 {
            x0 -= 0.5;
            x1 += 0.5;
        }
        let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
                root.fill(&WHITE)?;
                let mut chart = ChartBuilder::on(&root)
                    .margin(10)
                    .x_label_area_size(35)
                    .y_label_area_size(70)
                    .build_cartesian_2d(x0..x1, 0f64..y1)?;
                chart
                    .configure_mesh()
                    .x_desc(self.x_desc)
                    .y_desc(self.y_desc)
                    .y_label_formatter(&|y| (self.y_fmt)(*y))
                    .draw()?;
                for s in &self.series {
                    let color = s.color;
                    if s.dots {
                        chart.draw_series(PointSeries::of_element(
                            s.points.clone(),
                            4,
                            color.filled(),
                            &|p, r, st| Circle::new(p, r, st),
                        ))?;
                    }
                    chart
                        .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))?
                        .label(s.label.as_str())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
                }
                let greys = [RGBColor(120, 120, 120), RGBColor(190, 120, 40)];
                for ((l, label), grey) in self.limits.iter().zip(greys.iter().cycle()) {
                    let grey = *grey;
                    chart
                        .draw_series(DashedLineSeries::new([(x0, *l), (x1, *l)], 6, 4, grey.stroke_width(1)))?
                        .label(label.as_str())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()?;
                root.present()?;
                Ok(())
            })();
            if drawn.is_err() {
                return "<p>Chart could not be drawn.</p>".into();
            }
        }
        svg
    }
}

fn timeline(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    samples.iter().map(|s| (s.hours, f(s))).collect()
}

/// Only the samples from `from` to `to` hours (a zoom on an event).
fn window(samples: &[Sample], from: f64, to: f64) -> Vec<Sample> {
    samples
        .iter()
        .filter(|s| s.hours >= from && s.hours <= to)
        .cloned()
        .collect()
}

/// A fraction on an axis as a percentage, with decimals when small.
fn pct_axis(y: f64) -> String {
    let v = y * 100.0;
    if v == 0.0 {
        "0 %".into()
    } else if v < 1.0 {
        format!("{v:.2} %")
    } else if v < 10.0 {
        format!("{v:.1} %")
    } else {
        format!("{v:.0} %")
    }
}

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const RED_: RGBColor = RGBColor(214, 39, 40);
const GREEN_: RGBColor = RGBColor(44, 160, 44);

/// The whole page.
pub fn render(plan: &Plan) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>estafette-load plan: {name}</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}.bad{{color:#b00;font-weight:bold}}\
         .note{{background:#fff4d6;padding:.5em 1em}}</style></head><body><h1>Capacity plan: {name}</h1><p>{desc}</p>",
        name = esc(&plan.profile),
        desc = esc(&plan.description)
    );
    let c = &plan.costs;
    if c.placeholder {
        h.push_str("<p class=\"note\">The costs are <b>placeholder figures</b>, not a measurement: run <code>bench/scripts/capacity.sh</code> and plan again.</p>");
    }
    let m = &plan.mean_message;
    let _ = write!(
        h,
        "<p>{} messages a month, {}. Costs from <code>{}</code> (commit {}, measured {}, {} cores){}. Size mix <code>{}</code>: \
         mean message {}, CPU per message {:.3} ms to accept, {:.3} ms per extra copy, {:.3} ms to deliver; {} of spool per queued copy; min_copies {}.</p>",
        count(plan.messages_per_month),
        if plan.federation { format!("a federation of {} regional clusters", plan.clusters.len()) } else { "one cluster".into() },
        esc(&c.path),
        esc(c.commit.as_deref().unwrap_or("?")),
        esc(c.measured_at.as_deref().unwrap_or("not yet")),
        c.host_cores,
        if c.note.is_empty() { String::new() } else { format!(": {}", esc(&c.note)) },
        esc(&plan.sizes),
        bytes(m.size_bytes),
        m.accept_cpu_ms,
        m.replicate_cpu_ms,
        m.deliver_cpu_ms,
        bytes(m.spool_bytes_per_queued),
        plan.min_copies
    );
    h.push_str("<h2>Capacity</h2><table><tr><th>cluster</th><th>messages/month</th><th>busiest minute msg/s</th><th>nodes × cores</th><th>bound by</th><th>peak CPU, 1 node lost</th><th>1 h outage: drain</th><th>1 day outage: disk/node</th><th>1 day outage: drain</th><th>node loss: delay p99, all / on the lost node</th></tr>");
    for k in &plan.clusters {
        let run = |id: &str| k.run(id).map(|r| &r.result);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td{}>{} × {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&k.name),
            count(k.messages_per_month),
            k.peak_msg_per_s,
            if k.fits { "" } else { " class=\"bad\"" },
            k.nodes,
            k.cores_per_node,
            esc(&k.binding),
            run("node-loss").map_or_else(|| "-".into(), |r| pct(r.peak_cpu)),
            run("destination-down-1h").map(drain).unwrap_or_default(),
            run("destination-down-1d").map_or_else(|| "-".into(), |r| bytes(r.peak_disk_bytes_per_node)),
            run("destination-down-1d").map(drain).unwrap_or_default(),
            run("node-loss").map_or_else(|| "-".into(), loss_p99),
        );
    }
    if plan.clusters.len() > 1 {
        let _ = write!(
            h,
            "<tr><th>total</th><th>{}</th><th></th><th>{} nodes, {} cores</th><th colspan=\"6\"></th></tr>",
            count(plan.messages_per_month),
            plan.total_nodes,
            plan.total_cores
        );
    }
    h.push_str("</table>");
    if !plan.sweep.is_empty() {
        h.push_str("<h2>Nodes needed by volume</h2><p>One cluster each, with the profile's node shape, destinations and targets.</p>\
            <table><tr><th>messages/month</th><th>busiest minute msg/s</th><th>nodes × cores</th><th>cores</th><th>bound by</th><th>peak CPU, 1 node lost</th><th>disk use, 1 day outage</th></tr>");
        for r in &plan.sweep {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.1}</td><td{}>{} × {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                count(r.messages_per_month),
                r.peak_msg_per_s,
                if r.fits { "" } else { " class=\"bad\"" },
                r.nodes,
                r.cores_per_node,
                f64::from(r.nodes) * r.cores_per_node,
                esc(&r.binding),
                pct(r.cpu_one_lost),
                pct(r.disk_day_outage)
            );
        }
        h.push_str("</table>");
    }
    for k in &plan.clusters {
        cluster(&mut h, k);
    }
    if let Some(v) = &plan.validation {
        let _ = write!(
            h,
            "<h2>Validation on the bench host</h2><p>{} cores shared by every node, the load generator and the sink; {} messages; measured {} at commit {}.{}</p>",
            v.host_cores,
            bytes(v.size_bytes),
            esc(v.measured_at.as_deref().unwrap_or("not yet")),
            esc(v.commit.as_deref().unwrap_or("?")),
            if v.placeholder { " <b>Placeholder figures, not a measurement.</b>" } else { "" }
        );
        for n in &v.notes {
            let _ = write!(h, "<p class=\"note\">{}</p>", esc(n));
        }
        h.push_str("<table><tr><th></th><th>nodes</th><th>min_copies</th><th>CPU ms/msg</th><th>predicted</th><th>measured</th><th>error</th></tr>");
        for r in &v.rows {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.1} {u}</td><td>{:.1} {u}</td><td>{:+.0} %</td></tr>",
                esc(&r.what),
                r.nodes,
                r.min_copies,
                r.cpu_ms_per_msg,
                r.predicted,
                r.measured,
                r.error_pct,
                u = esc(&r.unit)
            );
        }
        h.push_str("</table>");
        let rows: Vec<_> = v.rows.iter().filter(|r| r.what == "throughput").collect();
        let chart = Chart {
            x_desc: "nodes",
            y_desc: "messages per second",
            y_fmt: &|y| format!("{y:.0}"),
            series: vec![
                Series {
                    label: "predicted".into(),
                    color: BLUE_,
                    points: rows.iter().map(|r| (f64::from(r.nodes), r.predicted)).collect(),
                    dots: true,
                },
                Series {
                    label: "measured".into(),
                    color: RED_,
                    points: rows.iter().map(|r| (f64::from(r.nodes), r.measured)).collect(),
                    dots: true,
                },
            ],
            limits: Vec::new(),
        };
        h.push_str("<h3>Throughput by nodes, predicted and measured</h3>");
        h.push_str(&chart.svg());
    }
    h.push_str("</body></html>\n");
    h
}

fn cluster(h: &mut String, k: &ClusterPlan) {
    let _ = write!(
        h,
        "<h2>{}: {} nodes × {} cores, {} GB spool each</h2>",
        esc(&k.name),
        k.nodes,
        k.cores_per_node,
        k.disk_gb_per_node
    );
    if k.nodes_from_profile {
        let _ = write!(
            h,
            "<p>Nodes set by the profile; the search finds {} needed.</p>",
            k.nodes_needed
        );
    }
    h.push_str("<table><tr><th>scenario</th><th>peak CPU/node</th><th>peak queue</th><th>peak disk/node</th><th>drain 99 % / all</th><th>delay p50 / p99 / max</th><th>during the event</th><th>held on a lost node</th><th>refused (451)</th><th>bounced</th></tr>");
    for r in &k.runs {
        let x = &r.result;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.scenario.title),
            pct(x.peak_cpu),
            count(x.peak_queue),
            bytes(x.peak_disk_bytes_per_node),
            pct(x.peak_disk_fraction),
            drains(x),
            delays(x.delay.as_ref()),
            delays(x.window_delay.as_ref()),
            delays(x.held_delay.as_ref()),
            count(x.refused),
            count(x.bounced)
        );
    }
    h.push_str("</table>");
    let day = k.run("destination-down-1d");
    let hour = k.run("destination-down-1h");
    if let (Some(day), Some(hour)) = (day, hour) {
        let start = hour.scenario.events.first().map_or(0.0, |e| e.start_hours());
        let zoom = window(&hour.result.timeline, start - 1.0, start + 5.0);
        let dest = hour.result.drains.first().map_or("", |d| d.destination.as_str());
        let chart = Chart {
            x_desc: "hours since Monday 00:00",
            y_desc: "messages queued",
            y_fmt: &count,
            // The whole queue first, so that the destination's line is drawn over it.
            series: vec![
                Series {
                    label: "all destinations".into(),
                    color: GREEN_,
                    points: timeline(&zoom, |s| s.queue),
                    dots: false,
                },
                Series {
                    label: format!("{dest}, down 1 h"),
                    color: BLUE_,
                    points: timeline(&zoom, |s| s.focus_queue),
                    dots: false,
                },
            ],
            limits: Vec::new(),
        };
        let _ = write!(h, "<h3>Queue, {} down for 1 hour</h3>{}", esc(dest), chart.svg());
        let chart = Chart {
            x_desc: "hours since Monday 00:00",
            y_desc: "messages queued",
            y_fmt: &count,
            series: vec![
                Series {
                    label: "all destinations".into(),
                    color: GREEN_,
                    points: timeline(&day.result.timeline, |s| s.queue),
                    dots: false,
                },
                Series {
                    label: format!("{dest}, down 1 day"),
                    color: RED_,
                    points: timeline(&day.result.timeline, |s| s.focus_queue),
                    dots: false,
                },
            ],
            limits: Vec::new(),
        };
        let _ = write!(h, "<h3>Queue, {} down for 1 day</h3>{}", esc(dest), chart.svg());
        let disk = k.disk_gb_per_node * 1e9;
        let chart = Chart {
            x_desc: "hours since Monday 00:00",
            y_desc: "spool per node",
            y_fmt: &bytes,
            series: vec![Series {
                label: "spool per live node".into(),
                color: RED_,
                points: timeline(&day.result.timeline, |s| s.disk_per_node),
                dots: false,
            }],
            limits: vec![
                (disk, format!("disk per node ({})", bytes(disk))),
                (disk * k.target_disk, format!("target_disk ({})", pct(k.target_disk))),
            ],
        };
        let _ = write!(h, "<h3>Disk, {} down for 1 day</h3>{}", esc(dest), chart.svg());
    }
    if let (Some(base), Some(lost)) = (k.run("baseline"), k.run("node-loss")) {
        let chart = Chart {
            x_desc: "hours since Monday 00:00",
            y_desc: "CPU demand per live node",
            y_fmt: &pct_axis,
            // The node loss first: the baseline is drawn over it and the loss
            // shows where it is higher.
            series: vec![
                Series {
                    label: "one node lost".into(),
                    color: RED_,
                    points: timeline(&lost.result.timeline, |s| s.cpu),
                    dots: false,
                },
                Series {
                    label: "baseline".into(),
                    color: BLUE_,
                    points: timeline(&base.result.timeline, |s| s.cpu),
                    dots: false,
                },
            ],
            limits: Vec::new(),
        };
        let _ = write!(
            h,
            "<h3>CPU per live node (the busiest interval of each 15 min)</h3>{}",
            chart.svg()
        );
    }
    let chart = Chart {
        x_desc: "nodes",
        y_desc: "fraction",
        y_fmt: &pct_axis,
        series: vec![
            Series {
                label: "peak CPU per node, one node lost".into(),
                color: BLUE_,
                points: k.search.iter().map(|p| (f64::from(p.nodes), p.cpu_one_lost)).collect(),
                dots: true,
            },
            Series {
                label: "peak disk per node, 1 day outage".into(),
                color: RED_,
                points: k
                    .search
                    .iter()
                    .map(|p| (f64::from(p.nodes), p.disk_day_outage))
                    .collect(),
                dots: true,
            },
        ],
        limits: vec![
            (k.target_cpu, format!("target_cpu ({})", pct(k.target_cpu))),
            (k.target_disk, format!("target_disk ({})", pct(k.target_disk))),
        ],
    };
    let _ = write!(
        h,
        "<h3>Nodes tried by the search ({} needed: {})</h3>{}",
        k.nodes_needed,
        esc(&k.binding),
        chart.svg()
    );
}
