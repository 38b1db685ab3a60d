//! `wdtpipe dlq list|replay|discard|remap`: the dead-letter store of the deliver shards.
//! `remap` goes through transform (`Transform.Remap`), which maps the letters' records again
//! with the fixed scheme and writes the result to the shards.

use crate::target::{Client, DeliverTarget};
use wdtpipe_common::format_ms;

use wdtpipe_common::time::unix_ms;
use wdtpipe_common::trade_json::trade_value;

use wdtpipe_common::grpc::{ClientTimeouts, lazy_channel};
use wdtpipe_proto::v1::transform_client::TransformClient;
use wdtpipe_proto::v1::{
    DeadLetter, DeadLetterFilter, DiscardRequest, ListDeadLettersRequest, RemapRequest,
    RemapResponse, ReplayRequest,
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
    /// Map dead letters' records again with their scheme's current version (after a fix)
    /// and queue the result as the newest version of each tid, unless a newer one waits or
    /// was delivered; the repaired letters go. A record still invalid stays a dead letter
    /// with the new reason. Exits 1 when any matching letter was left.
    Remap {
        #[command(flatten)]
        filter: FilterArgs,
        /// Map with this scheme (id) instead of the one each letter was mapped with.
        #[arg(long)]
        scheme: Option<String>,
        /// The transform service that maps them.
        #[arg(long, env = "TRANSFORM_URL", default_value = "http://127.0.0.1:50052")]
        transform: String,
    },
}

/// How long a re-map may take: it reads, maps and writes every matching letter.
const REMAP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

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
    /// Only letters mapped by this scheme (its id).
    #[arg(long = "letter-scheme", value_name = "SCHEME_ID")]
    pub letter_scheme: Option<String>,
    /// Only letters whose reason contains this text (case-insensitive).
    #[arg(long)]
    pub reason: Option<String>,
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
            scheme: self.letter_scheme.clone().unwrap_or_default(),
            reason: self.reason.clone().unwrap_or_default(),
            keys: Vec::new(),
        })
    }
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    if let Action::Remap {
        filter,
        scheme,
        transform,
    } = &args.action
    {
        return remap(&args.target, filter, scheme.as_deref(), transform).await;
    }
    let clients = args.target.clients()?;
    match args.action {
        Action::List {
            filter,
            limit,
            json,
        } => {
            let (mut letters, mut total) = (Vec::new(), 0);
            let answers = each_shard(&clients, &filter, |mut client, filter| async move {
                let request = ListDeadLettersRequest {
                    filter: Some(filter),
                    limit,
                    page_token: String::new(),
                };
                client.list_dead_letters(request).await
            })
            .await?;
            for answer in answers {
                total += answer.total;
                letters.extend(answer.letters);
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
            let answers = each_shard(&clients, &filter, |mut client, filter| async move {
                let filter = Some(filter);
                client.replay(ReplayRequest { filter }).await
            })
            .await?;
            for answer in answers {
                replayed += answer.replayed;
                superseded += answer.superseded;
                tids.extend(answer.tids);
            }
            let listed = if tids.is_empty() {
                String::new()
            } else {
                format!(": {}", tids.join(", "))
            };
            println!("replayed {replayed} (superseded by newer versions: {superseded}){listed}");
        }
        Action::Discard { filter } => {
            let answers = each_shard(&clients, &filter, |mut client, filter| async move {
                let filter = Some(filter);
                client.discard(DiscardRequest { filter }).await
            })
            .await?;
            let discarded: u32 = answers.iter().map(|a| a.discarded).sum();
            println!("discarded {discarded}");
        }
        Action::Remap { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// Calls every shard with every filter the arguments stand for (one per `--tid`), in order;
/// the first refusal stops it, naming the shard.
async fn each_shard<T, F, Fut>(
    clients: &[(String, Client)],
    filter: &FilterArgs,
    call: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(Client, DeadLetterFilter) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut answers = Vec::new();
    for filter in filter.filters()? {
        for (url, client) in clients {
            let answer = call(client.clone(), filter.clone())
                .await
                .map_err(|status| anyhow::anyhow!("deliver at {url}: {}", status.message()))?;
            answers.push(answer.into_inner());
        }
    }
    Ok(answers)
}

async fn remap(
    target: &DeliverTarget,
    filter: &FilterArgs,
    scheme: Option<&str>,
    transform: &str,
) -> anyhow::Result<()> {
    let timeouts = ClientTimeouts {
        request: REMAP_DEADLINE,
        ..ClientTimeouts::default()
    };
    let channel = lazy_channel(transform, timeouts, &target.tls)?;
    let mut client = TransformClient::with_interceptor(channel, target.authorization()?);
    let mut done = RemapResponse::default();
    for filter in filter.filters()? {
        let request = RemapRequest {
            filter: Some(filter),
            scheme: scheme.unwrap_or_default().to_owned(),
        };
        let answer = client
            .remap(request)
            .await
            .map_err(|status| anyhow::anyhow!("transform at {transform}: {}", status.message()))?
            .into_inner();
        done.repaired += answer.repaired;
        done.requeued += answer.requeued;
        done.superseded += answer.superseded;
        done.still_invalid += answer.still_invalid;
        done.gone += answer.gone;
        done.tids.extend(answer.tids);
        done.problems.extend(answer.problems);
    }
    let listed = if done.tids.is_empty() {
        String::new()
    } else {
        format!(": {}", done.tids.join(", "))
    };
    println!(
        "re-mapped {} dead letter(s); queued {} trade(s) (superseded by newer versions: {}){listed}",
        done.repaired, done.requeued, done.superseded
    );
    if done.gone > 0 {
        println!(
            "{} letter(s) went meanwhile (replayed, discarded)",
            done.gone
        );
    }
    if !done.problems.is_empty() {
        println!("{} letter(s) left:", done.problems.len());
        for problem in &done.problems {
            let connector = if problem.connector.is_empty() {
                String::new()
            } else {
                format!(" ({})", problem.connector)
            };
            println!(
                "  tid {}  shop {}{connector}\n    {}",
                problem.tid, problem.shop_no, problem.reason
            );
        }
        std::process::exit(1);
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
        "scheme": letter.scheme,
        "record_kept": letter.record.is_some(),
        "trade": letter.trade.as_ref().map(trade_value),
        "history": letter.history.iter().map(|a| serde_json::json!({
            "at_ms": a.at_ms, "outcome": a.outcome, "http_status": a.http_status,
            "code": a.code, "message": a.message,
        })).collect::<Vec<_>>(),
    })
}
