//! The gRPC `Deliver` service: thin handlers over the outbox and the delivery engine.

use crate::error::DeliverError;
use crate::store::Outbox;
use crate::worker::Delivery;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use wdtpipe_common::config::Secret;
use wdtpipe_proto::v1::deliver_server::Deliver;
use wdtpipe_proto::v1::{
    DeadLetterFilter, DeliveryState, DiscardRequest, DiscardResponse, EnqueueRequest,
    EnqueueResponse, GetStatusRequest, GetStatusResponse, ListDeadLettersRequest,
    ListDeadLettersResponse, OutboxEntry, PurgeRequest, PurgeResponse, ReplayRequest,
    ReplayResponse, TradeStatus,
};

/// Dead letters listed when the request sets no limit.
const DEFAULT_LIST_LIMIT: usize = 100;

/// Longest tid or shop number accepted into the outbox, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// What Enqueue admits and who may run admin RPCs.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Refuse new batches while this many trades wait (0 = no limit).
    pub high_water_trades: u64,
    /// ... or while their payloads take this many bytes (0 = no limit).
    pub high_water_bytes: u64,
    /// Bearer token for Replay, Discard and Purge; empty = not required.
    pub admin_token: Secret,
}

pub struct DeliverService {
    outbox: Arc<Outbox>,
    delivery: Arc<Delivery>,
    admission: Admission,
}

impl DeliverService {
    pub fn new(outbox: Arc<Outbox>, delivery: Arc<Delivery>, admission: Admission) -> Self {
        Self {
            outbox,
            delivery,
            admission,
        }
    }

    /// Refuses new work above the high-water mark, so a stuck WDT cannot fill the disk.
    fn admit(&self) -> Result<(), DeliverError> {
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

fn validate(request: &EnqueueRequest) -> Result<(), DeliverError> {
    let invalid = |m: String| Err(DeliverError::InvalidRequest(m));
    if request.records.is_empty() {
        return invalid("no records".into());
    }
    for (i, record) in request.records.iter().enumerate() {
        if record.record_id.is_empty() {
            return invalid(format!("record {}: empty record_id", i + 1));
        }
        if record.trades.is_empty() {
            return invalid(format!("record {}: no trades", i + 1));
        }
        for trade in &record.trades {
            if trade.tid.is_empty() || trade.tid.len() > MAX_KEY_BYTES {
                return invalid(format!("record {}: tid empty or too long", i + 1));
            }
            if trade.shop_no.is_empty() || trade.shop_no.len() > MAX_KEY_BYTES {
                return invalid(format!(
                    "record {} (tid {}): shop_no empty or too long",
                    i + 1,
                    trade.tid
                ));
            }
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Deliver for DeliverService {
    #[tracing::instrument(skip_all, fields(records = request.get_ref().records.len()))]
    async fn enqueue(
        &self,
        request: Request<EnqueueRequest>,
    ) -> Result<Response<EnqueueResponse>, Status> {
        let request = request.into_inner();
        validate(&request)?;
        self.admit()?;
        let done = self
            .outbox
            .enqueue(
                request.records,
                request.idempotency_key,
                self.delivery.clock().now_ms(),
            )
            .await
            .map_err(DeliverError::from)?;
        let duplicates = done.results.iter().filter(|r| r.duplicate).count();
        tracing::debug!(duplicates, "enqueued");
        self.delivery.notify(done.ready_shops);
        Ok(Response::new(EnqueueResponse {
            results: done.results,
        }))
    }

    #[tracing::instrument(skip_all, fields(tid = %request.get_ref().tid))]
    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let tid = request.into_inner().tid;
        let entries = self
            .outbox
            .entries_for_tid(&tid)
            .map_err(DeliverError::from)?;
        let paused = self.delivery.paused_shops();
        let trades = entries
            .into_iter()
            .map(|entry| {
                let shop_paused = paused.get(&entry.shop_no).cloned().unwrap_or_default();
                status_of(entry, shop_paused)
            })
            .collect();
        Ok(Response::new(GetStatusResponse { trades }))
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
        let (letters, total) = self
            .outbox
            .dead_letters(&filter, limit)
            .map_err(DeliverError::from)?;
        Ok(Response::new(ListDeadLettersResponse {
            letters,
            total: u32::try_from(total).unwrap_or(u32::MAX),
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
            .replay(filter, self.delivery.clock().now_ms())
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
    async fn discard(
        &self,
        request: Request<DiscardRequest>,
    ) -> Result<Response<DiscardResponse>, Status> {
        self.authorize(&request)?;
        let filter = scoped(request.into_inner().filter)?;
        let discarded = self
            .outbox
            .discard(filter, self.delivery.clock().now_ms())
            .await
            .map_err(DeliverError::from)?;
        tracing::info!(discarded, "dead letters discarded");
        Ok(Response::new(DiscardResponse { discarded }))
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

/// Replay and discard act on many letters at once: they need an explicit scope.
fn scoped(filter: Option<DeadLetterFilter>) -> Result<DeadLetterFilter, DeliverError> {
    let filter = filter.unwrap_or_default();
    let narrowed = !filter.tid.is_empty()
        || !filter.shop_no.is_empty()
        || filter.since_ms != 0
        || filter.until_ms != 0;
    if narrowed || filter.all {
        Ok(filter)
    } else {
        Err(DeliverError::InvalidRequest(
            "set a tid, a shop, a time range, or all".into(),
        ))
    }
}

fn status_of(entry: OutboxEntry, shop_paused: String) -> TradeStatus {
    let pending = entry.pending.unwrap_or_default();
    let state = DeliveryState::try_from(entry.state).unwrap_or(DeliveryState::Unspecified);
    TradeStatus {
        tid: entry.tid,
        shop_no: entry.shop_no,
        state: state as i32,
        record_id: entry.record_id,
        received_at_ms: entry.received_at_ms,
        attempts: entry.attempts,
        last_error: if entry.dead_reason.is_empty() {
            entry.last_error
        } else {
            entry.dead_reason
        },
        next_attempt_at_ms: entry.next_attempt_at_ms,
        delivered_at_ms: entry.delivered_at_ms,
        new_count: entry.new_count,
        chg_count: entry.chg_count,
        history: entry.history,
        versions: entry.versions,
        trade: pending.trade,
        shop_paused,
    }
}
