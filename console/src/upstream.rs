//! The console's clients: transform and every deliver shard over gRPC (admin calls carry
//! deliver's admin token), their health, and ingest's `/healthz` over HTTP.

use crate::config::ConsoleConfig;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use wdtpipe_common::grpc::{BearerToken, ClientTimeouts, lazy_channel};
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::transform_client::TransformClient;

/// A deliver client that sends the admin token.
pub(crate) type Deliver = DeliverClient<InterceptedService<Channel, BearerToken>>;
/// A transform client that sends the admin token (for `Remap`).
pub(crate) type Transform = TransformClient<InterceptedService<Channel, BearerToken>>;

/// How long one page's calls may take: a page waits on them.
const PAGE_CALL: Duration = Duration::from_secs(10);
/// How long an action may take: a replay or re-map of many letters.
const ACTION_CALL: Duration = Duration::from_secs(600);

/// One deliver shard.
#[derive(Debug, Clone)]
pub(crate) struct Shard {
    pub(crate) url: String,
    pub(crate) client: Deliver,
    /// The same shard with the long deadline of actions.
    pub(crate) admin: Deliver,
    health: HealthClient<Channel>,
}

/// Every service the console talks to.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) transform_url: String,
    pub(crate) transform: Transform,
    /// Transform with the long deadline of actions (`Remap`).
    pub(crate) transform_admin: Transform,
    transform_health: HealthClient<Channel>,
    pub(crate) shards: Vec<Shard>,
    pub(crate) ingest_url: String,
    http: reqwest::Client,
}

/// A service's health as the overview shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Health {
    pub(crate) name: String,
    pub(crate) url: String,
    /// `SERVING`, `NOT_SERVING`, or why it could not be asked.
    pub(crate) state: String,
    pub(crate) ok: bool,
}

impl Upstream {
    pub(crate) fn new(config: &ConsoleConfig) -> Result<Self, crate::error::StartError> {
        let token = BearerToken::new(config.admin_token.expose())?;
        let page = ClientTimeouts {
            request: PAGE_CALL,
            ..ClientTimeouts::default()
        };
        let action = ClientTimeouts {
            request: ACTION_CALL,
            ..ClientTimeouts::default()
        };
        let channel = |url: &str, timeouts| lazy_channel(url, timeouts, &config.tls);
        let shards = config
            .deliver_urls
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .map(|url| {
                Ok(Shard {
                    url: url.to_owned(),
                    client: DeliverClient::with_interceptor(channel(url, page)?, token.clone()),
                    admin: DeliverClient::with_interceptor(channel(url, action)?, token.clone()),
                    health: HealthClient::new(channel(url, page)?),
                })
            })
            .collect::<Result<Vec<_>, crate::error::StartError>>()?;
        let url = &config.transform_url;
        Ok(Self {
            transform_url: url.clone(),
            transform: TransformClient::with_interceptor(channel(url, page)?, token.clone())
                .max_decoding_message_size(wdtpipe_common::grpc::MAX_MESSAGE_BYTES),
            transform_admin: TransformClient::with_interceptor(channel(url, action)?, token),
            transform_health: HealthClient::new(channel(url, page)?),
            shards,
            ingest_url: config.ingest_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        })
    }

    /// The health of transform, every shard and (when known) ingest.
    pub(crate) async fn health(&self) -> Vec<Health> {
        let mut checks = Vec::new();
        if !self.ingest_url.is_empty() {
            let url = format!("{}/healthz", self.ingest_url);
            let (state, ok) = match self.http.get(&url).send().await {
                Ok(answer) if answer.status().is_success() => ("SERVING".to_owned(), true),
                Ok(answer) => (format!("HTTP {}", answer.status().as_u16()), false),
                Err(error) => (transport_error(&error.to_string()), false),
            };
            checks.push(Health {
                name: "ingest".into(),
                url: self.ingest_url.clone(),
                state,
                ok,
            });
        }
        checks.push(
            grpc_health(
                "transform",
                &self.transform_url,
                self.transform_health.clone(),
            )
            .await,
        );
        for (i, shard) in self.shards.iter().enumerate() {
            checks.push(
                grpc_health(
                    &format!("deliver #{}", i + 1),
                    &shard.url,
                    shard.health.clone(),
                )
                .await,
            );
        }
        checks
    }
}

async fn grpc_health(name: &str, url: &str, mut client: HealthClient<Channel>) -> Health {
    let (state, ok) = match client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(answer) => {
            let status = answer.into_inner().status();
            (status.as_str_name().to_owned(), status as i32 == 1)
        }
        Err(status) => (transport_error(status.message()), false),
    };
    Health {
        name: name.to_owned(),
        url: url.to_owned(),
        state,
        ok,
    }
}

/// A short form of a transport error for a status cell.
fn transport_error(message: &str) -> String {
    let message = message.trim();
    let short: String = message.chars().take(120).collect();
    format!("unreachable: {short}")
}
