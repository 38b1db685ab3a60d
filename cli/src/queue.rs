//! `wdtpipe queue [--watch]`: the queue per shop across every deliver shard — queued, in
//! flight, retrying, oldest age, delivered per minute, dead letters, paused shops.

use crate::target::DeliverTarget;
use anyhow::Context;
use std::collections::BTreeMap;
use std::time::Duration;
use wdtpipe_proto::v1::{ShopStats, StatsRequest, StatsResponse};

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub target: DeliverTarget,
    /// Refresh in place until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    let clients = args.target.clients()?;
    loop {
        let mut answers = Vec::new();
        for (url, mut client) in clients.clone() {
            let stats = client
                .stats(StatsRequest {})
                .await
                .with_context(|| format!("cannot ask deliver at {url}"))?
                .into_inner();
            answers.push(stats);
        }
        let text = if args.json {
            json(&answers)?
        } else {
            render(&answers)
        };
        if args.watch {
            // Clear the screen and move home, then redraw.
            print!("\x1b[2J\x1b[H{text}");
        } else {
            print!("{text}");
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(args.interval.max(1))) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// The account a shop's figures belong to (`default` when the answer names none).
fn connector(shop: &ShopStats) -> &str {
    if shop.connector.is_empty() {
        "default"
    } else {
        &shop.connector
    }
}

/// Per-shop figures of each WDT account, summed over shards (a shop's tids may be spread
/// across them), by (account, shop).
pub fn merge(answers: &[StatsResponse]) -> BTreeMap<(String, String), ShopStats> {
    let mut shops: BTreeMap<(String, String), ShopStats> = BTreeMap::new();
    for shop in answers.iter().flat_map(|a| a.shops.iter()) {
        let merged = shops
            .entry((connector(shop).to_owned(), shop.shop_no.clone()))
            .or_insert_with(|| ShopStats {
                shop_no: shop.shop_no.clone(),
                connector: connector(shop).to_owned(),
                ..ShopStats::default()
            });
        merged.queued += shop.queued;
        merged.retrying += shop.retrying;
        merged.in_flight += shop.in_flight;
        merged.oldest_age_ms = merged.oldest_age_ms.max(shop.oldest_age_ms);
        merged.delivered_last_minute += shop.delivered_last_minute;
        merged.delivered_total += shop.delivered_total;
        merged.dead_letters += shop.dead_letters;
        if !shop.paused_reason.is_empty() {
            merged.paused_reason.clone_from(&shop.paused_reason);
        }
    }
    shops
}

fn age(ms: i64) -> String {
    match ms {
        0 => "-".to_owned(),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        ms => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

pub fn render(answers: &[StatsResponse]) -> String {
    let queued: u64 = answers.iter().map(|a| a.queued_trades).sum();
    let bytes: u64 = answers.iter().map(|a| a.queued_bytes).sum();
    let shards: Vec<&str> = answers.iter().map(|a| a.shard.as_str()).collect();
    let mut out = format!(
        "deliver shards: {}   waiting: {queued} trades ({bytes} bytes)\n\n{:<14} {:<20} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>6}  {}\n",
        shards.join(", "),
        "CONNECTOR",
        "SHOP",
        "QUEUED",
        "IN FLIGHT",
        "RETRYING",
        "OLDEST",
        "DELIV/MIN",
        "DELIVERED",
        "DEAD",
        "PAUSED"
    );
    // A shard that cannot write says so above its shops: nothing moves there meanwhile.
    let mut warnings = String::new();
    for answer in answers.iter().filter(|a| !a.storage_error.is_empty()) {
        warnings.push_str(&format!(
            "shard {}: OUTBOX CANNOT WRITE since {}: {}\n",
            answer.shard,
            wdtpipe_common::format_ms(answer.storage_error_since_ms),
            answer.storage_error
        ));
    }
    for answer in answers
        .iter()
        .filter(|a| a.min_free_bytes > 0 && a.free_bytes < a.min_free_bytes)
    {
        warnings.push_str(&format!(
            "shard {}: disk low: {} bytes free, below DELIVER_MIN_FREE_BYTES ({}): new callbacks get 503\n",
            answer.shard, answer.free_bytes, answer.min_free_bytes
        ));
    }
    if !warnings.is_empty() {
        out = format!("{warnings}{out}");
    }
    for shop in merge(answers).values() {
        out.push_str(&format!(
            "{:<14} {:<20} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>6}  {}\n",
            shop.connector,
            shop.shop_no,
            shop.queued,
            shop.in_flight,
            shop.retrying,
            age(shop.oldest_age_ms),
            shop.delivered_last_minute,
            shop.delivered_total,
            shop.dead_letters,
            if shop.paused_reason.is_empty() {
                "-"
            } else {
                &shop.paused_reason
            },
        ));
    }
    out
}

fn json(answers: &[StatsResponse]) -> anyhow::Result<String> {
    let shops: Vec<serde_json::Value> = merge(answers)
        .values()
        .map(|s| {
            serde_json::json!({
                "connector": s.connector, "shop_no": s.shop_no, "queued": s.queued, "in_flight": s.in_flight,
                "retrying": s.retrying, "oldest_age_ms": s.oldest_age_ms,
                "delivered_last_minute": s.delivered_last_minute, "delivered_total": s.delivered_total,
                "dead_letters": s.dead_letters, "paused_reason": s.paused_reason,
            })
        })
        .collect();
    let shards: Vec<serde_json::Value> = answers
        .iter()
        .map(|a| {
            serde_json::json!({"shard": a.shard, "queued_trades": a.queued_trades,
                "queued_bytes": a.queued_bytes, "disk_bytes": a.disk_bytes,
                "free_bytes": a.free_bytes, "min_free_bytes": a.min_free_bytes,
                "storage_error": a.storage_error, "storage_error_since_ms": a.storage_error_since_ms,
                "failed_commits": a.failed_commits})
        })
        .collect();
    Ok(format!(
        "{}\n",
        serde_json::to_string_pretty(&serde_json::json!({"shards": shards, "shops": shops}))?
    ))
}
