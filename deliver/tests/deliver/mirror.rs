//! The copies of the ready queues that the outbox keeps in memory answer every read exactly
//! as sled does: after enqueues (new tids and newer versions), every kind of settlement,
//! promotions, purges, replays, a reopen, and a backlog too long to copy.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::sync::Arc;
use wdtpipe_deliver::store::{Outbox, Outcome, ReadyItem, Settlement};
use wdtpipe_proto::v1::{Attempt, DeadLetterFilter, EnqueueRecord, TradeOrder};

const SHOPS: [&str; 3] = ["S0", "S1", "S2"];

fn record(id: String, trades: Vec<(String, &str)>, paid: u32) -> EnqueueRecord {
    EnqueueRecord {
        record_id: id,
        received_at_ms: 1,
        source: "test".into(),
        trades: trades
            .into_iter()
            .map(|(tid, shop)| TradeOrder {
                tid,
                shop_no: shop.into(),
                paid: paid.to_string(),
                ..TradeOrder::default()
            })
            .collect(),
        ..EnqueueRecord::default()
    }
}

/// Everything a read answers about one item.
type Seen = (String, String, u64, u64, Vec<u8>, String, i64, i64, u32);

fn seen(items: Vec<ReadyItem>) -> Vec<Seen> {
    items
        .into_iter()
        .map(|i| {
            (
                i.key.tid,
                i.key.shop_no,
                i.queue_seq,
                i.seq,
                i.encoded_trade,
                i.record_id,
                i.received_at_ms,
                i.first_attempt_at_ms,
                i.attempts,
            )
        })
        .collect()
}

/// Compares the read every shop's loop would get with sled's answer, for the whole queue
/// and for a random limit and skip set; answers how many shops were read from memory.
async fn check(outbox: &Arc<Outbox>, rng: &mut StdRng, step: usize) -> usize {
    let mirrored = outbox.mirrored_shops();
    for shop in SHOPS {
        let everything = Arc::new(HashSet::new());
        let from_sled = seen(
            outbox
                .ready_skipping(shop, usize::MAX, &everything)
                .unwrap(),
        );
        let answered = seen(
            outbox
                .ready_async(shop, usize::MAX, everything)
                .await
                .unwrap(),
        );
        assert_eq!(answered, from_sled, "step {step}, shop {shop}");
        let skip: HashSet<u64> = from_sled
            .iter()
            .filter(|_| rng.random_bool(0.3))
            .map(|s| s.2)
            .collect();
        let limit = rng.random_range(1..=5);
        let from_sled = seen(outbox.ready_skipping(shop, limit, &skip).unwrap());
        let answered = seen(
            outbox
                .ready_async(shop, limit, Arc::new(skip))
                .await
                .unwrap(),
        );
        assert_eq!(
            answered, from_sled,
            "step {step}, shop {shop}, limit {limit}"
        );
    }
    mirrored.len()
}

#[tokio::test]
async fn copies_in_memory_read_as_sled_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Arc::new(Outbox::open(dir.path()).unwrap());
    let mut rng = StdRng::seed_from_u64(7);
    let mut now = 1_000;
    let mut records = 0;
    let mut from_memory = 0;
    for step in 0..600 {
        now += rng.random_range(0..400);
        match rng.random_range(0..100) {
            // New records: new tids, and newer versions of tids that may still wait.
            0..40 => {
                let batch = (0..rng.random_range(1..=3))
                    .map(|_| {
                        records += 1;
                        let trades = (0..rng.random_range(1..=2))
                            .map(|_| {
                                let tid = format!("T{}", rng.random_range(0..16));
                                (tid, SHOPS[rng.random_range(0..SHOPS.len())])
                            })
                            .collect();
                        record(format!("r{records}"), trades, rng.random())
                    })
                    .collect();
                outbox.enqueue(batch, String::new(), now).await.unwrap();
            }
            // What pushing some ready trades did: every outcome.
            40..75 => {
                let shop = SHOPS[rng.random_range(0..SHOPS.len())];
                let ready = outbox.ready(shop, rng.random_range(1..=4)).unwrap();
                let settlements = ready
                    .into_iter()
                    .map(|ready| Settlement {
                        ready,
                        attempt: Attempt {
                            at_ms: now,
                            outcome: "test".into(),
                            ..Attempt::default()
                        },
                        outcome: match rng.random_range(0..10) {
                            0..6 => Outcome::Delivered {
                                new_count: 1,
                                chg_count: 0,
                            },
                            6..8 => Outcome::Retry {
                                due_ms: now + rng.random_range(0..2_000),
                            },
                            8 => Outcome::Dead {
                                reason: "refused".into(),
                            },
                            _ => Outcome::Keep,
                        },
                    })
                    .collect();
                outbox.settle(settlements, now).await.unwrap();
            }
            75..85 => {
                outbox.promote_due(now).await.unwrap();
            }
            85..90 => {
                let filter = DeadLetterFilter {
                    shop_no: SHOPS[rng.random_range(0..SHOPS.len())].into(),
                    ..DeadLetterFilter::default()
                };
                outbox.replay(filter).await.unwrap();
            }
            90..93 => {
                let shop = SHOPS[rng.random_range(0..SHOPS.len())];
                let tid = format!("T{}", rng.random_range(0..16));
                outbox.purge(shop.into(), tid, now).await.unwrap();
            }
            93..96 => {
                assert_eq!(Arc::strong_count(&outbox), 1, "no read holds the outbox");
                outbox.close().unwrap();
                drop(outbox);
                outbox = Arc::new(Outbox::open(dir.path()).unwrap());
            }
            _ => {
                outbox.expire(now).await.unwrap();
            }
        }
        from_memory += check(&outbox, &mut rng, step).await;
    }
    assert!(
        from_memory > 600,
        "the copies answered only {from_memory} shop reads of 1800"
    );
}

/// A queue too long to copy is read from sled, and copied again once it is short.
#[tokio::test]
async fn a_backlog_is_read_from_sled_until_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(dir.path()).unwrap());
    let mut rng = StdRng::seed_from_u64(11);
    let enqueue = |from: usize, to: usize| {
        let outbox = Arc::clone(&outbox);
        async move {
            let batch = (from..to)
                .map(|n| record(format!("r{n}"), vec![(format!("T{n}"), "S0")], 1))
                .collect();
            outbox.enqueue(batch, String::new(), 10).await.unwrap();
        }
    };
    enqueue(0, 5).await;
    check(&outbox, &mut rng, 0).await;
    assert!(
        outbox.mirrored_shops().contains("S0"),
        "a short queue is copied"
    );
    for n in 0..3 {
        enqueue(5 + n * 500, 5 + (n + 1) * 500).await;
    }
    check(&outbox, &mut rng, 1).await;
    assert!(
        !outbox.mirrored_shops().contains("S0"),
        "1,505 trades are read from sled"
    );
    let mut step = 2;
    while !outbox.ready("S0", 1).unwrap().is_empty() {
        let settlements = outbox
            .ready("S0", 50)
            .unwrap()
            .into_iter()
            .map(|ready| Settlement {
                ready,
                attempt: Attempt::default(),
                outcome: Outcome::Delivered {
                    new_count: 1,
                    chg_count: 0,
                },
            })
            .collect();
        outbox.settle(settlements, 20).await.unwrap();
        check(&outbox, &mut rng, step).await;
        step += 1;
    }
    assert!(
        outbox.mirrored_shops().contains("S0"),
        "the drained queue is copied again"
    );
    enqueue(2_000, 2_003).await;
    check(&outbox, &mut rng, step).await;
    assert_eq!(outbox.ready("S0", 10).unwrap().len(), 3);
}
