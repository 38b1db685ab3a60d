//! One shop with several `trade_push` calls in flight: calls never share a tid, and a tid's
//! versions reach WDT in the order they were accepted, even when a newer version arrives
//! while the older one is being pushed.

use crate::scripted::{Pushed, ScriptedWdt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use wdtpipe_deliver::clock::Clock;
use wdtpipe_deliver::config::RetryPolicy;
use wdtpipe_deliver::delivery::Delivery;
use wdtpipe_deliver::keys::TradeKey;
use wdtpipe_deliver::store::Outbox;
use wdtpipe_deliver::wdt::Reply;
use wdtpipe_proto::v1::{DeliveryState, EnqueueRecord, TradeOrder};
use wdtpipe_testkit::eventually;

/// Longest any wait of this test may take.
const DEADLINE: Duration = Duration::from_secs(60);

const SHOP: &str = "S";
const TRADES: usize = 300;
const CALLS_PER_SHOP: usize = 4;

/// What WDT was sent, read from its calls.
struct Seen {
    /// The most calls in progress at once.
    calls_max: usize,
    /// Tids sent while another call held them.
    overlaps: Vec<String>,
    /// Every version pushed, per tid, in call order (the `seller_memo` marks the version).
    pushes: HashMap<String, Vec<String>>,
}

impl Seen {
    fn of(calls: &[Pushed]) -> Self {
        let mut pushes: HashMap<String, Vec<String>> = HashMap::new();
        for trade in calls.iter().flat_map(|call| &call.trades) {
            pushes
                .entry(trade.tid.clone())
                .or_default()
                .push(trade.seller_memo.clone());
        }
        Self {
            calls_max: calls.iter().map(|call| call.in_flight).max().unwrap_or(0),
            overlaps: calls
                .iter()
                .flat_map(|call| call.overlapping.iter().cloned())
                .collect(),
            pushes,
        }
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
    // A WDT that takes a while to answer.
    let api = ScriptedWdt::slow(Duration::from_millis(200), vec![Reply::answer(0, "")]);
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
        (Seen::of(&api.calls()).pushes.len() >= 100).then_some(())
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
                let seen = Seen::of(&api.calls());
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

    let seen = Seen::of(&api.calls());
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
