//! `wdtpipe bench`: drives callbacks through the real HTTP endpoint and measures the
//! pipeline — durable callbacks per second, ack latency, delivery rate, accept→WDT latency,
//! each service's peak RSS, outbox bytes per queued trade, disk flushes per second and how
//! busy deliver's single outbox writer was.
//!
//! By default it starts `ingest`, `transform` and `deliver` as separate processes (the
//! binaries next to `wdtpipe`, so each one's memory can be read from `/proc`) and the WDT
//! sandbox inside itself; `--target` points it at a running ingest instead. `--backlog N`
//! accepts N trades with WDT down, then starts the sandbox and measures the drain.

use crate::bench_client::Poster;
use anyhow::{Context, bail};
use serde_json::{Value, json};
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
const TEMPLATE: &str = include_str!("../../tests/fixtures/callbacks/01-basic.json");

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

/// A service process the bench started; killed if still running when dropped.
struct Service {
    name: &'static str,
    child: Child,
}

impl Service {
    fn start(
        bin_dir: &Path,
        name: &'static str,
        threads: usize,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let path = bin_dir.join(name);
        let mut command = Command::new(&path);
        if threads > 0 {
            command.env("TOKIO_WORKER_THREADS", threads.to_string());
        }
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release)",
                path.display()
            )
        })?;
        Ok(Self { name, child })
    }

    /// Fails if the service has already exited (its own error is on stderr, above).
    fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!(
                "{} exited during startup ({status}); its error is above",
                self.name
            ),
            None => Ok(()),
        }
    }

    /// Peak resident memory so far (`VmHWM`), in bytes.
    fn peak_rss(&self) -> Option<u64> {
        proc_kib(self.child.id(), "VmHWM:").map(|kib| kib * 1024)
    }

    /// Restarts the peak counter (Linux `clear_refs` 5).
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Sends SIGTERM and waits for the service to exit. The wait yields to the runtime: a
    /// service drains its connections before exiting, and the bench's own gRPC connections
    /// to it must be able to answer that (on the one-thread runtime, a blocking wait would
    /// hold them until the deadline).
    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status}", self.name);
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("{} did not stop within 30 s of SIGTERM", self.name)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The three stages as processes, wired over loopback, deliver pointing at `wdt_url`.
struct Stages {
    ingest: Service,
    transform: Service,
    deliver: Service,
    http: String,
    deliver_url: String,
    /// The gRPC addresses of transform and deliver, checked at startup.
    grpc: [SocketAddr; 2],
    _temp: Option<tempfile::TempDir>,
}

impl Stages {
    /// `retry_cap_ms` bounds deliver's backoff (the backlog run uses a short one, so the
    /// drain starts soon after WDT is back instead of at the next retry up to 5 min later).
    fn start(args: &BenchArgs, wdt_url: &str, retry_cap_ms: Option<u64>) -> anyhow::Result<Self> {
        let bin_dir = match &args.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("executable has a directory")?
                .to_path_buf(),
        };
        let (temp, data_dir) = match &args.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir()?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let sandbox = SandboxConfig::default();
        let config_file = data_dir.with_extension("deliver.toml");
        let mut deliver_env = Vec::new();
        if let Some(cap) = retry_cap_ms {
            std::fs::write(&config_file, format!("[retry]\ncap_ms = {cap}\n"))?;
            deliver_env.push(("DELIVER_CONFIG", config_file.display().to_string()));
        }
        let (http, ingest_grpc, transform_grpc, deliver_grpc) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let deliver = Service::start(
            &bin_dir,
            "deliver",
            args.threads,
            &[
                ("DELIVER_GRPC_ADDR", deliver_grpc.to_string()),
                ("DELIVER_METRICS_ADDR", "off".into()),
                ("DATA_DIR", data_dir.display().to_string()),
                ("WDT_URL", wdt_url.to_owned()),
                ("WDT_SID", sandbox.sid.clone()),
                ("WDT_APPKEY", sandbox.appkey.clone()),
                ("WDT_APPSECRET", sandbox.appsecret.clone()),
            ]
            .into_iter()
            .chain(deliver_env)
            .collect::<Vec<_>>(),
        )?;
        let mut transform_env = vec![
            ("TRANSFORM_GRPC_ADDR", transform_grpc.to_string()),
            ("TRANSFORM_METRICS_ADDR", "off".into()),
            ("DELIVER_URL", format!("http://{deliver_grpc}")),
        ];
        if let Some(scheme) = &args.scheme {
            // The scheme alone in a directory of its own.
            let dir = data_dir.with_extension("schemes");
            std::fs::create_dir_all(&dir)?;
            std::fs::copy(scheme, dir.join("bench.toml"))
                .with_context(|| format!("cannot copy {}", scheme.display()))?;
            transform_env.push(("SCHEMES_DIR", dir.display().to_string()));
        }
        let transform = Service::start(&bin_dir, "transform", args.threads, &transform_env)?;
        let ingest = Service::start(
            &bin_dir,
            "ingest",
            args.threads,
            &[
                ("INGEST_HTTP_ADDR", http.to_string()),
                ("INGEST_GRPC_ADDR", ingest_grpc.to_string()),
                ("TRANSFORM_URL", format!("http://{transform_grpc}")),
            ],
        )?;
        Ok(Self {
            ingest,
            transform,
            deliver,
            http: format!("http://{http}"),
            deliver_url: format!("http://{deliver_grpc}"),
            grpc: [transform_grpc, deliver_grpc],
            _temp: temp,
        })
    }

    /// Waits until every stage listens and ingest answers `/healthz`, so that the first
    /// callbacks and stats calls find the whole pipeline up. Fails at once, naming it, if a
    /// service exits while starting (a port taken, a bad setting).
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for service in [&mut self.ingest, &mut self.transform, &mut self.deliver] {
                service.check_running()?;
            }
            if self.listening().await
                && reqwest::get(format!("{}/healthz", self.http))
                    .await
                    .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the pipeline did not come up within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether transform and deliver accept connections (a request then waits for them).
    async fn listening(&self) -> bool {
        for addr in self.grpc {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return false;
            }
        }
        true
    }

    fn peak_rss(&self) -> Value {
        json!({
            "ingest": self.ingest.peak_rss(),
            "transform": self.transform.peak_rss(),
            "deliver": self.deliver.peak_rss(),
        })
    }

    fn reset_peaks(&self) {
        for service in [&self.ingest, &self.transform, &self.deliver] {
            service.reset_peak();
        }
    }

    async fn stats(&self) -> anyhow::Result<StatsResponse> {
        let channel = lazy_channel(
            &self.deliver_url,
            ClientTimeouts::default(),
            &GrpcTls::default(),
        )?;
        Ok(DeliverClient::new(channel)
            .stats(StatsRequest {})
            .await?
            .into_inner())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.ingest.stop().await?;
        self.transform.stop().await?;
        self.deliver.stop().await
    }
}

/// The sandbox inside the bench process.
struct RunningSandbox {
    sandbox: Sandbox,
    _stop: oneshot::Sender<()>,
}

async fn start_sandbox(listener: tokio::net::TcpListener) -> RunningSandbox {
    let sandbox = Sandbox::new(SandboxConfig {
        lean: true,
        ..SandboxConfig::default()
    });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(wdtpipe_sandbox::serve(
        sandbox.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    RunningSandbox {
        sandbox,
        _stop: stop,
    }
}

/// What the senders saw.
#[derive(Default)]
struct Tally {
    /// Ack latency of every accepted callback, in microseconds.
    latencies_us: Vec<u32>,
    /// (tid, Unix ms of the ack) of every accepted callback.
    acked: Vec<(String, i64)>,
    refused: u64,
    errors: u64,
}

/// Sends callbacks to `url` until `stop`, or until `limit` were accepted.
async fn load(
    url: String,
    args: &BenchArgs,
    run: &str,
    limit: Option<u64>,
) -> anyhow::Result<(Tally, Duration)> {
    let template: Value = serde_json::from_str(TEMPLATE)?;
    let mut record = template;
    record["tid"] = "@TID@".into();
    record["src_tids"] = "@TID@".into();
    for (i, line) in record["details_list"]
        .as_array_mut()
        .context("details")?
        .iter_mut()
        .enumerate()
    {
        line["src_tid"] = "@TID@".into();
        line["src_oid"] = format!("@TID@-{}", i + 1).into();
    }
    let template = Arc::new(serde_json::to_string(&record)?);
    let client = Arc::new(Poster::new(&url, args.concurrency.max(1) * 2)?);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let accepted = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);

    let send_one = {
        let (client, template, tally, accepted) = (
            client.clone(),
            template.clone(),
            tally.clone(),
            accepted.clone(),
        );
        move |tid: String| {
            let (client, template, tally, accepted) = (
                client.clone(),
                template.clone(),
                tally.clone(),
                accepted.clone(),
            );
            async move {
                let body = template.replace("@TID@", &tid);
                let began = Instant::now();
                let answer = client.post_json(body).await;
                let elapsed = began.elapsed();
                let mut tally = tally.lock().unwrap();
                match answer {
                    Ok(status) if (200..300).contains(&status) => {
                        tally
                            .latencies_us
                            .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
                        tally.acked.push((tid, wdtpipe_common::now_ms()));
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => tally.refused += 1,
                    Err(_) => tally.errors += 1,
                }
            }
        }
    };

    let progress = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = accepted.load(Ordering::Relaxed);
                eprint!(
                    "\r  {:>5.1}s  accepted {:>9}  ({:>6}/s)   ",
                    started.elapsed().as_secs_f64(),
                    now,
                    now - last
                );
                last = now;
            }
            eprintln!();
        })
    };

    let done = move |accepted: &AtomicU64| match limit {
        Some(limit) => accepted.load(Ordering::Relaxed) >= limit,
        None => Instant::now() >= deadline,
    };
    let mut tasks = tokio::task::JoinSet::new();
    match args.rate.filter(|_| limit.is_none()) {
        None => {
            for worker in 0..args.concurrency.max(1) {
                let (send_one, accepted, sent, run) = (
                    send_one.clone(),
                    accepted.clone(),
                    sent.clone(),
                    run.to_owned(),
                );
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while !done(&accepted) {
                        if limit.is_some_and(|l| sent.fetch_add(1, Ordering::Relaxed) >= l + 64) {
                            break;
                        }
                        n += 1;
                        send_one(format!("{run}-{worker}-{n}")).await;
                    }
                });
            }
        }
        Some(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0u64;
            while !done(&accepted) {
                ticker.tick().await;
                n += 1;
                tasks.spawn(send_one(format!("{run}-r-{n}")));
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    Ok((tally, elapsed))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[index]) / 1000.0
}

fn percentiles_ms(mut values: Vec<u32>) -> Value {
    values.sort_unstable();
    json!({
        "p50": percentile(&values, 0.50),
        "p99": percentile(&values, 0.99),
        "p99.9": percentile(&values, 0.999),
        "max": percentile(&values, 1.0),
    })
}

/// Waits until the sandbox holds every acked tid; returns the accept→WDT latencies (ms ×
/// 1000, as µs) and when the last one arrived.
async fn wait_delivered(
    sandbox: &Sandbox,
    acked: &[(String, i64)],
    limit: Duration,
) -> anyhow::Result<Vec<u32>> {
    let deadline = Instant::now() + limit;
    loop {
        // Count cheaply while waiting; copy the trades out once, at the end.
        if sandbox.trade_count() >= acked.len() {
            let accepted = sandbox.first_accepted();
            let first: std::collections::HashMap<&str, i64> = accepted
                .iter()
                .map(|(tid, at)| (tid.as_str(), *at))
                .collect();
            let mut latencies = Vec::with_capacity(acked.len());
            let mut missing = 0;
            for (tid, acked_at) in acked {
                match first.get(tid.as_str()) {
                    Some(at) => {
                        latencies.push(((at - acked_at).max(0) * 1000).min(u32::MAX as i64) as u32)
                    }
                    None => missing += 1,
                }
            }
            if missing == 0 {
                return Ok(latencies);
            }
        }
        if Instant::now() > deadline {
            let delivered = sandbox.trade_count().min(acked.len());
            bail!(
                "{} of {} acknowledged callbacks not delivered in time",
                acked.len() - delivered,
                acked.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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

fn print_report(report: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let f = |key: &str| {
        report
            .get(key)
            .and_then(Value::as_f64)
            .map_or("-".to_owned(), |v| format!("{v:.1}"))
    };
    let pct = |key: &str| {
        let p = &report[key];
        format!(
            "p50 {} ms, p99 {} ms, p99.9 {} ms",
            p["p50"].as_f64().map_or("-".into(), |v| format!("{v:.2}")),
            p["p99"].as_f64().map_or("-".into(), |v| format!("{v:.2}")),
            p["p99.9"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.2}")),
        )
    };
    let rss = |key: &str| {
        let r = &report[key];
        format!(
            "ingest {}, transform {}, deliver {}",
            mib(&r["ingest"]),
            mib(&r["transform"]),
            mib(&r["deliver"])
        )
    };
    println!(
        "wdtpipe bench ({}, scheme {})",
        report["mode"].as_str().unwrap_or("-"),
        report["scheme"].as_str().unwrap_or("-")
    );
    println!(
        "  accepted callbacks        {} in {} s",
        report["accepted"],
        f(if report["mode"] == "backlog" {
            "accept_s"
        } else {
            "duration_s"
        })
    );
    println!("  accepted / s              {}", f("accepted_per_s"));
    println!("  ack latency               {}", pct("ack_latency_ms"));
    if report["mode"] == "backlog" {
        println!(
            "  outbox payload / trade    {} bytes",
            f("outbox_payload_bytes_per_trade")
        );
        println!(
            "  outbox disk / trade       {} bytes",
            f("outbox_disk_bytes_per_trade")
        );
        println!(
            "  peak RSS accepting        {}",
            rss("peak_rss_bytes_while_accepting")
        );
        println!(
            "  drain                     {} s, {} trades/s",
            f("drain_s"),
            f("drained_per_s")
        );
        println!(
            "  peak RSS draining         {}",
            rss("peak_rss_bytes_while_draining")
        );
        println!(
            "  outbox writer draining    {}",
            writer(&report["outbox_writer_while_draining"])
        );
        println!(
            "  outbox after drain        {}",
            report["outbox_after_drain"]
        );
    } else if report["mode"] != "target" {
        println!("  delivered to WDT / s      {}", f("delivered_per_s"));
        println!("  accept → WDT latency      {}", pct("accept_to_wdt_ms"));
        println!("  peak RSS                  {}", rss("peak_rss_bytes"));
        println!(
            "  outbox payload / queued   {} bytes (peak {} queued)",
            f("outbox_payload_bytes_per_queued_trade"),
            report["outbox_peak_queued_trades"]
        );
        println!(
            "  outbox disk / queued      {} bytes",
            f("outbox_disk_bytes_per_queued_trade")
        );
        println!(
            "  disk flushes / s          {} ({} callbacks per flush)",
            f("disk_flushes_per_s"),
            f("callbacks_per_flush")
        );
        println!("  trades per WDT call       {}", f("trades_per_wdt_call"));
        println!(
            "  outbox writer             {}",
            writer(&report["outbox_writer"])
        );
    }
    if report["refused"].as_u64().unwrap_or(0) + report["errors"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  refused {}, errors {}",
            report["refused"], report["errors"]
        );
    }
    Ok(())
}
