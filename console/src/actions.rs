//! What operators do from the console, with the dry run in front of every bulk action.
//!
//! A dry run freezes the set: the selected letters by key, or the filter with `until` set
//! to the moment of the dry run, so letters that die afterwards are not swept along. The
//! plan is kept here (for [`PLAN_LIFETIME`], for the operator who made it) and the confirm
//! names it; what the action did is written to the audit log.

use crate::i18n::Lang;
use crate::pages::dead_letters::{Listing, Query};
use crate::upstream::Upstream;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wdtpipe_proto::v1::{
    DeadLetter, DeadLetterFilter, DeadLetterKey, DiscardRequest, ListDeadLettersRequest,
    RemapRequest, ReplayRequest, ResumeRequest,
};

/// How long a dry run can be confirmed.
pub(crate) const PLAN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Letters shown per page and in a dry run.
pub(crate) const PAGE_SIZE: u32 = 50;

/// A bulk action on dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Replay,
    Remap,
    Discard,
}

impl Action {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "replay" => Some(Self::Replay),
            "remap" => Some(Self::Remap),
            "discard" => Some(Self::Discard),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Replay => "replay",
            Self::Remap => "remap",
            Self::Discard => "discard",
        }
    }

    pub(crate) fn label(self, lang: Lang) -> &'static str {
        lang.t(self.name())
    }
}

/// A dry run waiting for its confirm.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) id: String,
    pub(crate) action: Action,
    /// The frozen set.
    pub(crate) filter: DeadLetterFilter,
    pub(crate) count: u64,
    pub(crate) sample: Vec<DeadLetter>,
    /// The same as a `wdtpipe` command.
    pub(crate) equivalent: String,
    /// The dead-letters page's query to go back to.
    pub(crate) back: String,
    pub(crate) who: String,
    created: Instant,
}

/// The dry runs of this console process.
#[derive(Debug, Default)]
pub(crate) struct Plans {
    by_id: Mutex<HashMap<String, Plan>>,
}

impl Plans {
    fn keep(&self, plan: Plan) {
        let mut plans = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        plans.retain(|_, p| p.created.elapsed() < PLAN_LIFETIME);
        plans.insert(plan.id.clone(), plan);
    }

    /// Takes a plan for its confirm: only its maker may, and only once.
    pub(crate) fn take(&self, id: &str, who: &str) -> Option<Plan> {
        let mut plans = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        match plans.get(id) {
            Some(p) if p.who == who && p.created.elapsed() < PLAN_LIFETIME => plans.remove(id),
            _ => None,
        }
    }
}

/// A time the filter form gave (`datetime-local`, China time) as Unix ms.
fn form_time(name: &str, text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    let mut civil = text.replacen('T', " ", 1);
    if civil.len() == 16 {
        civil.push_str(":00");
    }
    wdtpipe_common::time::unix_ms(&civil)
        .ok()
        .flatten()
        .ok_or_else(|| format!("{name}: {text:?} is not a time (YYYY-MM-DDTHH:MM)"))
}

/// The deliver filter of a page's query.
pub(crate) fn filter_of(query: &Query) -> Result<DeadLetterFilter, String> {
    Ok(DeadLetterFilter {
        tid: query.tid.trim().to_owned(),
        shop_no: query.shop.trim().to_owned(),
        connector: query.connector.trim().to_owned(),
        scheme: query.scheme.trim().to_owned(),
        reason: query.reason.trim().to_owned(),
        since_ms: form_time("since", &query.since)?,
        until_ms: form_time("until", &query.until)?,
        ..DeadLetterFilter::default()
    })
}

/// One page of letters from every shard, newest first; `page` is the shards' tokens.
pub(crate) async fn list(
    upstream: &Upstream,
    filter: &DeadLetterFilter,
    page: &str,
    limit: u32,
) -> Listing {
    let tokens: Vec<&str> = page.split(',').collect();
    let calls = upstream.shards.iter().enumerate().map(|(i, shard)| {
        let token = tokens.get(i).copied().unwrap_or_default().to_owned();
        let done = !page.is_empty() && token.is_empty();
        let mut client = shard.client.clone();
        let request = ListDeadLettersRequest {
            filter: Some(filter.clone()),
            limit,
            page_token: token,
        };
        async move {
            if done {
                return Ok(None);
            }
            client
                .list_dead_letters(request)
                .await
                .map(|a| Some(a.into_inner()))
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let mut listing = Listing::default();
    let mut reasons: HashMap<String, u64> = HashMap::new();
    let mut next = Vec::new();
    for ((i, shard), answer) in upstream.shards.iter().enumerate().zip(answers) {
        match answer {
            Ok(Some(answer)) => {
                listing.total += u64::from(answer.total);
                for reason in answer.reasons {
                    *reasons.entry(reason.reason).or_default() += u64::from(reason.count);
                }
                listing
                    .letters
                    .extend(answer.letters.into_iter().map(|l| (i, l)));
                next.push(answer.next_page_token);
            }
            Ok(None) => next.push(String::new()),
            Err(status) => {
                listing
                    .problems
                    .push(format!("deliver {}: {}", shard.url, status.message()));
                next.push(String::new());
            }
        }
    }
    listing.letters.sort_by(|a, b| {
        b.1.dead_at_ms
            .cmp(&a.1.dead_at_ms)
            .then(b.1.seq.cmp(&a.1.seq))
    });
    let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    listing.reasons = reasons;
    if next.iter().any(|t| !t.is_empty()) {
        listing.next_page = next.join(",");
    }
    listing
}

/// A selected letter's key from its checkbox value (see `key_value`).
fn parse_key(value: &str) -> Option<DeadLetterKey> {
    let parts: Vec<&str> = value.split('|').collect();
    let [_, tid, shop, connector, seq] = parts.as_slice() else {
        return None;
    };
    let decode = |s: &str| -> Option<String> {
        let bytes: Vec<u8> = serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()?
            .pop()?
            .1
            .into_bytes();
        String::from_utf8(bytes).ok()
    };
    Some(DeadLetterKey {
        tid: decode(tid)?,
        shop_no: decode(shop)?,
        connector: decode(connector)?,
        seq: seq.parse().ok()?,
    })
}

/// The `wdtpipe` command that does the same.
fn equivalent(action: Action, filter: &DeadLetterFilter) -> String {
    let mut cmd = format!("wdtpipe dlq {}", action.name());
    let quote = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            s.to_owned()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    let mut tids: Vec<&str> = filter.keys.iter().map(|k| k.tid.as_str()).collect();
    tids.dedup();
    for tid in tids {
        cmd.push(' ');
        cmd.push_str(&quote(tid));
    }
    for (flag, value) in [
        ("--tid", &filter.tid),
        ("--shop", &filter.shop_no),
        ("--connector", &filter.connector),
        ("--letter-scheme", &filter.scheme),
        ("--reason", &filter.reason),
    ] {
        if !value.is_empty() {
            cmd.push_str(&format!(" {flag} {}", quote(value)));
        }
    }
    if filter.since_ms > 0 {
        cmd.push_str(&format!(" --since {}", filter.since_ms));
    }
    if filter.until_ms > 0 {
        cmd.push_str(&format!(" --until {}", filter.until_ms));
    }
    if filter.all {
        cmd.push_str(" --all");
    }
    cmd
}

/// Makes the dry run of `action` on the selected letters (`keys`) or, when `all`, on
/// every letter the query matches.
pub(crate) async fn plan(
    upstream: &Upstream,
    plans: &Plans,
    who: &str,
    action: Action,
    query: &Query,
    keys: &[String],
    all: bool,
) -> Result<Plan, String> {
    let mut filter = filter_of(query)?;
    let now = wdtpipe_common::now_ms();
    // Frozen: nothing that dies after this moment.
    filter.until_ms = match filter.until_ms {
        0 => now + 1,
        until => until.min(now + 1),
    };
    if all {
        filter.all = true;
    } else {
        filter.keys = keys.iter().filter_map(|k| parse_key(k)).collect();
        if filter.keys.is_empty() {
            return Err("select at least one dead letter (or act on all matching)".into());
        }
    }
    let listing = list(upstream, &filter, "", PAGE_SIZE).await;
    if let Some(problem) = listing.problems.first() {
        return Err(problem.clone());
    }
    let id: String = rand::rng()
        .random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let plan = Plan {
        id,
        action,
        equivalent: equivalent(action, &filter),
        count: listing.total,
        sample: listing.letters.into_iter().map(|(_, l)| l).collect(),
        filter,
        back: query.link(),
        who: who.to_owned(),
        created: Instant::now(),
    };
    plans.keep(plan.clone());
    Ok(plan)
}

/// Carries out a confirmed plan: what it did, in words.
pub(crate) async fn apply(upstream: &Upstream, plan: &Plan) -> Result<String, String> {
    match plan.action {
        Action::Remap => {
            let answer = upstream
                .transform_admin
                .clone()
                .remap(RemapRequest {
                    filter: Some(plan.filter.clone()),
                    scheme: String::new(),
                })
                .await
                .map_err(|s| format!("transform: {}", s.message()))?
                .into_inner();
            let mut text = format!(
                "re-mapped {} letter(s); queued {} trade(s), superseded {}, still invalid {}, gone {}",
                answer.repaired,
                answer.requeued,
                answer.superseded,
                answer.still_invalid,
                answer.gone
            );
            for problem in answer.problems.iter().take(20) {
                text.push_str(&format!(
                    "; {} ({}): {}",
                    problem.tid, problem.shop_no, problem.reason
                ));
            }
            Ok(text)
        }
        Action::Replay | Action::Discard => {
            let (mut done, mut superseded, mut problems) = (0u64, 0u64, Vec::new());
            for shard in &upstream.shards {
                let mut client = shard.admin.clone();
                let filter = Some(plan.filter.clone());
                let answer = match plan.action {
                    Action::Replay => client.replay(ReplayRequest { filter }).await.map(|a| {
                        let a = a.into_inner();
                        (u64::from(a.replayed), u64::from(a.superseded))
                    }),
                    _ => client
                        .discard(DiscardRequest { filter })
                        .await
                        .map(|a| (u64::from(a.into_inner().discarded), 0)),
                };
                match answer {
                    Ok((n, s)) => {
                        done += n;
                        superseded += s;
                    }
                    Err(status) => {
                        problems.push(format!("deliver {}: {}", shard.url, status.message()))
                    }
                }
            }
            let mut text = match plan.action {
                Action::Replay => format!(
                    "replayed {done} letter(s); removed {superseded} superseded by a newer version"
                ),
                _ => format!("discarded {done} letter(s)"),
            };
            if !problems.is_empty() {
                text.push_str("; ");
                text.push_str(&problems.join("; "));
                return Err(text);
            }
            Ok(text)
        }
    }
}

/// "Resume now" for a shop on every shard (only the one holding it has anything to cut).
pub(crate) async fn resume(
    upstream: &Upstream,
    shop: &str,
    connector: &str,
) -> Result<String, String> {
    let mut messages = Vec::new();
    let mut resumed = false;
    for shard in &upstream.shards {
        let answer = shard
            .admin
            .clone()
            .resume(ResumeRequest {
                shop_no: shop.to_owned(),
                connector: connector.to_owned(),
            })
            .await
            .map_err(|s| format!("deliver {}: {}", shard.url, s.message()))?
            .into_inner();
        if answer.resumed {
            resumed = true;
            messages.push(answer.message);
        }
    }
    if resumed {
        Ok(messages.join("; "))
    } else {
        Ok(format!("shop {shop} was not waiting"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkbox value names one letter exactly; the command says the same.
    #[test]
    fn keys_and_commands() {
        let letter = DeadLetter {
            tid: "T 1|x".into(),
            shop_no: "店铺".into(),
            connector: String::new(),
            seq: 42,
            ..Default::default()
        };
        let value = crate::pages::dead_letters::key_value(1, &letter);
        let key = parse_key(&value).unwrap();
        assert_eq!(
            (key.tid.as_str(), key.shop_no.as_str(), key.seq),
            ("T 1|x", "店铺", 42)
        );
        let filter = DeadLetterFilter {
            keys: vec![key],
            until_ms: 1_700_000_000_123,
            reason: "签名 error".into(),
            ..Default::default()
        };
        assert_eq!(
            equivalent(Action::Replay, &filter),
            "wdtpipe dlq replay 'T 1|x' --reason '签名 error' --until 1700000000123"
        );
        assert_eq!(
            form_time("since", "2026-12-04T10:00").unwrap(),
            1_796_349_600_000
        );
    }
}
