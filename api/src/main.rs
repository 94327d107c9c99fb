//! The `tiketi` binary: a thin shim over [`tiketi_api::Application`].

use clap::Parser;
use tiketi_api::cli::{Cli, Command};
use tiketi_api::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = settings.validate() {
        eprintln!("configuration error: {e}");
        std::process::exit(2);
    }
    match cli.command {
        Command::Config => {
            settings.auth.jwt_secret = mask(&settings.auth.jwt_secret);
            settings.auth.admin_password = mask(&settings.auth.admin_password);
            println!("{settings:#?}");
            Ok(())
        }
        Command::Migrate => {
            tiketi_api::telemetry::init(&settings.log);
            settings.store.kind = tiketi_api::settings::StoreKind::Postgres;
            if let Err(e) = settings.validate() {
                eprintln!("configuration error: {e}");
                std::process::exit(2);
            }
            tiketi_api::startup::connect_and_migrate(&settings).await?;
            println!("migrations are up to date");
            Ok(())
        }
        Command::Serve { port, host } => {
            if let Some(port) = port {
                settings.server.port = port;
            }
            if let Some(host) = host {
                settings.server.host = host;
            }
            tiketi_api::telemetry::init(&settings.log);
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "tiketi listening");
            app.run_until_stopped().await
        }
    }
}

fn mask(secret: &str) -> String {
    if secret.is_empty() { String::new() } else { "********".into() }
}
