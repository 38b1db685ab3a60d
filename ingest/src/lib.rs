//! The ingest stage: accepts callbacks over HTTP (`POST /v1/callback`) and internal clients
//! over gRPC (`Ingest.Submit`), turns them into protobuf records and hands each request to
//! transform as one batch. It answers only after deliver has the batch on disk.

pub mod callback;
pub mod record;
