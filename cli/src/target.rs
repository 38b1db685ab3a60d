//! How the CLI reaches deliver: its shards' URLs, the CA to trust (TLS) and the admin
//! token sent as `authorization: Bearer …`.

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};
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

/// Adds the bearer token to every call.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Client = DeliverClient<InterceptedService<Channel, BearerToken>>;

impl DeliverTarget {
    /// `Bearer <token>`, when a token is given.
    pub fn authorization(&self) -> anyhow::Result<Option<MetadataValue<tonic::metadata::Ascii>>> {
        match self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(token) => Ok(Some(format!("Bearer {token}").parse().map_err(|_| {
                anyhow::anyhow!("the admin token must be printable ASCII")
            })?)),
            None => Ok(None),
        }
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
                    DeliverClient::with_interceptor(channel, BearerToken(token.clone())),
                ))
            })
            .collect()
    }
}
