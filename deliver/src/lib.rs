//! The deliver stage: keeps the sled outbox and pushes trades to WDT's `trade_push.php`,
//! batching per shop, retrying, dead-lettering and reporting status over gRPC.
//!
//! A tour, in the order a trade meets it:
//!
//! | step | where |
//! |---|---|
//! | settings (`DATA_DIR`, `WDT_*`, retry, retention, admission) | [`cli`], [`config`] |
//! | start: open the outbox, start delivery, serve, drain on shutdown | [`serve`] |
//! | the gRPC adapter: enqueue, status, stats, dead letters, admin calls | `grpc`, `status` |
//! | the outbox: one writer thread, group commits, the key layout | [`store`], [`keys`] |
//! | a shop's loop, batches of 50, bisection, retries, WDT outages, resume | [`delivery`] |
//! | the signed `trade_push` call per WDT account | [`wdt`] |
//! | what WDT's answer means: done, retry, pause, dead | [`classify`] |
//! | time for due retries (testable) | [`clock`] |
//! | why it cannot start; why a call is refused, and its gRPC code | [`error`] |
//! | counters, gauges and latencies | [`metrics`] |

pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod error;
mod grpc;
pub mod keys;
pub mod metrics;
mod status;
pub mod store;
pub mod wdt;

use crate::classify::Classifier;
use crate::config::DeliverConfig;
use crate::delivery::Delivery;
use crate::error::StartError;
use crate::store::Outbox;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use wdtpipe_common::grpc::{self as rpc, ServingStatus};
use wdtpipe_common::metrics::MetricsRegistry;
use wdtpipe_common::shutdown::Stop;
use wdtpipe_proto::v1::deliver_server::DeliverServer;

pub use wdtpipe_common::grpc::Listeners;

/// Runs deliver until `shutdown` completes: opens the outbox, starts the delivery engine,
/// serves gRPC (Deliver, health, reflection) and metrics. On shutdown it reports
/// NOT_SERVING, stops accepting, lets pushes in flight finish and flushes the outbox.
pub async fn serve(
    config: DeliverConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    config.validate()?;
    // The address actually bound, which may differ from `grpc_addr` (a test's port 0, or
    // listeners made by the caller).
    config.check_admin_token(listeners.grpc.local_addr().map_err(StartError::Listener)?)?;
    let dir = config.data_dir.join("outbox");
    std::fs::create_dir_all(&dir)
        .map_err(|e| StartError::Outbox(store::StoreError::Sled(e.into())))?;
    let options = store::OutboxOptions {
        retention: config.retention,
        cache_bytes: config.cache_bytes,
        min_free_bytes: config.min_free_bytes,
    };
    let outbox =
        Arc::new(tokio::task::spawn_blocking(move || Outbox::open_with(&dir, options)).await??);
    let accounts = wdt::Accounts::new(&config)?;
    for (connector, client) in accounts.iter() {
        tracing::info!(connector, endpoint = client.endpoint(), sid = %client.sid(), "delivering to WDT");
    }
    let client: Arc<dyn wdt::WdtApi> = Arc::new(accounts);
    let classifier = Classifier {
        retryable_codes: config.retryable_codes.clone(),
        config_codes: config.config_codes.clone(),
    };
    let mut registry = MetricsRegistry::default();
    let metrics = Arc::new(metrics::DeliverMetrics::new(&mut registry));
    let delivery = Delivery::start(
        Arc::clone(&outbox),
        client,
        clock::Clock::new(),
        delivery::DeliverySettings {
            classifier,
            metrics: Arc::clone(&metrics),
            retry: config.retry.clone(),
            batch_size: config.batch_size,
            calls_per_shop: config.calls_per_shop,
            sweep_interval: Duration::from_millis(config.retention.sweep_step_ms.max(10)),
        },
    )?;

    let (health_reporter, health_service) = rpc::health();
    for service in ["", "wdtpipe.v1.Deliver"] {
        health_reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    let reporter = health_reporter.clone();
    let stop = Stop::spawn(async move {
        shutdown.await;
        // Report NOT_SERVING first, so load balancers stop sending before the drain.
        for service in ["", "wdtpipe.v1.Deliver"] {
            reporter
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
    });
    tokio::spawn(watch_storage(
        Arc::clone(&outbox),
        health_reporter.clone(),
        stop.receiver(),
    ));
    let oldest = Arc::new(AtomicI64::new(0));
    if listeners.metrics.is_some() {
        tokio::spawn(watch_oldest(
            Arc::clone(&outbox),
            Arc::clone(&oldest),
            stop.receiver(),
        ));
    }
    let metrics_task = listeners.metrics.map(|listener| {
        let refresh = gauges(Arc::clone(&outbox), Arc::clone(&delivery), oldest);
        tokio::spawn(wdtpipe_common::metrics::serve(
            listener,
            Arc::new(registry),
            Some(refresh),
            stop.stopped(),
        ))
    });

    let addr = listeners
        .grpc
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let shard = if config.shard.is_empty() {
        addr.clone()
    } else {
        config.shard.clone()
    };
    let admission = grpc::Admission {
        high_water_trades: config.high_water_trades,
        high_water_bytes: config.high_water_bytes,
        admin_token: config.admin_token.clone(),
        connectors: config.accounts().map(|(name, _)| name.to_owned()).collect(),
    };
    let service = DeliverServer::new(grpc::DeliverService::new(
        Arc::clone(&outbox),
        Arc::clone(&delivery),
        admission,
        shard.clone(),
    ))
    .max_decoding_message_size(wdtpipe_common::grpc::MAX_MESSAGE_BYTES);
    tracing::info!(%addr, %shard, queued = outbox.queued().trades, "deliver listening");
    let mut server = rpc::server();
    if let Some(tls) = config.tls.server()? {
        server = server.tls_config(tls)?;
    }
    let result = server
        .add_service(health_service)
        .add_service(rpc::reflection())
        .add_service(service)
        .serve_with_incoming_shutdown(rpc::incoming(listeners.grpc), stop.stopped())
        .await;
    delivery
        .stop(Duration::from_millis(config.drain_timeout_ms))
        .await;
    let closing = Arc::clone(&outbox);
    tokio::task::spawn_blocking(move || closing.close()).await??;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    tracing::info!("deliver stopped");
    result.map_err(StartError::from)
}

/// Keeps the health NOT_SERVING while the outbox cannot write (and logs the changes), so
/// load balancers and probes see what the 503s say. Ends when deliver stops (the stop
/// reports NOT_SERVING itself).
async fn watch_storage(
    outbox: Arc<Outbox>,
    reporter: rpc::HealthReporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut serving = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let problem = outbox.write_problem();
        if problem.is_some() == serving {
            serving = problem.is_none();
            match &problem {
                Some(problem) => tracing::error!(%problem, "the outbox cannot write: NOT_SERVING"),
                None => tracing::warn!("the outbox writes again: SERVING"),
            }
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in ["", "wdtpipe.v1.Deliver"] {
                reporter.set_service_status(service, status).await;
            }
        }
    }
}

/// Reads the outbox gauges fresh for a scrape.
fn gauges(
    outbox: Arc<Outbox>,
    delivery: Arc<Delivery>,
    oldest: Arc<AtomicI64>,
) -> wdtpipe_common::metrics::Refresh {
    Arc::new(move || {
        let metrics = delivery.metrics();
        let queued = outbox.queued();
        metrics.queued_trades.set(queued.trades);
        metrics.queued_bytes.set(queued.bytes);
        metrics
            .paused_shops
            .set(delivery.paused_shops().len() as i64);
        metrics
            .unreachable_accounts
            .set(delivery.unreachable_accounts() as i64);
        metrics.disk_bytes.set(outbox.disk_bytes() as i64);
        let storage = outbox.storage_health();
        metrics.outbox_writable.set(i64::from(storage.writable()));
        metrics
            .outbox_free_bytes
            .set(storage.free_bytes.map_or(-1, |b| b as i64));
        metrics
            .outbox_failed_commits
            .set(storage.failed_commits as i64);
        let writer = outbox.writer_stats();
        metrics.flushes.set(writer.flushes as i64);
        metrics.writer_busy_seconds.set(writer.busy.as_secs_f64());
        metrics
            .writer_flush_seconds
            .set(writer.flushing.as_secs_f64());
        // Read by `watch_oldest` off the runtime threads: a scrape scans nothing.
        let at = oldest.load(Ordering::Relaxed);
        let now = delivery.clock().now_ms();
        let age = if at == 0 {
            0.0
        } else {
            ((now - at).max(0) as f64) / 1000.0
        };
        metrics.oldest_queued_age_seconds.set(age);
    })
}

/// How often the age of the oldest waiting trade is read for `/metrics`.
const OLDEST_EVERY: Duration = Duration::from_secs(2);

/// Keeps `oldest` (when the oldest waiting trade was received, Unix ms; 0 = none) current,
/// reading the outbox on a blocking thread every [`OLDEST_EVERY`].
async fn watch_oldest(
    outbox: Arc<Outbox>,
    oldest: Arc<AtomicI64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let reading = Arc::clone(&outbox);
        if let Ok(Ok(found)) =
            tokio::task::spawn_blocking(move || reading.oldest_waiting_recent()).await
        {
            let at = found.values().min().copied().unwrap_or(0);
            oldest.store(at, Ordering::Relaxed);
        }
        tokio::select! {
            () = tokio::time::sleep(OLDEST_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}
