//! deliver's integration tests, one module per concern, in one test binary (the workspace
//! is linked once for all of them): the outbox on real sled directories (`outbox`, its
//! model-based test `outbox_model`, the ready-queue copies `mirror`), delivery to the WDT
//! sandbox over real HTTP (`delivery`, `pipelining`, `schedule`), and the real `deliver`
//! binary (`admin`, `sigkill`).

mod admin;
mod delivery;
mod mirror;
mod outbox;
mod outbox_model;
mod pipelining;
mod schedule;
mod sigkill;
