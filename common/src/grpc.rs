//! gRPC plumbing every server and client shares: health, reflection, client channels.

use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic_health::server::HealthReporter;

pub use tonic_health::ServingStatus;

/// The `grpc.health.v1` service and its reporter. Services start NOT_SERVING and flip to
/// SERVING once their store and downstream clients are ready.
pub fn health() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    tonic_health::server::health_reporter()
}

/// Server reflection over the `wdtpipe.v1` descriptors plus health, so `grpcurl` works.
pub fn reflection() -> tonic_reflection::server::v1::ServerReflectionServer<
    impl tonic_reflection::server::v1::ServerReflection,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wdtpipe_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid")
}

/// Timeouts for a client channel to the next stage.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    pub connect: Duration,
    /// Deadline of every call on the channel.
    pub request: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            request: Duration::from_secs(30),
        }
    }
}

/// A lazily connecting channel: stages may start in any order, and the channel reconnects
/// by itself when the peer comes back.
pub fn lazy_channel(
    url: &str,
    timeouts: ClientTimeouts,
) -> Result<Channel, tonic::transport::Error> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    Ok(Endpoint::from_shared(url)?
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}
