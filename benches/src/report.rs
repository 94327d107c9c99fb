//! The results table: one row per metric, its median over the runs, every run's figure and
//! the goal, as markdown.

use std::time::Duration;

/// One line of the results table.
pub struct Row {
    bench: String,
    metric: &'static str,
    runs: Vec<f64>,
    decimals: usize,
    goal: &'static str,
}

impl Row {
    /// A metric of `bench` with one figure per run, shown with `decimals` places.
    pub fn new(
        bench: &str,
        metric: &'static str,
        runs: impl IntoIterator<Item = f64>,
        decimals: usize,
        goal: &'static str,
    ) -> Self {
        Self { bench: bench.into(), metric, runs: runs.into_iter().collect(), decimals, goal }
    }

    /// The median run (the upper one of an even count).
    pub fn median(&self) -> f64 {
        let mut v = self.runs.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.decimals;
        let runs: Vec<String> = self.runs.iter().map(|v| format!("{v:.d$}")).collect();
        write!(f, "| {} | {} | {:.d$} | {} | {} |", self.bench, self.metric, self.median(), runs.join(" / "), self.goal)
    }
}

/// Prints the table (header and rows) for `runs` runs per figure.
pub fn print_table(rows: &[Row], runs: usize) {
    println!("| benchmark | metric | median of {runs} | runs | goal |");
    println!("|---|---|---:|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// The `q` quantile (0..=1) of sorted samples, by the nearest-rank method.
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> T {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
