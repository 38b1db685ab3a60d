//! The `ingest` binary: parse settings, start tracing, bind, serve until SIGINT/SIGTERM.

use clap::Parser;
use wdtpipe_ingest::cli::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wdtpipe_common::telemetry::init(args.log_format());
    let config = args.into_config()?;
    let http = tokio::net::TcpListener::bind(config.http_addr).await?;
    let grpc = tokio::net::TcpListener::bind(config.grpc_addr).await?;
    wdtpipe_ingest::serve(
        config,
        http,
        grpc,
        wdtpipe_common::shutdown::shutdown_signal(),
    )
    .await?;
    Ok(())
}
