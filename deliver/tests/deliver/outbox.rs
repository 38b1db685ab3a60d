//! The sled outbox on a real temporary directory: ordering, latest-wins, dedupe, settling,
//! retries, dead letters, and durability across reopening.

use wdtpipe_deliver::keys::TradeKey;
use wdtpipe_deliver::store::{Enqueued, Outbox, Outcome, Ready, Settlement, StoreError};
use wdtpipe_proto::v1::{Attempt, DeliveryState, EnqueueRecord, TradeOrder};

fn trade(tid: &str, shop: &str, paid: &str) -> TradeOrder {
    TradeOrder {
        tid: tid.into(),
        shop_no: shop.into(),
        paid: paid.into(),
        ..TradeOrder::default()
    }
}

fn record(id: &str, trades: Vec<TradeOrder>) -> EnqueueRecord {
    EnqueueRecord {
        record_id: id.into(),
        received_at_ms: 1,
        source: "test".into(),
        trades,
        ..EnqueueRecord::default()
    }
}

/// An empty outbox in a fresh temporary directory, which lives as long as the guard
/// returned with it.
fn fresh_outbox() -> (tempfile::TempDir, Outbox) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(dir.path()).unwrap();
    (dir, outbox)
}

/// A fresh outbox (see [`fresh_outbox`]) holding one record, `r1`, with `trades`,
/// accepted at 1 ms.
async fn outbox_holding(trades: Vec<TradeOrder>) -> (tempfile::TempDir, Outbox) {
    let (dir, outbox) = fresh_outbox();
    enqueue(&outbox, vec![record("r1", trades)], 1).await;
    (dir, outbox)
}

/// Enqueues `records` in one request without an idempotency key, accepted at `now_ms`.
async fn enqueue(outbox: &Outbox, records: Vec<EnqueueRecord>, now_ms: i64) -> Enqueued {
    outbox
        .enqueue(records, String::new(), now_ms)
        .await
        .unwrap()
}

/// Enqueues one record holding one trade, without an idempotency key.
async fn enqueue_one(outbox: &Outbox, record_id: &str, trade: TradeOrder, now_ms: i64) -> Enqueued {
    enqueue(outbox, vec![record(record_id, vec![trade])], now_ms).await
}

fn attempt() -> Attempt {
    Attempt {
        at_ms: 1000,
        outcome: "test".into(),
        ..Attempt::default()
    }
}

fn settle(ready: Ready, outcome: Outcome) -> Settlement {
    Settlement {
        ready,
        attempt: attempt(),
        outcome,
    }
}

fn tids(ready: &[Ready]) -> Vec<&str> {
    ready.iter().map(|r| r.key.tid.as_str()).collect()
}

fn state(outbox: &Outbox, tid: &str, shop: &str) -> DeliveryState {
    let entry = outbox.entry(&TradeKey::new(tid, shop)).unwrap().unwrap();
    DeliveryState::try_from(entry.state).unwrap()
}

/// Trades come out per shop in acceptance order; a newer version of a waiting tid takes the
/// old one's place; a record id seen before is a duplicate.
#[tokio::test]
async fn order_latest_wins_and_dedupe() {
    let (_dir, outbox) = fresh_outbox();
    let records = vec![
        record("r1", vec![trade("A", "S1", "1"), trade("B", "S1", "1")]),
        record("r2", vec![trade("C", "S2", "1")]),
    ];
    let done = enqueue(&outbox, records, 10).await;
    assert_eq!(done.ready_shops.iter().collect::<Vec<_>>(), ["S1", "S2"]);
    enqueue_one(&outbox, "r3", trade("A", "S1", "2"), 11).await;
    let ready = outbox.ready("S1", 10).unwrap();
    assert_eq!(tids(&ready), ["A", "B"], "A keeps its place");
    assert_eq!(
        ready[0].trade.paid, "2",
        "the newest version of A is the one to push"
    );
    assert_eq!(tids(&outbox.ready("S2", 10).unwrap()), ["C"]);
    assert_eq!(outbox.ready("S1", 1).unwrap().len(), 1, "the limit holds");

    let again = enqueue_one(&outbox, "r1", trade("A", "S1", "9"), 12).await;
    assert!(again.results[0].duplicate);
    assert_eq!(
        outbox.ready("S1", 10).unwrap()[0].trade.paid,
        "2",
        "a duplicate changes nothing"
    );

    let keyed = outbox
        .enqueue(
            vec![record("r4", vec![trade("D", "S1", "1")])],
            "req-1".into(),
            13,
        )
        .await
        .unwrap();
    assert!(!keyed.results[0].duplicate);
    let keyed_again = outbox
        .enqueue(
            vec![record("r5", vec![trade("E", "S1", "1")])],
            "req-1".into(),
            14,
        )
        .await
        .unwrap();
    assert!(
        keyed_again.results[0].duplicate,
        "the same idempotency key is a duplicate request"
    );
    assert_eq!(tids(&outbox.ready("S1", 10).unwrap()), ["A", "B", "D"]);
}

/// Delivered trades leave the queue; a version that arrived while the old one was in flight
/// stays queued; retries wait and come back in order; rejections become dead letters.
#[tokio::test]
async fn settling() {
    let (_dir, outbox) = outbox_holding(vec![
        trade("A", "S", "1"),
        trade("B", "S", "1"),
        trade("C", "S", "1"),
        trade("D", "S", "1"),
    ])
    .await;
    let batch = outbox.ready("S", 10).unwrap();
    // B gets a new version while the batch is "in flight".
    enqueue_one(&outbox, "r2", trade("B", "S", "2"), 2).await;
    let mut batch = batch.into_iter();
    let (a, b, c, d) = (
        batch.next().unwrap(),
        batch.next().unwrap(),
        batch.next().unwrap(),
        batch.next().unwrap(),
    );
    let delivered = || Outcome::Delivered {
        new_count: 1,
        chg_count: 0,
    };
    outbox
        .settle(
            vec![
                settle(a, delivered()),
                settle(b, delivered()),
                settle(c, Outcome::Retry { due_ms: 5_000 }),
                settle(
                    d,
                    Outcome::Dead {
                        reason: "rejected by WDT: bad".into(),
                    },
                ),
            ],
            3,
        )
        .await
        .unwrap();
    assert_eq!(state(&outbox, "A", "S"), DeliveryState::Delivered);
    assert_eq!(state(&outbox, "B", "S"), DeliveryState::Queued);
    assert_eq!(state(&outbox, "C", "S"), DeliveryState::Retrying);
    assert_eq!(state(&outbox, "D", "S"), DeliveryState::Dead);
    let ready = outbox.ready("S", 10).unwrap();
    assert_eq!(tids(&ready), ["B"]);
    assert_eq!(ready[0].trade.paid, "2");
    let letters = outbox.dead_letters_for_tid("D").unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "rejected by WDT: bad");
    assert_eq!(letters[0].trade.as_ref().unwrap().tid, "D");

    assert_eq!(outbox.next_due().unwrap(), Some(5_000));
    let early = outbox.promote_due(4_999).await.unwrap();
    assert!(early.ready_shops.is_empty());
    assert_eq!(early.next_due_ms, Some(5_000));
    let due = outbox.promote_due(5_000).await.unwrap();
    assert_eq!(due.ready_shops.iter().collect::<Vec<_>>(), ["S"]);
    assert_eq!(
        tids(&outbox.ready("S", 10).unwrap()),
        ["B", "C"],
        "C is back at its original place, after B"
    );
    assert_eq!(outbox.next_due().unwrap(), None);
    assert_eq!(outbox.queued_len().unwrap(), 2);
}

/// Everything acknowledged survives closing and reopening, and sequence numbers keep rising.
#[tokio::test]
async fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    {
        let outbox = Outbox::open(dir.path()).unwrap();
        for i in 0..100 {
            enqueue_one(
                &outbox,
                &format!("r{i}"),
                trade(&format!("T{i:03}"), "S", "1"),
                1,
            )
            .await;
        }
        outbox.close().unwrap();
    }
    let outbox = Outbox::open(dir.path()).unwrap();
    let ready = outbox.ready("S", 1000).unwrap();
    assert_eq!(ready.len(), 100);
    assert_eq!(ready[0].key.tid, "T000");
    assert_eq!(ready[99].key.tid, "T099");
    let last_seq = ready[99].seq;
    enqueue_one(&outbox, "new", trade("N", "S", "1"), 2).await;
    let ready = outbox.ready("S", 1000).unwrap();
    assert!(ready[100].seq > last_seq);
    assert!(outbox.record("r5").unwrap().is_some());
    assert_eq!(outbox.shops_with_ready_work().unwrap(), ["S"]);
}

/// A directory another live outbox holds is refused with an error naming it; once that
/// outbox is closed and dropped, the directory opens again at once, as often as asked.
#[tokio::test]
async fn a_held_directory_is_refused_and_a_closed_one_reopens() {
    let (dir, held) = fresh_outbox();
    let err = Outbox::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    held.close().unwrap();
    drop(held);
    for i in 0..20 {
        let outbox = Outbox::open(dir.path()).unwrap();
        enqueue_one(
            &outbox,
            &format!("r{i}"),
            trade(&format!("T{i}"), "S", "1"),
            1,
        )
        .await;
        outbox.close().unwrap();
    }
    let outbox = Outbox::open(dir.path()).unwrap();
    assert_eq!(outbox.queued_len().unwrap(), 20);
}

/// Concurrent enqueues all land (they share group commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_all_land() {
    let (_dir, outbox) = fresh_outbox();
    let outbox = std::sync::Arc::new(outbox);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let outbox = outbox.clone();
        tasks.spawn(async move {
            enqueue_one(
                &outbox,
                &format!("r{i}"),
                trade(&format!("T{i}"), &format!("S{}", i % 3), "1"),
                1,
            )
            .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        assert!(!done.unwrap().results[0].duplicate);
    }
    let total: usize = ["S0", "S1", "S2"]
        .iter()
        .map(|s| outbox.ready(s, 1000).unwrap().len())
        .sum();
    assert_eq!(total, 200);
    assert_eq!(outbox.shops_with_ready_work().unwrap(), ["S0", "S1", "S2"]);
}

/// Replay puts a dead version back in the queue unless a newer version of its tid exists
/// (then it is only removed: latest wins); discard deletes; listing filters and counts.
#[tokio::test]
async fn replay_and_discard_dead_letters() {
    use wdtpipe_proto::v1::DeadLetterFilter;
    let (_dir, outbox) = outbox_holding(vec![
        trade("A", "S1", "1"),
        trade("B", "S1", "1"),
        trade("C", "S2", "1"),
    ])
    .await;
    let mut ready = outbox.ready("S1", 10).unwrap();
    ready.extend(outbox.ready("S2", 10).unwrap());
    let dead = |r: Ready| {
        let reason = format!("rejected by WDT: {} is bad", r.key.tid);
        settle(r, Outcome::Dead { reason })
    };
    outbox
        .settle(ready.into_iter().map(dead).collect(), 100)
        .await
        .unwrap();
    enqueue_one(&outbox, "r2", trade("A", "S1", "2"), 101).await;

    let all = DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    };
    let page = outbox.dead_letters(&all, 10, "").unwrap();
    let (letters, total) = (page.letters, page.total);
    assert_eq!(total, 3);
    assert!(letters.iter().all(|l| l.reason.contains("is bad")));
    let s2 = DeadLetterFilter {
        shop_no: "S2".into(),
        ..DeadLetterFilter::default()
    };
    assert_eq!(outbox.dead_letters(&s2, 10, "").unwrap().total, 1);
    let later = DeadLetterFilter {
        since_ms: 101,
        ..DeadLetterFilter::default()
    };
    assert_eq!(outbox.dead_letters(&later, 10, "").unwrap().total, 0);

    let s1 = DeadLetterFilter {
        shop_no: "S1".into(),
        ..DeadLetterFilter::default()
    };
    let replayed = outbox.replay(s1).await.unwrap();
    assert_eq!(
        (replayed.replayed, replayed.superseded),
        (1, 1),
        "A has a newer version waiting"
    );
    assert_eq!(replayed.tids, ["B"]);
    let ready = outbox.ready("S1", 10).unwrap();
    let versions: Vec<(&str, &str)> = ready
        .iter()
        .map(|r| (r.key.tid.as_str(), r.trade.paid.as_str()))
        .collect();
    assert_eq!(
        versions,
        [("A", "2"), ("B", "1")],
        "A's newer version stays; B is back"
    );
    assert_eq!(state(&outbox, "B", "S1"), DeliveryState::Queued);

    let discarded = outbox.discard(all.clone()).await.unwrap();
    assert_eq!(discarded, 1, "only C's letter was left");
    assert_eq!(outbox.dead_letters(&all, 10, "").unwrap().total, 0);
}

/// Dead letters keep the record and scheme their version came with, through replay and
/// purge; listing pages cover every letter once, newest first; a page token that this
/// outbox did not give is refused.
#[tokio::test]
async fn dead_letters_keep_their_record_and_list_in_pages() {
    use wdtpipe_proto::v1::{DeadLetterFilter, StockoutRecord};
    let (_dir, outbox) = fresh_outbox();
    for n in 0..7 {
        let tid = format!("T{n}");
        let mut with_record = record(&format!("r{n}"), vec![trade(&tid, "S1", "1")]);
        with_record.record = Some(StockoutRecord {
            tid: tid.clone(),
            warehouse_no: "WH01".into(),
            ..StockoutRecord::default()
        });
        with_record.scheme = "mall@0123456789ab".into();
        enqueue(&outbox, vec![with_record], 1).await;
    }
    let ready = outbox.ready("S1", 3).unwrap();
    let dead = |r: Ready| {
        settle(
            r,
            Outcome::Dead {
                reason: "rejected".into(),
            },
        )
    };
    outbox
        .settle(ready.into_iter().map(dead).collect(), 100)
        .await
        .unwrap();
    // The rest are purged into the store, later: they list first.
    assert_eq!(
        outbox.purge("S1".into(), String::new(), 200).await.unwrap(),
        4
    );
    let all = DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    };
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = outbox.dead_letters(&all, 3, &token).unwrap();
        assert_eq!(page.total, 7);
        assert!(page.letters.len() <= 3);
        seen.extend(page.letters);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let order: Vec<(i64, &str)> = seen
        .iter()
        .map(|l| (l.dead_at_ms, l.tid.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (200, "T6"),
            (200, "T5"),
            (200, "T4"),
            (200, "T3"),
            (100, "T2"),
            (100, "T1"),
            (100, "T0")
        ]
    );
    for letter in &seen {
        assert_eq!(letter.scheme, "mall@0123456789ab");
        assert_eq!(letter.record.as_ref().unwrap().tid, letter.tid);
    }
    // Replayed and dead again: the record is still there.
    let t0 = DeadLetterFilter {
        tid: "T0".into(),
        ..DeadLetterFilter::default()
    };
    assert_eq!(outbox.replay(t0.clone()).await.unwrap().replayed, 1);
    let ready = outbox.ready("S1", 10).unwrap();
    outbox
        .settle(ready.into_iter().map(dead).collect(), 400)
        .await
        .unwrap();
    let again = outbox.dead_letters(&t0, 10, "").unwrap().letters;
    assert_eq!(again[0].record.as_ref().unwrap().warehouse_no, "WH01");
    assert!(matches!(
        outbox.dead_letters(&all, 3, "not-a-token"),
        Err(StoreError::BadRequest(_))
    ));
}

/// Writing re-mapped letters: trades queue in the letters' original order under their
/// versions, unless a newer version waits (latest wins); a still-invalid letter stays with
/// the new reason; a letter that went meanwhile is `gone` and its trades are not written;
/// the dead entry of a tid re-mapped to another shop goes.
#[tokio::test]
async fn remapped_letters_are_written_latest_wins() {
    use wdtpipe_proto::v1::{DeadLetterFilter, DeadLetterKey, RemappedLetter};
    let (_dir, outbox) = fresh_outbox();
    for tid in ["A", "B", "C", "D"] {
        enqueue_one(&outbox, &format!("r-{tid}"), trade(tid, "BAD", "1"), 1).await;
    }
    let ready = outbox.ready("BAD", 10).unwrap();
    let seqs: Vec<u64> = ready.iter().map(|r| r.seq).collect();
    let reject = |r: Ready| {
        settle(
            r,
            Outcome::Dead {
                reason: "shop BAD does not exist".into(),
            },
        )
    };
    outbox
        .settle(ready.into_iter().map(reject).collect(), 100)
        .await
        .unwrap();
    // A newer version of C waits at the good shop.
    enqueue_one(&outbox, "r-C2", trade("C", "GOOD", "2"), 150).await;
    // D's letter goes before the re-map lands.
    let d = DeadLetterFilter {
        tid: "D".into(),
        ..DeadLetterFilter::default()
    };
    assert_eq!(outbox.discard(d).await.unwrap(), 1);
    let letter = |tid: &str, seq: u64| RemappedLetter {
        letter: Some(DeadLetterKey {
            tid: tid.into(),
            shop_no: "BAD".into(),
            connector: String::new(),
            seq,
        }),
        seq,
        record_id: format!("r-{tid}"),
        scheme: "mall@fixed".into(),
        trades: vec![trade(tid, "GOOD", "1")],
        ..RemappedLetter::default()
    };
    let still_invalid = RemappedLetter {
        trades: Vec::new(),
        error: "re-mapped by mall@fixed: still invalid: shop_no: no entry".into(),
        ..letter("B", seqs[1])
    };
    // Given out of order: written oldest first.
    let done = outbox
        .write_remapped(
            vec![
                letter("D", seqs[3]),
                letter("C", seqs[2]),
                still_invalid,
                letter("A", seqs[0]),
            ],
            200,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            done.repaired,
            done.requeued,
            done.superseded,
            done.still_invalid,
            done.gone
        ),
        (2, 1, 1, 1, 1)
    );
    assert_eq!(done.tids, ["A"]);
    let good: Vec<(String, String)> = outbox
        .ready("GOOD", 10)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.tid, r.trade.paid))
        .collect();
    assert_eq!(
        good,
        [("C".into(), "2".into()), ("A".into(), "1".into())],
        "C keeps its newer version; A joins the queue"
    );
    let a = outbox.entry(&TradeKey::new("A", "GOOD")).unwrap().unwrap();
    assert_eq!(a.scheme, "mall@fixed");
    assert!(
        a.last_error.contains("shop BAD does not exist"),
        "{}",
        a.last_error
    );
    assert!(outbox.entry(&TradeKey::new("A", "BAD")).unwrap().is_none());
    let all = DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    };
    let left = outbox.dead_letters(&all, 10, "").unwrap().letters;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].tid, "B");
    assert!(left[0].reason.contains("still invalid"));
    assert_eq!(left[0].scheme, "mall@fixed");
}

/// Bounded disk: after a burst drains, nothing is queued and no payload is kept; once the
/// retention runs out, dedupe records and status go too and the outbox holds nothing but
/// its sequence counter. Within the window a record id stays a duplicate; after it, not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_burst_leaves_nothing_behind() {
    const TRADES: usize = 20_000;
    const DAY_MS: i64 = 24 * 3600 * 1000;
    let (_dir, outbox) = fresh_outbox();
    let now = 1_000_000;
    for chunk in 0..TRADES / 100 {
        let records = (0..100)
            .map(|i| {
                let n = chunk * 100 + i;
                record(
                    &format!("r{n}"),
                    vec![trade(&format!("T{n}"), &format!("S{}", n % 4), "1")],
                )
            })
            .collect();
        enqueue(&outbox, records, now).await;
    }
    assert_eq!(outbox.queued_len().unwrap(), TRADES);
    for shop in ["S0", "S1", "S2", "S3"] {
        loop {
            let batch = outbox.ready(shop, 50).unwrap();
            if batch.is_empty() {
                break;
            }
            let delivered = batch
                .into_iter()
                .map(|r| {
                    settle(
                        r,
                        Outcome::Delivered {
                            new_count: 1,
                            chg_count: 0,
                        },
                    )
                })
                .collect();
            outbox.settle(delivered, now + 1).await.unwrap();
        }
    }
    let counts = outbox.key_counts().unwrap();
    assert_eq!(outbox.queued_len().unwrap(), 0);
    assert!(
        !counts.contains_key("q/") && !counts.contains_key("w/"),
        "{counts:?}"
    );
    let entry = outbox.entry(&TradeKey::new("T7", "S3")).unwrap().unwrap();
    assert!(entry.pending.is_none(), "delivered trades leave no payload");

    let within = outbox.expire(now + 7 * DAY_MS - 1).await.unwrap();
    assert_eq!(within.removed, 0, "nothing expires inside the retention");
    let again = enqueue_one(&outbox, "r5", trade("T5", "S1", "2"), now + DAY_MS).await;
    assert!(
        again.results[0].duplicate,
        "inside the window the record is a duplicate"
    );

    let later = now + 8 * DAY_MS;
    let mut removed = 0;
    loop {
        let expired = outbox.expire(later).await.unwrap();
        removed += expired.removed;
        if !expired.more {
            break;
        }
    }
    assert_eq!(
        removed,
        2 * TRADES,
        "every dedupe record and every status entry"
    );
    let counts = outbox.key_counts().unwrap();
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["m/"], "{counts:?}");

    let after = enqueue_one(&outbox, "r5", trade("T5", "S1", "3"), later).await;
    assert!(
        !after.results[0].duplicate,
        "after the window the record is new again"
    );
}

/// Each shop's oldest waiting trade: the head of its ready queue, or an older retrying trade.
#[tokio::test]
async fn oldest_waiting_per_shop() {
    let (_dir, outbox) = fresh_outbox();
    let received = |id: &str, at: i64, trades| EnqueueRecord {
        received_at_ms: at,
        ..record(id, trades)
    };
    let records = vec![
        received("r1", 100, vec![trade("A", "S1", "1")]),
        received("r2", 200, vec![trade("B", "S1", "1")]),
        received("r3", 300, vec![trade("C", "S2", "1")]),
        received("r4", 400, vec![trade("D", "S2", "1")]),
    ];
    enqueue(&outbox, records, 10).await;
    let oldest = outbox.oldest_waiting().unwrap();
    assert_eq!(
        oldest.into_iter().collect::<Vec<_>>(),
        [("S1".to_owned(), 100), ("S2".to_owned(), 300)]
    );
    // S2's head goes to the retry queue: D heads the ready queue, C still waits.
    let head = outbox.ready("S2", 1).unwrap().remove(0);
    outbox
        .settle(vec![settle(head, Outcome::Retry { due_ms: 5_000 })], 20)
        .await
        .unwrap();
    assert_eq!(tids(&outbox.ready("S2", 10).unwrap()), ["D"]);
    assert_eq!(outbox.oldest_waiting().unwrap()["S2"], 300);
}

/// A failed commit fails only its writes (nothing of them is kept); the writer reopens
/// sled and the next write succeeds, after the last one committed, without a restart.
#[tokio::test]
async fn a_failed_commit_fails_only_its_writes_and_the_outbox_recovers() {
    let (dir, outbox) = fresh_outbox();
    enqueue_one(&outbox, "r-a", trade("A", "S1", "1"), 1).await;
    outbox.fail_next_commit();
    let failed = outbox
        .enqueue(
            vec![record("r-b", vec![trade("B", "S1", "1")])],
            String::new(),
            2,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, StoreError::WriteFailed(why) if why.contains("injected")),
        "{failed:?}"
    );
    let health = outbox.storage_health();
    assert!(!health.writable());
    assert!(health.failing.unwrap().contains("injected"));
    assert_eq!(health.failed_commits, 1);
    assert!(outbox.admit().is_err(), "no new batch while writes fail");
    // Reads go on meanwhile.
    assert_eq!(tids(&outbox.ready("S1", 10).unwrap()), ["A"]);

    // The next write reopens sled first, and succeeds.
    enqueue_one(&outbox, "r-c", trade("C", "S1", "1"), 3).await;
    assert!(outbox.storage_health().writable());
    outbox.admit().unwrap();
    let ready = outbox.ready("S1", 10).unwrap();
    assert_eq!(tids(&ready), ["A", "C"], "B's failed write left nothing");
    assert!(ready[1].seq > ready[0].seq);
    assert_eq!(outbox.queued().trades, 2);
    assert!(outbox.record("r-b").unwrap().is_none());
    // The refused record is taken when sent again.
    let again = enqueue_one(&outbox, "r-b", trade("B", "S1", "1"), 4).await;
    assert!(!again.results[0].duplicate);
    drop(outbox);
    let reopened = Outbox::open(dir.path()).unwrap();
    assert_eq!(tids(&reopened.ready("S1", 10).unwrap()), ["A", "C", "B"]);
}

/// Builds an outbox holding one of each kind of thing: a delivered entry, a retrying and
/// a ready version, a dead letter with its record, dedupe records; returns its directory.
async fn outbox_of_every_kind(dir: &std::path::Path) {
    use wdtpipe_proto::v1::StockoutRecord;
    let outbox = Outbox::open(dir).unwrap();
    let with_source = |id: &str, trade: TradeOrder| {
        let mut r = record(id, vec![trade.clone()]);
        r.record = Some(StockoutRecord {
            tid: trade.tid.clone(),
            warehouse_no: "WH01".into(),
            ..StockoutRecord::default()
        });
        r.scheme = "mall@0123456789ab".into();
        r
    };
    let mut c = trade("C", "S2", "3");
    c.connector = "brand-b".into();
    let records = vec![
        with_source("r-a", trade("A", "S1", "1")),
        with_source("r-b", trade("B", "S1", "2")),
        with_source("r-c", c),
    ];
    enqueue(&outbox, records, 1_000).await;
    let mut s1 = outbox.ready("S1", 10).unwrap().into_iter();
    let (a, b) = (s1.next().unwrap(), s1.next().unwrap());
    let lane = wdtpipe_common::connectors::lane("S2", "brand-b").into_owned();
    let c = outbox.ready(&lane, 10).unwrap().pop().unwrap();
    outbox
        .settle(
            vec![
                settle(
                    a,
                    Outcome::Delivered {
                        new_count: 1,
                        chg_count: 0,
                    },
                ),
                settle(
                    b,
                    Outcome::Retry {
                        due_ms: 4_000_000_000_000,
                    },
                ),
                settle(
                    c,
                    Outcome::Dead {
                        reason: "店铺不存在".into(),
                    },
                ),
            ],
            2_000,
        )
        .await
        .unwrap();
    enqueue_one(&outbox, "r-d", trade("D", "S1", "4"), 3_000).await;
}

/// What [`outbox_of_every_kind`] wrote, as an outbox opened on it must read it.
fn assert_every_kind(outbox: &Outbox) {
    use wdtpipe_proto::v1::DeadLetterFilter;
    assert_eq!(tids(&outbox.ready("S1", 10).unwrap()), ["D"]);
    assert_eq!(state(outbox, "A", "S1"), DeliveryState::Delivered);
    assert_eq!(state(outbox, "B", "S1"), DeliveryState::Retrying);
    assert_eq!(outbox.queued().trades, 2);
    let all = DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    };
    let letters = outbox.dead_letters(&all, 10, "").unwrap().letters;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].tid, "C");
    assert_eq!(letters[0].reason, "店铺不存在");
    assert_eq!(letters[0].scheme, "mall@0123456789ab");
    assert_eq!(letters[0].record.as_ref().unwrap().warehouse_no, "WH01");
    for id in ["r-a", "r-b", "r-c", "r-d"] {
        assert!(outbox.record(id).unwrap().is_some(), "{id}");
    }
}

/// Copies a directory's files (an outbox fixture) into another.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Where the committed outbox of a format lives (each written by the release that
/// introduced the format).
fn format_fixture(format: u64) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../tests/fixtures/outbox/format-{format}"))
}

/// Outboxes written by the releases that introduced formats 2 and 3, committed to the
/// repository: every later binary must open them (upgrading them) and read everything in
/// them. `BLESS_OUTBOX_FIXTURE=N` writes format N's again (only the current format, only
/// when it changes on purpose).
#[tokio::test]
async fn committed_outboxes_of_every_format_open() {
    use wdtpipe_deliver::store::FORMAT_VERSION;
    if let Some(format) = std::env::var_os("BLESS_OUTBOX_FIXTURE") {
        assert_eq!(format.to_str(), Some(FORMAT_VERSION.to_string().as_str()));
        let fixture = format_fixture(FORMAT_VERSION);
        let _ = std::fs::remove_dir_all(&fixture);
        outbox_of_every_kind(&fixture).await;
        let _ = std::fs::remove_dir(fixture.join("blobs"));
        return;
    }
    for format in 2..=FORMAT_VERSION {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&format_fixture(format), dir.path());
        let report = wdtpipe_deliver::store::offline::check(dir.path()).unwrap();
        assert_eq!(report.format, format);
        assert_eq!(report.problems, Vec::<String>::new(), "format {format}");
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_every_kind(&outbox);
        drop(outbox);
        let upgraded = wdtpipe_deliver::store::offline::check(dir.path()).unwrap();
        assert_eq!(
            upgraded.format, FORMAT_VERSION,
            "format {format} upgraded on open"
        );
    }
}

/// `check` finds an outbox sound and says what it holds; export then import builds the
/// same outbox elsewhere; a cut or corrupt export is refused and leaves nothing; stray or
/// undecodable keys are reported; an outbox of a later format is refused, not misread.
#[tokio::test]
async fn check_export_import_and_format_versions() {
    use wdtpipe_deliver::store::{FORMAT_VERSION, offline};
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    outbox_of_every_kind(&source).await;
    let report = offline::check(&source).unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
    assert_eq!(
        (
            report.format,
            report.ready,
            report.retrying,
            report.dead_letters
        ),
        (FORMAT_VERSION, 1, 1, 1)
    );
    assert_eq!(report.keys["t/"], 4);
    assert_eq!(report.keys["r/"], 4);
    assert_eq!(
        offline::outbox_dir(dir.path()),
        dir.path(),
        "no outbox/ inside"
    );

    let mut export = Vec::new();
    let count = offline::export(&source, &mut export).unwrap();
    assert_eq!(count, report.keys.values().sum::<u64>());
    let target = dir.path().join("target");
    assert_eq!(
        offline::import(&mut export.as_slice(), &target).unwrap(),
        count
    );
    assert_eq!(offline::check(&target).unwrap(), report);
    assert_every_kind(&Outbox::open(&target).unwrap());
    // Into a directory that holds something: refused.
    assert!(matches!(
        offline::import(&mut export.as_slice(), &target),
        Err(StoreError::BadRequest(_))
    ));
    // Cut short, or with a flipped byte: refused, and nothing is left behind.
    for (what, bytes) in [
        ("cut", export[..export.len() - 40].to_vec()),
        ("flipped", {
            let mut b = export.clone();
            let middle = b.len() / 2;
            b[middle] ^= 0x40;
            b
        }),
    ] {
        let elsewhere = dir.path().join(what);
        let refused = offline::import(&mut bytes.as_slice(), &elsewhere).unwrap_err();
        assert!(
            matches!(refused, StoreError::BadRequest(_)),
            "{what}: {refused}"
        );
        assert!(!elsewhere.exists(), "{what}: nothing left behind");
        assert!(!dir.path().join(format!("{what}.importing")).exists());
    }

    // Stray and undecodable keys are reported.
    {
        let db = sled::open(&source).unwrap();
        let tree = db.open_tree("outbox").unwrap();
        tree.insert(
            wdtpipe_deliver::keys::ready_key("S9", 77),
            b"GHOST".to_vec(),
        )
        .unwrap();
        tree.insert(
            TradeKey::new("Z", "S1").entry_key(),
            b"\xff\xff not protobuf".to_vec(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let report = offline::check(&source).unwrap();
    assert_eq!(report.problem_count, 2, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("has no ready version"))
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("does not decode"))
    );

    // A later format is refused by open and by check.
    {
        let db = sled::open(&target).unwrap();
        let tree = db.open_tree("outbox").unwrap();
        tree.insert(wdtpipe_deliver::keys::FORMAT, &99u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let refused = Outbox::open(&target).unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::NewerFormat {
                found: 99,
                supported: FORMAT_VERSION,
                ..
            }
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("newer than this binary"));
    assert!(matches!(
        offline::check(&target),
        Err(StoreError::NewerFormat { .. })
    ));
}

/// Purge, replay and discard of more letters than one step takes run as several commits
/// and still handle every one, in order.
#[tokio::test]
async fn admin_work_on_many_letters_runs_in_steps() {
    use wdtpipe_deliver::store::ADMIN_STEP;
    use wdtpipe_proto::v1::DeadLetterFilter;
    let (_dir, outbox) = fresh_outbox();
    let count = ADMIN_STEP * 2 + 37;
    let records = (0..count)
        .map(|n| {
            record(
                &format!("r{n}"),
                vec![trade(&format!("T{n:05}"), "S1", "1")],
            )
        })
        .collect();
    enqueue(&outbox, records, 1).await;
    let purged = outbox.purge("S1".into(), String::new(), 2).await.unwrap();
    assert_eq!(purged as usize, count);
    assert_eq!(outbox.queued().trades, 0);
    let all = DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    };
    assert_eq!(outbox.dead_letters(&all, 1, "").unwrap().total, count);
    let replayed = outbox.replay(all.clone()).await.unwrap();
    assert_eq!(replayed.replayed as usize, count);
    assert_eq!(replayed.tids.len(), count);
    let ready = outbox.ready("S1", count + 1).unwrap();
    assert_eq!(ready.len(), count);
    assert!(
        ready.windows(2).all(|w| w[0].key.tid < w[1].key.tid),
        "replayed in key order"
    );
    outbox
        .purge(String::new(), "T00007".into(), 3)
        .await
        .unwrap();
    assert_eq!(
        outbox.purge("S1".into(), String::new(), 4).await.unwrap() as usize,
        count - 1
    );
    assert_eq!(outbox.discard(all.clone()).await.unwrap() as usize, count);
    assert_eq!(outbox.dead_letters(&all, 1, "").unwrap().total, 0);
}

/// A kuaidi100 sign-off racing with stockout callbacks for the same tid: versions keep
/// their acceptance order (latest wins) whatever is in flight, the sign-off's status is
/// kept by the versions after it, and a push for the in-flight version's tid never lets an
/// older version come back.
#[tokio::test]
async fn a_sign_off_racing_with_callbacks_keeps_order_and_status() {
    use wdtpipe_proto::v1::{TrackWrite, TradeLine};
    let (_dir, outbox) = fresh_outbox();
    let version = |text: &str| {
        let mut t = trade("K", "S1", "10");
        t.trade_status = 30;
        t.buyer_message = text.into();
        t.order_list = vec![
            TradeLine {
                oid: "K-1".into(),
                status: 30,
                ..TradeLine::default()
            },
            TradeLine {
                oid: "K-2".into(),
                status: 80,
                ..TradeLine::default()
            },
        ];
        t
    };
    let mut first = record("r1", vec![version("v1")]);
    first.tracking_numbers = vec!["SF1".into()];
    enqueue(&outbox, vec![first], 1).await;
    // v1 is being pushed when the sign-off comes.
    let in_flight = outbox.ready("S1", 10).unwrap().pop().unwrap();
    let sign_off = TrackWrite {
        push_id: "p1".into(),
        tracking_number: "SF1".into(),
        state: "3".into(),
        sign_off: true,
        trade_status: 70,
        scheme: "k100@1".into(),
        ..TrackWrite::default()
    };
    let tracked = outbox.track(sign_off.clone(), 2).await.unwrap();
    assert_eq!(tracked.result.outcome, "pushed");
    assert_eq!(tracked.result.tid, "K");
    // A stockout callback right after: the newest version, at 70 still.
    enqueue_one(&outbox, "r3", version("v3"), 3).await;
    // v1's push answers after both: it is superseded, nothing older comes back.
    outbox
        .settle(
            vec![settle(
                in_flight,
                Outcome::Delivered {
                    new_count: 1,
                    chg_count: 0,
                },
            )],
            4,
        )
        .await
        .unwrap();
    let ready = outbox.ready("S1", 10).unwrap();
    assert_eq!(ready.len(), 1);
    let next = &ready[0];
    assert_eq!(next.trade.buyer_message, "v3", "the newest version waits");
    assert_eq!(
        next.trade.trade_status, 70,
        "it keeps the sign-off's status"
    );
    assert_eq!(
        next.trade
            .order_list
            .iter()
            .map(|l| l.status)
            .collect::<Vec<_>>(),
        [70, 80]
    );
    // The same push again changes nothing; a push for an order at 80 is recorded only.
    let again = outbox.track(sign_off, 5).await.unwrap();
    assert_eq!(again.result.outcome, "duplicate");
    let entry = outbox.entry(&TradeKey::new("K", "S1")).unwrap().unwrap();
    assert_eq!(entry.signed_status, 70);
    assert_eq!(entry.tracking.unwrap().state, "3");
    let mut refunded = trade("R", "S1", "10");
    refunded.trade_status = 80;
    let mut r = record("r-refunded", vec![refunded]);
    r.tracking_numbers = vec!["SF2".into()];
    enqueue(&outbox, vec![r], 6).await;
    let recorded = outbox
        .track(
            TrackWrite {
                push_id: "p2".into(),
                tracking_number: "SF2".into(),
                state: "301".into(),
                sign_off: true,
                trade_status: 70,
                ..TrackWrite::default()
            },
            7,
        )
        .await
        .unwrap();
    assert_eq!(recorded.result.outcome, "no_change");
    assert!(
        recorded
            .result
            .message
            .contains("does not move an order from trade_status 80"),
        "{}",
        recorded.result.message
    );
    let waiting: Vec<String> = outbox
        .ready("S1", 10)
        .unwrap()
        .iter()
        .map(|r| format!("{}:{}", r.key.tid, r.trade.trade_status))
        .collect();
    assert_eq!(waiting, ["K:70", "R:80"], "nothing new for R");
}
