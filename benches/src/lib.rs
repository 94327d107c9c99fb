//! Tiketi's benchmarks. The code lives in `benches/` (run with `cargo bench -p
//! tiketi-benches`); this library is deliberately empty.
//!
//! `benches/engine.rs` measures the pure engine with criterion (its only dependencies are
//! `tiketi-engine` and `uuid`). `benches/persistence.rs` is end to end instead: the
//! write-behind journal into a real PostgreSQL, actor activation, and holds through the
//! HTTP API with PostgreSQL against the embedded store; its dependencies are
//! dev-dependencies, so the library stays engine-only.
#![forbid(unsafe_code)]
