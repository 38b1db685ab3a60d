//! A model-based property test of the outbox, the way Vector tests its disk buffer: random
//! sequences of operations run against the real outbox on a real sled directory and
//! against a small in-memory model of what the outbox promises, and after every step the
//! two must agree exactly.
//!
//! Operations: enqueue (versions of a few tids across two shops and two WDT accounts, and
//! records sent again), taking a shop's head as a call in flight and settling it
//! (delivered, retry, dead), time passing, promoting due retries, replay, re-map, discard,
//! purge, the retention sweep, closing and reopening, and a crash: a child process writes
//! to the outbox and is killed with SIGKILL between two operations.
//!
//! Checked after every step: each lane's ready queue (order and versions: per-tid order,
//! latest wins), the waiting retries, the queued totals, every entry's state and version,
//! the dead letters, and the dedupe records. Nothing acknowledged is lost.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use wdtpipe_common::connectors::{lane, split_lane};
use wdtpipe_deliver::config::Retention;
use wdtpipe_deliver::store::{Outbox, OutboxOptions, Outcome, Ready, Settlement};
use wdtpipe_proto::v1::{
    Attempt, DeadLetterFilter, DeadLetterKey, DeliveryState, EnqueueRecord, RemappedLetter,
    TradeOrder,
};

const TIDS: [&str; 2] = ["T0", "T1"];
const SHOPS: [&str; 2] = ["S0", "S1"];
const CONNECTORS: [&str; 2] = ["", "b"];
const LANES: usize = SHOPS.len() * CONNECTORS.len();
/// The retention windows, short so that the sweep has work.
const DEDUPE_SECS: u64 = 5;
const STATUS_SECS: u64 = 8;
/// Trades a call takes at most.
const CALL: usize = 3;
/// When the child of a crash step finds its directory.
const CHILD_ENV: &str = "OUTBOX_MODEL_CHILD_DIR";

fn lane_of(index: usize) -> String {
    lane(SHOPS[index / 2], CONNECTORS[index % 2]).into_owned()
}

fn options() -> OutboxOptions {
    OutboxOptions {
        retention: Retention {
            dedupe_secs: DEDUPE_SECS,
            status_secs: STATUS_SECS,
            ..Retention::default()
        },
        ..OutboxOptions::default()
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A new record with one trade (a new version of the tid at that lane), or a record
    /// sent before (`again`: which one, modulo how many there were).
    Enqueue {
        tid: usize,
        lane: usize,
        again: Option<usize>,
    },
    /// The head of a lane's ready queue (passing over calls in flight) becomes a call.
    Take {
        lane: usize,
    },
    /// The oldest call in flight is settled: per trade 0 delivered, 1 retry, 2 dead.
    Settle {
        outcomes: Vec<u8>,
    },
    Tick {
        ms: u16,
    },
    Promote,
    Replay {
        tid: Option<usize>,
    },
    /// Dead letters' records mapped again: to another shop of the same account, or still
    /// invalid.
    Remap {
        tid: Option<usize>,
        shop: usize,
        invalid: bool,
    },
    Discard {
        tid: usize,
    },
    Purge {
        lane: Option<usize>,
        tid: Option<usize>,
    },
    Expire,
    Reopen,
    /// A child process enqueues these (tid, lane) and is killed after the last ack.
    Crash {
        enqueues: Vec<(usize, usize)>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let tid = 0..TIDS.len();
    let lane = 0..LANES;
    prop_oneof![
        6 => (tid.clone(), lane.clone(), proptest::option::weighted(0.2, 0..64usize))
            .prop_map(|(tid, lane, again)| Step::Enqueue { tid, lane, again }),
        4 => lane.clone().prop_map(|lane| Step::Take { lane }),
        4 => proptest::collection::vec(0..3u8, 1..4).prop_map(|outcomes| Step::Settle { outcomes }),
        2 => (1..3000u16).prop_map(|ms| Step::Tick { ms }),
        2 => Just(Step::Promote),
        1 => proptest::option::of(tid.clone()).prop_map(|tid| Step::Replay { tid }),
        1 => (proptest::option::of(tid.clone()), 0..SHOPS.len(), proptest::bool::weighted(0.3))
            .prop_map(|(tid, shop, invalid)| Step::Remap { tid, shop, invalid }),
        1 => tid.clone().prop_map(|tid| Step::Discard { tid }),
        1 => (proptest::option::of(lane.clone()), proptest::option::of(tid.clone()))
            .prop_map(|(lane, tid)| Step::Purge { lane, tid }),
        1 => Just(Step::Expire),
        1 => Just(Step::Reopen),
        1 => proptest::collection::vec((tid, lane), 1..4).prop_map(|enqueues| Step::Crash { enqueues }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Retrying,
    Delivered,
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    seq: u64,
    text: String,
    record_id: String,
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    pending: Option<Version>,
    queue_seq: u64,
    /// When a retrying version falls due.
    due_ms: i64,
    delivered_seq: u64,
    finished_at_ms: i64,
}

impl Entry {
    fn new() -> Self {
        Self {
            state: State::Queued,
            pending: None,
            queue_seq: 0,
            due_ms: 0,
            delivered_seq: 0,
            finished_at_ms: 0,
        }
    }

    /// Makes `version` the waiting one, replacing any older waiting version in its place;
    /// an entry with none waiting joins its lane's queue at `queue_seq`. Says whether it
    /// joined the queue.
    fn put(&mut self, version: Version, queue_seq: u64) -> bool {
        let joins = self.pending.is_none();
        self.pending = Some(version);
        self.finished_at_ms = 0;
        if joins {
            self.queue_seq = queue_seq;
            self.state = State::Queued;
            self.due_ms = 0;
        }
        joins
    }
}

/// (tid, lane)
type Key = (String, String);

/// What the check compares of an entry: its state, its waiting version (seq, text) and the
/// last delivered version's seq.
type EntryView = (State, Option<(u64, String)>, u64);

/// What the outbox promises, as plainly as it can be said.
#[derive(Debug, Default)]
struct Model {
    now_ms: i64,
    next_seq: u64,
    entries: BTreeMap<Key, Entry>,
    /// (tid, lane, seq) → the dead version's text.
    letters: BTreeMap<(String, String, u64), String>,
    /// Dedupe records: id → accepted at.
    records: BTreeMap<String, i64>,
    /// Every record id sent, in order (for sending one again), with its trade.
    sent: Vec<(String, usize, usize, String)>,
    texts: u64,
}

impl Model {
    fn new() -> Self {
        Self {
            now_ms: 1_000_000,
            next_seq: 1,
            ..Self::default()
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn fresh_text(&mut self, prefix: &str) -> String {
        self.texts += 1;
        format!("{prefix}{}", self.texts)
    }

    /// An enqueue of one record with one trade; false when it is a duplicate.
    fn enqueue(&mut self, record_id: &str, tid: &str, lane: &str, text: &str) -> bool {
        if self
            .records
            .get(record_id)
            .is_some_and(|at| at + (DEDUPE_SECS as i64) * 1000 > self.now_ms)
        {
            return false;
        }
        let seq = self.take_seq();
        let entry = self
            .entries
            .entry((tid.to_owned(), lane.to_owned()))
            .or_insert_with(Entry::new);
        let version = Version {
            seq,
            text: text.to_owned(),
            record_id: record_id.to_owned(),
        };
        entry.put(version, seq);
        self.records.insert(record_id.to_owned(), self.now_ms);
        true
    }

    /// The lane's ready queue: (tid, seq, text, queue place), in queue order.
    fn ready(&self, lane: &str) -> Vec<(String, u64, String, u64)> {
        let mut ready: Vec<_> = self
            .entries
            .iter()
            .filter(|((_, l), e)| l == lane && e.state != State::Retrying)
            .filter_map(|((tid, _), e)| {
                e.pending
                    .as_ref()
                    .map(|p| (tid.clone(), p.seq, p.text.clone(), e.queue_seq))
            })
            .collect();
        ready.sort_by_key(|r| r.3);
        ready
    }

    fn settle(&mut self, taken: &Ready, outcome: &Outcome) {
        let key = (taken.key.tid.clone(), taken.key.shop_no.clone());
        let now = self.now_ms;
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        let Some(pending_seq) = entry.pending.as_ref().map(|p| p.seq) else {
            return;
        };
        let superseded = pending_seq != taken.seq;
        match outcome {
            Outcome::Delivered { .. } => {
                entry.delivered_seq = taken.seq;
                if superseded {
                    entry.state = State::Queued;
                } else {
                    entry.pending = None;
                    entry.state = State::Delivered;
                    entry.finished_at_ms = now;
                }
            }
            Outcome::Retry { due_ms } => {
                entry.state = State::Retrying;
                entry.due_ms = *due_ms;
            }
            Outcome::Dead { .. } => {
                self.letters.insert(
                    (key.0.clone(), key.1.clone(), taken.seq),
                    taken.trade.buyer_message.clone(),
                );
                if superseded {
                    entry.state = State::Queued;
                } else {
                    entry.pending = None;
                    entry.state = State::Dead;
                    entry.finished_at_ms = now;
                }
            }
            Outcome::Keep => {}
        }
    }

    fn promote(&mut self) {
        let now = self.now_ms;
        for entry in self.entries.values_mut() {
            if entry.state == State::Retrying && entry.pending.is_some() && entry.due_ms <= now {
                entry.state = State::Queued;
            }
        }
    }

    fn letters_of(&self, tid: Option<&str>) -> Vec<(String, String, u64)> {
        self.letters
            .keys()
            .filter(|(t, _, _)| tid.is_none_or(|tid| t == tid))
            .cloned()
            .collect()
    }

    fn replay(&mut self, tid: Option<&str>) {
        for (t, l, seq) in self.letters_of(tid) {
            let text = self.letters.remove(&(t.clone(), l.clone(), seq)).unwrap();
            self.requeue(t, l, seq, text);
        }
    }

    /// A dead version (`seq`, `text`) of `tid` back in `lane`'s queue, unless a newer
    /// version of the tid waits or was delivered there (latest wins); an entry with none
    /// waiting joins the back of the queue.
    fn requeue(&mut self, tid: String, lane: String, seq: u64, text: String) {
        let next = self.next_seq;
        let entry = self.entries.entry((tid, lane)).or_insert_with(Entry::new);
        let newer = entry.pending.as_ref().is_some_and(|p| p.seq > seq);
        if newer || entry.delivered_seq > seq {
            return;
        }
        let version = Version {
            seq,
            text,
            record_id: String::new(),
        };
        if entry.put(version, next) {
            self.next_seq += 1;
        }
    }

    /// Letters re-mapped to `shop` (same account), or still invalid.
    fn remap(&mut self, letters: &[(String, String, u64, String)], shop: &str, invalid: bool) {
        let mut sorted = letters.to_vec();
        sorted.sort_by_key(|l| l.2);
        for (tid, old_lane, seq, text) in sorted {
            if invalid {
                continue;
            }
            let new_lane = lane(shop, split_lane(&old_lane).1).into_owned();
            self.requeue(tid.clone(), new_lane.clone(), seq, text);
            self.letters.remove(&(tid.clone(), old_lane.clone(), seq));
            if new_lane != old_lane {
                let old_key = (tid.clone(), old_lane.clone());
                if let Some(old) = self.entries.get_mut(&old_key)
                    && old.pending.is_none()
                {
                    if old.delivered_seq == 0 {
                        self.entries.remove(&old_key);
                    } else {
                        old.state = State::Delivered;
                        old.finished_at_ms = self.now_ms;
                    }
                }
            }
        }
    }

    fn purge(&mut self, shop: Option<&str>, tid: Option<&str>) {
        let now = self.now_ms;
        for ((t, l), entry) in &mut self.entries {
            if tid.is_some_and(|tid| tid != t) || shop.is_some_and(|s| split_lane(l).0 != s) {
                continue;
            }
            if let Some(pending) = entry.pending.take() {
                self.letters
                    .insert((t.clone(), l.clone(), pending.seq), pending.text);
                entry.state = State::Dead;
                entry.finished_at_ms = now;
            }
        }
    }

    fn expire(&mut self) {
        let now = self.now_ms;
        self.records
            .retain(|_, at| *at + (DEDUPE_SECS as i64) * 1000 > now);
        self.entries.retain(|_, e| {
            !(e.pending.is_none()
                && e.finished_at_ms > 0
                && e.finished_at_ms + (STATUS_SECS as i64) * 1000 <= now)
        });
    }
}

/// The real outbox and the calls in flight.
struct Real {
    dir: tempfile::TempDir,
    outbox: Option<Outbox>,
    calls: Vec<Vec<(Ready, u64)>>,
}

impl Real {
    fn outbox(&self) -> &Outbox {
        self.outbox.as_ref().expect("open")
    }

    fn reopen(&mut self) {
        self.calls.clear();
        self.outbox = None;
        self.outbox = Some(Outbox::open_with(self.dir.path(), options()).unwrap());
    }
}

fn trade(tid: &str, lane: &str, text: &str) -> TradeOrder {
    let (shop, connector) = split_lane(lane);
    TradeOrder {
        tid: tid.into(),
        shop_no: shop.into(),
        connector: connector.into(),
        buyer_message: text.into(),
        ..TradeOrder::default()
    }
}

fn record(record_id: &str, trade: TradeOrder) -> EnqueueRecord {
    EnqueueRecord {
        record_id: record_id.into(),
        received_at_ms: 1,
        trades: vec![trade],
        ..EnqueueRecord::default()
    }
}

fn all() -> DeadLetterFilter {
    DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    }
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open_with(dir.path(), options()).unwrap();
    let mut real = Real {
        dir,
        outbox: Some(outbox),
        calls: Vec::new(),
    };
    let mut model = Model::new();
    for (n, step) in steps.into_iter().enumerate() {
        apply(&mut real, &mut model, &step).await;
        check(&real, &model)
            .await
            .map_err(|e| TestCaseError::fail(format!("after step {n} ({step:?}): {e}")))?;
    }
    Ok(())
}

async fn apply(real: &mut Real, model: &mut Model, step: &Step) {
    let now = model.now_ms;
    match step {
        Step::Enqueue { tid, lane, again } => {
            let (record_id, tid, lane, text) = match again.filter(|_| !model.sent.is_empty()) {
                Some(i) => {
                    let (id, tid, lane, text) = model.sent[i % model.sent.len()].clone();
                    (id, tid, lane, text)
                }
                None => {
                    let text = model.fresh_text("v");
                    (format!("r-{text}"), *tid, *lane, text)
                }
            };
            let (tid, lane) = (TIDS[tid], lane_of(lane));
            let done = real
                .outbox()
                .enqueue(
                    vec![record(&record_id, trade(tid, &lane, &text))],
                    String::new(),
                    now,
                )
                .await
                .unwrap();
            let accepted = model.enqueue(&record_id, tid, &lane, &text);
            assert_eq!(
                done.results[0].duplicate, !accepted,
                "dedupe of {record_id}"
            );
            let index = TIDS.iter().position(|t| *t == tid).unwrap();
            let lane_index = (0..LANES).find(|l| lane_of(*l) == lane).unwrap();
            model.sent.push((record_id, index, lane_index, text));
        }
        Step::Take { lane } => {
            let lane = lane_of(*lane);
            let busy: HashSet<u64> = real
                .calls
                .iter()
                .flatten()
                .filter(|(r, _)| r.key.shop_no == lane)
                .map(|(_, place)| *place)
                .collect();
            let items = real.outbox().ready_skipping(&lane, CALL, &busy).unwrap();
            if !items.is_empty() {
                let call = items
                    .into_iter()
                    .map(|item| {
                        let place = item.queue_seq;
                        (item.open().unwrap(), place)
                    })
                    .collect();
                real.calls.push(call);
            }
        }
        Step::Settle { outcomes } => {
            if real.calls.is_empty() {
                return;
            }
            let call = real.calls.remove(0);
            let settlements: Vec<Settlement> = call
                .into_iter()
                .enumerate()
                .map(|(i, (ready, _))| Settlement {
                    ready,
                    attempt: Attempt {
                        at_ms: now,
                        outcome: "model".into(),
                        ..Attempt::default()
                    },
                    outcome: match outcomes[i % outcomes.len()] {
                        0 => Outcome::Delivered {
                            new_count: 1,
                            chg_count: 0,
                        },
                        1 => Outcome::Retry { due_ms: now + 500 },
                        _ => Outcome::Dead {
                            reason: "rejected".into(),
                        },
                    },
                })
                .collect();
            for s in &settlements {
                model.settle(&s.ready, &s.outcome);
            }
            real.outbox().settle(settlements, now).await.unwrap();
        }
        Step::Tick { ms } => model.now_ms += i64::from(*ms),
        Step::Promote => {
            real.outbox().promote_due(now).await.unwrap();
            model.promote();
        }
        Step::Replay { tid } => {
            let tid = tid.map(|t| TIDS[t]);
            let filter = DeadLetterFilter {
                tid: tid.unwrap_or_default().to_owned(),
                all: tid.is_none(),
                ..DeadLetterFilter::default()
            };
            real.outbox().replay(filter).await.unwrap();
            model.replay(tid);
        }
        Step::Remap { tid, shop, invalid } => {
            let tid = tid.map(|t| TIDS[t]);
            let letters: Vec<(String, String, u64, String)> = model
                .letters_of(tid)
                .into_iter()
                .map(|(t, l, seq)| {
                    let text = model.letters[&(t.clone(), l.clone(), seq)].clone();
                    (t, l, seq, text)
                })
                .collect();
            let items = letters
                .iter()
                .map(|(t, l, seq, text)| {
                    let (old_shop, connector) = split_lane(l);
                    let new_lane = lane(SHOPS[*shop], connector).into_owned();
                    RemappedLetter {
                        letter: Some(DeadLetterKey {
                            tid: t.clone(),
                            shop_no: old_shop.into(),
                            connector: connector.into(),
                            seq: *seq,
                        }),
                        seq: *seq,
                        scheme: "model@1".into(),
                        error: if *invalid {
                            "still invalid".into()
                        } else {
                            String::new()
                        },
                        trades: if *invalid {
                            Vec::new()
                        } else {
                            vec![trade(t, &new_lane, text)]
                        },
                        ..RemappedLetter::default()
                    }
                })
                .collect();
            real.outbox().write_remapped(items, now).await.unwrap();
            model.remap(&letters, SHOPS[*shop], *invalid);
        }
        Step::Discard { tid } => {
            let filter = DeadLetterFilter {
                tid: TIDS[*tid].into(),
                ..DeadLetterFilter::default()
            };
            real.outbox().discard(filter).await.unwrap();
            model
                .letters
                .retain(|(t, _, _), _| t.as_str() != TIDS[*tid]);
        }
        Step::Purge { lane, tid } => {
            // A lane names a shop here: purge takes every account's lanes of it.
            let shop = lane.map(|l| SHOPS[l / 2]);
            let tid = tid.map(|t| TIDS[t]);
            if shop.is_none() && tid.is_none() {
                return;
            }
            real.outbox()
                .purge(
                    shop.unwrap_or_default().into(),
                    tid.unwrap_or_default().into(),
                    now,
                )
                .await
                .unwrap();
            model.purge(shop, tid);
        }
        Step::Expire => {
            while real.outbox().expire(now).await.unwrap().more {}
            model.expire();
        }
        Step::Reopen => real.reopen(),
        Step::Crash { enqueues } => {
            real.calls.clear();
            real.outbox = None;
            let lines: Vec<String> = enqueues
                .iter()
                .map(|(tid, lane)| {
                    let text = model.fresh_text("c");
                    let (tid, lane) = (TIDS[*tid], lane_of(*lane));
                    let record_id = format!("r-{text}");
                    model.enqueue(&record_id, tid, &lane, &text);
                    model.sent.push((
                        record_id.clone(),
                        TIDS.iter().position(|t| *t == tid).unwrap(),
                        (0..LANES).find(|l| lane_of(*l) == lane).unwrap(),
                        text.clone(),
                    ));
                    let (shop, connector) = split_lane(&lane);
                    format!(
                        "{record_id} {tid} {shop} {} {text} {now}",
                        if connector.is_empty() { "-" } else { connector }
                    )
                })
                .collect();
            run_crashing_child(real.dir.path(), &lines);
            real.reopen();
        }
    }
}

/// Runs the child: each line is enqueued and acknowledged; after the last ack the child
/// is killed (SIGKILL), between two operations.
fn run_crashing_child(dir: &Path, lines: &[String]) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "outbox_model::crash_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test binary runs as the child");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        // The harness prints "test outbox_model::crash_child ... " first, on the same line.
        let ack = format!("ack {}", line.split(' ').next().unwrap());
        let mut answer = String::new();
        loop {
            answer.clear();
            assert!(
                stdout.read_line(&mut answer).unwrap() > 0,
                "the child ended early"
            );
            if answer.trim_end().ends_with(&ack) {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// The child side of a crash step: not a test of its own (it does nothing unless started
/// by [`run_crashing_child`]).
#[tokio::test]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let outbox = Outbox::open_with(Path::new(&dir), options()).unwrap();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let parts: Vec<&str> = line.split(' ').collect();
        let [record_id, tid, shop, connector, text, now] = parts[..] else {
            panic!("bad line {line:?}");
        };
        let connector = if connector == "-" { "" } else { connector };
        let lane = lane(shop, connector).into_owned();
        outbox
            .enqueue(
                vec![record(record_id, trade(tid, &lane, text))],
                String::new(),
                now.parse().unwrap(),
            )
            .await
            .unwrap();
        println!("ack {record_id}");
        std::io::stdout().flush().unwrap();
    }
}

async fn check(real: &Real, model: &Model) -> Result<(), String> {
    let outbox = real.outbox();
    let mut pending = 0;
    for index in 0..LANES {
        let lane = lane_of(index);
        let got: Vec<(String, u64, String, u64)> = outbox
            .ready_skipping(&lane, 1_000, &HashSet::new())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|item| {
                let place = item.queue_seq;
                let ready = item.open().unwrap();
                (ready.key.tid, ready.seq, ready.trade.buyer_message, place)
            })
            .collect();
        let want = model.ready(&lane);
        if got != want {
            return Err(format!(
                "lane {lane:?} ready queue: got {got:?}, want {want:?}"
            ));
        }
        let queues = outbox.shop_queues();
        let counts = queues.get(&lane).copied().unwrap_or_default();
        let retrying = model
            .entries
            .iter()
            .filter(|((_, l), e)| *l == lane && e.pending.is_some() && e.state == State::Retrying)
            .count() as i64;
        if (counts.ready, counts.retrying) != (want.len() as i64, retrying) {
            return Err(format!(
                "lane {lane:?} totals: got {counts:?}, want ready {} retrying {retrying}",
                want.len()
            ));
        }
        pending += want.len() as i64 + retrying;
    }
    if outbox.queued().trades != pending {
        return Err(format!(
            "queued trades: got {}, want {pending}",
            outbox.queued().trades
        ));
    }
    for tid in TIDS {
        let got: BTreeMap<Key, EntryView> = outbox
            .entries_for_tid(tid)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| {
                let state = match DeliveryState::try_from(e.state).unwrap() {
                    DeliveryState::Queued => State::Queued,
                    DeliveryState::Retrying => State::Retrying,
                    DeliveryState::Delivered => State::Delivered,
                    DeliveryState::Dead => State::Dead,
                    other => panic!("state {other:?}"),
                };
                let pending = e.pending.map(|p| {
                    let trade = wdtpipe_deliver::store::pending_trade(&p).unwrap();
                    (p.seq, trade.buyer_message)
                });
                ((e.tid, e.shop_no), (state, pending, e.delivered_seq))
            })
            .collect();
        let want: BTreeMap<Key, EntryView> = model
            .entries
            .iter()
            .filter(|((t, _), _)| t == tid)
            .map(|(k, e)| {
                (
                    k.clone(),
                    (
                        e.state,
                        e.pending.as_ref().map(|p| (p.seq, p.text.clone())),
                        e.delivered_seq,
                    ),
                )
            })
            .collect();
        if got != want {
            return Err(format!("entries of {tid}: got {got:?}, want {want:?}"));
        }
    }
    let got: BTreeSet<(String, String, u64, String)> = outbox
        .dead_letters(&all(), 100_000, "")
        .map_err(|e| e.to_string())?
        .letters
        .into_iter()
        .map(|l| {
            (
                l.tid,
                l.shop_no,
                l.seq,
                l.trade.map(|t| t.buyer_message).unwrap_or_default(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, u64, String)> = model
        .letters
        .iter()
        .map(|((t, l, s), text)| (t.clone(), l.clone(), *s, text.clone()))
        .collect();
    if got != want {
        return Err(format!("dead letters: got {got:?}, want {want:?}"));
    }
    // The per-shop dead-letter counts `Stats` reports are kept by the writer, not read.
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for (_, lane, _) in model.letters.keys() {
        *counted.entry(lane.clone()).or_default() += 1;
    }
    if outbox.dead_letter_counts() != counted {
        return Err(format!(
            "dead-letter counts: got {:?}, want {counted:?}",
            outbox.dead_letter_counts()
        ));
    }
    for (record_id, _, _, _) in &model.sent {
        let kept = outbox
            .record(record_id)
            .map_err(|e| e.to_string())?
            .is_some();
        if kept != model.records.contains_key(record_id) {
            return Err(format!(
                "dedupe record {record_id}: kept {kept}, model {}",
                model.records.contains_key(record_id)
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_outbox_keeps_its_promises(steps in proptest::collection::vec(step(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(steps))?;
    }
}
