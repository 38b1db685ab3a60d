//! The `transform` binary: parse settings, start tracing, bind, serve until SIGINT/SIGTERM.

use clap::Parser;
use wdtpipe_transform::cli::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wdtpipe_common::telemetry::init(args.log_format());
    let config = args.into_config()?;
    let listeners =
        wdtpipe_transform::Listeners::bind(config.grpc_addr, config.metrics_addr).await?;
    wdtpipe_transform::serve(
        config,
        listeners,
        wdtpipe_common::shutdown::shutdown_signal(),
    )
    .await?;
    Ok(())
}
