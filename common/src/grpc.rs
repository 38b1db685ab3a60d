//! gRPC plumbing every server and client shares: health, reflection, client channels.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

pub use tonic_health::ServingStatus;
pub use tonic_health::server::HealthReporter;

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

/// Largest gRPC message a wdtpipe server or client decodes. tonic's default (4 MiB) is
/// below what one request may carry between the stages: ingest takes 4 MiB bodies, and
/// transform sends deliver each record's trades and the record itself.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Requests one gRPC connection may have in flight at a server (the stages talk over one
/// connection each, so this is also the bound between two stages). More wait in HTTP/2
/// flow control instead of piling up in memory.
pub const MAX_CONCURRENT_REQUESTS: usize = 2048;

/// A tonic server builder with wdtpipe's limits: concurrent requests per connection and
/// HTTP/2 streams.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(MAX_CONCURRENT_REQUESTS)
        .max_concurrent_streams(Some(MAX_CONCURRENT_REQUESTS as u32))
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

/// Optional TLS for gRPC (rustls): a server presents `cert`/`key`; a client trusts `ca`
/// and then speaks TLS to the next stage.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
#[command(next_help_heading = "gRPC TLS")]
pub struct GrpcTls {
    /// PEM certificate chain this service's gRPC server presents.
    #[arg(long = "grpc-tls-cert", env = "GRPC_TLS_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long = "grpc-tls-key", env = "GRPC_TLS_KEY")]
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s) this service trusts when it calls other stages (turns TLS on
    /// for its clients).
    #[arg(long = "grpc-tls-ca", env = "GRPC_TLS_CA")]
    pub ca: Option<PathBuf>,
    /// Name expected in the peers' certificates (default: the host of the URL).
    #[arg(long = "grpc-tls-domain", env = "GRPC_TLS_DOMAIN")]
    pub domain: Option<String>,
}

/// Overrides file settings with the ones given by flag or environment.
pub fn merge_tls(target: &mut GrpcTls, given: GrpcTls) {
    if given.cert.is_some() {
        target.cert = given.cert;
    }
    if given.key.is_some() {
        target.key = given.key;
    }
    if given.ca.is_some() {
        target.ca = given.ca;
    }
    if given.domain.is_some() {
        target.domain = given.domain;
    }
}

/// Why TLS settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("GRPC_TLS_CERT and GRPC_TLS_KEY must be set together")]
    Incomplete,
    #[error("invalid gRPC endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
}

fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl GrpcTls {
    /// The server side, when a certificate is configured.
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        match (&self.cert, &self.key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(
                ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?)),
            )),
            _ => Err(TlsError::Incomplete),
        }
    }

    /// The client side, when a CA is configured.
    pub fn client(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(Some(config))
    }
}

/// A lazily connecting channel: stages may start in any order, and the channel reconnects
/// by itself when the peer comes back. With a TLS client config (a CA in `tls`) the URL is
/// spoken as `https`.
pub fn lazy_channel(
    url: &str,
    timeouts: ClientTimeouts,
    tls: &GrpcTls,
) -> Result<Channel, TlsError> {
    let client_tls = tls.client()?;
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let scheme = if client_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{rest}"))?;
    if let Some(config) = client_tls {
        endpoint = endpoint.tls_config(config)?;
    }
    Ok(endpoint
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// A gRPC server's incoming connections from a bound listener, with TCP_NODELAY: without
/// it, Nagle's algorithm holds a response's last frames back until the peer's delayed ACK
/// (about 40 ms on Linux).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The sockets a gRPC stage serves on: its gRPC address and, optionally, Prometheus
/// `/metrics`.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: tokio::net::TcpListener,
    /// `None` serves no metrics.
    pub metrics: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Binds both addresses.
    pub async fn bind(
        grpc: std::net::SocketAddr,
        metrics: Option<std::net::SocketAddr>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            grpc: tokio::net::TcpListener::bind(grpc).await?,
            metrics: match metrics {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
                None => None,
            },
        })
    }
}

/// How often a stage checks that its next stage answers health checks, by default (each
/// stage's `readiness_ms`), in milliseconds.
pub const READINESS_MS: u64 = 2_000;

/// Keeps `services` SERVING exactly while every downstream channel answers its health
/// check with SERVING (and NOT_SERVING otherwise), asking `every` so often, until `stop`
/// flips to true.
pub async fn track_readiness(
    reporter: HealthReporter,
    services: &[&str],
    downstream: Vec<Channel>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus as Wire;
    use tonic_health::pb::health_client::HealthClient;
    let mut last: Option<bool> = None;
    loop {
        let mut ready = true;
        for channel in &downstream {
            let answer = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            ready &= answer.is_ok_and(|a| a.into_inner().status == Wire::Serving as i32);
        }
        if last != Some(ready) {
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in services {
                reporter.set_service_status(*service, status).await;
            }
            if ready {
                tracing::info!("next stage reachable: serving");
            } else {
                tracing::warn!("next stage unreachable: not serving");
            }
            last = Some(ready);
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => {
                for service in services {
                    reporter.set_service_status(*service, ServingStatus::NotServing).await;
                }
                return;
            }
        }
    }
}

/// A status as a batch item's failure.
pub fn failure_of(status: &tonic::Status) -> wdtpipe_proto::v1::Failure {
    wdtpipe_proto::v1::Failure {
        code: status.code() as i32,
        message: status.message().to_owned(),
        details: status.details().to_vec(),
    }
}

/// A batch item's failure as the status it stands for.
pub fn status_of(failure: wdtpipe_proto::v1::Failure) -> tonic::Status {
    tonic::Status::with_details(
        tonic::Code::from(failure.code),
        failure.message,
        failure.details.into(),
    )
}

/// One item's answer in a batch call (`ProcessOutcome`, `EnqueueOutcome`): the response, or
/// the failure the single call would have answered. Both ends of a batch call convert with it.
pub trait BatchOutcome: Sized {
    /// The single call's response.
    type Response;
    /// The outcome of one item, as the server puts it in the batch.
    fn of(result: Result<Self::Response, tonic::Status>) -> Self;
    /// The item's answer as the single call would have given it, as the client reads it.
    fn into_result(self) -> Result<Self::Response, tonic::Status>;
}

macro_rules! batch_outcome {
    // `$service`: the stage that answers, named in the error of an empty outcome.
    ($outcome:ident, $module:ident, $response:ident, $service:literal) => {
        impl BatchOutcome for wdtpipe_proto::v1::$outcome {
            type Response = wdtpipe_proto::v1::$response;

            fn of(result: Result<Self::Response, tonic::Status>) -> Self {
                use wdtpipe_proto::v1::$module::Outcome;
                Self {
                    outcome: Some(match result {
                        Ok(response) => Outcome::Ok(response),
                        Err(status) => Outcome::Failure(failure_of(&status)),
                    }),
                }
            }

            fn into_result(self) -> Result<Self::Response, tonic::Status> {
                use wdtpipe_proto::v1::$module::Outcome;
                match self.outcome {
                    Some(Outcome::Ok(response)) => Ok(response),
                    Some(Outcome::Failure(failure)) => Err(status_of(failure)),
                    None => Err(tonic::Status::internal(concat!(
                        $service,
                        " answered an empty outcome"
                    ))),
                }
            }
        }
    };
}

batch_outcome!(
    ProcessOutcome,
    process_outcome,
    ProcessResponse,
    "transform"
);
batch_outcome!(EnqueueOutcome, enqueue_outcome, EnqueueResponse, "deliver");

/// A batch call's outcomes as the single calls' answers, in order.
pub fn batch_results<O: BatchOutcome>(outcomes: Vec<O>) -> Vec<Result<O::Response, tonic::Status>> {
    outcomes.into_iter().map(O::into_result).collect()
}

/// Sends one item as a batch of many: concurrent callers' items are gathered while earlier
/// batches are in flight, so under load each RPC carries many items and the per-call cost
/// is shared, while a lone caller is sent at once (no timer, no added latency).
pub struct Coalescer<Req, Resp> {
    queue: tokio::sync::mpsc::UnboundedSender<(
        Req,
        tokio::sync::oneshot::Sender<Result<Resp, tonic::Status>>,
    )>,
}

impl<Req, Resp> Clone for Coalescer<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<Req, Resp> std::fmt::Debug for Coalescer<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Coalescer<Req, Resp> {
    /// `send` makes one batch call and answers each item in order. At most `in_flight`
    /// batches of at most `max_batch` items are outstanding at once.
    pub fn new<F, Fut>(max_batch: usize, in_flight: usize, send: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Vec<Result<Resp, tonic::Status>>, tonic::Status>>
            + Send
            + 'static,
    {
        let (queue, mut items) = tokio::sync::mpsc::unbounded_channel::<(
            Req,
            tokio::sync::oneshot::Sender<Result<Resp, tonic::Status>>,
        )>();
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
        let send = std::sync::Arc::new(send);
        tokio::spawn(async move {
            while let Some(first) = items.recv().await {
                // Wait for a free slot first: meanwhile more items queue up behind this one.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match items.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let send = send.clone();
                tokio::spawn(async move {
                    let (requests, replies): (Vec<Req>, Vec<_>) = batch.into_iter().unzip();
                    let count = requests.len();
                    match send(requests).await {
                        Ok(results) if results.len() == count => {
                            for (reply, result) in replies.into_iter().zip(results) {
                                let _ = reply.send(result);
                            }
                        }
                        Ok(results) => {
                            let status = tonic::Status::internal(format!(
                                "batch answered {} items for {count}",
                                results.len()
                            ));
                            for reply in replies {
                                let _ = reply.send(Err(status.clone()));
                            }
                        }
                        Err(status) => {
                            for reply in replies {
                                let _ = reply.send(Err(status.clone()));
                            }
                        }
                    }
                    drop(slot);
                });
            }
        });
        Self { queue }
    }

    /// Sends one item (within some batch) and waits for its answer.
    pub async fn call(&self, request: Req) -> Result<Resp, tonic::Status> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue
            .send((request, reply))
            .map_err(|_| tonic::Status::unavailable("the batching task has stopped"))?;
        answer
            .await
            .map_err(|_| tonic::Status::unavailable("the batch call was dropped"))?
    }
}

/// Adds `authorization: Bearer <token>` to every call of a client (admin calls to deliver,
/// `Transform.Remap`); nothing when no token is set.
#[derive(Debug, Clone, Default)]
pub struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl BearerToken {
    /// The interceptor for `token` (blank: none). Fails when the token is not printable
    /// ASCII, which no header can carry.
    pub fn new(token: &str) -> Result<Self, InvalidToken> {
        match token.trim() {
            "" => Ok(Self(None)),
            token => format!("Bearer {token}")
                .parse()
                .map(|value| Self(Some(value)))
                .map_err(|_| InvalidToken),
        }
    }
}

/// An admin token that is not printable ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the admin token must be printable ASCII")]
pub struct InvalidToken;

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
