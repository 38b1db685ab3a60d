//! The `deliver` binary: parse settings, start tracing, bind, serve until SIGINT/SIGTERM.

use wdtpipe_deliver::cli::Args;

// mimalloc, as in the other services. glibc's malloc and free were about a fifth of deliver's
// CPU (sled copies and frees tree nodes on every write). mimalloc holds more resident memory:
// about 52–59 MB at 64 senders against glibc's 43 MB, inside the 64 MB budget since the sled
// cache went down to 6 MiB. BENCHMARKS.md has the alternated runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    wdtpipe_common::runtime::build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse_process();
    wdtpipe_common::telemetry::init(args.shared.log_format);
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
