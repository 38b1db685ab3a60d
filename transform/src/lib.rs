//! The transform stage: maps stockout records into WDT trades (MAPPING.md) and forwards
//! each request's trades to deliver as one batch.

pub mod mapping;
pub mod scheme;
