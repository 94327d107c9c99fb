//! The `tiketi` command line (clap).

use clap::{Parser, Subcommand};

/// Tiketi: a ticketing engine for on-sale bursts.
///
/// Configuration comes from config/default.toml (built in), then config/{TIKETI_ENV}.toml
/// (TIKETI_ENV defaults to "development"; the folder is TIKETI_CONFIG_DIR or ./config),
/// then TIKETI_<SECTION>__<KEY> environment variables, e.g. TIKETI_SERVER__PORT=9000.
#[derive(Debug, Parser)]
#[command(name = "tiketi", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server. With no configuration: the embedded in-memory store on
    /// 127.0.0.1:8080, a demo event on sale, and the admin credentials printed once.
    Serve {
        /// Listen on this port instead of server.port.
        #[arg(long)]
        port: Option<u16>,
        /// Listen on this address instead of server.host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Apply pending database migrations (store.database_url) and exit. `serve` applies
    /// them too; this lets a deploy run them first.
    Migrate,
    /// Print the effective configuration (secrets masked) and exit; fails like `serve`
    /// would on a bad key or value.
    Config,
}
