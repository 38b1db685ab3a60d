//! The `deliver` binary: parse settings, start tracing, bind, serve until SIGINT/SIGTERM.

use clap::Parser;
use wdtpipe_deliver::cli::Args;

// The system allocator, unlike the other services: with mimalloc, sled's allocation pattern
// held 20–40 MB more resident memory (BENCHMARKS.md), more than the drain speed it bought.
fn main() -> anyhow::Result<()> {
    wdtpipe_common::runtime::build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    wdtpipe_common::telemetry::init(args.log_format());
    let config = args.into_config()?;
    let listeners = wdtpipe_deliver::Listeners::bind(config.grpc_addr, config.metrics_addr).await?;
    wdtpipe_deliver::serve(
        config,
        listeners,
        wdtpipe_common::shutdown::shutdown_signal(),
    )
    .await?;
    Ok(())
}
