//! The HTML report: one self-contained page (inline CSS, charts as inline SVG
//! drawn with plotters, no script, no external resource) that can be mailed
//! or archived next to `report.json`.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::report::{Latency, Report};

const WIDTH: u32 = 860;
const HEIGHT: u32 = 340;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>estafette-load: {name}</title>\
         <style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}.bad{{color:#b00;font-weight:bold}}\
         .ok{{color:#070;font-weight:bold}}</style></head><body><h1>estafette-load: {name}</h1>",
        name = esc(&r.name)
    );
    let s = &r.setup;
    let _ = write!(
        h,
        "<p>Target <code>{}</code>, TLS {}, {} sessions, sizes <code>{}</code>, {} recipient(s), {} message(s) per connection{}{}{}.</p>",
        esc(&s.target),
        esc(&s.tls),
        s.sessions,
        esc(&s.sizes),
        s.recipients,
        if s.per_connection == 0 { "unlimited".to_string() } else { s.per_connection.to_string() },
        s.rate.map(|x| format!(", rate {x} msg/s")).unwrap_or_default(),
        if s.open_loop { " (open loop)" } else { "" },
        s.reply_mix
            .as_ref()
            .map(|m| format!(", sink reply mix <code>{}</code>", esc(m)))
            .unwrap_or_default(),
    );
    h.push_str(
        "<h2>Throughput</h2><table><tr><th></th><th>msg/s</th><th>MB/s</th><th>messages</th><th>seconds</th></tr>",
    );
    let _ = write!(
        h,
        "<tr><td>inject (accepted)</td><td>{:.0}</td><td>{:.2}</td><td>{}</td><td>{:.2}</td></tr>",
        r.inject_msg_per_s,
        r.inject_bytes_per_s / 1e6,
        r.counts.accepted,
        r.inject_seconds
    );
    if let Some(d) = &r.delivery {
        let _ = write!(
            h,
            "<tr><td>end to end (delivered)</td><td>{:.0}</td><td>{:.2}</td><td>{}</td><td>{:.2}</td></tr>",
            d.msg_per_s,
            d.bytes_per_s / 1e6,
            d.delivered,
            d.seconds
        );
    }
    h.push_str("</table>");
    let c = &r.counts;
    let _ = write!(
        h,
        "<p>Sent {}, accepted {}, 4yz {}, 5yz {}, unknown {}; {} connections ({} failed).</p>",
        c.sent, c.accepted, c.temp_failed, c.perm_failed, c.unknown, c.connections, c.connect_errors
    );
    h.push_str("<h2>Latency (ms)</h2><table><tr><th></th><th>n</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>");
    let row = |h: &mut String, name: &str, l: &Latency| {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
        );
    };
    row(&mut h, "acceptance", &r.accept_latency);
    if let Some(l) = &r.e2e_latency {
        row(&mut h, "end to end", l);
    }
    row(&mut h, "connection setup", &r.connect_latency);
    h.push_str("</table>");
    h.push_str("<h2>CPU</h2><table><tr><th></th><th>seconds</th><th>ms per message</th></tr>");
    let cpu_row = |h: &mut String, name: &str, c: &crate::report::Cpu| {
        let _ = write!(
            h,
            "<tr><td>{name}</td><td>{:.2}</td><td>{:.3}</td></tr>",
            c.seconds, c.ms_per_msg
        );
    };
    if let Some(t) = &r.target_cpu {
        cpu_row(&mut h, "target", t);
    }
    cpu_row(&mut h, "estafette-load (all)", &r.tool_cpu);
    cpu_row(&mut h, "whole machine", &r.machine_cpu);
    if let Some(l) = &r.load_cpu {
        cpu_row(&mut h, "load generator threads", l);
    }
    if let Some(k) = &r.sink_cpu {
        cpu_row(&mut h, "sink threads", k);
    }
    h.push_str("</table>");
    if let Some(v) = &r.verdict {
        let _ = write!(
            h,
            "<h2>Loss and duplicates: <span class=\"{}\">{}</span></h2><table>\
             <tr><th>accepted</th><th>delivered</th><th>bounced</th><th>lost</th><th>duplicated</th><th>received, not acknowledged</th><th>received, refused</th></tr>\
             <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
            if v.is_clean() { "ok" } else { "bad" },
            if v.is_clean() { "clean" } else { "PROBLEM" },
            v.accepted,
            v.delivered,
            v.bounced,
            v.lost,
            v.duplicated,
            v.received_unacknowledged,
            v.received_refused
        );
        if !v.lost_examples.is_empty() {
            let _ = write!(h, "<p>Lost, e.g.: <code>{}</code></p>", esc(&v.lost_examples.join(" ")));
        }
        if !v.duplicate_examples.is_empty() {
            let _ = write!(
                h,
                "<p>Duplicated, e.g.: <code>{}</code></p>",
                esc(&v.duplicate_examples.join(" "))
            );
        }
    }
    if r.drained == Some(false) {
        h.push_str("<p class=\"bad\">The queue did not drain before the drain timeout.</p>");
    }
    h.push_str("<h2>Messages per second</h2>");
    h.push_str(&timeline_svg(r));
    h.push_str("<h2>Latency by percentile</h2>");
    h.push_str(&latency_svg(r));
    if !r.errors.is_empty() {
        h.push_str("<h2>Errors</h2><ul>");
        for (e, n) in &r.errors {
            let _ = write!(h, "<li>{n} × {}</li>", esc(e));
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

/// Accepted and delivered per second.
fn timeline_svg(r: &Report) -> String {
    let mut svg = String::new();
    if r.timeline.is_empty() {
        return "<p>No data.</p>".into();
    }
    let xmax = r.timeline.len() as f64;
    let ymax = r
        .timeline
        .iter()
        .map(|p| p.accepted.max(p.delivered))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
            chart
                .configure_mesh()
                .x_desc("seconds since the load started (1 s buckets; the last one is partial)")
                .y_desc("messages per second")
                .y_label_formatter(&|y| format!("{y:.0}"))
                .draw()?;
            let pts = |f: fn(&crate::report::Point) -> u64| {
                r.timeline
                    .iter()
                    .map(move |p| (p.second as f64 + 0.5, f(p) as f64))
                    .collect::<Vec<_>>()
            };
            let dots = |v: Vec<(f64, f64)>, c: RGBColor| {
                PointSeries::of_element(v, 3, c.filled(), &|p, s, st| Circle::new(p, s, st))
            };
            chart.draw_series(dots(pts(|p| p.accepted), BLUE))?;
            if r.delivery.is_some() {
                chart.draw_series(dots(pts(|p| p.delivered), RED))?;
            }
            chart
                .draw_series(LineSeries::new(pts(|p| p.accepted), BLUE.stroke_width(2)))?
                .label("accepted by the target")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
            if r.delivery.is_some() {
                chart
                    .draw_series(LineSeries::new(pts(|p| p.delivered), RED.stroke_width(2)))?
                    .label("delivered to the sink")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
            }
            chart
                .configure_series_labels()
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

/// `-log10(1 - q)`: 1 at p90, 2 at p99, 3 at p99.9 (capped at 6 for q = 1).
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        6.0
    } else {
        (-(1.0 - q).log10()).min(6.0)
    }
}

/// Acceptance and end-to-end latency against percentile (HdrHistogram style).
fn latency_svg(r: &Report) -> String {
    let mut svg = String::new();
    if r.accept_curve.is_empty() {
        return "<p>No data.</p>".into();
    }
    let all = r.accept_curve.iter().chain(&r.e2e_curve);
    let ymax = all.clone().map(|p| p.1).fold(0.001, f64::max) * 1.5;
    let ymin = all
        .map(|p| p.1)
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(ymax / 10.0)
        / 1.5;
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..6.0, (ymin..ymax).log_scale())?;
            chart
                .configure_mesh()
                .x_desc("percentile")
                .y_desc("milliseconds")
                .x_labels(7)
                .x_label_formatter(&|x| match x.round() as i64 {
                    0 => "0".into(),
                    1 => "90".into(),
                    2 => "99".into(),
                    3 => "99.9".into(),
                    4 => "99.99".into(),
                    5 => "99.999".into(),
                    _ => "100".into(),
                })
                .draw()?;
            let pts = |c: &[(f64, f64)]| c.iter().map(|(q, v)| (nines(*q), v.max(ymin))).collect::<Vec<_>>();
            chart
                .draw_series(LineSeries::new(pts(&r.accept_curve), BLUE.stroke_width(2)))?
                .label("acceptance")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
            if !r.e2e_curve.is_empty() {
                chart
                    .draw_series(LineSeries::new(pts(&r.e2e_curve), RED.stroke_width(2)))?
                    .label("end to end")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
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
