//! The `wdtpipe` command line. Each subcommand lives in its own module; this one parses
//! and dispatches.

pub mod dlq;
pub mod send;
pub mod status;
pub mod up;

use wdtpipe_common::telemetry::{self, LogFormat};

/// wdt-pipeline: relays order/stockout callbacks into WDT Enterprise's trade_push.php.
#[derive(Debug, clap::Parser)]
#[command(name = "wdtpipe", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: text or json.
    #[arg(long, global = true, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
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
    /// The dead-letter store: list, replay or discard.
    Dlq(dlq::DlqArgs),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = LogFormat::from_name(&cli.log_format).unwrap_or_default();
    match cli.command {
        Command::Up(args) => {
            telemetry::init(format);
            up::run(*args).await
        }
        Command::Send(args) => send::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Dlq(args) => dlq::run(args).await,
    }
}
