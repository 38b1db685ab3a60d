//! Operability: an order's whole path in its status, sharded deliver, Prometheus metrics
//! that move with traffic, and health that follows the next stage.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use wdtpipe_proto::v1::{DeliveryState, GetRecordRequest, StatsRequest};
use wdtpipe_sandbox::Faults;
use wdtpipe_tests::{
    Pipeline, PipelineOptions, RunningSandbox, eventually, fixture, fixtures, sandbox_config,
    wdt_for,
};
use wdtpipe_transform::shard::shard_of;

const DEADLINE: Duration = Duration::from_secs(30);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn with_sandbox(options: PipelineOptions) -> (RunningSandbox, Pipeline) {
    let sandbox = RunningSandbox::start(sandbox_config(), "127.0.0.1:0".parse().unwrap()).await;
    let pipeline = Pipeline::start(PipelineOptions {
        wdt: wdt_for(sandbox.wdt_url()),
        ..options
    })
    .await;
    (sandbox, pipeline)
}

/// A tid's status shows its whole life: received, mapped, written to which shard, a failed
/// attempt and its retry, then the rejection that dead-lettered it; the record lookup shows
/// the same path with the request id and trace context the sender gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_whole_path() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    sandbox.sandbox.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let (status, answer) = pipeline
        .post_with(
            &fixture("08-").body,
            &[("x-request-id", "req-life-1"), ("traceparent", TRACEPARENT)],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let record_id = answer["receipts"][1]["record_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let retried = eventually(
        "a failed attempt and a scheduled retry",
        DEADLINE,
        || async {
            pipeline
                .status("T0010")
                .await
                .into_iter()
                .find(|s| s.attempts >= 1)
        },
    )
    .await;
    assert!(
        retried
            .history
            .iter()
            .any(|a| a.outcome == "transient" && a.http_status == 500)
    );
    assert_ne!(retried.state, DeliveryState::Delivered as i32);

    sandbox.sandbox.set_faults(Faults {
        reject_tid_pattern: Some("T0010".into()),
        ..Faults::default()
    });
    let dead = eventually("T0010 dead", DEADLINE, || async {
        pipeline
            .status("T0010")
            .await
            .into_iter()
            .find(|s| s.state == DeliveryState::Dead as i32)
    })
    .await;
    assert_eq!(dead.request_id, "req-life-1");
    assert_eq!(dead.shard, "shard-0");
    assert_eq!(dead.record_id, record_id);
    assert!(dead.received_at_ms > 0);
    assert!(
        dead.received_at_ms <= dead.transformed_at_ms,
        "received before mapped"
    );
    assert!(
        dead.transformed_at_ms <= dead.enqueued_at_ms,
        "mapped before written"
    );
    assert!(
        dead.last_error.contains("rejected by sandbox rule"),
        "{}",
        dead.last_error
    );
    let outcomes: Vec<&str> = dead.history.iter().map(|a| a.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"transient") && outcomes.last() == Some(&"rejected"),
        "{outcomes:?}"
    );
    let times: Vec<i64> = dead.history.iter().map(|a| a.at_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "attempts in order");

    let record = pipeline
        .deliver_client()
        .await
        .get_record(GetRecordRequest {
            record_id: record_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(record.found);
    let info = record.record.unwrap();
    assert_eq!(
        (info.request_id.as_str(), info.traceparent.as_str()),
        ("req-life-1", TRACEPARENT)
    );
    assert_eq!(info.tids, ["T0010"]);
    assert_eq!(info.source, "http");
    assert!(
        info.received_at_ms <= info.transformed_at_ms
            && info.transformed_at_ms <= info.enqueued_at_ms
    );
    assert_eq!(record.trades.len(), 1);
    eventually("the others delivered", DEADLINE, || async {
        (sandbox.sandbox.trade("T0009").is_some() && sandbox.sandbox.trade("T0011").is_some())
            .then_some(())
    })
    .await;
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// With two deliver shards every trade is delivered, and each tid lives on exactly one
/// shard — the one `hash(tid) mod 2` names; Stats of both add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_tids_without_overlap() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions {
        shards: 2,
        ..PipelineOptions::default()
    })
    .await;
    let mut tids = Vec::new();
    for f in fixtures().into_iter().filter(|f| f.status() == 200) {
        let (status, _) = pipeline.post(&f.body).await;
        assert_eq!(status, 200, "{}", f.name);
        tids.extend(
            f.trades()
                .iter()
                .map(|t| t["trade"]["tid"].as_str().unwrap().to_owned()),
        );
    }
    eventually("every trade delivered", DEADLINE, || async {
        tids.iter()
            .all(|t| sandbox.sandbox.trade(t).is_some())
            .then_some(())
    })
    .await;
    let mut per_shard = [0usize; 2];
    for tid in &tids {
        let mut holders = Vec::new();
        for shard in 0..2 {
            let statuses = pipeline
                .shard_client(shard)
                .get_status(wdtpipe_proto::v1::GetStatusRequest { tid: tid.clone() })
                .await
                .unwrap()
                .into_inner()
                .trades;
            if !statuses.is_empty() {
                holders.push(shard);
            }
        }
        assert_eq!(
            holders,
            [shard_of(tid, 2)],
            "{tid} lives on exactly its shard"
        );
        per_shard[holders[0]] += 1;
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards got work: {per_shard:?}"
    );
    let mut delivered = 0;
    for (shard, &expected) in per_shard.iter().enumerate() {
        let stats = eventually("stats counted", DEADLINE, || async {
            let stats = pipeline
                .shard_client(shard)
                .stats(StatsRequest {})
                .await
                .unwrap()
                .into_inner();
            let total: u64 = stats.shops.iter().map(|s| s.delivered_total).sum();
            (total as usize == expected).then_some(stats)
        })
        .await;
        assert_eq!(stats.shard, format!("shard-{shard}"));
        assert_eq!(stats.queued_trades, 0);
        delivered += stats.shops.iter().map(|s| s.delivered_total).sum::<u64>();
    }
    assert_eq!(delivered as usize, tids.len());
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Parses Prometheus text exposition: every sample line is `name{labels} value`, and the
/// document ends with `# EOF`. Returns samples by their name and labels.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample line: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels closed: {line}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("sample value: {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(url: &str) -> BTreeMap<String, f64> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse_metrics(&response.text().await.unwrap())
}

/// `/metrics` of every service parses as Prometheus text, and its counters move with traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    let ingest_url = format!("{}/metrics", pipeline.http);
    let transform_url = format!("http://{}/metrics", pipeline.transform_metrics);
    let deliver_url = format!("http://{}/metrics", pipeline.deliver_metrics[0]);
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);

    let before_ingest = scrape(&ingest_url).await;
    let before_deliver = scrape(&deliver_url).await;
    for prefix in ["01-", "07-", "15-"] {
        pipeline.post(&fixture(prefix).body).await;
    }
    pipeline.post(&fixture("01-").body).await;
    eventually("delivered", DEADLINE, || async {
        ["T0001", "T0007", "T0008"]
            .iter()
            .all(|t| sandbox.sandbox.trade(t).is_some())
            .then_some(())
    })
    .await;
    let ingest = eventually("ingest counters", DEADLINE, || async {
        let m = scrape(&ingest_url).await;
        (get(&m, r#"wdtpipe_ingest_requests_total{status="200"}"#) >= 3.0).then_some(m)
    })
    .await;
    assert_eq!(
        get(&ingest, r#"wdtpipe_ingest_requests_total{status="422"}"#),
        1.0
    );
    assert!(
        get(&ingest, "wdtpipe_ingest_duplicate_records_total") >= 1.0,
        "the resent record"
    );
    assert!(
        get(&ingest, "wdtpipe_ingest_request_seconds_count")
            > get(&before_ingest, "wdtpipe_ingest_request_seconds_count")
    );
    let transform = scrape(&transform_url).await;
    assert!(get(&transform, "wdtpipe_transform_trades_total") >= 3.0);
    assert!(
        get(
            &transform,
            r#"wdtpipe_transform_requests_total{outcome="invalid"}"#
        ) >= 1.0
    );
    assert!(get(&transform, "wdtpipe_transform_deliver_call_seconds_count") >= 3.0);
    let deliver = eventually("deliver counters", DEADLINE, || async {
        let m = scrape(&deliver_url).await;
        (get(&m, "wdtpipe_deliver_delivered_trades_total") >= 3.0).then_some(m)
    })
    .await;
    assert!(
        get(&deliver, "wdtpipe_deliver_delivered_trades_total")
            > get(&before_deliver, "wdtpipe_deliver_delivered_trades_total")
    );
    assert!(
        get(
            &deliver,
            r#"wdtpipe_deliver_wdt_calls_total{outcome="delivered",code="0"}"#
        ) >= 1.0
    );
    assert!(get(&deliver, "wdtpipe_deliver_dedupe_hits_total") >= 1.0);
    assert_eq!(get(&deliver, "wdtpipe_deliver_outbox_queued_trades"), 0.0);
    assert!(deliver.contains_key("wdtpipe_deliver_oldest_queued_age_seconds"));
    // Each delivering call read its batch and wrote its results back.
    assert!(get(&deliver, "wdtpipe_deliver_ready_wait_seconds_count") >= 1.0);
    assert!(get(&deliver, "wdtpipe_deliver_write_back_seconds_count") >= 1.0);
    // The writer's load: it committed (and fsynced) the enqueues and settlements above.
    assert!(get(&deliver, "wdtpipe_deliver_outbox_flushes") >= 2.0);
    let busy = get(&deliver, "wdtpipe_deliver_outbox_writer_busy_seconds");
    let flushing = get(&deliver, "wdtpipe_deliver_outbox_writer_flush_seconds");
    assert!(
        busy > 0.0 && flushing > 0.0 && flushing <= busy,
        "busy {busy}, flush {flushing}"
    );
    pipeline.shutdown().await;
    sandbox.stop().await;
}

async fn health(addr: std::net::SocketAddr) -> Option<i32> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

/// gRPC health follows readiness: transform and ingest serve only while their next stage
/// answers; deliver serves once its store is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_next_stage() {
    const SERVING: i32 = 1;
    let (sandbox, mut pipeline) = with_sandbox(PipelineOptions::default()).await;
    for addr in [
        pipeline.deliver_grpc,
        pipeline.transform_grpc,
        pipeline.ingest_grpc,
    ] {
        eventually("serving", DEADLINE, || async {
            (health(addr).await == Some(SERVING)).then_some(())
        })
        .await;
    }
    pipeline.stop_deliver().await;
    eventually(
        "transform not serving without deliver",
        DEADLINE,
        || async {
            (health(pipeline.transform_grpc)
                .await
                .is_some_and(|s| s != SERVING))
            .then_some(())
        },
    )
    .await;
    pipeline.restart_deliver().await;
    eventually("transform serving again", DEADLINE, || async {
        (health(pipeline.transform_grpc).await == Some(SERVING)).then_some(())
    })
    .await;
    let (status, answer): (u16, Value) = pipeline.post(&fixture("01-").body).await;
    assert_eq!(status, 200, "{answer}");
    pipeline.shutdown().await;
    sandbox.stop().await;
}
