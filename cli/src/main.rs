//! `wdtpipe`: run the whole pipeline (`up`), send a callback (`send`), ask where a tid is
//! (`status`).

use clap::Parser;
use wdtpipe::Cli;

// Under load glibc's malloc took about a quarter of the CPU (perf: `_int_malloc`,
// `malloc_consolidate`, `unlink_chunk`); mimalloc's per-thread free lists avoid that. See
// BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    wdtpipe_common::runtime::with_threads(cli.worker_threads())?.block_on(wdtpipe::run(cli))
}
