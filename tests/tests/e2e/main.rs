//! The end-to-end tests: real services (ingest, transform, deliver shards, the WDT sandbox,
//! the console) on ephemeral loopback ports with temporary data directories, one module per
//! concern. One test binary, so the workspace is linked once for all of them; `secrets`
//! stays apart because it installs a process-wide log subscriber.

mod console;
mod edge;
mod golden;
mod guarantees;
mod hostile;
mod operability;
mod pipeline;
