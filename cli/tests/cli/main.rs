//! The `wdtpipe` binary driven as operators drive it (real processes, real ports), one
//! module per command family, in one test binary: `up` (the whole pipeline in one
//! process), `scheme` (validate, preview, test, list), `bench_startup`.

mod bench_startup;
mod scheme;
mod up;
