//! The async runtime every binary runs on.

/// Builds the runtime: tokio's work-stealing scheduler with `TOKIO_WORKER_THREADS` workers
/// (one per core when unset), or, when that is `1`, tokio's current-thread scheduler.
///
/// One worker on the work-stealing scheduler still pays for it: every wake-up goes through
/// atomics and the shared inject queue, and a second thread parks and unparks around the
/// I/O driver. The current-thread scheduler runs the same tasks on the one thread that
/// drives I/O. Blocking work (`spawn_blocking`) has its own pool either way.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok());
    with_threads(threads)
}

/// Builds the runtime for `threads` async threads: one is tokio's current-thread scheduler,
/// more its work-stealing one with that many workers, `None` tokio's default.
pub fn with_threads(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}
