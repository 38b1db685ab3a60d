//! `wdtpipe`: run the whole pipeline (`up`), send a callback (`send`), ask where a tid is
//! (`status`).

use clap::Parser;
use wdtpipe::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    wdtpipe::run(cli).await
}
