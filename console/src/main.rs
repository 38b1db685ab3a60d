//! The `console` binary: parse settings, start tracing, bind, serve until SIGINT/SIGTERM.

use wdtpipe_console::cli::Args;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    wdtpipe_common::runtime::build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse_process();
    wdtpipe_common::telemetry::init(args.shared.log_format);
    let Some(config) = args.into_config()? else {
        anyhow::bail!("CONSOLE_ADDR is off: nothing to serve");
    };
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    wdtpipe_console::serve(
        config,
        listener,
        wdtpipe_common::shutdown::shutdown_signal(),
    )
    .await?;
    Ok(())
}
