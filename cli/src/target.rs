//! How the CLI reaches deliver: its shards' URLs, the CA to trust (TLS) and the admin
//! token sent as `authorization: Bearer …`.

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
pub use wdtpipe_common::grpc::BearerToken;
use wdtpipe_common::grpc::{ClientTimeouts, GrpcTls, lazy_channel};
use wdtpipe_proto::v1::deliver_client::DeliverClient;

#[derive(Debug, Clone, clap::Args)]
pub struct DeliverTarget {
    /// The deliver shards, comma-separated (every one is asked).
    #[arg(
        long,
        global = true,
        env = "DELIVER_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50053"
    )]
    pub deliver: Vec<String>,
    /// Admin token for replay, discard, remap and purge.
    #[arg(long, global = true, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: GrpcTls,
}

pub type Client = DeliverClient<InterceptedService<Channel, BearerToken>>;

impl DeliverTarget {
    /// The interceptor that sends the admin token, when one is given.
    pub fn authorization(&self) -> anyhow::Result<BearerToken> {
        Ok(BearerToken::new(self.token.as_deref().unwrap_or_default())?)
    }

    /// One client per shard, with its URL.
    pub fn clients(&self) -> anyhow::Result<Vec<(String, Client)>> {
        let token = self.authorization()?;
        self.deliver
            .iter()
            .map(|url| url.trim())
            .filter(|url| !url.is_empty())
            .map(|url| {
                let channel = lazy_channel(url, ClientTimeouts::default(), &self.tls)?;
                Ok((
                    url.to_owned(),
                    DeliverClient::with_interceptor(channel, token.clone()),
                ))
            })
            .collect()
    }
}
