//! What transform does with one request, apart from gRPC: take the request's scheme, map
//! every record, split the trades by deliver shard, enqueue each shard's part, and merge the
//! shards' answers into receipts. [`crate::grpc`] is the thin adapter that serves it.

use crate::catalog::Catalog;
use crate::error::ProcessError;
use crate::mapping::{Mapped, map_records};
use crate::metrics::TransformMetrics;
use crate::scheme::{Scheme, Source};
use crate::shard::shard_of;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;
use wdtpipe_common::connectors::DEFAULT;
use wdtpipe_common::{now_ms, rejection};
use wdtpipe_proto::v1::{
    EnqueueRecord, EnqueueRequest, EnqueueResponse, ListDeadLettersRequest,
    ListDeadLettersResponse, ProcessRequest, ProcessResponse, Receipt, StockoutRecord, TrackResult,
    TrackWrite, TradeOrder, WriteRemappedRequest, WriteRemappedResponse,
};

/// Why a deliver shard did not take its part: the gRPC status code it answered (as its
/// number) and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardFailure {
    pub code: i32,
    pub message: String,
}

/// What a shard call returns.
pub(crate) type ShardCall<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ShardFailure>> + Send + 'a>>;

/// The deliver shards, in shard order: where each request's trades are written.
pub(crate) trait Shards: Send + Sync + 'static {
    fn count(&self) -> usize;
    /// Writes one request's part to one shard; answers once it is on disk there.
    fn enqueue(&self, shard: usize, request: EnqueueRequest) -> ShardCall<'_, EnqueueResponse>;
    /// One page of a shard's dead letters (`Deliver.ListDeadLetters`).
    fn list_dead_letters(
        &self,
        shard: usize,
        request: ListDeadLettersRequest,
    ) -> ShardCall<'_, ListDeadLettersResponse>;
    /// A kuaidi100 push for a shard (`Deliver.Track`).
    fn track(&self, shard: usize, write: TrackWrite) -> ShardCall<'_, TrackResult>;
    /// Writes re-mapped letters to a shard (`Deliver.WriteRemapped`), an admin call made
    /// with the caller's `authorization` value (empty: none).
    fn write_remapped(
        &self,
        shard: usize,
        request: WriteRemappedRequest,
        authorization: String,
    ) -> ShardCall<'_, WriteRemappedResponse>;
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer").finish_non_exhaustive()
    }
}

/// Maps requests with the catalog's schemes and writes them to the shards.
pub(crate) struct Transformer {
    catalog: Arc<Catalog>,
    shards: Box<dyn Shards>,
    metrics: Arc<TransformMetrics>,
}

/// The 1-based position of a record: as ingest numbered it, else its index in the batch.
pub(crate) fn position_of(index: usize, given: u32) -> u32 {
    if given == 0 {
        u32::try_from(index + 1).unwrap_or(u32::MAX)
    } else {
        given
    }
}

/// Splits each record's trades by shard. A record whose trades span shards appears on
/// each of them with its part; every shard dedupes it by record id, so a retry after a
/// partial failure converges.
fn split_by_shard(records: Vec<EnqueueRecord>, shards: usize) -> Vec<Vec<EnqueueRecord>> {
    let mut per_shard: Vec<Vec<EnqueueRecord>> = (0..shards).map(|_| Vec::new()).collect();
    for mut record in records {
        if record.skipped {
            // No trades: the shard of the tid it would have had remembers the skip.
            per_shard[shard_of(&record.skipped_tid, shards)].push(record);
            continue;
        }
        let mut parts: Vec<Vec<TradeOrder>> = (0..shards).map(|_| Vec::new()).collect();
        for trade in std::mem::take(&mut record.trades) {
            parts[shard_of(&trade.tid, shards)].push(trade);
        }
        let mut parts: Vec<(usize, Vec<TradeOrder>)> = parts
            .into_iter()
            .enumerate()
            .filter(|(_, trades)| !trades.is_empty())
            .collect();
        // The last part takes the record itself; the others (a record spanning shards)
        // copy its header, `record` holding no trades now (the source record is in it).
        let last = parts.pop();
        for (shard, trades) in parts {
            per_shard[shard].push(EnqueueRecord {
                trades,
                ..record.clone()
            });
        }
        if let Some((shard, trades)) = last {
            per_shard[shard].push(EnqueueRecord { trades, ..record });
        }
    }
    per_shard
}

impl Transformer {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        shards: Box<dyn Shards>,
        metrics: Arc<TransformMetrics>,
    ) -> Self {
        assert!(shards.count() > 0, "at least one deliver shard");
        Self {
            catalog,
            shards,
            metrics,
        }
    }

    pub(crate) fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub(crate) fn metrics(&self) -> &TransformMetrics {
        &self.metrics
    }

    pub(crate) fn shards(&self) -> &dyn Shards {
        self.shards.as_ref()
    }

    /// The account name trades of a scheme carry: empty for `default`.
    pub(crate) fn trade_connector(scheme: &Scheme) -> &str {
        if scheme.connector == DEFAULT {
            ""
        } else {
            scheme.connector.as_str()
        }
    }

    /// The scheme of this id (`""` is `default`).
    pub(crate) fn scheme(&self, id: &str) -> Result<Arc<Scheme>, ProcessError> {
        self.catalog
            .current()
            .set
            .get(id)
            .cloned()
            .ok_or_else(|| ProcessError::NoScheme(format!("no scheme {id:?}")))
    }

    /// Maps records with a scheme, writing nothing (a dry run).
    pub(crate) fn convert<'a>(
        &self,
        scheme_id: &str,
        records: impl IntoIterator<Item = &'a StockoutRecord>,
    ) -> Result<Vec<Mapped>, ProcessError> {
        let scheme = self.scheme(scheme_id)?;
        let positioned = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (position_of(i, 0), r));
        map_records(positioned, &scheme).map_err(ProcessError::Invalid)
    }

    /// One request: map every record, write each shard its part, merge the receipts.
    pub(crate) async fn process(
        &self,
        request: ProcessRequest,
    ) -> Result<ProcessResponse, ProcessError> {
        if request.records.is_empty() {
            return Err(ProcessError::NoRecords);
        }
        // One scheme for the whole request, whatever reloads meanwhile.
        let scheme = self.scheme(&request.scheme)?;
        if scheme.source != Source::Callback {
            return Err(ProcessError::WrongSource(format!(
                "scheme {:?} takes kuaidi100 pushes (a form with param and sign), not JSON records",
                scheme.id
            )));
        }
        let label = scheme.label();
        let mut positioned = Vec::with_capacity(request.records.len());
        for (i, envelope) in request.records.iter().enumerate() {
            let position = position_of(i, envelope.position);
            let record = envelope.record.as_ref().ok_or_else(|| {
                ProcessError::Invalid(rejection::rejection(position, "", "record", "missing"))
            })?;
            positioned.push((position, record));
        }
        let mapped = map_records(positioned, &scheme).map_err(|r| {
            self.metrics.outcome("invalid");
            self.metrics.records(&scheme.id, "rejected", 1);
            tracing::info!(rejection = %rejection::message(&r), "request rejected");
            ProcessError::Invalid(r)
        })?;
        let transformed_at_ms = now_ms();
        let mut receipts = Vec::with_capacity(mapped.len());
        let mut records = Vec::with_capacity(mapped.len());
        let (mut trade_count, mut skipped_count) = (0, 0);
        let connector = Self::trade_connector(&scheme);
        for (i, (envelope, mapped)) in request.records.into_iter().zip(mapped).enumerate() {
            let skipped_tid = match &mapped {
                Mapped::Skipped { tid } => Some(tid.clone()),
                Mapped::Trades(_) => None,
            };
            let skipped = skipped_tid.is_some();
            skipped_count += u64::from(skipped);
            let mut trades: Vec<TradeOrder> = mapped.into_trades();
            for trade in &mut trades {
                trade.connector = connector.to_owned();
            }
            trade_count += trades.len();
            receipts.push(Receipt {
                position: position_of(i, envelope.position),
                record_id: envelope.record_id.clone(),
                tids: trades.iter().map(|t| t.tid.clone()).collect(),
                duplicate: false,
                skipped,
                scheme: label.clone(),
            });
            records.push(EnqueueRecord {
                skipped,
                skipped_tid: skipped_tid.unwrap_or_default(),
                record_id: envelope.record_id,
                received_at_ms: envelope.received_at_ms,
                source: envelope.source,
                trades,
                transformed_at_ms,
                traceparent: envelope.traceparent,
                scheme: label.clone(),
                tracking_numbers: envelope
                    .record
                    .as_ref()
                    .map(tracking_numbers)
                    .unwrap_or_default(),
                // Kept by deliver with the trades, for a dead letter to be re-mapped.
                record: if skipped { None } else { envelope.record },
            });
        }

        // Counted once per request and outcome, not per record (each count looks up labels).
        let accepted_count = receipts.len() as u64 - skipped_count;
        if accepted_count > 0 {
            self.metrics.records(&scheme.id, "accepted", accepted_count);
        }
        if skipped_count > 0 {
            self.metrics.records(&scheme.id, "skipped", skipped_count);
        }
        let started = Instant::now();
        let calls = split_by_shard(records, self.shards.count())
            .into_iter()
            .enumerate()
            .filter(|(_, records)| !records.is_empty())
            .map(|(shard, records)| {
                let enqueue = EnqueueRequest {
                    records,
                    idempotency_key: request.idempotency_key.clone(),
                    request_id: request.request_id.clone(),
                };
                async move { (shard, self.shards.enqueue(shard, enqueue).await) }
            });
        let mut answers: Vec<(usize, EnqueueResponse)> = Vec::new();
        let mut failure: Option<ShardFailure> = None;
        for (shard, result) in futures_util::future::join_all(calls).await {
            match result {
                Ok(answer) => answers.push((shard, answer)),
                Err(refused) => {
                    tracing::warn!(shard, code = refused.code, message = %refused.message, "deliver shard refused the batch");
                    failure.get_or_insert(refused);
                }
            }
        }
        self.metrics
            .deliver_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(failure) = failure {
            self.metrics.outcome(&code_name(failure.code));
            return Err(ProcessError::Deliver(failure));
        }
        // A record is a duplicate when every shard holding part of it says so.
        for receipt in &mut receipts {
            let mut seen = answers
                .iter()
                .flat_map(|(_, a)| a.results.iter())
                .filter(|r| r.record_id == receipt.record_id)
                .peekable();
            receipt.duplicate = seen.peek().is_some() && seen.all(|r| r.duplicate);
        }
        self.metrics.outcome("ok");
        self.metrics.trades.inc_by(trade_count as u64);
        tracing::debug!(trades = trade_count, shards = answers.len(), "forwarded");
        Ok(ProcessResponse { receipts })
    }
}

/// The tracking numbers a record carries (`logistics_no`, `kuaidi100Data.nu`), for
/// deliver's index of kuaidi100 pushes.
fn tracking_numbers(record: &StockoutRecord) -> Vec<String> {
    let mut numbers = Vec::new();
    let pushed = record.kuaidi100_data.as_ref().map(|k| k.nu.as_str());
    for number in [Some(record.logistics_no.as_str()), pushed]
        .into_iter()
        .flatten()
    {
        let number = number.trim();
        if !number.is_empty() && !numbers.iter().any(|n| n == number) {
            numbers.push(number.to_owned());
        }
    }
    numbers
}

/// The name of a gRPC status code, for the outcome label of the requests metric.
fn code_name(code: i32) -> String {
    match code {
        1 => "cancelled",
        2 => "unknown",
        3 => "invalidargument",
        4 => "deadlineexceeded",
        5 => "notfound",
        8 => "resourceexhausted",
        9 => "failedprecondition",
        10 => "aborted",
        13 => "internal",
        14 => "unavailable",
        16 => "unauthenticated",
        _ => "other",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(tid: &str) -> TradeOrder {
        TradeOrder {
            tid: tid.into(),
            ..TradeOrder::default()
        }
    }

    /// Each shard gets the trades whose tid hashes to it, under a copy of the record's
    /// header; a shard with none of a record's trades does not get the record.
    #[test]
    fn records_split_by_the_shard_of_each_tid() {
        let tids: Vec<String> = (0..40).map(|n| format!("T{n}")).collect();
        let record = EnqueueRecord {
            record_id: "r1".into(),
            source: "s".into(),
            trades: tids.iter().map(|t| trade(t)).collect(),
            ..EnqueueRecord::default()
        };
        let single = EnqueueRecord {
            record_id: "r2".into(),
            trades: vec![trade("T0")],
            ..EnqueueRecord::default()
        };
        let split = split_by_shard(vec![record, single], 3);
        assert_eq!(split.len(), 3);
        let mut seen = Vec::new();
        for (shard, records) in split.iter().enumerate() {
            for record in records {
                assert!(record.record_id == "r1" || record.record_id == "r2");
                if record.record_id == "r1" {
                    assert_eq!(record.source, "s");
                }
                for trade in &record.trades {
                    assert_eq!(shard_of(&trade.tid, 3), shard);
                    seen.push((record.record_id.clone(), trade.tid.clone()));
                }
            }
        }
        seen.sort();
        let mut expected: Vec<(String, String)> =
            tids.iter().map(|t| ("r1".to_owned(), t.clone())).collect();
        expected.push(("r2".into(), "T0".into()));
        expected.sort();
        assert_eq!(seen, expected);
        let r2_parts = split
            .iter()
            .flatten()
            .filter(|r| r.record_id == "r2")
            .count();
        assert_eq!(r2_parts, 1);
        assert_eq!(
            split_by_shard(vec![EnqueueRecord::default()], 2),
            vec![Vec::<EnqueueRecord>::new(), Vec::new()],
            "a record without trades goes nowhere"
        );
    }

    /// Shards in memory: each answers every record as new, or fails as told.
    struct FakeShards {
        count: usize,
        failing: Option<usize>,
        seen: Arc<std::sync::Mutex<Vec<(usize, EnqueueRequest)>>>,
    }

    impl Shards for FakeShards {
        fn count(&self) -> usize {
            self.count
        }

        fn track(&self, _shard: usize, _write: TrackWrite) -> ShardCall<'_, TrackResult> {
            Box::pin(std::future::ready(Ok(TrackResult::default())))
        }

        fn list_dead_letters(
            &self,
            _shard: usize,
            _request: ListDeadLettersRequest,
        ) -> ShardCall<'_, ListDeadLettersResponse> {
            Box::pin(std::future::ready(Ok(ListDeadLettersResponse::default())))
        }

        fn write_remapped(
            &self,
            _shard: usize,
            _request: WriteRemappedRequest,
            _authorization: String,
        ) -> ShardCall<'_, WriteRemappedResponse> {
            Box::pin(std::future::ready(Ok(WriteRemappedResponse::default())))
        }

        fn enqueue(&self, shard: usize, request: EnqueueRequest) -> ShardCall<'_, EnqueueResponse> {
            let results = request
                .records
                .iter()
                .map(|r| wdtpipe_proto::v1::EnqueueResult {
                    record_id: r.record_id.clone(),
                    duplicate: false,
                })
                .collect();
            self.seen.lock().unwrap().push((shard, request));
            let answer = if self.failing == Some(shard) {
                Err(ShardFailure {
                    code: 14,
                    message: "shard down".into(),
                })
            } else {
                Ok(EnqueueResponse { results })
            };
            Box::pin(std::future::ready(answer))
        }
    }

    fn record(tid: &str, status: &str) -> wdtpipe_proto::v1::RecordEnvelope {
        use wdtpipe_proto::v1::StockoutDetail;
        wdtpipe_proto::v1::RecordEnvelope {
            record_id: format!("id-{tid}"),
            record: Some(StockoutRecord {
                tid: tid.into(),
                shop_no: "S1".into(),
                status: status.into(),
                nick_name: "n".into(),
                receiver_name: "r".into(),
                receiver_address: "a".into(),
                receiver_mobile: "1".into(),
                details_list: vec![StockoutDetail {
                    goods_no: "G".into(),
                    goods_name: "g".into(),
                    num: "1".into(),
                    ..StockoutDetail::default()
                }],
                ..StockoutRecord::default()
            }),
            ..Default::default()
        }
    }

    /// Without gRPC: a request is mapped with its scheme, each shard gets the trades of
    /// its tids, a skipped record goes to its tid's shard without trades, and a shard's
    /// refusal is the request's.
    #[tokio::test]
    async fn requests_map_and_route_without_grpc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s.toml"),
            "id = \"s\"\nskip = \"record.status == '5'\"\n",
        )
        .unwrap();
        let catalog = Arc::new(
            Catalog::load(
                Some(dir.path().to_owned()),
                crate::scheme::BuiltinOptions::default(),
                vec![DEFAULT.to_owned()],
            )
            .unwrap(),
        );
        let metrics = Arc::new(TransformMetrics::new(
            &mut wdtpipe_common::metrics::MetricsRegistry::default(),
        ));
        let seen: Arc<std::sync::Mutex<Vec<(usize, EnqueueRequest)>>> = Arc::default();
        let transformer = |failing| {
            Transformer::new(
                Arc::clone(&catalog),
                Box::new(FakeShards {
                    count: 2,
                    failing,
                    seen: Arc::clone(&seen),
                }),
                Arc::clone(&metrics),
            )
        };
        let request = ProcessRequest {
            records: (0..6)
                .map(|n| record(&format!("T{n}"), if n == 3 { "5" } else { "95" }))
                .collect(),
            scheme: "s".into(),
            ..ProcessRequest::default()
        };
        let ok = transformer(None);
        let answer = ok.process(request.clone()).await.unwrap();
        assert_eq!(answer.receipts.len(), 6);
        assert!(answer.receipts[3].skipped && answer.receipts[3].tids.is_empty());
        assert!(answer.receipts.iter().all(|r| r.scheme.starts_with("s@")));
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty());
        for (shard, request) in &seen {
            for record in &request.records {
                let tid = if record.skipped {
                    &record.skipped_tid
                } else {
                    &record.trades[0].tid
                };
                assert_eq!(shard_of(tid, 2), *shard, "{tid}");
            }
        }
        let missing = ok
            .process(ProcessRequest {
                scheme: "nope".into(),
                ..request.clone()
            })
            .await
            .unwrap_err();
        assert_eq!(missing, ProcessError::NoScheme("no scheme \"nope\"".into()));
        let failing = transformer(Some(shard_of("T0", 2)));
        assert_eq!(
            failing.process(request).await.unwrap_err(),
            ProcessError::Deliver(ShardFailure {
                code: 14,
                message: "shard down".into()
            })
        );
    }
}
