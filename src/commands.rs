//! The subcommands of `gdprd`.

use std::sync::Arc;

use anyhow::Context;
use chrono::Duration;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::{
    Cli, ClientsCommand, Command, GlobalArgs, IndexCommand, ServeArgs, WorkerSettings,
};
use crate::index::Normalizer;
use crate::requests::store::ResultLinks;
use crate::secrets::ServerKey;
use crate::state::{AppState, Shared};
use crate::worker::Worker;
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
        Command::Serve(args) => serve(&cli.global, pool, normalizer, args).await,
        Command::Worker(settings) => work(&cli.global, pool, normalizer, settings).await,
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

/// The catalog, checked against the database: gdprd does not start on a broken one.
async fn load_catalog(
    global: &GlobalArgs,
    pool: &PgPool,
    guard: &crate::outbound::GuardSettings,
) -> anyhow::Result<Arc<Catalog>> {
    let catalog = Catalog::load(&global.catalog)
        .with_context(|| format!("cannot load the catalog {}", global.catalog.display()))?;
    catalog
        .check_outbound(guard)
        .with_context(|| format!("cannot load the catalog {}", global.catalog.display()))?;
    catalog.validate(pool).await.with_context(|| {
        format!(
            "the catalog {} does not fit the database",
            global.catalog.display()
        )
    })?;
    Ok(Arc::new(catalog))
}

async fn serve(
    global: &GlobalArgs,
    pool: PgPool,
    normalizer: Normalizer,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let catalog = load_catalog(global, &pool, &args.worker.outbound).await?;
    let key = ServerKey::load_or_create(&pool).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %args.listen, "gdprd listening");
    let public_url = args.public_url();
    let search = db::search_pool(
        &pool,
        args.db_search_connections as usize,
        std::time::Duration::from_secs(global.db_acquire_timeout_secs),
    )?;
    let state = AppState::new(Shared {
        pool: pool.clone(),
        search,
        normalizer: normalizer.clone(),
        links: ResultLinks {
            public_url: public_url.clone(),
            key: key.clone(),
            ttl: Duration::seconds(args.http.results_url_ttl_secs as i64),
        },
        catalog: catalog.clone(),
        max_attempts: args.worker.job_max_attempts,
        rate_limits: crate::ratelimit::RateLimits::new(args.http.rate_limits()),
        outbound: crate::outbound::Outbound::new(args.worker.outbound.clone()),
        tokens: crate::auth::cache::TokenCache::default(),
        settings: Arc::new(args.http),
    });
    let stop = CancellationToken::new();
    let worker = (!args.no_worker).then(|| {
        let mut settings = args.worker.clone();
        settings.callback_base_url.get_or_insert(public_url);
        let worker = Worker::new(pool, catalog, key, normalizer, settings);
        tokio::spawn(worker.run(stop.clone()))
    });
    let shutdown = {
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.cancel();
        }
    };
    http::serve(listener, state, shutdown).await?;
    stop.cancel();
    if let Some(worker) = worker {
        worker.await?;
    }
    tracing::info!("gdprd stopped");
    Ok(())
}

async fn work(
    global: &GlobalArgs,
    pool: PgPool,
    normalizer: Normalizer,
    settings: WorkerSettings,
) -> anyhow::Result<()> {
    let catalog = load_catalog(global, &pool, &settings.outbound).await?;
    let key = ServerKey::load_or_create(&pool).await?;
    let stop = CancellationToken::new();
    let worker =
        tokio::spawn(Worker::new(pool, catalog, key, normalizer, settings).run(stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    worker.await?;
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
