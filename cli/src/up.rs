//! `wdtpipe up`: every stage in one process, each on its own loopback gRPC port exactly as
//! when deployed apart, plus the WDT sandbox when no `WDT_URL` is given. ingest, transform
//! and deliver each run on a current-thread runtime of their own thread, as each runs when
//! deployed alone (BENCHMARKS.md, ninth session: +7 % callbacks/s and a lower p99 than one
//! shared work-stealing runtime on two cores); the sandbox and the console share the main
//! runtime.

use anyhow::Context;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use wdtpipe_common::grpc::GrpcTls;
use wdtpipe_common::shutdown::Stop;
use wdtpipe_sandbox::{Sandbox, SandboxAccount, SandboxConfig};

/// `up` takes every setting of the three stages, declared once by each stage (flag,
/// environment variable and config file: `--ingest-config`/`INGEST_CONFIG`, …), and the
/// shared ones. Only the wiring between the stages is its own: transform is found at the
/// address it bound for `TRANSFORM_GRPC_ADDR`, deliver at `DELIVER_GRPC_ADDR`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub ingest: wdtpipe_ingest::cli::Settings,
    #[command(flatten)]
    pub transform: wdtpipe_transform::cli::Settings,
    #[command(flatten)]
    pub deliver: wdtpipe_deliver::cli::Settings,
    #[command(flatten)]
    pub console: wdtpipe_console::cli::Settings,
    #[command(flatten)]
    pub tls: GrpcTls,
    #[command(flatten)]
    pub connectors: wdtpipe_common::cli::ConnectorsArg,
    /// WDT sandbox address (used only when WDT_URL is not set).
    #[arg(long, env = "SANDBOX_ADDR", default_value = "127.0.0.1:8090")]
    pub sandbox_addr: SocketAddr,
    /// The sandbox keeps only counts and times of accepted trades, not their JSON (long
    /// runs and benchmarks: it otherwise holds every trade in memory, ~16 KB each).
    #[arg(long, env = "SANDBOX_LEAN")]
    pub sandbox_lean: bool,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for {what} (set its address flag or variable)")
    })
}

fn addr_of(listener: &TcpListener) -> anyhow::Result<SocketAddr> {
    Ok(listener.local_addr()?)
}

/// Binds an optional address (a metrics endpoint that may be `off`).
async fn bind_optional(
    addr: Option<SocketAddr>,
    what: &str,
) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(bind(addr, what).await?)),
        None => Ok(None),
    }
}

/// The URL of a bound metrics endpoint, or `off`.
fn metrics_url(listener: &Option<TcpListener>) -> anyhow::Result<String> {
    Ok(match listener {
        Some(listener) => format!("http://{}/metrics", addr_of(listener)?),
        None => "off".to_owned(),
    })
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        ingest,
        transform,
        deliver,
        console,
        tls,
        connectors,
        sandbox_addr,
        sandbox_lean,
    } = args;
    let audit_file_given = console.console_audit_file.is_some();
    let mut console = console.into_config(tls.clone())?;
    let mut ingest = ingest.into_config(tls.clone())?;
    let mut transform = transform.into_config(tls.clone())?;
    let mut deliver = deliver.into_config(tls)?;
    transform
        .connectors_file
        .clone_from(&connectors.connectors_file);
    let sandboxed = deliver.wdt.url.is_empty();
    if !sandboxed {
        deliver.load_connectors(connectors.connectors_file.as_deref())?;
    }

    let http = bind(ingest.http_addr, "ingest HTTP").await?;
    let ingest_grpc = bind(ingest.grpc_addr, "ingest gRPC").await?;
    let transform_grpc = bind(transform.grpc_addr, "transform gRPC").await?;
    let deliver_grpc = bind(deliver.grpc_addr, "deliver gRPC").await?;
    let transform_metrics = bind_optional(transform.metrics_addr, "transform metrics").await?;
    let deliver_metrics = bind_optional(deliver.metrics_addr, "deliver metrics").await?;
    let console_http = bind_optional(console.as_ref().map(|c| c.addr), "the console").await?;
    let (transform_metrics_url, deliver_metrics_url) = (
        metrics_url(&transform_metrics)?,
        metrics_url(&deliver_metrics)?,
    );
    let (http_addr, ingest_addr) = (addr_of(&http)?, addr_of(&ingest_grpc)?);
    let (transform_addr, deliver_addr) = (addr_of(&transform_grpc)?, addr_of(&deliver_grpc)?);

    // The wiring: each stage calls the next at the address it bound, over TLS when a CA is
    // configured (the URL's scheme is switched by the channel).
    let (trigger, stop) = Stop::manual();
    let stopped = || stop.stopped();
    (ingest.http_addr, ingest.grpc_addr) = (http_addr, ingest_addr);
    ingest.transform_url = format!("http://{transform_addr}");
    transform.grpc_addr = transform_addr;
    transform.deliver_urls = vec![format!("http://{deliver_addr}")];
    deliver.grpc_addr = deliver_addr;
    let console_line = match (&mut console, &console_http) {
        (Some(config), Some(listener)) => {
            let addr = addr_of(listener)?;
            config.addr = addr;
            config.transform_url = format!("http://{transform_addr}");
            config.deliver_urls = vec![format!("http://{deliver_addr}")];
            config.ingest_url = format!("http://{http_addr}");
            config.admin_token = deliver.admin_token.clone();
            if !audit_file_given {
                config.audit_file = deliver.data_dir.join("console-audit.jsonl");
            }
            let actions = if config.login_tokens_set() {
                "actions after a login with CONSOLE_TOKEN or ADMIN_TOKEN"
            } else {
                "read-only (set CONSOLE_TOKEN or ADMIN_TOKEN to act from it)"
            };
            format!("http://{addr}/   ({actions})")
        }
        _ => "off".to_owned(),
    };

    // SIGHUP reloads SCHEMES_DIR. Listen from now on, so a signal sent as soon as the
    // addresses are printed does not end the process before transform is listening for it.
    let _hangup = wdtpipe_transform::catalog::hangup_signal();
    let mut tasks = tokio::task::JoinSet::new();
    let sandbox_line = if sandboxed {
        let defaults = SandboxConfig::default();
        let listener = bind(sandbox_addr, "the WDT sandbox").await?;
        let sandbox_addr = addr_of(&listener)?;
        let url = format!("http://{sandbox_addr}/openapi2");
        // Every account of CONNECTORS_FILE gets a sandbox account of its own: its sid and
        // appkey, its secret from its appsecret_env or a made-up one.
        deliver.load_connectors_with(connectors.connectors_file.as_deref(), |name, entry| {
            Ok(std::env::var(&entry.appsecret_env)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("sandbox-secret-{name}")))
        })?;
        let mut accounts = Vec::new();
        for account in deliver.connectors.values_mut() {
            account.url.clone_from(&url);
            accounts.push(SandboxAccount {
                sid: account.sid.clone(),
                appkey: account.appkey.clone(),
                appsecret: account.appsecret.expose().to_owned(),
            });
        }
        let sandbox_config = SandboxConfig {
            sid: non_empty_or(&deliver.wdt.sid, &defaults.sid),
            appkey: non_empty_or(&deliver.wdt.appkey, &defaults.appkey),
            appsecret: non_empty_or(deliver.wdt.appsecret.expose(), &defaults.appsecret),
            accounts,
            lean: sandbox_lean,
            ..defaults
        };
        deliver.wdt.sid.clone_from(&sandbox_config.sid);
        deliver.wdt.appkey.clone_from(&sandbox_config.appkey);
        deliver.wdt.appsecret = sandbox_config.appsecret.clone().into();
        deliver.wdt.url.clone_from(&url);
        let shutdown = stopped();
        tasks.spawn(async move {
            wdtpipe_sandbox::serve(Sandbox::new(sandbox_config), listener, shutdown)
                .await
                .context("sandbox")
        });
        let others = if deliver.connectors.is_empty() {
            String::new()
        } else {
            format!(
                "; accounts {} too",
                deliver
                    .connectors
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "{url} (sandbox{others}; see what it accepted at http://{sandbox_addr}/sandbox/trades)"
        )
    } else {
        let mut line = format!("{} (sid {})", deliver.wdt.url, deliver.wdt.sid);
        for (name, account) in &deliver.connectors {
            line.push_str(&format!("; {name}: {} (sid {})", account.url, account.sid));
        }
        line
    };
    deliver.validate()?;

    let signatures = match ingest.webhook_secrets.len() {
        0 => "off (set INGEST_WEBHOOK_SECRETS to require Standard Webhooks signatures)".to_owned(),
        n => format!("ON ({n} secret(s); unsigned callbacks get 401)"),
    };
    let outbox_dir = deliver.data_dir.join("outbox");
    let target_shop = transform
        .scheme
        .shop_no
        .clone()
        .unwrap_or_else(|| "each record's shop_no".to_owned());
    let admin = if deliver.admin_token.is_empty() {
        "open (set ADMIN_TOKEN to require a token for dlq replay/discard/remap and purge)"
    } else {
        "ADMIN_TOKEN required for dlq replay/discard/remap and purge"
    };

    let shutdown = stopped();
    let (grpc, metrics) = (
        detach(deliver_grpc)?,
        deliver_metrics.map(detach).transpose()?,
    );
    on_own_runtime(&mut tasks, "deliver", move || async move {
        let listeners = wdtpipe_deliver::Listeners {
            grpc: attach(grpc)?,
            metrics: metrics.map(attach).transpose()?,
        };
        wdtpipe_deliver::serve(deliver, listeners, shutdown)
            .await
            .context("deliver")
    })?;
    let shutdown = stopped();
    let (grpc, metrics) = (
        detach(transform_grpc)?,
        transform_metrics.map(detach).transpose()?,
    );
    on_own_runtime(&mut tasks, "transform", move || async move {
        let listeners = wdtpipe_transform::Listeners {
            grpc: attach(grpc)?,
            metrics: metrics.map(attach).transpose()?,
        };
        wdtpipe_transform::serve(transform, listeners, shutdown)
            .await
            .context("transform")
    })?;
    let shutdown = stopped();
    let (http, grpc) = (detach(http)?, detach(ingest_grpc)?);
    on_own_runtime(&mut tasks, "ingest", move || async move {
        wdtpipe_ingest::serve(ingest, attach(http)?, attach(grpc)?, shutdown)
            .await
            .context("ingest")
    })?;
    if let (Some(config), Some(listener)) = (console, console_http) {
        let shutdown = stopped();
        tasks.spawn(async move {
            wdtpipe_console::serve(config, listener, shutdown)
                .await
                .context("console")
        });
    }

    println!(
        "wdt-pipeline is up\n\
                  \x20 callbacks    POST http://{http_addr}/v1/callback   (health: /healthz, metrics: /metrics)\n\
         \x20 ingest gRPC  {ingest_addr}\n\
                  \x20 transform    {transform_addr}   (metrics: {transform_metrics_url})\n\
                  \x20 deliver      {deliver_addr}   (outbox: {}, metrics: {deliver_metrics_url})\n\
         \x20 console      {console_line}\n\
         \x20 WDT          {sandbox_line}\n\
         \x20 target shop  {target_shop}\n\
         \x20 sender signatures  {signatures}\n\
         \x20 admin calls  {admin}\n\
         try:\n\
         \x20 curl -sS -X POST http://{http_addr}/v1/callback -H 'Content-Type: application/json' --data-binary @tests/fixtures/callbacks/01-basic.json\n\
         \x20 cargo run -q -p wdtpipe -- status T0001 --deliver http://{deliver_addr}\n\
         Ctrl-C stops every stage (in-flight requests finish, the outbox is flushed).",
        outbox_dir.display(),
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

/// A listener handed to a stage that runs on another runtime.
fn detach(listener: TcpListener) -> anyhow::Result<std::net::TcpListener> {
    Ok(listener.into_std()?)
}

/// The same listener, registered with the runtime of the thread it is used on.
fn attach(listener: std::net::TcpListener) -> anyhow::Result<TcpListener> {
    Ok(TcpListener::from_std(listener)?)
}

/// Runs a stage on a current-thread runtime of its own OS thread, as each stage runs when
/// deployed alone (the bench found that cheaper per stage than sharing one work-stealing
/// runtime on two cores); its result comes back through `tasks`.
fn on_own_runtime<F, Fut>(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    name: &'static str,
    stage: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(stage()));
            let _ = done.send(outcome);
        })?;
    tasks.spawn(async move {
        result
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the {name} thread ended without a result")))
    });
    Ok(())
}

fn flatten(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    result.map_err(anyhow::Error::from).and_then(|r| r)
}

fn non_empty_or(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_owned()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use std::collections::BTreeSet;
    use wdtpipe_common::cli::flags_and_envs;
    use wdtpipe_common::service::command;

    /// The settings `up` decides itself: where each stage finds the next.
    const WIRING: [&str; 3] = ["TRANSFORM_URL", "DELIVER_URL", "INGEST_URL"];

    /// Every setting of ingest, transform, deliver and the console (flag and environment variable) is
    /// taken by `wdtpipe up`, wiring aside: a setting added to a stage cannot be forgotten
    /// in `up` again.
    #[test]
    fn up_takes_every_setting_of_every_stage() {
        let stages: BTreeSet<(String, String)> = [
            command::<wdtpipe_ingest::cli::Args>(),
            command::<wdtpipe_transform::cli::Args>(),
            command::<wdtpipe_deliver::cli::Args>(),
            command::<wdtpipe_console::cli::Args>(),
        ]
        .iter()
        .flat_map(flags_and_envs)
        .filter(|(_, env)| !WIRING.contains(&env.as_str()))
        .collect();
        assert!(stages.len() > 20, "{stages:?}");
        let cli = crate::Cli::command();
        cli.clone().debug_assert();
        let up = cli.find_subcommand("up").expect("an up subcommand");
        let taken: BTreeSet<(String, String)> = flags_and_envs(up)
            .into_iter()
            .chain(flags_and_envs(&cli))
            .collect();
        let missing: Vec<_> = stages.difference(&taken).collect();
        assert!(missing.is_empty(), "`wdtpipe up` does not take {missing:?}");
    }
}
