//! The subcommands of `gdprd`.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{Cli, ClientsCommand, Command, IndexCommand, ServeArgs};
use crate::index::Normalizer;
use crate::state::AppState;
use crate::{auth, db, http, index, org, seed};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let normalizer = Normalizer::new(&cli.global.default_region)?;
    let pool = db::connect(&cli.global).await?;
    db::migrate(&pool).await?;
    match cli.command {
        Command::Migrate => {
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve(args) => serve(pool, normalizer, args).await,
        Command::Seed(args) => seed::run(&pool, &normalizer, &args).await,
        Command::Clients(ClientsCommand::Create {
            name,
            permissions,
            org,
        }) => {
            let created = auth::clients::create(&pool, &org, &name, &permissions).await?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            Ok(())
        }
        Command::Index(IndexCommand::Import { file, org, quiet }) => {
            let org_id = org::get_or_create(&mut *pool.acquire().await?, &org).await?;
            let written =
                index::import::import_file(&pool, org_id, &file, &normalizer, !quiet).await?;
            println!("{{\"written\":{written}}}");
            Ok(())
        }
    }
}

async fn serve(pool: sqlx::PgPool, normalizer: Normalizer, args: ServeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %args.listen, "gdprd listening");
    let state = AppState {
        pool,
        normalizer,
        settings: Arc::new(args.http),
    };
    http::serve(listener, state, shutdown_signal()).await?;
    tracing::info!("gdprd stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
