//! The `wdtpipe` command line. Each subcommand lives in its own module; this one parses
//! and dispatches.

pub mod bench;
mod bench_client;
pub mod dlq;
pub mod outbox;
pub mod queue;
pub mod scheme;
pub mod scheme_preview;
pub mod scheme_test;
pub mod send;
pub mod status;
pub mod target;
pub mod up;

use wdtpipe_common::telemetry::{self, LogFormat};

/// wdt-pipeline: relays order/stockout callbacks into WDT Enterprise's trade_push.php.
#[derive(Debug, clap::Parser)]
#[command(name = "wdtpipe", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run every stage in one process (over gRPC on loopback), plus the WDT sandbox unless
    /// WDT_URL is set.
    Up(Box<up::UpArgs>),
    /// POST a callback file to a running ingest.
    Send(send::SendArgs),
    /// Show where a tid stands in deliver: queued, delivered or dead, with every attempt.
    Status(status::StatusArgs),
    /// Measure the pipeline: durable callbacks/s, latencies, delivery rate, memory, disk.
    Bench(bench::BenchArgs),
    /// The queue per shop across every deliver shard (`--watch` refreshes in place).
    Queue(queue::QueueArgs),
    /// The dead-letter store: list, replay, discard or remap.
    Dlq(dlq::DlqArgs),
    /// Take waiting trades of a shop (or one tid) out of the queue into the dead-letter store.
    Purge(PurgeArgs),
    /// Make a paused or backing-off shop call WDT now (and probe its unreachable account now).
    Resume(ResumeArgs),
    /// Integration schemes: the ones a running transform serves.
    Scheme(scheme::SchemeArgs),
    /// An outbox on disk (no deliver running on it): check, export, import.
    Outbox(outbox::OutboxArgs),
}

#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    #[arg(long, required_unless_present = "tid")]
    pub shop: Option<String>,
    #[arg(long)]
    pub tid: Option<String>,
    #[command(flatten)]
    pub target: target::DeliverTarget,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The shop.
    pub shop: String,
    /// Its WDT account [default: default].
    #[arg(long, default_value = "")]
    pub connector: String,
    #[command(flatten)]
    pub target: target::DeliverTarget,
}

/// `wdtpipe resume SHOP`: `Deliver.Resume` on every shard (the one holding the shop acts).
async fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let mut resumed = Vec::new();
    for (url, mut client) in args.target.clients()? {
        let answer = client
            .resume(wdtpipe_proto::v1::ResumeRequest {
                shop_no: args.shop.clone(),
                connector: args.connector.clone(),
            })
            .await
            .map_err(|status| anyhow::anyhow!("deliver at {url}: {}", status.message()))?
            .into_inner();
        if answer.resumed {
            resumed.push(answer.message);
        }
    }
    if resumed.is_empty() {
        println!("shop {} was not waiting", args.shop);
    } else {
        println!("{}", resumed.join("\n"));
    }
    Ok(())
}

async fn purge(args: PurgeArgs) -> anyhow::Result<()> {
    let mut purged = 0;
    for (url, mut client) in args.target.clients()? {
        let answer = client
            .purge(wdtpipe_proto::v1::PurgeRequest {
                shop_no: args.shop.clone().unwrap_or_default(),
                tid: args.tid.clone().unwrap_or_default(),
            })
            .await
            .map_err(|status| anyhow::anyhow!("deliver at {url}: {}", status.message()))?
            .into_inner();
        purged += answer.purged;
    }
    println!("purged {purged} waiting trade(s) into the dead-letter store");
    Ok(())
}

impl Cli {
    /// Async runtime threads the command asks for; `None` is tokio's default (one per core).
    pub fn worker_threads(&self) -> Option<usize> {
        match &self.command {
            Command::Bench(args) if args.threads > 0 => Some(args.threads),
            _ => None,
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.log_format;
    match cli.command {
        Command::Up(args) => {
            telemetry::init(format);
            up::run(*args).await
        }
        Command::Send(args) => send::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Queue(args) => queue::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Dlq(args) => dlq::run(args).await,
        Command::Purge(args) => purge(args).await,
        Command::Resume(args) => resume(args).await,
        Command::Scheme(args) => scheme::run(args).await,
        Command::Outbox(args) => outbox::run(args),
    }
}
