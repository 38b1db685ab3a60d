//! The `transform` binary: parse settings, start tracing, bind, serve until SIGINT/SIGTERM.

use wdtpipe_transform::cli::Args;

// Under load glibc's malloc took about a quarter of the CPU (perf: `_int_malloc`,
// `malloc_consolidate`, `unlink_chunk`); mimalloc's per-thread free lists avoid that. See
// BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    wdtpipe_common::runtime::build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse_process();
    wdtpipe_common::telemetry::init(args.shared.log_format);
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
