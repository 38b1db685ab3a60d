//! The gRPC `Deliver` service: thin handlers over the outbox and the delivery engine.

use crate::error::DeliverError;
use crate::store::Outbox;
use crate::worker::Delivery;
use std::sync::Arc;
use tonic::{Request, Response, Status};
use wdtpipe_common::now_ms;
use wdtpipe_proto::v1::deliver_server::Deliver;
use wdtpipe_proto::v1::{
    DeliveryState, EnqueueRequest, EnqueueResponse, GetStatusRequest, GetStatusResponse,
    OutboxEntry, TradeStatus,
};

/// Longest tid or shop number accepted into the outbox, in bytes.
const MAX_KEY_BYTES: usize = 1024;

pub struct DeliverService {
    outbox: Arc<Outbox>,
    delivery: Arc<Delivery>,
}

impl DeliverService {
    pub fn new(outbox: Arc<Outbox>, delivery: Arc<Delivery>) -> Self {
        Self { outbox, delivery }
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
        let done = self
            .outbox
            .enqueue(request.records, request.idempotency_key, now_ms())
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
