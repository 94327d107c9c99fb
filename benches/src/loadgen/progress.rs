//! The progress bar (on standard error, only when standard output is a terminal and the run
//! is not quiet): seats held out of the event's for seat scenarios, seconds elapsed for
//! the others, with live rates.

use super::run::Run;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A bar of `len` steps, or a hidden one.
pub fn bar(enabled: bool, len: u64, prefix: &str) -> ProgressBar {
    if !enabled || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{prefix:>10} {elapsed_precise} [{bar:32}] {pos}/{len} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::new(len).with_style(style).with_prefix(prefix.to_owned());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Updates `bar` from the run's counters until the task is aborted. `seats`: the bar counts
/// seats held (else seconds).
pub fn follow(run: Arc<Run>, bar: ProgressBar, seats: bool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let (mut last_at, mut last_requests) = (Instant::now(), 0);
        loop {
            tick.tick().await;
            let live = &run.live;
            let requests = live.requests.load(Ordering::Relaxed);
            let now = Instant::now();
            let per_s = (requests - last_requests) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-3);
            (last_at, last_requests) = (now, requests);
            if seats {
                bar.set_position(live.seats_held.load(Ordering::Relaxed));
            } else {
                bar.set_position(run.start.elapsed().as_secs());
            }
            let frames = live.frames.load(Ordering::Relaxed);
            let frames = if frames > 0 { format!(" {frames} frames") } else { String::new() };
            bar.set_message(format!(
                "{per_s:.0} req/s {} holds {} paid {} 409 {} err{frames}",
                live.holds.load(Ordering::Relaxed),
                live.seats_sold.load(Ordering::Relaxed),
                live.conflicts.load(Ordering::Relaxed),
                live.errors.load(Ordering::Relaxed),
            ));
        }
    })
}
