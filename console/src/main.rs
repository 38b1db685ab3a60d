//! The `console` binary: its flags and how it runs are in `cli.rs`; the runtime, the allocator,
//! tracing and the shutdown signal are `wdtpipe_common::service`.

wdtpipe_common::service_main!(wdtpipe_console::cli::Args);
