//! `wdtpipe`: run the whole pipeline (`up`), send a callback (`send`), ask where a tid is
//! (`status`).

use clap::Parser;
use wdtpipe::Cli;

// Under load glibc's malloc took about a quarter of the CPU (perf: `_int_malloc`,
// `malloc_consolidate`, `unlink_chunk`); mimalloc's per-thread free lists avoid that. See
// BENCHMARKS.md (deliver keeps the system allocator: see its main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread: tokio's current-thread scheduler (see `wdtpipe_common::runtime`).
    let mut runtime = match cli.worker_threads() {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(threads);
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all().build()?.block_on(wdtpipe::run(cli))
}
