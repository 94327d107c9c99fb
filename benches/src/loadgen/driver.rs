//! The two ways load is offered: the closed loop (fixed concurrency: each worker starts
//! its next transaction when its last one ended) and the open loop (fixed arrival rate,
//! latency from the intended start; see [`super::schedule`]).

use super::config::Load;
use super::run::{Flow, Run};
use super::schedule::Schedule;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::task::JoinSet;

/// Longest the open-loop dispatcher naps before it checks for a stop.
const STOP_CHECK: Duration = Duration::from_millis(5);

impl Run {
    /// Offers the load as configured: `tx(run, n, due)` is one transaction, `due` when it
    /// was meant to start. Returns when the load has ended and every transaction finished.
    pub async fn drive<F, Fut>(self: &Arc<Self>, tx: F)
    where
        F: Fn(Arc<Run>, u64, Instant) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Flow> + Send + 'static,
    {
        match self.config.load {
            Load::Closed { concurrency } => self.closed_loop(concurrency, tx).await,
            Load::Open { rate, max_in_flight } => self.open_loop(rate, max_in_flight, tx).await,
        }
    }

    async fn closed_loop<F, Fut>(self: &Arc<Self>, concurrency: usize, tx: F)
    where
        F: Fn(Arc<Run>, u64, Instant) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Flow> + Send + 'static,
    {
        let mut workers = JoinSet::new();
        for _ in 0..concurrency {
            let (run, tx) = (self.clone(), tx.clone());
            workers.spawn(async move {
                while run.running() {
                    let n = run.next.fetch_add(1, Ordering::Relaxed);
                    if let Flow::Backoff(d) = tx(run.clone(), n, Instant::now()).await {
                        run.sleep(d.clamp(Duration::from_millis(10), Duration::from_secs(1))).await;
                    }
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }

    async fn open_loop<F, Fut>(self: &Arc<Self>, rate: f64, max_in_flight: usize, tx: F)
    where
        F: Fn(Arc<Run>, u64, Instant) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Flow> + Send + 'static,
    {
        // The dispatcher sleeps on a thread of its own: tokio's timer ticks in whole
        // milliseconds, which would add up to a millisecond of the generator's own lateness
        // to every latency measured from the intended start; a thread's sleep overshoots by
        // tens of microseconds.
        let (run, runtime) = (self.clone(), tokio::runtime::Handle::current());
        let dispatched = tokio::task::spawn_blocking(move || run.dispatch(rate, max_in_flight, tx, &runtime)).await;
        let Ok(mut tasks) = dispatched else { return };
        while tasks.join_next().await.is_some() {}
    }

    /// Starts transaction `i` at its intended time until the deadline or a stop, on a
    /// blocking thread; returns the transactions still running.
    fn dispatch<F, Fut>(self: Arc<Self>, rate: f64, max_in_flight: usize, tx: F, runtime: &Handle) -> JoinSet<()>
    where
        F: Fn(Arc<Run>, u64, Instant) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Flow> + Send + 'static,
    {
        let schedule = Schedule::new(self.start, rate);
        let permits = Arc::new(Semaphore::new(max_in_flight));
        let mut tasks = JoinSet::new();
        for i in 0u64.. {
            let intended = schedule.intended(i);
            if intended >= self.deadline {
                break;
            }
            // Short naps, so a stop is noticed within one.
            while !self.stopped_now() && Instant::now() < intended {
                std::thread::sleep(intended.saturating_duration_since(Instant::now()).min(STOP_CHECK));
            }
            if self.stopped_now() {
                break;
            }
            // Waiting for a permit delays the send, never the schedule: the wait is part of
            // the transaction's latency, measured from `intended`.
            let permit = match permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(TryAcquireError::NoPermits) => match runtime.block_on(permits.clone().acquire_owned()) {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                Err(TryAcquireError::Closed) => break,
            };
            let lag = schedule.lag(i, Instant::now());
            self.stats.with(i, |r| r.schedule_lag.saturating_record(lag.as_micros().max(1) as u64));
            let (run, tx) = (self.clone(), tx.clone());
            tasks.spawn_on(
                async move {
                    let _permit = permit;
                    tx(run, i, intended).await;
                },
                runtime,
            );
            while tasks.try_join_next().is_some() {}
        }
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::api::Api;
    use crate::loadgen::config::{Config, Endpoints, Scenario};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    fn run(load: Load, duration: Duration) -> Arc<Run> {
        let mut config = Config::new(Scenario::Browse, "http://127.0.0.1:9");
        config.load = load;
        config.duration = duration;
        let api = Api::new(&config.base_url, Endpoints::default(), Duration::from_secs(1), 4).unwrap();
        Arc::new(Run::new(config, Arc::new(api), "e".into(), Vec::new(), None))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_open_loop_starts_each_transaction_due_at_its_intended_time() {
        let run = run(Load::Open { rate: 200.0, max_in_flight: 100 }, Duration::from_millis(250));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        run.drive(move |run, n, due| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((n, due, Instant::now(), run.start));
                Flow::Next
            }
        })
        .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_by_key(|s| s.0);
        // 200/s for 250 ms: starts at 0, 5, ..., 245 ms.
        assert_eq!(seen.len(), 50);
        let schedule = Schedule::new(run.start, 200.0);
        for (i, (n, due, started, _)) in seen.iter().enumerate() {
            assert_eq!(*n, i as u64);
            assert_eq!(*due, schedule.intended(*n));
            assert!(*started >= *due, "a transaction never starts early");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_closed_loop_keeps_at_most_its_workers_busy() {
        let run = run(Load::Closed { concurrency: 3 }, Duration::from_millis(100));
        let (busy, most, count) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (b, m, c) = (busy.clone(), most.clone(), count.clone());
        run.drive(move |_, _, _| {
            let (b, m, c) = (b.clone(), m.clone(), c.clone());
            async move {
                let now = b.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                b.fetch_sub(1, Ordering::SeqCst);
                c.fetch_add(1, Ordering::SeqCst);
                Flow::Next
            }
        })
        .await;
        assert_eq!(most.load(Ordering::SeqCst), 3);
        assert!(count.load(Ordering::SeqCst) >= 3, "every worker ran");
        assert_eq!(busy.load(Ordering::SeqCst), 0, "drive returns once every transaction ended");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_ends_the_open_loop_early() {
        let run = run(Load::Open { rate: 1000.0, max_in_flight: 10 }, Duration::from_secs(30));
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        run.drive(move |run, n, _| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                if n == 20 {
                    run.stop();
                }
                Flow::Next
            }
        })
        .await;
        // 30,000 were scheduled; the few after the stop are those the dispatcher started
        // before it saw it.
        assert!(count.load(Ordering::SeqCst) < 100, "{}", count.load(Ordering::SeqCst));
    }
}
