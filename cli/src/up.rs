//! `wdtpipe up`: every stage in one process, each on its own loopback gRPC port exactly as
//! when deployed apart, plus the WDT sandbox when no `WDT_URL` is given.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpListener;
use wdtpipe_common::config::Secret;
use wdtpipe_common::shutdown::Stop;
use wdtpipe_deliver::cli::WdtArgs;
use wdtpipe_deliver::config::DeliverConfig;
use wdtpipe_ingest::config::IngestConfig;
use wdtpipe_sandbox::{Sandbox, SandboxConfig};
use wdtpipe_transform::config::TransformConfig;
use wdtpipe_transform::scheme::Scheme;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// HTTP address for callbacks.
    #[arg(long, env = "INGEST_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Ingest gRPC address.
    #[arg(long, env = "INGEST_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub ingest_grpc_addr: SocketAddr,
    /// Transform gRPC address.
    #[arg(long, env = "TRANSFORM_GRPC_ADDR", default_value = "127.0.0.1:50052")]
    pub transform_grpc_addr: SocketAddr,
    /// Deliver gRPC address.
    #[arg(long, env = "DELIVER_GRPC_ADDR", default_value = "127.0.0.1:50053")]
    pub deliver_grpc_addr: SocketAddr,
    /// Transform's Prometheus /metrics address.
    #[arg(long, env = "TRANSFORM_METRICS_ADDR", default_value = "127.0.0.1:9102")]
    pub transform_metrics_addr: SocketAddr,
    /// Deliver's Prometheus /metrics address.
    #[arg(long, env = "DELIVER_METRICS_ADDR", default_value = "127.0.0.1:9103")]
    pub deliver_metrics_addr: SocketAddr,
    /// WDT sandbox address (used only when WDT_URL is not set).
    #[arg(long, env = "SANDBOX_ADDR", default_value = "127.0.0.1:8090")]
    pub sandbox_addr: SocketAddr,
    /// Data directory; the outbox lives in `<DATA_DIR>/outbox`.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Target WDT shop for every trade (default: each record's shop_no).
    #[arg(long, env = "WDT_SHOP_NO")]
    pub shop_no: Option<String>,
    /// Standard Webhooks secrets (whsec_…), comma-separated; callbacks must be signed when set.
    #[arg(
        long,
        env = "INGEST_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhook_secrets: Vec<String>,
    #[command(flatten)]
    pub wdt: WdtArgs,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for {what} (set its address flag or variable)")
    })
}

fn addr_of(listener: &TcpListener) -> anyhow::Result<SocketAddr> {
    Ok(listener.local_addr()?)
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let http = bind(args.http_addr, "ingest HTTP").await?;
    let ingest_grpc = bind(args.ingest_grpc_addr, "ingest gRPC").await?;
    let transform_grpc = bind(args.transform_grpc_addr, "transform gRPC").await?;
    let deliver_grpc = bind(args.deliver_grpc_addr, "deliver gRPC").await?;
    let transform_metrics = bind(args.transform_metrics_addr, "transform metrics").await?;
    let deliver_metrics = bind(args.deliver_metrics_addr, "deliver metrics").await?;
    let (transform_metrics_addr, deliver_metrics_addr) =
        (addr_of(&transform_metrics)?, addr_of(&deliver_metrics)?);
    let (http_addr, ingest_addr) = (addr_of(&http)?, addr_of(&ingest_grpc)?);
    let (transform_addr, deliver_addr) = (addr_of(&transform_grpc)?, addr_of(&deliver_grpc)?);

    let (trigger, stop) = Stop::manual();
    let stopped = || stop.stopped();

    let mut deliver = DeliverConfig {
        grpc_addr: deliver_addr,
        data_dir: args.data_dir.clone(),
        ..DeliverConfig::default()
    };
    args.wdt.apply(&mut deliver);
    let mut tasks = tokio::task::JoinSet::new();
    let sandbox_line = if deliver.wdt.url.is_empty() {
        let defaults = SandboxConfig::default();
        let sandbox_config = SandboxConfig {
            sid: non_empty_or(&deliver.wdt.sid, &defaults.sid),
            appkey: non_empty_or(&deliver.wdt.appkey, &defaults.appkey),
            appsecret: non_empty_or(deliver.wdt.appsecret.expose(), &defaults.appsecret),
            ..defaults
        };
        deliver.wdt.sid.clone_from(&sandbox_config.sid);
        deliver.wdt.appkey.clone_from(&sandbox_config.appkey);
        deliver.wdt.appsecret = sandbox_config.appsecret.clone().into();
        let listener = bind(args.sandbox_addr, "the WDT sandbox").await?;
        let sandbox_addr = addr_of(&listener)?;
        deliver.wdt.url = format!("http://{sandbox_addr}/openapi2");
        let shutdown = stopped();
        tasks.spawn(async move {
            wdtpipe_sandbox::serve(Sandbox::new(sandbox_config), listener, shutdown)
                .await
                .context("sandbox")
        });
        format!(
            "{} (sandbox; see what it accepted at http://{sandbox_addr}/sandbox/trades)",
            deliver.wdt.url
        )
    } else {
        format!("{} (sid {})", deliver.wdt.url, deliver.wdt.sid)
    };
    deliver.validate()?;

    let transform = TransformConfig {
        grpc_addr: transform_addr,
        metrics_addr: Some(transform_metrics_addr),
        deliver_urls: vec![format!("http://{deliver_addr}")],
        scheme: Scheme::with_shop(args.shop_no.clone()),
        ..TransformConfig::default()
    };
    let ingest = IngestConfig {
        http_addr,
        grpc_addr: ingest_addr,
        transform_url: format!("http://{transform_addr}"),
        webhook_secrets: args
            .webhook_secrets
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Secret::new(s.trim()))
            .collect(),
        ..IngestConfig::default()
    };
    let signatures = match ingest.webhook_secrets.len() {
        0 => "off (set INGEST_WEBHOOK_SECRETS to require Standard Webhooks signatures)".to_owned(),
        n => format!("ON ({n} secret(s); unsigned callbacks get 401)"),
    };
    let outbox_dir = deliver.data_dir.join("outbox");

    let shutdown = stopped();
    tasks.spawn(async move {
        wdtpipe_deliver::serve(
            deliver,
            wdtpipe_deliver::Listeners {
                grpc: deliver_grpc,
                metrics: Some(deliver_metrics),
            },
            shutdown,
        )
        .await
        .context("deliver")
    });
    let shutdown = stopped();
    tasks.spawn(async move {
        wdtpipe_transform::serve(
            transform,
            wdtpipe_transform::Listeners {
                grpc: transform_grpc,
                metrics: Some(transform_metrics),
            },
            shutdown,
        )
        .await
        .context("transform")
    });
    let shutdown = stopped();
    tasks.spawn(async move {
        wdtpipe_ingest::serve(ingest, http, ingest_grpc, shutdown)
            .await
            .context("ingest")
    });

    println!(
        "wdt-pipeline is up\n\
                  \x20 callbacks    POST http://{http_addr}/v1/callback   (health: /healthz, metrics: /metrics)\n\
         \x20 ingest gRPC  {ingest_addr}\n\
                  \x20 transform    {transform_addr}   (metrics: http://{transform_metrics_addr}/metrics)\n\
                  \x20 deliver      {deliver_addr}   (outbox: {}, metrics: http://{deliver_metrics_addr}/metrics)\n\
         \x20 WDT          {sandbox_line}\n\
         \x20 target shop  {}\n\
         \x20 sender signatures  {signatures}\n\
         try:\n\
         \x20 curl -sS -X POST http://{http_addr}/v1/callback -H 'Content-Type: application/json' --data-binary @tests/fixtures/callbacks/01-basic.json\n\
         \x20 cargo run -q -p wdtpipe -- status T0001 --deliver http://{deliver_addr}\n\
         Ctrl-C stops every stage (in-flight requests finish, the outbox is flushed).",
        outbox_dir.display(),
        args.shop_no.as_deref().unwrap_or("each record's shop_no"),
    );

    let mut first_error = None;
    tokio::select! {
        () = wdtpipe_common::shutdown::shutdown_signal() => {}
        Some(result) = tasks.join_next() => {
            // A stage stopped on its own: that is a failure; stop the others.
            first_error = Some(flatten(result).err().unwrap_or_else(|| anyhow::anyhow!("a stage stopped unexpectedly")));
        }
    }
    trigger.stop();
    while let Some(result) = tasks.join_next().await {
        if let Err(error) = flatten(result) {
            tracing::error!(error = format!("{error:#}"), "stage failed");
            first_error.get_or_insert(error);
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn flatten(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    result.map_err(anyhow::Error::from).and_then(|r| r)
}

fn non_empty_or(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_owned()
}
