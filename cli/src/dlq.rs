//! `wdtpipe dlq list|replay|discard`: the dead-letter store of a deliver service.

use crate::target::DeliverTarget;
use anyhow::Context;
use wdtpipe_common::format_ms;

use wdtpipe_common::time::unix_ms;
use wdtpipe_common::trade_json::trade_value;

use wdtpipe_proto::v1::{
    DeadLetter, DeadLetterFilter, DiscardRequest, ListDeadLettersRequest, ReplayRequest,
};

#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub action: Action,
    #[command(flatten)]
    pub target: DeliverTarget,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON (with the trades).
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in the queue (a letter older than a newer version of its tid
    /// is only removed: latest wins).
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Delete dead letters.
    Discard {
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// Which letters: by tid, shop, time of death; `--all` for every letter.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Tids, as with `wdtpipe status TID` (each one's letters, within the other filters).
    pub tids: Vec<String>,
    #[arg(long)]
    pub tid: Option<String>,
    #[arg(long)]
    pub shop: Option<String>,
    /// Only letters of this WDT account (connector).
    #[arg(long)]
    pub connector: Option<String>,
    /// Dead at or after this time (YYYY-MM-DD HH:MM:SS China time, RFC 3339, or Unix seconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Dead before this time (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Every dead letter (required by replay and discard when nothing else narrows them).
    #[arg(long)]
    pub all: bool,
}

impl FilterArgs {
    /// One filter per tid named (positional or `--tid`), or the one filter.
    fn filters(&self) -> anyhow::Result<Vec<DeadLetterFilter>> {
        let base = self.filter()?;
        let mut tids: Vec<&String> = self.tids.iter().chain(&self.tid).collect();
        tids.dedup();
        if tids.is_empty() {
            return Ok(vec![base]);
        }
        Ok(tids
            .into_iter()
            .map(|tid| DeadLetterFilter {
                tid: tid.clone(),
                ..base.clone()
            })
            .collect())
    }

    fn filter(&self) -> anyhow::Result<DeadLetterFilter> {
        let time = |flag: &str, text: &Option<String>| -> anyhow::Result<i64> {
            match text {
                None => Ok(0),
                Some(t) => unix_ms(t.trim())
                    .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
                    .map(Option::unwrap_or_default),
            }
        };
        Ok(DeadLetterFilter {
            tid: self.tid.clone().unwrap_or_default(),
            shop_no: self.shop.clone().unwrap_or_default(),
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
            all: self.all,
            connector: self.connector.clone().unwrap_or_default(),
        })
    }
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let clients = args.target.clients()?;
    match args.action {
        Action::List {
            filter,
            limit,
            json,
        } => {
            let (mut letters, mut total) = (Vec::new(), 0);
            for filter in filter.filters()? {
                for (url, mut client) in clients.clone() {
                    let answer = client
                        .list_dead_letters(ListDeadLettersRequest {
                            filter: Some(filter.clone()),
                            limit,
                        })
                        .await
                        .with_context(|| format!("cannot ask deliver at {url}"))?
                        .into_inner();
                    total += answer.total;
                    letters.extend(answer.letters);
                }
            }
            letters.sort_by_key(|l| std::cmp::Reverse(l.dead_at_ms));
            letters.truncate(limit as usize);
            if json {
                let letters: Vec<serde_json::Value> = letters.iter().map(letter_json).collect();
                println!("{}", serde_json::to_string_pretty(&letters)?);
            } else {
                println!("{total} dead letter(s), showing {}", letters.len());
                for letter in &letters {
                    println!(
                        "{}  tid {}  shop {}{}  attempts {}\n    {}",
                        format_ms(letter.dead_at_ms),
                        letter.tid,
                        letter.shop_no,
                        if letter.connector.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", letter.connector)
                        },
                        letter.history.len(),
                        letter.reason
                    );
                }
            }
        }
        Action::Replay { filter } => {
            let (mut replayed, mut superseded, mut tids) = (0, 0, Vec::new());
            for filter in filter.filters()? {
                for (url, mut client) in clients.clone() {
                    let answer = client
                        .replay(ReplayRequest {
                            filter: Some(filter.clone()),
                        })
                        .await
                        .map_err(|status| {
                            anyhow::anyhow!("deliver at {url}: {}", status.message())
                        })?
                        .into_inner();
                    replayed += answer.replayed;
                    superseded += answer.superseded;
                    tids.extend(answer.tids);
                }
            }
            let listed = if tids.is_empty() {
                String::new()
            } else {
                format!(": {}", tids.join(", "))
            };
            println!("replayed {replayed} (superseded by newer versions: {superseded}){listed}");
        }
        Action::Discard { filter } => {
            let mut discarded = 0;
            for filter in filter.filters()? {
                for (url, mut client) in clients.clone() {
                    let answer = client
                        .discard(DiscardRequest {
                            filter: Some(filter.clone()),
                        })
                        .await
                        .map_err(|status| {
                            anyhow::anyhow!("deliver at {url}: {}", status.message())
                        })?
                        .into_inner();
                    discarded += answer.discarded;
                }
            }
            println!("discarded {discarded}");
        }
    }
    Ok(())
}

fn letter_json(letter: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "tid": letter.tid,
        "shop_no": letter.shop_no,
        "connector": if letter.connector.is_empty() { "default" } else { &letter.connector },
        "record_id": letter.record_id,
        "received_at_ms": letter.received_at_ms,
        "dead_at_ms": letter.dead_at_ms,
        "reason": letter.reason,
        "trade": letter.trade.as_ref().map(trade_value),
        "history": letter.history.iter().map(|a| serde_json::json!({
            "at_ms": a.at_ms, "outcome": a.outcome, "http_status": a.http_status,
            "code": a.code, "message": a.message,
        })).collect::<Vec<_>>(),
    })
}
