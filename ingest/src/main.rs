//! The `ingest` binary: parse settings, start tracing, bind, serve until SIGINT/SIGTERM.

use wdtpipe_ingest::cli::Args;

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
