//! Tiketi's micro-benchmarks. The code lives in `benches/` (criterion, run with
//! `cargo bench -p tiketi-benches`); this library is deliberately empty.
//!
//! The crate depends on `tiketi-engine` (and `uuid` for ids) only: a benchmark here
//! measures the pure engine, never the actors, the API, a database or the network.
#![forbid(unsafe_code)]
