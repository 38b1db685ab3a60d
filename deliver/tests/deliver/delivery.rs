//! Deliver as a real gRPC service with a real outbox, pushing to the WDT sandbox over real
//! HTTP: batching, rejections, splitting, pausing a shop, retrying.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use wdtpipe_deliver::config::{DeliverConfig, RetryPolicy, WdtConfig};
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::{
    DeliveryState, EnqueueRecord, EnqueueRequest, GetStatusRequest, TradeLine, TradeOrder,
    TradeStatus,
};
use wdtpipe_sandbox::{Faults, SandboxConfig};
use wdtpipe_testkit::eventually;
use wdtpipe_testkit::sandbox::RunningSandbox;

const DEADLINE: Duration = Duration::from_secs(20);

struct Harness {
    sandbox: RunningSandbox,
    client: DeliverClient<tonic::transport::Channel>,
    stop_deliver: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(faults: Faults) -> Self {
        let sandbox = RunningSandbox::start(SandboxConfig {
            faults,
            ..SandboxConfig::default()
        })
        .await;
        let sandbox_config = sandbox.config();

        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let config = DeliverConfig {
            grpc_addr: addr,
            data_dir: dir.path().to_path_buf(),
            wdt: WdtConfig {
                url: sandbox.wdt_url(),
                sid: sandbox_config.sid.clone(),
                appkey: sandbox_config.appkey.clone(),
                appsecret: sandbox_config.appsecret.clone().into(),
                timeout_ms: 5_000,
                ..WdtConfig::default()
            },
            retry: RetryPolicy {
                base_ms: 10,
                cap_ms: 100,
                pause_probe_ms: 100,
                ..RetryPolicy::default()
            },
            ..DeliverConfig::default()
        };
        let (stop_deliver, deliver_stopped) = oneshot::channel::<()>();
        let listeners = wdtpipe_deliver::Listeners {
            grpc: listener,
            metrics: None,
        };
        tokio::spawn(wdtpipe_deliver::serve(config, listeners, async move {
            let _ = deliver_stopped.await;
        }));
        let client = DeliverClient::new(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy(),
        );
        Self {
            sandbox,
            client,
            stop_deliver,
            _dir: dir,
        }
    }

    async fn enqueue(&self, trades: Vec<TradeOrder>) {
        let records = trades
            .into_iter()
            .enumerate()
            .map(|(i, t)| EnqueueRecord {
                record_id: format!("{}-{i}", t.tid),
                received_at_ms: 1,
                source: "test".into(),
                trades: vec![t],
                ..EnqueueRecord::default()
            })
            .collect();
        self.client
            .clone()
            .enqueue(EnqueueRequest {
                records,
                ..EnqueueRequest::default()
            })
            .await
            .expect("enqueued");
    }

    async fn status(&self, tid: &str) -> Option<TradeStatus> {
        self.client
            .clone()
            .get_status(GetStatusRequest {
                tid: tid.into(),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .trades
            .into_iter()
            .next()
    }

    async fn wait_state(&self, tid: &str, state: DeliveryState) -> TradeStatus {
        eventually(&format!("{tid} to become {state:?}"), DEADLINE, || async {
            self.status(tid)
                .await
                .filter(|status| status.state == state as i32)
        })
        .await
    }

    /// Stops deliver; the sandbox stops as it is dropped.
    fn stop(self) {
        let _ = self.stop_deliver.send(());
    }
}

/// A trade the sandbox accepts.
fn trade(tid: &str, shop: &str) -> TradeOrder {
    TradeOrder {
        shop_no: shop.into(),
        tid: tid.into(),
        trade_status: 30,
        pay_status: 2,
        delivery_term: 1,
        pay_time: "2026-11-27 09:16:40".into(),
        buyer_nick: "buyer".into(),
        receiver_name: "李四".into(),
        receiver_address: "中关村大街 27 号".into(),
        receiver_mobile: "13800000000".into(),
        logistics_type: -1,
        post_amount: "0".into(),
        cod_amount: "0".into(),
        ext_cod_fee: "0".into(),
        other_amount: "0".into(),
        paid: "10".into(),
        order_list: vec![TradeLine {
            oid: format!("{tid}-1"),
            num: "1".into(),
            price: "10".into(),
            status: 30,
            refund_status: 0,
            goods_id: "G".into(),
            goods_no: "G".into(),
            goods_name: "杯子".into(),
            adjust_amount: "0".into(),
            discount: "0".into(),
            share_discount: "0".into(),
            ..TradeLine::default()
        }],
        ..TradeOrder::default()
    }
}

/// Calls carry one shop and at most 50 trades; every trade arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_one_shop_and_at_most_50_trades() {
    let h = Harness::start(Faults::default()).await;
    let mut trades: Vec<TradeOrder> = (0..120).map(|i| trade(&format!("A{i:03}"), "S1")).collect();
    trades.extend((0..10).map(|i| trade(&format!("B{i:03}"), "S2")));
    h.enqueue(trades).await;
    h.wait_state("A119", DeliveryState::Delivered).await;
    h.wait_state("B009", DeliveryState::Delivered).await;
    let calls = h.sandbox.calls();
    assert!(calls.iter().all(|c| c.code == 0 && c.tids.len() <= 50));
    for call in &calls {
        let shop_prefix = if call.shop_no == "S1" { "A" } else { "B" };
        assert!(
            call.tids.iter().all(|t| t.starts_with(shop_prefix)),
            "one shop per call"
        );
    }
    assert_eq!(h.sandbox.trades().len(), 130);
    h.stop();
}

/// Tids WDT names as rejected are dead-lettered with WDT's message; the rest of their call
/// is pushed again and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_rejections_are_dead_lettered_and_the_rest_delivered() {
    let h = Harness::start(Faults {
        reject_tid_pattern: Some("BAD".into()),
        ..Faults::default()
    })
    .await;
    h.enqueue(vec![
        trade("OK1", "S"),
        trade("BAD1", "S"),
        trade("OK2", "S"),
    ])
    .await;
    let dead = h.wait_state("BAD1", DeliveryState::Dead).await;
    assert!(
        dead.last_error.contains("rejected by sandbox rule"),
        "{}",
        dead.last_error
    );
    h.wait_state("OK1", DeliveryState::Delivered).await;
    h.wait_state("OK2", DeliveryState::Delivered).await;
    assert!(h.sandbox.trade("BAD1").is_none());
    h.stop();
}

/// A rejection that names no tid is narrowed down by splitting the call: only the culprit
/// is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_rejections_are_split_to_find_the_culprit() {
    let h = Harness::start(Faults {
        reject_without_tid: Some("BAD".into()),
        ..Faults::default()
    })
    .await;
    let mut trades: Vec<TradeOrder> = (0..9).map(|i| trade(&format!("OK{i}"), "S")).collect();
    trades.insert(6, trade("BAD", "S"));
    h.enqueue(trades).await;
    let dead = h.wait_state("BAD", DeliveryState::Dead).await;
    assert!(
        dead.last_error.contains("rejected by WDT"),
        "{}",
        dead.last_error
    );
    for i in 0..9 {
        h.wait_state(&format!("OK{i}"), DeliveryState::Delivered)
            .await;
    }
    assert_eq!(h.sandbox.trades().len(), 9);
    h.stop();
}

/// A shop whose calls fail the sign check is paused with its trades kept queued, while
/// another shop keeps flowing; once the problem is fixed the paused shop delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_error_pauses_only_that_shop() {
    let h = Harness::start(Faults {
        sign_error_shops: vec!["BROKEN".into()],
        ..Faults::default()
    })
    .await;
    h.enqueue(vec![trade("X1", "BROKEN"), trade("Y1", "FINE")])
        .await;
    h.wait_state("Y1", DeliveryState::Delivered).await;
    let paused = eventually("BROKEN to pause", DEADLINE, || async {
        h.status("X1")
            .await
            .filter(|status| !status.shop_paused.is_empty())
    })
    .await;
    assert_eq!(
        paused.state,
        DeliveryState::Queued as i32,
        "kept queued, not dead"
    );
    assert!(
        paused.shop_paused.contains("签名错误"),
        "{}",
        paused.shop_paused
    );
    h.enqueue(vec![trade("Y2", "FINE")]).await;
    h.wait_state("Y2", DeliveryState::Delivered).await;

    h.sandbox.set_faults(Faults::default());
    h.wait_state("X1", DeliveryState::Delivered).await;
    h.stop();
}

/// Server errors and throttling are retried until WDT accepts; nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried() {
    let h = Harness::start(Faults {
        error_rate: 1.0,
        ..Faults::default()
    })
    .await;
    h.enqueue(vec![trade("R1", "S"), trade("R2", "S")]).await;
    eventually("R1 retried", DEADLINE, || async {
        h.status("R1").await.filter(|s| s.attempts >= 2)
    })
    .await;
    h.sandbox.set_faults(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    });
    eventually("a throttled call", DEADLINE, || async {
        h.sandbox.calls().into_iter().find(|c| c.code == 1040)
    })
    .await;
    h.sandbox.set_faults(Faults::default());
    let r1 = h.wait_state("R1", DeliveryState::Delivered).await;
    h.wait_state("R2", DeliveryState::Delivered).await;
    assert!(
        r1.history
            .iter()
            .any(|a| a.outcome == "transient" && a.http_status == 500)
    );
    assert!(r1.history.iter().any(|a| a.outcome == "throttled"));
    h.stop();
}
