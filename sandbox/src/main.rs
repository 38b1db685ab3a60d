//! `wdt-sandbox`: the WDT `trade_push.php` simulator as a standalone server.

use clap::Parser;
use wdtpipe_common::telemetry::{self, LogFormat};
use wdtpipe_sandbox::{Cli, Sandbox, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(LogFormat::Text);
    let listener = tokio::net::TcpListener::bind(&cli.addr).await?;
    let sandbox = Sandbox::new(cli.config());
    serve(
        sandbox,
        listener,
        wdtpipe_common::shutdown::shutdown_signal(),
    )
    .await?;
    Ok(())
}
