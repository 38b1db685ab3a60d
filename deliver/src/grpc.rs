//! The gRPC `Deliver` service: thin handlers over the outbox and the delivery engine.

use crate::delivery::Delivery;
use crate::error::DeliverError;
use crate::status::{shop_and_connector, skipped_status, status_of};
use crate::store::{Outbox, StoreError};
use std::collections::BTreeSet;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use wdtpipe_common::config::Secret;
use wdtpipe_common::connectors::valid_shop;
use wdtpipe_common::dead_letters;
use wdtpipe_common::grpc::BatchOutcome;
use wdtpipe_proto::v1::deliver_server::Deliver;
use wdtpipe_proto::v1::{
    DeadLetterFilter, DiscardRequest, DiscardResponse, EnqueueRequest, EnqueueResponse,
    GetRecordRequest, GetRecordResponse, GetStatusRequest, GetStatusResponse,
    ListDeadLettersRequest, ListDeadLettersResponse, OutboxEntry, PurgeRequest, PurgeResponse,
    ReasonCount, RecordInfo, ReplayRequest, ReplayResponse, ResumeRequest, ResumeResponse,
    ShopStats, StatsRequest, StatsResponse, TrackResult, TrackWrite, TradeOrder, TradeStatus,
    WriteRemappedRequest, WriteRemappedResponse,
};
use wdtpipe_proto::v1::{EnqueueBatchRequest, EnqueueBatchResponse, EnqueueOutcome};

/// Dead letters listed when the request sets no limit.
const DEFAULT_LIST_LIMIT: usize = 100;

/// Longest tid or shop number accepted into the outbox, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// What Enqueue admits and who may run admin RPCs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Admission {
    /// Refuse new batches while this many trades wait (0 = no limit).
    pub high_water_trades: u64,
    /// ... or while their payloads take this many bytes (0 = no limit).
    pub high_water_bytes: u64,
    /// Bearer token for Replay, Discard and Purge; empty = not required.
    pub admin_token: Secret,
    /// The WDT accounts this deliver pushes with (`default` and CONNECTORS_FILE's); a trade
    /// naming another is refused.
    pub connectors: Vec<String>,
}

impl std::fmt::Debug for DeliverService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverService").finish_non_exhaustive()
    }
}

pub(crate) struct DeliverService {
    outbox: Arc<Outbox>,
    delivery: Arc<Delivery>,
    admission: Admission,
    /// This shard's name, reported in status and stats.
    shard: String,
}

impl DeliverService {
    /// One enqueue: validate, admit, write durably, wake the shops that got work.
    async fn enqueue_one(&self, request: EnqueueRequest) -> Result<EnqueueResponse, DeliverError> {
        let started = tokio::time::Instant::now();
        let metrics = self.delivery.metrics();
        if let Err(error) = validate(&request, &self.admission.connectors) {
            metrics.enqueue("invalid");
            return Err(error);
        }
        if let Err(error) = self.admit() {
            metrics.enqueue("overloaded");
            tracing::warn!(%error, "enqueue refused");
            return Err(error);
        }
        let done = self
            .outbox
            .enqueue_request(
                request.records,
                request.idempotency_key,
                request.request_id,
                self.delivery.clock().now_ms(),
            )
            .await
            .map_err(|error| {
                metrics.enqueue("error");
                DeliverError::from(error)
            })?;
        metrics.enqueue("ok");
        metrics
            .enqueue_seconds
            .observe(started.elapsed().as_secs_f64());
        let duplicates = done.results.iter().filter(|r| r.duplicate).count();
        metrics.dedupe_hits.inc_by(duplicates as u64);
        self.delivery.notify(done.ready_shops);
        Ok(EnqueueResponse {
            results: done.results,
        })
    }

    pub(crate) fn new(
        outbox: Arc<Outbox>,
        delivery: Arc<Delivery>,
        admission: Admission,
        shard: String,
    ) -> Self {
        Self {
            outbox,
            delivery,
            admission,
            shard,
        }
    }

    fn statuses(&self, entries: Vec<OutboxEntry>) -> Result<Vec<TradeStatus>, DeliverError> {
        let paused = self.delivery.paused_shops();
        let storage_error = self.outbox.write_problem().unwrap_or_default();
        entries
            .into_iter()
            .map(|entry| {
                let shop_paused = paused.get(&entry.shop_no).cloned().unwrap_or_default();
                let mut status = status_of(entry, shop_paused, &self.shard)?;
                status.storage_error.clone_from(&storage_error);
                Ok(status)
            })
            .collect()
    }

    /// Refuses new work above the high-water mark, so a stuck WDT cannot fill the disk,
    /// below the disk's free-space watermark, and while the outbox cannot write.
    fn admit(&self) -> Result<(), DeliverError> {
        self.outbox.admit().map_err(|error| match error {
            StoreError::DiskLow(why) => DeliverError::DiskLow(why),
            other => DeliverError::Store(other),
        })?;
        let queued = self.outbox.queued();
        let Admission {
            high_water_trades: max_trades,
            high_water_bytes: max_bytes,
            ..
        } = self.admission;
        if max_trades > 0 && queued.trades >= max_trades as i64 {
            return Err(DeliverError::Overloaded(format!(
                "{} trades queued",
                queued.trades
            )));
        }
        if max_bytes > 0 && queued.bytes >= max_bytes as i64 {
            return Err(DeliverError::Overloaded(format!(
                "{} bytes queued",
                queued.bytes
            )));
        }
        Ok(())
    }

    /// Checks `authorization: Bearer <token>` when an admin token is configured.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), DeliverError> {
        let token = &self.admission.admin_token;
        if token.is_empty() {
            return Ok(());
        }
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if token.matches(presented.trim()) {
            Ok(())
        } else {
            tracing::warn!("admin RPC refused: token missing or wrong");
            Err(DeliverError::Unauthenticated)
        }
    }
}

fn validate(request: &EnqueueRequest, connectors: &[String]) -> Result<(), DeliverError> {
    let invalid = |m: String| Err(DeliverError::InvalidRequest(m));
    if request.records.is_empty() {
        return invalid("no records".into());
    }
    for (i, record) in request.records.iter().enumerate() {
        if record.record_id.is_empty() {
            return invalid(format!("record {}: empty record_id", i + 1));
        }
        if record.trades.is_empty() && !record.skipped {
            return invalid(format!("record {}: no trades", i + 1));
        }
        validate_trades(&record.trades, connectors)
            .or_else(|m| invalid(format!("record {}{m}", i + 1)))?;
    }
    Ok(())
}

/// What every trade written to the outbox must be: a tid and a shop that fit in a key, and
/// an account this deliver has. The error names the trade, to follow the record's name.
fn validate_trades(trades: &[TradeOrder], connectors: &[String]) -> Result<(), String> {
    for trade in trades {
        if trade.tid.is_empty() || trade.tid.len() > MAX_KEY_BYTES {
            return Err(": tid empty or too long".into());
        }
        if trade.shop_no.is_empty()
            || trade.shop_no.len() > MAX_KEY_BYTES
            || !valid_shop(&trade.shop_no)
        {
            return Err(format!(
                " (tid {}): shop_no empty, too long or holding a control character",
                trade.tid
            ));
        }
        if !trade.connector.is_empty() && !connectors.contains(&trade.connector) {
            return Err(format!(
                " (tid {}): connector {:?} is not configured at this deliver (CONNECTORS_FILE)",
                trade.tid, trade.connector
            ));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Deliver for DeliverService {
    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id, records = request.get_ref().records.len()))]
    async fn enqueue(
        &self,
        request: Request<EnqueueRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        Ok(Response::new(self.enqueue_one(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(requests = request.get_ref().requests.len()))]
    async fn enqueue_batch(
        &self,
        request: Request<EnqueueBatchRequest>,
    ) -> Result<Response<EnqueueBatchResponse>, Status> {
        // Every request is sent to the writer before any is awaited: they share a commit.
        let outcomes = futures_util::future::join_all(
            request
                .into_inner()
                .requests
                .into_iter()
                .map(|r| self.enqueue_one(r)),
        )
        .await
        .into_iter()
        .map(|result| EnqueueOutcome::of(result.map_err(Status::from)))
        .collect();
        Ok(Response::new(EnqueueBatchResponse { outcomes }))
    }

    #[tracing::instrument(skip_all, fields(tid = %request.get_ref().tid))]
    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let request = request.into_inner();
        let tid = match (request.tid, request.tracking_number.trim()) {
            (tid, number) if tid.is_empty() && !number.is_empty() => {
                match self
                    .outbox
                    .tid_for_tracking(number)
                    .map_err(DeliverError::from)?
                {
                    Some(tid) => tid,
                    None => return Ok(Response::new(GetStatusResponse::default())),
                }
            }
            (tid, _) => tid,
        };
        let entries = self
            .outbox
            .entries_for_tid(&tid)
            .map_err(DeliverError::from)?;
        let mut trades = self.statuses(entries)?;
        if let Some(note) = self.outbox.skip_note(&tid).map_err(DeliverError::from)? {
            trades.push(skipped_status(&tid, note, &self.shard));
        }
        Ok(Response::new(GetStatusResponse { trades }))
    }

    #[tracing::instrument(skip_all, fields(record_id = %request.get_ref().record_id))]
    async fn get_record(
        &self,
        request: Request<GetRecordRequest>,
    ) -> Result<Response<GetRecordResponse>, Status> {
        let record_id = request.into_inner().record_id;
        let Some(meta) = self.outbox.record(&record_id).map_err(DeliverError::from)? else {
            return Ok(Response::new(GetRecordResponse::default()));
        };
        let mut entries = Vec::new();
        for tid in &meta.tids {
            entries.extend(
                self.outbox
                    .entries_for_tid(tid)
                    .map_err(DeliverError::from)?,
            );
        }
        Ok(Response::new(GetRecordResponse {
            found: true,
            record: Some(RecordInfo {
                record_id,
                source: meta.source,
                request_id: meta.request_id,
                traceparent: meta.traceparent,
                received_at_ms: meta.received_at_ms,
                transformed_at_ms: meta.transformed_at_ms,
                enqueued_at_ms: meta.accepted_at_ms,
                tids: meta.tids,
                shard: self.shard.clone(),
                scheme: meta.scheme,
            }),
            trades: self.statuses(entries)?,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn stats(
        &self,
        _request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let outbox = Arc::clone(&self.outbox);
        // Counters, and the oldest waiting trades read at most every 1.5 s whoever asks.
        let oldest = tokio::task::spawn_blocking(move || outbox.oldest_waiting_recent())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(DeliverError::from)?;
        let dead = self.outbox.dead_letter_counts();
        let queues = self.outbox.shop_queues();
        let activity = self.delivery.activity();
        let paused = self.delivery.pauses();
        let mut shops: BTreeSet<String> = queues.keys().cloned().collect();
        shops.extend(activity.keys().cloned());
        shops.extend(paused.keys().cloned());
        shops.extend(dead.keys().cloned());
        let now = self.delivery.clock().now_ms();
        let queued = self.outbox.queued();
        let shops = shops
            .into_iter()
            .map(|shop| {
                let queue = queues.get(&shop).copied().unwrap_or_default();
                let act = activity.get(&shop).cloned().unwrap_or_default();
                let (shop_no, connector) = shop_and_connector(&shop);
                let pause = paused.get(&shop);
                ShopStats {
                    connector,
                    queued: queue.ready.max(0) as u64,
                    retrying: queue.retrying.max(0) as u64,
                    in_flight: act.in_flight,
                    oldest_age_ms: oldest.get(&shop).map_or(0, |at| (now - at).max(0)),
                    delivered_last_minute: act.delivered_last_minute(),
                    delivered_total: act.delivered_total,
                    dead_letters: dead.get(&shop).copied().unwrap_or(0),
                    paused_reason: pause.and_then(|p| p.reason.clone()).unwrap_or_default(),
                    paused_since_ms: pause.map_or(0, |p| p.since_ms),
                    next_probe_at_ms: pause.map_or(0, |p| p.until_ms),
                    shop_no,
                }
            })
            .collect();
        let writer = self.outbox.writer_stats();
        let storage = self.outbox.storage_health();
        Ok(Response::new(StatsResponse {
            storage_error: storage.problem().unwrap_or_default(),
            storage_error_since_ms: storage.failing_since_ms,
            free_bytes: storage.free_bytes.unwrap_or(0),
            min_free_bytes: storage.min_free_bytes,
            failed_commits: storage.failed_commits,
            shard: self.shard.clone(),
            queued_trades: queued.trades.max(0) as u64,
            queued_bytes: queued.bytes.max(0) as u64,
            shops,
            disk_bytes: self.outbox.disk_bytes(),
            flushes: writer.flushes,
            writer_busy_us: micros(writer.busy),
            writer_flush_us: micros(writer.flushing),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let filter = request.filter.unwrap_or_default();
        let limit = match request.limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n as usize,
        };
        // A page decodes and sorts every matching letter: on a blocking thread.
        let outbox = Arc::clone(&self.outbox);
        let token = request.page_token;
        let mut page =
            tokio::task::spawn_blocking(move || outbox.dead_letters(&filter, limit, &token))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(DeliverError::from)?;
        for letter in &mut page.letters {
            (letter.shop_no, letter.connector) = shop_and_connector(&letter.shop_no);
        }
        Ok(Response::new(ListDeadLettersResponse {
            letters: page.letters,
            total: u32::try_from(page.total).unwrap_or(u32::MAX),
            next_page_token: page.next_page_token,
            reasons: page
                .reasons
                .into_iter()
                .map(|(reason, count)| ReasonCount {
                    reason,
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn replay(
        &self,
        request: Request<ReplayRequest>,
    ) -> Result<Response<ReplayResponse>, Status> {
        self.authorize(&request)?;
        let filter = scoped(request.into_inner().filter)?;
        let done = self
            .outbox
            .replay(filter)
            .await
            .map_err(DeliverError::from)?;
        tracing::info!(
            replayed = done.replayed,
            superseded = done.superseded,
            "dead letters replayed"
        );
        self.delivery.notify(done.ready_shops);
        Ok(Response::new(ReplayResponse {
            replayed: done.replayed,
            superseded: done.superseded,
            tids: done.tids,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn write_remapped(
        &self,
        request: Request<WriteRemappedRequest>,
    ) -> Result<Response<WriteRemappedResponse>, Status> {
        self.authorize(&request)?;
        let letters = request.into_inner().letters;
        if letters.is_empty() {
            // Transform's first call: the credential is right, nothing to write.
            return Ok(Response::new(WriteRemappedResponse::default()));
        }
        for letter in &letters {
            validate_trades(&letter.trades, &self.admission.connectors).map_err(|m| {
                DeliverError::InvalidRequest(format!("re-mapped record {}{m}", letter.record_id))
            })?;
        }
        let done = self
            .outbox
            .write_remapped(letters, self.delivery.clock().now_ms())
            .await
            .map_err(DeliverError::from)?;
        tracing::info!(
            repaired = done.repaired,
            requeued = done.requeued,
            superseded = done.superseded,
            still_invalid = done.still_invalid,
            gone = done.gone,
            "dead letters re-mapped"
        );
        self.delivery.notify(done.ready_shops);
        Ok(Response::new(WriteRemappedResponse {
            repaired: done.repaired,
            requeued: done.requeued,
            superseded: done.superseded,
            still_invalid: done.still_invalid,
            gone: done.gone,
            tids: done.tids,
        }))
    }

    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id))]
    async fn track(&self, request: Request<TrackWrite>) -> Result<Response<TrackResult>, Status> {
        let write = request.into_inner();
        if write.tid.is_empty() && write.tracking_number.is_empty() {
            return Err(DeliverError::InvalidRequest(
                "a push names a tid or a tracking number".into(),
            )
            .into());
        }
        if let Err(error) = self.admit() {
            tracing::warn!(%error, "kuaidi100 push refused");
            return Err(error.into());
        }
        let done = self
            .outbox
            .track(write, self.delivery.clock().now_ms())
            .await
            .map_err(DeliverError::from)?;
        tracing::info!(outcome = %done.result.outcome, tid = %done.result.tid, message = %done.result.message, "kuaidi100 push");
        self.delivery.notify(done.ready_shops);
        Ok(Response::new(done.result))
    }

    #[tracing::instrument(skip_all)]
    async fn discard(
        &self,
        request: Request<DiscardRequest>,
    ) -> Result<Response<DiscardResponse>, Status> {
        self.authorize(&request)?;
        let filter = scoped(request.into_inner().filter)?;
        let discarded = self
            .outbox
            .discard(filter)
            .await
            .map_err(DeliverError::from)?;
        tracing::info!(discarded, "dead letters discarded");
        Ok(Response::new(DiscardResponse { discarded }))
    }

    #[tracing::instrument(skip_all)]
    async fn resume(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<Response<ResumeResponse>, Status> {
        Ok(Response::new(self.resume_shop(request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn purge(
        &self,
        request: Request<PurgeRequest>,
    ) -> Result<Response<PurgeResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        if request.shop_no.is_empty() && request.tid.is_empty() {
            return Err(DeliverError::InvalidRequest("set a shop or a tid to purge".into()).into());
        }
        let purged = self
            .outbox
            .purge(request.shop_no, request.tid, self.delivery.clock().now_ms())
            .await
            .map_err(DeliverError::from)?;
        tracing::warn!(purged, "queued trades purged into the dead-letter store");
        Ok(Response::new(PurgeResponse { purged }))
    }
}

impl DeliverService {
    /// `Deliver.Resume`: see [`crate::delivery::Delivery::resume`].
    async fn resume_shop(
        &self,
        request: Request<ResumeRequest>,
    ) -> Result<ResumeResponse, DeliverError> {
        self.authorize(&request)?;
        let request = request.into_inner();
        if request.shop_no.is_empty() {
            return Err(DeliverError::InvalidRequest(
                "name the shop to resume".into(),
            ));
        }
        let lane = wdtpipe_common::connectors::lane(&request.shop_no, &request.connector);
        Ok(match self.delivery.resume(&lane) {
            Some(cut) => ResumeResponse {
                resumed: true,
                message: format!(
                    "shop {} calls WDT now: cut short its {cut}",
                    request.shop_no
                ),
            },
            None => ResumeResponse {
                resumed: false,
                message: format!("shop {} was not waiting", request.shop_no),
            },
        })
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Replay and discard act on many letters at once: they need an explicit scope.
fn scoped(filter: Option<DeadLetterFilter>) -> Result<DeadLetterFilter, DeliverError> {
    let filter = filter.unwrap_or_default();
    if dead_letters::scoped(&filter) {
        Ok(filter)
    } else {
        Err(DeliverError::InvalidRequest(dead_letters::UNSCOPED.into()))
    }
}
