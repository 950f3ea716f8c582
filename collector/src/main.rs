//! `aispend-collector`: parse settings, start logging, open the store, serve
//! `app()`, and on SIGTERM / Ctrl-C stop accepting, finish in-flight
//! requests, close the store. `aispend-collector keys …` runs the key
//! command (`cli/`) instead.

use std::process::ExitCode;

use aispend_collector::domain::pricing::PriceTable;
use aispend_collector::logging::{self, LogFormat};
use aispend_collector::server::{self, Limits};
use aispend_collector::settings::{Cli, Settings};
use aispend_collector::{app, store, AppState, Tokens};
use clap::Parser;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(command) = cli.command.take() {
        return aispend_collector::cli::run(command).await;
    }
    let settings = match Settings::load(cli) {
        Ok(settings) => settings,
        Err(message) => {
            // The logger is not configured yet: the default one says why.
            if logging::init(LogFormat::Text, None).is_ok() {
                tracing::error!("{message}");
            }
            return ExitCode::FAILURE;
        }
    };
    if let Err(message) = logging::init(settings.log_format, settings.log_level.as_deref()) {
        // Only a bad --log-level gets here: no logger exists to report it.
        eprintln!("aispend-collector: {message}");
        return ExitCode::FAILURE;
    }
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    let prices = match &settings.prices {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read price file {}: {e}", path.display()))?;
            PriceTable::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => PriceTable::embedded()?,
    };
    let store = store::connect(&settings.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let tokens = Tokens {
        ingest: settings.ingest_token.clone(),
        read: settings.read_token.clone(),
        admin: settings.admin_token.clone(),
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let local = listener
        .local_addr()
        .map_or_else(|_| settings.listen.clone(), |a| a.to_string());
    tracing::info!(
        listen = %local,
        store = %store::redacted_url(&settings.database_url),
        priced_models = prices.len(),
        price_version = %prices.version(),
        max_connections = settings.max_connections,
        header_timeout_ms = settings.header_timeout_ms,
        idle_timeout_ms = settings.idle_timeout_ms,
        ingest_memory_mb = settings.ingest_memory_mb,
        key_required_tags = %settings.key_policy.required_tags.join(","),
        key_max_lifetimes = settings.key_policy.max_lifetime_ms.len(),
        retention_days = ?settings.retention_days,
        "listening on {local}"
    );
    let state = AppState::new(store.clone(), prices, tokens)
        .with_ingest_memory(settings.ingest_memory_mb.saturating_mul(1024 * 1024))
        .with_key_policy(settings.key_policy.clone())
        .with_alerts(settings.alerts.clone())
        .with_lease_policy(settings.lease_policy);
    // Prices in time: the stored changes, plus the file's (SPEC §13).
    if let Some(path) = &settings.price_changes {
        let summary = aispend_collector::service::prices::apply_file(&state, path).await?;
        tracing::info!(file = %path.display(), %summary, "price changes applied");
    }
    aispend_collector::service::prices::reload(&state)
        .await
        .map_err(|e| format!("cannot load price changes: {e:?}"))?;
    if let Some(problem) = state.alerts.tls_problem() {
        return Err(format!("https webhooks: {problem}"));
    }
    // Deletes raw records older than N days in the background; the rollups
    // keep the totals. Ends with the process.
    let retention = settings
        .retention_days
        .map(|days| aispend_collector::service::retention::spawn(&state, days));
    // Alert evaluation and webhook delivery run beside the server: ingest
    // only kicks the evaluation, never waits for it or for a receiver.
    let evaluation = tokio::spawn(aispend_collector::service::alerts::evaluation_loop(
        state.clone(),
    ));
    let delivery = tokio::spawn(aispend_collector::service::webhooks::delivery_loop(
        state.clone(),
    ));
    let price_reload = tokio::spawn(aispend_collector::service::prices::reload_loop(
        state.clone(),
    ));
    let limits = Limits {
        header_timeout: Duration::from_millis(settings.header_timeout_ms),
        idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
        max_connections: settings.max_connections,
    };
    server::serve(listener, app(state), limits, shutdown_signal()).await;
    if let Some(task) = retention {
        task.abort();
    }
    // An attempt cut short here keeps its outbox row: retried at the next start.
    evaluation.abort();
    delivery.abort();
    price_reload.abort();
    // Every in-flight request has finished (its batch committed): now fold
    // the WAL into the database file.
    store.close().await.map_err(|e| e.to_string())?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down, finishing in-flight requests");
}
