//! How the CLI reaches a deliver service: its URL, the CA to trust (TLS) and the admin
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
    /// The deliver service.
    #[arg(
        long,
        global = true,
        env = "DELIVER_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub deliver: String,
    /// Admin token for replay, discard and purge.
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
    pub fn client(&self) -> anyhow::Result<Client> {
        let channel = lazy_channel(&self.deliver, ClientTimeouts::default(), &self.tls)?;
        let token = match self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| anyhow::anyhow!("the admin token must be printable ASCII"))?,
            ),
            None => None,
        };
        Ok(DeliverClient::with_interceptor(channel, BearerToken(token)))
    }
}
