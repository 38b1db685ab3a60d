//! `wdt-sandbox`: the WDT `trade_push.php` simulator as a standalone server.

use clap::Parser;
use wdtpipe_common::telemetry::{self, LogFormat};
use wdtpipe_sandbox::{Cli, Sandbox, serve};

// Under load glibc's malloc took about a quarter of the CPU (perf: `_int_malloc`,
// `malloc_consolidate`, `unlink_chunk`); mimalloc's per-thread free lists avoid that. See
// BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    wdtpipe_common::runtime::build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
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
