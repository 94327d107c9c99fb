//! Durability system tests against a real PostgreSQL: the `tiketi` binary killed with
//! SIGKILL mid-burst and restarted, and a 100,000-seat event reloaded from the store.

mod crash;
mod payments;
mod restart;
mod support;
