//! One shop with several `trade_push` calls in flight: calls never share a tid, and a tid's
//! versions reach WDT in the order they were accepted, even when a newer version arrives
//! while the older one is being pushed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wdtpipe_deliver::clock::Clock;
use wdtpipe_deliver::config::RetryPolicy;
use wdtpipe_deliver::delivery::Delivery;
use wdtpipe_deliver::keys::TradeKey;
use wdtpipe_deliver::store::Outbox;
use wdtpipe_testkit::eventually;

/// Longest any wait of this test may take.
const DEADLINE: Duration = Duration::from_secs(60);
use wdtpipe_deliver::wdt::{Answer, BoxFuture, Reply, WdtApi};
use wdtpipe_proto::v1::{DeliveryState, EnqueueRecord, TradeOrder};

const SHOP: &str = "S";
const TRADES: usize = 300;
const CALLS_PER_SHOP: usize = 4;

#[derive(Default)]
struct Seen {
    /// Tids inside a call right now.
    in_call: HashSet<String>,
    /// Calls in progress right now, and the most ever seen at once.
    calls_now: usize,
    calls_max: usize,
    /// Tids sent while another call held them.
    overlaps: Vec<String>,
    /// Every version pushed, per tid, in call order (the `seller_memo` marks the version).
    pushes: HashMap<String, Vec<String>>,
}

/// A WDT that takes a while to answer and records what it was sent.
struct SlowWdt {
    seen: Mutex<Seen>,
}

impl WdtApi for SlowWdt {
    fn trade_push<'a>(
        &'a self,
        _shop: &'a str,
        trades: &'a [&'a TradeOrder],
    ) -> BoxFuture<'a, Reply> {
        let tids: Vec<String> = trades.iter().map(|t| t.tid.clone()).collect();
        {
            let mut seen = self.seen.lock().unwrap();
            seen.calls_now += 1;
            seen.calls_max = seen.calls_max.max(seen.calls_now);
            for trade in trades {
                if !seen.in_call.insert(trade.tid.clone()) {
                    seen.overlaps.push(trade.tid.clone());
                }
                seen.pushes
                    .entry(trade.tid.clone())
                    .or_default()
                    .push(trade.seller_memo.clone());
            }
        }
        let count = trades.len() as i32;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut seen = self.seen.lock().unwrap();
            seen.calls_now -= 1;
            for tid in &tids {
                seen.in_call.remove(tid);
            }
            Reply::Http {
                status: 200,
                retry_after: None,
                answer: Ok(Answer {
                    code: 0,
                    message: String::new(),
                    new_count: count,
                    chg_count: 0,
                }),
            }
        })
    }

    fn endpoint(&self) -> &str {
        "slow"
    }
}

fn records(version: &str, clock: &Clock) -> Vec<EnqueueRecord> {
    (0..TRADES)
        .map(|i| EnqueueRecord {
            record_id: format!("{version}-{i}"),
            received_at_ms: clock.now_ms(),
            source: "test".into(),
            trades: vec![TradeOrder {
                tid: format!("T{i:03}"),
                shop_no: SHOP.into(),
                seller_memo: version.into(),
                ..TradeOrder::default()
            }],
            ..EnqueueRecord::default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_overlap_but_never_share_a_tid_and_versions_stay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(dir.path()).unwrap());
    let api = Arc::new(SlowWdt {
        seen: Mutex::new(Seen::default()),
    });
    let clock = Clock::new();
    let delivery = Delivery::start(
        outbox.clone(),
        api.clone(),
        clock,
        super::settings(RetryPolicy::default(), CALLS_PER_SHOP, vec![]),
    )
    .unwrap();

    let done = outbox
        .enqueue(records("v1", &clock), String::new(), clock.now_ms())
        .await
        .unwrap();
    delivery.notify(done.ready_shops);
    // Once the first calls are under way, every tid gets a second version: some replace a
    // v1 still waiting, some arrive while their v1 is inside a call, some after it landed.
    eventually("the first 100 tids pushed", DEADLINE, || async {
        (api.seen.lock().unwrap().pushes.len() >= 100).then_some(())
    })
    .await;
    let done = outbox
        .enqueue(records("v2", &clock), String::new(), clock.now_ms())
        .await
        .unwrap();
    delivery.notify(done.ready_shops);

    eventually(
        "every tid delivered, each with its v2",
        DEADLINE,
        || async {
            let all_delivered = (0..TRADES).all(|i| {
                let entry = outbox
                    .entry(&TradeKey::new(&format!("T{i:03}"), SHOP))
                    .unwrap()
                    .unwrap();
                entry.state == DeliveryState::Delivered as i32
            });
            let all_v2 = {
                let seen = api.seen.lock().unwrap();
                seen.pushes.len() == TRADES
                    && seen
                        .pushes
                        .values()
                        .all(|versions| versions.iter().any(|v| v == "v2"))
            };
            (all_delivered && all_v2).then_some(())
        },
    )
    .await;
    delivery.stop(Duration::from_secs(5)).await;

    let seen = api.seen.lock().unwrap();
    assert!(
        seen.overlaps.is_empty(),
        "{} times a tid was pushed by two calls at once, first: {:?}",
        seen.overlaps.len(),
        &seen.overlaps[..seen.overlaps.len().min(10)]
    );
    assert!(
        seen.calls_max > 1,
        "the shop never had more than one call in flight"
    );
    assert!(
        seen.calls_max <= CALLS_PER_SHOP,
        "{} calls in flight, above the limit of {CALLS_PER_SHOP}",
        seen.calls_max
    );
    for (tid, versions) in &seen.pushes {
        let first_v2 = versions.iter().position(|v| v == "v2").unwrap();
        assert!(
            versions[first_v2..].iter().all(|v| v == "v2"),
            "{tid}: an older version went out after a newer one: {versions:?}"
        );
        assert!(
            versions[..first_v2].iter().all(|v| v == "v1"),
            "{tid}: unexpected versions {versions:?}"
        );
    }
}
