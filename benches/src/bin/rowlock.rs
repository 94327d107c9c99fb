//! `rowlock`: the row-lock baseline server (see `tiketi_benches::baseline`), a thin shim.
//!
//! ```text
//! cargo run --release -p tiketi-benches --bin rowlock -- \
//!     --database-url postgres://postgres@127.0.0.1:5432/rowlock --port 8090
//! ```

use clap::Parser;
use std::time::Duration;
use tiketi_benches::baseline::{RowLock, Settings};

/// The row-lock baseline: seats in PostgreSQL, holds by `SELECT … FOR UPDATE`, Tiketi's
/// HTTP API. A benchmark subject only: no passwords, the token is the user id.
#[derive(Debug, Parser)]
#[command(name = "rowlock", version)]
struct Cli {
    /// PostgreSQL URL; the `rowlock` schema is created in it if missing.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8090)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// Connections in the PostgreSQL pool.
    #[arg(long, default_value_t = 32)]
    pool_size: usize,
    /// How long a hold lasts, in seconds, when the event does not say.
    #[arg(long, default_value_t = 300)]
    hold_ttl_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".parse().expect("valid")),
        )
        .init();
    let cli = Cli::parse();
    anyhow::ensure!(cli.pool_size > 0, "--pool-size must be at least 1");
    anyhow::ensure!(cli.hold_ttl_secs > 0, "--hold-ttl-secs must be at least 1");
    let settings = Settings {
        database_url: cli.database_url,
        pool_size: cli.pool_size,
        hold_ttl: Duration::from_secs(cli.hold_ttl_secs),
        ..Settings::default()
    };
    let listener = tokio::net::TcpListener::bind((cli.host.as_str(), cli.port)).await?;
    let app = RowLock::build(&settings, listener).await?;
    tracing::info!(port = app.port(), pool_size = settings.pool_size, "rowlock baseline listening");
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("rowlock baseline stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
