//! The gRPC `Transform` service: a thin adapter over [`crate::pipeline::Transformer`].
//! Concurrent requests reach each deliver shard coalesced into `EnqueueBatch` calls.

use crate::mapping::{Mapped, map_record_traced};
use crate::pipeline::{ShardCall, ShardFailure, Shards, Transformer};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;
use wdtpipe_common::grpc::{BatchOutcome, Coalescer, batch_results};
use wdtpipe_common::rejection;
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::transform_server::Transform;
use wdtpipe_proto::v1::{
    ConvertRequest, ConvertResponse, ConvertedRecord, EnqueueBatchRequest, EnqueueRequest,
    EnqueueResponse, FieldProvenance, ListSchemesRequest, ListSchemesResponse, PreviewRequest,
    PreviewResponse, PreviewedRecord, ProcessBatchRequest, ProcessBatchResponse, ProcessOutcome,
    ProcessRequest, ProcessResponse, SchemeInfo,
};
use wdtpipe_proto::v1::{
    ListDeadLettersRequest, ListDeadLettersResponse, RemapRequest, RemapResponse, TrackRequest,
    TrackResponse, TrackResult, TrackWrite, WriteRemappedRequest, WriteRemappedResponse,
};

/// Sends an enqueue to one deliver shard, coalesced with concurrent ones.
pub(crate) type ShardSender = Coalescer<EnqueueRequest, EnqueueResponse>;

/// A coalescing sender for a deliver shard: concurrent enqueues travel as one
/// `EnqueueBatch` call.
fn shard_sender(client: DeliverClient<Channel>) -> ShardSender {
    Coalescer::new(32, 16, move |requests: Vec<EnqueueRequest>| {
        let mut client = client.clone();
        async move {
            let answer = client
                .enqueue_batch(EnqueueBatchRequest { requests })
                .await?
                .into_inner();
            Ok(batch_results(answer.outcomes))
        }
    })
}

impl std::fmt::Debug for GrpcShards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcShards").finish_non_exhaustive()
    }
}

/// The deliver shards over gRPC, in shard order: enqueues go through each shard's
/// coalescing sender, dead-letter calls straight to its client.
pub(crate) struct GrpcShards {
    senders: Vec<ShardSender>,
    clients: Vec<DeliverClient<Channel>>,
}

impl GrpcShards {
    pub(crate) fn new(clients: Vec<DeliverClient<Channel>>) -> Self {
        Self {
            senders: clients.iter().cloned().map(shard_sender).collect(),
            clients,
        }
    }
}

fn shard_failure(status: &Status) -> ShardFailure {
    ShardFailure {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

impl Shards for GrpcShards {
    fn count(&self) -> usize {
        self.senders.len()
    }

    fn enqueue(&self, shard: usize, request: EnqueueRequest) -> ShardCall<'_, EnqueueResponse> {
        Box::pin(async move {
            self.senders[shard]
                .call(request)
                .await
                .map_err(|status| shard_failure(&status))
        })
    }

    fn track(&self, shard: usize, write: TrackWrite) -> ShardCall<'_, TrackResult> {
        let mut client = self.clients[shard].clone();
        Box::pin(async move {
            client
                .track(write)
                .await
                .map(Response::into_inner)
                .map_err(|status| shard_failure(&status))
        })
    }

    fn list_dead_letters(
        &self,
        shard: usize,
        request: ListDeadLettersRequest,
    ) -> ShardCall<'_, ListDeadLettersResponse> {
        let mut client = self.clients[shard].clone();
        Box::pin(async move {
            client
                .list_dead_letters(request)
                .await
                .map(Response::into_inner)
                .map_err(|status| shard_failure(&status))
        })
    }

    fn write_remapped(
        &self,
        shard: usize,
        request: WriteRemappedRequest,
        authorization: String,
    ) -> ShardCall<'_, WriteRemappedResponse> {
        let mut client = self.clients[shard].clone();
        Box::pin(async move {
            let mut request = Request::new(request);
            if !authorization.is_empty() {
                let value = authorization.parse().map_err(|_| ShardFailure {
                    code: Code::Unauthenticated as i32,
                    message: "the authorization value is not valid metadata".into(),
                })?;
                request.metadata_mut().insert("authorization", value);
            }
            client
                .write_remapped(request)
                .await
                .map(Response::into_inner)
                .map_err(|status| shard_failure(&status))
        })
    }
}

impl std::fmt::Debug for TransformService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformService").finish_non_exhaustive()
    }
}

pub(crate) struct TransformService {
    transformer: Transformer,
}

impl TransformService {
    pub(crate) fn new(transformer: Transformer) -> Self {
        Self { transformer }
    }
}

#[tonic::async_trait]
impl Transform for TransformService {
    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id, records = request.get_ref().records.len()))]
    async fn process(
        &self,
        request: Request<ProcessRequest>,
    ) -> Result<Response<ProcessResponse>, Status> {
        let response = self.transformer.process(request.into_inner()).await;
        Ok(Response::new(response.map_err(Status::from)?))
    }

    #[tracing::instrument(skip_all, fields(requests = request.get_ref().requests.len()))]
    async fn process_batch(
        &self,
        request: Request<ProcessBatchRequest>,
    ) -> Result<Response<ProcessBatchResponse>, Status> {
        let outcomes = futures_util::future::join_all(request.into_inner().requests.into_iter().map(|r| {
            let span = tracing::info_span!("process", request_id = %r.request_id, records = r.records.len());
            self.transformer.process(r).instrument(span)
        }))
        .await
        .into_iter()
        .map(|result| ProcessOutcome::of(result.map_err(Status::from)))
        .collect();
        Ok(Response::new(ProcessBatchResponse { outcomes }))
    }

    #[tracing::instrument(skip_all, fields(records = request.get_ref().records.len()))]
    async fn convert(
        &self,
        request: Request<ConvertRequest>,
    ) -> Result<Response<ConvertResponse>, Status> {
        let request = request.into_inner();
        let mapped = self
            .transformer
            .convert(&request.scheme, &request.records)
            .map_err(Status::from)?;
        Ok(Response::new(ConvertResponse {
            records: mapped
                .into_iter()
                .map(|mapped: Mapped| ConvertedRecord {
                    skipped: mapped.is_skipped(),
                    trades: mapped.into_trades(),
                })
                .collect(),
        }))
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<PreviewResponse>, Status> {
        let request = request.into_inner();
        let scheme = if request.scheme_text.is_empty() {
            self.transformer
                .scheme(&request.scheme)
                .map_err(Status::from)?
        } else {
            let loaded = self.transformer.catalog().current();
            let options = loaded
                .set
                .get("")
                .map(|s| s.builtin.clone())
                .unwrap_or_default();
            let names = self.transformer.catalog().connectors().to_vec();
            let scheme = crate::scheme::file::parse(
                std::path::Path::new("preview.toml"),
                request.scheme_text.as_bytes(),
                &options,
                &names,
            )
            .map_err(|errors| {
                Status::invalid_argument(
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })?;
            std::sync::Arc::new(scheme)
        };
        let records = request
            .records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let (mapped, trace) = map_record_traced(record, i as u32 + 1, &scheme);
                let fields = trace
                    .into_iter()
                    .map(|t| FieldProvenance {
                        trade: t.trade as u32,
                        line: t.line.map_or(0, |l| l as u32 + 1),
                        field: t.field.to_owned(),
                        rule: t.rule,
                    })
                    .collect();
                match mapped {
                    Ok(mapped) => PreviewedRecord {
                        skipped: mapped.is_skipped(),
                        trades: mapped.into_trades(),
                        error: String::new(),
                        fields,
                    },
                    Err(r) => PreviewedRecord {
                        error: rejection::message(&r),
                        fields,
                        ..PreviewedRecord::default()
                    },
                }
            })
            .collect();
        Ok(Response::new(PreviewResponse {
            scheme: scheme.label(),
            records,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn remap(
        &self,
        request: Request<RemapRequest>,
    ) -> Result<Response<RemapResponse>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let request = request.into_inner();
        let done = self
            .transformer
            .remap(
                request.filter.unwrap_or_default(),
                &request.scheme,
                authorization,
            )
            .await
            .map_err(Status::from)?;
        Ok(Response::new(done))
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id, scheme = %request.get_ref().scheme))]
    async fn track(
        &self,
        request: Request<TrackRequest>,
    ) -> Result<Response<TrackResponse>, Status> {
        let answer = self
            .transformer
            .track(request.into_inner())
            .await
            .map_err(Status::from)?;
        Ok(Response::new(answer))
    }

    async fn list_schemes(
        &self,
        _request: Request<ListSchemesRequest>,
    ) -> Result<Response<ListSchemesResponse>, Status> {
        let catalog = self.transformer.catalog();
        let metrics = self.transformer.metrics();
        let loaded = catalog.current();
        let schemes = loaded
            .set
            .iter()
            .map(|s| SchemeInfo {
                id: s.id.clone(),
                version: s.version.clone(),
                source: s.source.name().to_owned(),
                connector: s.connector.clone(),
                loaded_at_ms: loaded.loaded_at_ms,
                path: s
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                description: s.description.clone(),
                trade_rules: s.trade_rules.len() as u32,
                line_rules: s.line_rules.len() as u32,
                skip: s.skip.is_some(),
                accepted_total: metrics.records_of(&s.id, "accepted"),
                rejected_total: metrics.records_of(&s.id, "rejected"),
                skipped_total: metrics.records_of(&s.id, "skipped"),
            })
            .collect();
        let (last_reload_error_at_ms, last_reload_error) = catalog.last_error().unwrap_or_default();
        Ok(Response::new(ListSchemesResponse {
            schemes,
            last_reload_error,
            last_reload_error_at_ms,
        }))
    }
}
