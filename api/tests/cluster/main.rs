//! Cluster system tests: three real `tiketi` nodes on loopback (distinct ports) sharing one
//! throwaway PostgreSQL and one Redis: routing to one owner per event and the live stream
//! across nodes, SIGKILL during a burst, a SIGSTOPped zombie fenced out, and a rolling
//! restart under load.

mod kill;
mod nodes;
mod rolling;
mod routing;
#[path = "../durability/support.rs"]
mod support;
mod zombie;
