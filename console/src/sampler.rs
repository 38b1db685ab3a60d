//! The console's one reader of the services' counters: every `refresh_ms` it asks each
//! deliver shard for `Stats`, transform for its schemes (with their record counters) and
//! everyone for health, keeps an hour of history for the sparklines, and publishes one
//! numbered [`Snapshot`] that every page, event stream and the alerts read. The pages
//! never scan the outbox: `Stats` is made of deliver's counters.
//!
//! When a shop's dead-letter count rises, the sampler lists that shop's letters that died
//! since its last look (one page), so the alerts can group them by reason.

use crate::alert::{Alerter, DeadNote, LaneObservation, Observation};
use crate::history::Series;
use crate::upstream::{Health, Upstream};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wdtpipe_proto::v1::{
    DeadLetterFilter, ListDeadLettersRequest, ListSchemesRequest, ListSchemesResponse, ShopStats,
    StatsRequest, StatsResponse,
};

/// Letters listed per shop per tick for the alerts; beyond it, the reasons' counts stand
/// for the rest.
const NEW_LETTERS_LISTED: u32 = 200;

/// What the console knows of the pipeline as of one tick.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Numbers the ticks (the event stream's ids).
    pub(crate) seq: u64,
    pub(crate) at_ms: i64,
    pub(crate) health: Vec<Health>,
    pub(crate) shards: Vec<ShardState>,
    pub(crate) lanes: Vec<Lane>,
    pub(crate) schemes: Option<ListSchemesResponse>,
    pub(crate) schemes_error: String,
    pub(crate) scheme_rates: HashMap<String, SchemeRates>,
}

/// One deliver shard's answer to `Stats`, or why there was none.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardState {
    pub(crate) url: String,
    pub(crate) stats: Option<StatsResponse>,
    pub(crate) error: String,
}

/// One shop in one WDT account on one shard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lane {
    pub(crate) shard: String,
    pub(crate) stats: ShopStats,
    /// Deliveries of each of the last 60 minutes.
    pub(crate) delivered_by_minute: Vec<u64>,
}

impl Lane {
    pub(crate) fn connector(&self) -> &str {
        match self.stats.connector.as_str() {
            "" => wdtpipe_common::connectors::DEFAULT,
            other => other,
        }
    }
}

/// A scheme's records per minute, by outcome, and accepted by minute for the sparkline.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemeRates {
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) skipped: u64,
    pub(crate) accepted_by_minute: Vec<u64>,
}

/// The sampler's memory between ticks.
#[derive(Debug, Default)]
struct Memory {
    seq: u64,
    delivered: HashMap<String, Series>,
    schemes: HashMap<(String, &'static str), Series>,
    /// Dead letters per lane (`shard|connector|shop`) at the last tick, and when it was.
    dead: HashMap<String, u64>,
    last_at_ms: i64,
    /// Letters already handed to the alerts, so that a slow clock never repeats one.
    noted: HashSet<(String, u64)>,
}

/// Starts the sampling loop; the receiver always holds the latest snapshot.
pub(crate) fn start(
    upstream: Upstream,
    alerter: Alerter,
    every: Duration,
    stop: wdtpipe_common::shutdown::Stop,
) -> watch::Receiver<Arc<Snapshot>> {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    tokio::spawn(async move {
        let mut memory = Memory::default();
        let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stopped = stop.stopped();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut stopped => break,
            }
            let (snapshot, observation) = sample(&upstream, &mut memory).await;
            alerter.observe(observation);
            if tx.send(Arc::new(snapshot)).is_err() {
                break;
            }
        }
    });
    rx
}

async fn sample(upstream: &Upstream, memory: &mut Memory) -> (Snapshot, Observation) {
    let at_ms = wdtpipe_common::now_ms();
    memory.seq += 1;
    let (health, shards, schemes) = tokio::join!(
        upstream.health(),
        futures_util::future::join_all(upstream.shards.iter().map(|shard| {
            let mut client = shard.client.clone();
            let url = shard.url.clone();
            async move {
                match client.stats(StatsRequest {}).await {
                    Ok(answer) => ShardState {
                        url,
                        stats: Some(answer.into_inner()),
                        error: String::new(),
                    },
                    Err(status) => ShardState {
                        url,
                        stats: None,
                        error: status.message().to_owned(),
                    },
                }
            }
        })),
        list_schemes(upstream),
    );
    let mut lanes = Vec::new();
    let mut observed = Vec::new();
    let mut new_dead = Vec::new();
    for (shard, state) in upstream.shards.iter().zip(&shards) {
        let Some(stats) = &state.stats else { continue };
        for shop in &stats.shops {
            let key = format!("{}|{}|{}", stats.shard, shop.connector, shop.shop_no);
            // What appears after the first tick is new in full; on the first tick, the
            // totals are only the baseline.
            let first = memory.seq == 1;
            let series = memory.delivered.entry(key.clone()).or_insert_with(|| {
                if first {
                    Series::default()
                } else {
                    Series::from_zero()
                }
            });
            series.add(shop.delivered_total, at_ms);
            let before = memory.dead.insert(key, shop.dead_letters);
            let before = before.unwrap_or(if first { shop.dead_letters } else { 0 });
            if shop.dead_letters > before {
                new_dead
                    .extend(new_letters(shard, shop, memory.last_at_ms, &mut memory.noted).await);
            }
            observed.push(LaneObservation {
                connector: shop.connector.clone(),
                shop_no: shop.shop_no.clone(),
                dead_letters: shop.dead_letters,
                paused_reason: shop.paused_reason.clone(),
                oldest_age_ms: shop.oldest_age_ms,
            });
            lanes.push(Lane {
                shard: stats.shard.clone(),
                stats: shop.clone(),
                delivered_by_minute: series.by_minute(at_ms),
            });
        }
    }
    let (schemes, schemes_error) = match schemes {
        Ok(answer) => (Some(answer.into_inner()), String::new()),
        Err(status) => (None, status.message().to_owned()),
    };
    let mut scheme_rates = HashMap::new();
    for scheme in schemes.iter().flat_map(|s| &s.schemes) {
        let mut rate = |outcome: &'static str, total: u64| {
            let first = memory.seq == 1;
            let series = memory
                .schemes
                .entry((scheme.id.clone(), outcome))
                .or_insert_with(|| {
                    if first {
                        Series::default()
                    } else {
                        Series::from_zero()
                    }
                });
            series.add(total, at_ms);
            series.clone()
        };
        let accepted = rate("accepted", scheme.accepted_total);
        let rejected = rate("rejected", scheme.rejected_total);
        let skipped = rate("skipped", scheme.skipped_total);
        scheme_rates.insert(
            scheme.id.clone(),
            SchemeRates {
                accepted: accepted.last_minute(),
                rejected: rejected.last_minute(),
                skipped: skipped.last_minute(),
                accepted_by_minute: accepted.by_minute(at_ms),
            },
        );
    }
    memory.last_at_ms = at_ms;
    let snapshot = Snapshot {
        seq: memory.seq,
        at_ms,
        health,
        shards,
        lanes,
        schemes,
        schemes_error,
        scheme_rates,
    };
    let observation = Observation {
        at_ms,
        lanes: observed,
        new_dead_letters: new_dead,
    };
    (snapshot, observation)
}

async fn list_schemes(
    upstream: &Upstream,
) -> Result<tonic::Response<ListSchemesResponse>, tonic::Status> {
    upstream
        .transform
        .clone()
        .list_schemes(ListSchemesRequest {})
        .await
}

/// The letters of a shop that died since `since_ms` and were not noted yet; past the first
/// page, the reasons' counts stand for the rest (notes without a tid).
async fn new_letters(
    shard: &crate::upstream::Shard,
    shop: &ShopStats,
    since_ms: i64,
    noted: &mut HashSet<(String, u64)>,
) -> Vec<DeadNote> {
    let request = ListDeadLettersRequest {
        filter: Some(DeadLetterFilter {
            shop_no: shop.shop_no.clone(),
            connector: shop.connector.clone(),
            // A little before the last look: the clocks of two machines differ.
            since_ms: (since_ms - 5_000).max(1),
            ..Default::default()
        }),
        limit: NEW_LETTERS_LISTED,
        page_token: String::new(),
    };
    let Ok(answer) = shard.client.clone().list_dead_letters(request).await else {
        return Vec::new();
    };
    let answer = answer.into_inner();
    if noted.len() > 100_000 {
        noted.clear();
    }
    let mut notes = Vec::new();
    let mut listed: HashMap<&str, u32> = HashMap::new();
    for letter in &answer.letters {
        *listed.entry(letter.reason.as_str()).or_default() += 1;
        if !noted.insert((letter.tid.clone(), letter.seq)) {
            continue;
        }
        notes.push(DeadNote {
            connector: shop.connector.clone(),
            shop_no: shop.shop_no.clone(),
            tid: letter.tid.clone(),
            reason: letter.reason.clone(),
            dead_at_ms: letter.dead_at_ms,
        });
    }
    if answer.next_page_token.is_empty() {
        return notes;
    }
    for reason in &answer.reasons {
        let beyond = reason
            .count
            .saturating_sub(listed.get(reason.reason.as_str()).copied().unwrap_or(0));
        notes.extend((0..beyond).map(|_| DeadNote {
            connector: shop.connector.clone(),
            shop_no: shop.shop_no.clone(),
            tid: String::new(),
            reason: reason.reason.clone(),
            dead_at_ms: 0,
        }));
    }
    notes
}
