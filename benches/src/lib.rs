//! Tiketi's benchmarks. The code lives in `benches/` (run with `cargo bench -p
//! tiketi-benches`); this library only holds what the end-to-end benchmarks share: a
//! description of the machine and the markdown table of results.
//!
//! `benches/engine.rs` measures the pure engine with criterion (its only dependencies are
//! `tiketi-engine` and `uuid`). `benches/persistence.rs` is end to end instead: the
//! write-behind journal into a real PostgreSQL, actor activation, and holds through the
//! HTTP API with PostgreSQL against the embedded store. `benches/fanout.rs` runs the release
//! `tiketi` binary as a child process and measures the live seat stream with 10,000
//! WebSocket subscribers. Their dependencies are dev-dependencies, so the library stays
//! engine-only and uses nothing beyond `std`.
#![forbid(unsafe_code)]

pub mod machine;
pub mod report;
