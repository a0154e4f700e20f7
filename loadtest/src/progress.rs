//! Progress bars (indicatif) while a run goes: one for the sender, one for the
//! sink. Drawn on stderr, four times a second, by a thread of their own that
//! only reads counters; hidden when stderr is not a terminal or when quiet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::send::Live;
use crate::sink::SinkLive;

/// Running progress display; [`Progress::finish`] stops it.
#[derive(Debug)]
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn bar(multi: &MultiProgress, total: Option<u64>, prefix: &str) -> ProgressBar {
    let pb = match total {
        Some(t) => multi.add(ProgressBar::new(t)),
        None => multi.add(ProgressBar::new_spinner()),
    };
    let template = match total {
        Some(_) => "{prefix:>6} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        None => "{prefix:>6} [{elapsed_precise}] {spinner} {pos} {msg}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb.set_prefix(prefix.to_string());
    pb
}

impl Progress {
    /// Starts the display. `total`: messages expected (a bar), or `None` (a counter).
    pub fn start(send: Option<Arc<Live>>, sink: Option<Arc<SinkLive>>, total: Option<u64>, quiet: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let send_bar = send.as_ref().map(|_| bar(&multi, total, "send"));
        let sink_bar = sink.as_ref().map(|_| bar(&multi, total, "sink"));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let start = Instant::now();
                let mut last = (start, 0u64, 0u64);
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let now = Instant::now();
                    let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
                    let mut cur = (now, 0, 0);
                    if let (Some(l), Some(b)) = (&send, &send_bar) {
                        let acc = l.accepted.load(Ordering::Relaxed);
                        cur.1 = acc;
                        b.set_position(l.finished());
                        b.set_message(format!(
                            "accepted {acc} 4yz {} 5yz {} unknown {} | {:.0} msg/s",
                            l.temp_failed.load(Ordering::Relaxed),
                            l.perm_failed.load(Ordering::Relaxed),
                            l.unknown.load(Ordering::Relaxed),
                            (acc - last.1) as f64 / dt
                        ));
                    }
                    if let (Some(k), Some(b)) = (&sink, &sink_bar) {
                        let got = k.received.load(Ordering::Relaxed);
                        cur.2 = got;
                        b.set_position(got);
                        b.set_message(format!(
                            "received, 4yz {} 5yz {} dropped {} | {:.0} msg/s",
                            k.deferred.load(Ordering::Relaxed),
                            k.bounced.load(Ordering::Relaxed),
                            k.dropped.load(Ordering::Relaxed),
                            (got - last.2) as f64 / dt
                        ));
                    }
                    last = cur;
                }
                for b in send_bar.iter().chain(sink_bar.iter()) {
                    b.finish();
                }
            })
            .ok();
        Self { stop, thread }
    }

    /// Stops and leaves the last state on screen.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
