//! `wdtpipe bench`: drives callbacks through the real HTTP endpoint and measures the
//! pipeline — durable callbacks per second, ack latency, delivery rate, accept→WDT latency,
//! each service's peak RSS, outbox bytes per queued trade, disk flushes per second and how
//! busy deliver's single outbox writer was.
//!
//! By default it starts `ingest`, `transform` and `deliver` as separate processes (the
//! binaries next to `wdtpipe`, so each one's memory can be read from `/proc`) and the WDT
//! sandbox inside itself; `--target` points it at a running ingest instead. `--backlog N`
//! accepts N trades with WDT down, then starts the sandbox and measures the drain.

mod load;
mod report;
mod stages;

use crate::bench_client::Poster;
use anyhow::{Context, bail};
use load::*;
use report::*;
use serde_json::{Value, json};
use stages::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wdtpipe_common::grpc::{ClientTimeouts, GrpcTls, lazy_channel};
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::{StatsRequest, StatsResponse};
use wdtpipe_sandbox::{Sandbox, SandboxConfig};

/// Deliver's backoff cap in the backlog run (ms).
const BACKLOG_RETRY_CAP_MS: u64 = 2_000;

/// The callback the bench sends (fixture 01), with `@TID@` where the tid goes.
const TEMPLATE: &str = include_str!("../../../tests/fixtures/callbacks/01-basic.json");

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Concurrent senders (closed loop: each sends its next callback when answered).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Send at this fixed rate (callbacks/s) instead of as fast as the senders can.
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Backlog run: accept this many trades with WDT down, then start it and time the drain.
    #[arg(long)]
    pub backlog: Option<u64>,
    /// A running ingest (e.g. http://127.0.0.1:8080) instead of starting the pipeline; only
    /// the client-side figures are measured then.
    #[arg(long)]
    pub target: Option<String>,
    /// Where the ingest/transform/deliver binaries are (default: next to this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Data directory for deliver (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Async runtime threads of the bench and of each service it starts (the services'
    /// `TOKIO_WORKER_THREADS`); 0 leaves tokio's default of one per core. The three
    /// services and the bench share the machine, so by default each gets one, which each
    /// runs as tokio's current-thread scheduler (BENCHMARKS.md).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Map every callback with this integration scheme file: transform serves it alone
    /// (SCHEMES_DIR) and the callbacks go to `/v1/callback/{id}`. With `--target`, the
    /// running transform must serve a scheme of that id.
    #[arg(long)]
    pub scheme: Option<PathBuf>,
    /// Run the pipeline as one `wdtpipe up` process (as users run it; console off) instead
    /// of three service processes; peak memory is then that process's.
    #[arg(long)]
    pub up: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The scheme a run maps with: its id and `id@version` (`default@builtin` without one).
fn scheme_of(args: &BenchArgs) -> anyhow::Result<(Option<String>, String)> {
    let Some(path) = &args.scheme else {
        return Ok((None, "default@builtin".to_owned()));
    };
    let scheme =
        crate::scheme::load_scheme(path, &[wdtpipe_common::connectors::DEFAULT.to_owned()])?;
    Ok((Some(scheme.id.clone()), scheme.label()))
}

/// The callback URL of a run against ingest at `base`.
fn callback_url(base: &str, scheme: Option<&str>) -> String {
    match scheme {
        Some(id) => format!("{}/v1/callback/{id}", base.trim_end_matches('/')),
        None => format!("{}/v1/callback", base.trim_end_matches('/')),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let run_id = format!("B{}", wdtpipe_common::now_ms() % 1_000_000_000);
    let (scheme_id, scheme_label) = scheme_of(&args)?;
    let scheme_id = scheme_id.as_deref();
    if let Some(target) = &args.target {
        let url = callback_url(target, scheme_id);
        let (tally, elapsed) = load(url, &args, &run_id, None).await?;
        let report = json!({
            "mode": "target",
            "scheme": scheme_label,
            "target": target,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "duration_s": elapsed.as_secs_f64(),
            "accepted": tally.acked.len(),
            "refused": tally.refused,
            "errors": tally.errors,
            "accepted_per_s": tally.acked.len() as f64 / elapsed.as_secs_f64(),
            "ack_latency_ms": percentiles_ms(tally.latencies_us),
        });
        return print_report(&report, args.json);
    }

    let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sandbox_addr = sandbox_listener.local_addr()?;
    let wdt_url = format!("http://{sandbox_addr}/openapi2");
    let report = if let Some(backlog) = args.backlog {
        // WDT down while the backlog is accepted: nothing listens on its port yet.
        drop(sandbox_listener);
        let mut stages = Stages::start(&args, &wdt_url, Some(BACKLOG_RETRY_CAP_MS))?;
        stages.wait_ready().await?;
        eprintln!("accepting {backlog} trades with WDT down…");
        let (tally, accept_time) = load(
            callback_url(&stages.http, scheme_id),
            &args,
            &run_id,
            Some(backlog),
        )
        .await?;
        let queued = stages.stats().await?;
        let rss_accept = stages.peak_rss();
        stages.reset_peaks();
        eprintln!("starting WDT and draining {} trades…", tally.acked.len());
        let sandbox_started_ms = wdtpipe_common::now_ms();
        let sandbox_started = Instant::now();
        let sandbox = start_sandbox(tokio::net::TcpListener::bind(sandbox_addr).await?).await;
        wait_delivered(&sandbox.sandbox, &tally.acked, Duration::from_secs(3600)).await?;
        let (at_drained, drain_window) = (stages.stats().await?, sandbox_started.elapsed());
        // Deliver finds WDT back at its next retry (backoff); the drain is timed from the
        // first trade WDT accepted to the last.
        let accepted_at: Vec<i64> = sandbox
            .sandbox
            .first_accepted()
            .into_iter()
            .map(|(_, at)| at)
            .collect();
        let first = accepted_at
            .iter()
            .copied()
            .min()
            .unwrap_or(sandbox_started_ms);
        let last = accepted_at.iter().copied().max().unwrap_or(first);
        let drain = Duration::from_millis((last - first).max(1) as u64);
        let first_delivery_after =
            Duration::from_millis((first - sandbox_started_ms).max(0) as u64);
        // The writer's load from the first delivery on (before it, deliver waits for its
        // next retry to find WDT back).
        let writer_while_draining = writer_load(
            &queued,
            &at_drained,
            drain_window.saturating_sub(first_delivery_after),
        );
        let drained = eventually_empty(&stages).await?;
        let report = json!({
            "mode": "backlog",
            "up": args.up,
            "scheme": scheme_label,
            "accepted": tally.acked.len(),
            "accept_s": accept_time.as_secs_f64(),
            "accepted_per_s": tally.acked.len() as f64 / accept_time.as_secs_f64(),
            "ack_latency_ms": percentiles_ms(tally.latencies_us),
            "outbox_queued_trades": queued.queued_trades,
            "outbox_payload_bytes_per_trade": queued.queued_bytes as f64 / queued.queued_trades.max(1) as f64,
            "outbox_disk_bytes_per_trade": queued.disk_bytes as f64 / queued.queued_trades.max(1) as f64,
            "peak_rss_bytes_while_accepting": rss_accept,
            "deliver_retry_cap_ms": BACKLOG_RETRY_CAP_MS,
            "first_delivery_after_wdt_up_s": first_delivery_after.as_secs_f64(),
            "drain_s": drain.as_secs_f64(),
            "drained_per_s": tally.acked.len() as f64 / drain.as_secs_f64(),
            "peak_rss_bytes_while_draining": stages.peak_rss(),
            "outbox_writer_while_draining": writer_while_draining,
            "outbox_after_drain": {"queued_trades": drained.queued_trades, "queued_bytes": drained.queued_bytes},
        });
        stages.stop().await?;
        report
    } else {
        let sandbox = start_sandbox(sandbox_listener).await;
        let mut stages = Stages::start(&args, &wdt_url, None)?;
        stages.wait_ready().await?;
        let before = stages.stats().await?;
        let queued_probe = {
            let url = stages.deliver_url.clone();
            let stop = Arc::new(AtomicBool::new(false));
            let peak = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
            let (stop2, peak2) = (stop.clone(), peak.clone());
            let task = tokio::spawn(async move {
                let channel =
                    lazy_channel(&url, ClientTimeouts::default(), &GrpcTls::default()).ok();
                while !stop2.load(Ordering::Relaxed) {
                    if let Some(channel) = &channel
                        && let Ok(stats) = DeliverClient::new(channel.clone())
                            .stats(StatsRequest {})
                            .await
                    {
                        let stats = stats.into_inner();
                        let mut peak = peak2.lock().unwrap();
                        if stats.queued_trades > peak.0 {
                            *peak = (stats.queued_trades, stats.queued_bytes, stats.disk_bytes);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
            (stop, peak, task)
        };
        let (tally, elapsed) =
            load(callback_url(&stages.http, scheme_id), &args, &run_id, None).await?;
        let after = stages.stats().await?;
        let delivered_during = sandbox.sandbox.trade_count();
        let calls = sandbox.sandbox.calls();
        let trades_per_call =
            calls.iter().map(|c| c.tids.len()).sum::<usize>() as f64 / calls.len().max(1) as f64;
        let accept_to_wdt =
            wait_delivered(&sandbox.sandbox, &tally.acked, Duration::from_secs(600)).await?;
        queued_probe.0.store(true, Ordering::Relaxed);
        let _ = queued_probe.2.await;
        let (peak_queued, peak_bytes, peak_disk) = *queued_probe.1.lock().unwrap();
        let report = json!({
            "mode": if args.rate.is_some() { "rate" } else { "concurrency" },
            "up": args.up,
            "scheme": scheme_label,
            "concurrency": args.concurrency,
            "rate": args.rate,
            "duration_s": elapsed.as_secs_f64(),
            "accepted": tally.acked.len(),
            "refused": tally.refused,
            "errors": tally.errors,
            "accepted_per_s": tally.acked.len() as f64 / elapsed.as_secs_f64(),
            "ack_latency_ms": percentiles_ms(tally.latencies_us.clone()),
            "delivered_per_s": delivered_during as f64 / elapsed.as_secs_f64(),
            "accept_to_wdt_ms": percentiles_ms(accept_to_wdt),
            "peak_rss_bytes": stages.peak_rss(),
            "outbox_peak_queued_trades": peak_queued,
            "outbox_payload_bytes_per_queued_trade": if peak_queued > 0 { peak_bytes as f64 / peak_queued as f64 } else { 0.0 },
            "outbox_disk_bytes_per_queued_trade": if peak_queued > 0 { peak_disk as f64 / peak_queued as f64 } else { 0.0 },
            "disk_flushes_per_s": (after.flushes - before.flushes) as f64 / elapsed.as_secs_f64(),
            "callbacks_per_flush": tally.acked.len() as f64 / (after.flushes - before.flushes).max(1) as f64,
            "outbox_writer": writer_load(&before, &after, elapsed),
            "trades_per_wdt_call": trades_per_call,
        });
        stages.stop().await?;
        report
    };
    print_report(&report, args.json)
}

/// How loaded deliver's outbox writer was between two stats readings `elapsed` apart: the
/// share of the time it was committing, and the share of that spent in fsync.
fn writer_load(before: &StatsResponse, after: &StatsResponse, elapsed: Duration) -> Value {
    let busy_us = after.writer_busy_us.saturating_sub(before.writer_busy_us) as f64;
    let flush_us = after.writer_flush_us.saturating_sub(before.writer_flush_us) as f64;
    json!({
        "busy_share": busy_us / (elapsed.as_micros().max(1) as f64),
        "fsync_share_of_busy": if busy_us > 0.0 { flush_us / busy_us } else { 0.0 },
        "flushes": after.flushes.saturating_sub(before.flushes),
    })
}

async fn eventually_empty(stages: &Stages) -> anyhow::Result<StatsResponse> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = stages.stats().await?;
        if stats.queued_trades == 0 || Instant::now() > deadline {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn writer(load: &Value) -> String {
    let share = |key: &str| load[key].as_f64().unwrap_or(0.0) * 100.0;
    format!(
        "busy {:.0}% of the time, {:.0}% of that in fsync",
        share("busy_share"),
        share("fsync_share_of_busy")
    )
}

fn mib(value: &Value) -> String {
    value.as_u64().map_or("-".to_owned(), |b| {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    })
}
