//! Tiketi's benchmarks and the tools that measure it from outside.
//!
//! Criterion micro-benchmarks live in `benches/` (run with `cargo bench -p tiketi-benches`):
//! `engine.rs` (hold decisions, the expiry sweep, seat-id resolution, the admission queue),
//! `actors.rs` (a round trip through `EventHandle` with 1 and 64 callers; snapshot, delta and
//! seat-map rendering for a 50,000-seat event). The end-to-end ones print tables instead:
//! `persistence.rs` (the write-behind journal into a real PostgreSQL, actor activation, holds
//! through the HTTP API with PostgreSQL against the embedded store), `fanout.rs` (10,000
//! WebSocket subscribers on the release binary) and `memory.rs` (resident bytes per seat).
//!
//! The library holds what they share ([`machine`], [`report`]) and two tools with their own
//! binaries: [`loadgen`], the on-sale load generator (`--bin loadgen`), and [`baseline`],
//! the row-lock design the seed systems use, written well with the same stack, to be
//! measured against (`--bin rowlock`). `--bin hello` is the ceiling: an axum server that
//! does nothing. `--bin fanout_floor` is the fan-out benchmark's reference point: its
//! traffic from a sender that does nothing but write.
#![forbid(unsafe_code)]

pub mod baseline;
pub mod loadgen;
pub mod machine;
pub mod report;
