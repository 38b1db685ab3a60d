//! What the sandbox remembers: the accepted trades per `(shop_no, tid)` and the call log.

use crate::json::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use wdtpipe_common::decimal::{Dec, parse_decimal};

/// How many calls the log keeps; older ones are forgotten first.
pub const CALL_LOG_CAPACITY: usize = 100_000;

/// The latest accepted version of one raw order, with every version before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedTrade {
    /// The WDT account (`sid`) the trade was pushed to.
    pub sid: String,
    /// The shop the trade was pushed for.
    pub shop_no: String,
    /// The trade's `tid`.
    pub tid: String,
    /// The latest accepted version, exactly the JSON object received.
    pub trade: Value,
    /// How many times this tid was accepted.
    pub versions: u64,
    /// Every accepted version, oldest first.
    pub history: Vec<Value>,
    /// When the first version was accepted (Unix milliseconds).
    pub first_accepted_ms: i64,
    /// When the latest version was accepted (Unix milliseconds).
    pub last_accepted_ms: i64,
}

/// One `trade_push.php` call as the sandbox answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// When the call was answered (Unix milliseconds).
    pub at_ms: i64,
    /// The account the call named, when the sandbox serves it (else empty).
    #[serde(default)]
    pub sid: String,
    /// The call's `shop_no` (empty when absent).
    pub shop_no: String,
    /// The call's `switch` (1 when absent or unreadable).
    pub switch: u8,
    /// The tids found in `trade_list` (empty when it was not a JSON array).
    pub tids: Vec<String>,
    /// Whether the signature was checked and matched.
    pub sign_ok: bool,
    /// The WDT `code` answered; -1 when a fault answered at the HTTP level or dropped the call.
    pub code: i64,
    /// The WDT `message` answered (or a note on the injected fault).
    pub message: String,
    /// The HTTP status answered; 0 when the connection was dropped.
    pub http_status: u16,
    /// Trades created by this call.
    pub new_count: u64,
    /// Trades updated by this call.
    pub chg_count: u64,
}

/// Accepted trades and the bounded call log.
#[derive(Debug, Default)]
pub(crate) struct Store {
    /// By account and shop, then tid: hashed, because a backlog run looks up and inserts a
    /// million tids (a sorted map of `(shop, tid)` pairs cost a string comparison per level
    /// for each).
    trades: HashMap<(String, String), HashMap<String, AcceptedTrade>>,
    calls: VecDeque<CallRecord>,
}

impl Store {
    /// When each accepted tid was first accepted.
    pub(crate) fn first_accepted(&self) -> Vec<(String, i64)> {
        self.all()
            .map(|t| (t.tid.clone(), t.first_accepted_ms))
            .collect()
    }

    /// How many (shop_no, tid) pairs were accepted.
    pub(crate) fn trade_count(&self) -> usize {
        self.trades.values().map(HashMap::len).sum()
    }

    /// Every accepted trade, sorted by `(shop_no, tid)`.
    pub(crate) fn trades(&self) -> Vec<AcceptedTrade> {
        let mut trades: Vec<AcceptedTrade> = self.all().cloned().collect();
        trades.sort_unstable_by(|a, b| {
            (&a.shop_no, &a.tid, &a.sid).cmp(&(&b.shop_no, &b.tid, &b.sid))
        });
        trades
    }

    /// The trade with this tid; when several shops pushed it, the most recently accepted.
    pub(crate) fn trade(&self, tid: &str) -> Option<AcceptedTrade> {
        self.trades
            .values()
            .filter_map(|shop| shop.get(tid))
            .max_by_key(|t| t.last_accepted_ms)
            .cloned()
    }

    fn all(&self) -> impl Iterator<Item = &AcceptedTrade> {
        self.trades.values().flat_map(HashMap::values)
    }

    /// The call log, oldest first.
    pub(crate) fn calls(&self) -> Vec<CallRecord> {
        self.calls.iter().cloned().collect()
    }

    /// Forgets trades and calls.
    pub(crate) fn reset(&mut self) {
        self.trades.clear();
        self.calls.clear();
    }

    /// Appends to the call log, forgetting the oldest call past [`CALL_LOG_CAPACITY`].
    pub(crate) fn record(&mut self, call: CallRecord) {
        if self.calls.len() >= CALL_LOG_CAPACITY {
            self.calls.pop_front();
        }
        self.calls.push_back(call);
    }

    /// The first rule a new version of `(shop_no, tid)` breaks against what was accepted
    /// before: a line's `num` and `price` are fixed by the first accepted version holding
    /// its `oid`.
    /// Whether a tid already accepted may take `trade` (WDT_API.md: from 30 an order moves
    /// only to 70 or 80; 70, 80 and 90 are final), and whether its lines keep their
    /// num/price.
    pub(crate) fn conflict(
        &self,
        sid: &str,
        shop_no: &str,
        tid: &str,
        trade: &Json<'_>,
    ) -> Option<String> {
        let existing = self
            .trades
            .get(&(sid.to_owned(), shop_no.to_owned()))?
            .get(tid)?;
        let status_of = |trade: &Value| trade.get("trade_status").and_then(Value::as_i64);
        if let (Some(from), Some(to)) = (
            status_of(&existing.trade),
            trade.get("trade_status").and_then(Json::as_i64),
        ) && let Some(error) = transition_refused(from, to)
        {
            return Some(error);
        }
        // A lean store keeps no versions, so there is nothing to compare against.
        if existing.history.is_empty() {
            return None;
        }
        let trade = trade.to_value();
        let mut fixed: HashMap<&str, (Option<Dec>, Option<Dec>)> = HashMap::new();
        for version in &existing.history {
            for line in lines(version) {
                if let Some(oid) = line.get("oid").and_then(Value::as_str) {
                    fixed
                        .entry(oid)
                        .or_insert_with(|| (amount(line, "num"), amount(line, "price")));
                }
            }
        }
        lines(&trade).find_map(|line| {
            let oid = line.get("oid").and_then(Value::as_str)?;
            let (num, price) = fixed.get(oid)?;
            (*num != amount(line, "num") || *price != amount(line, "price"))
                .then(|| format!("oid {oid}: num/price 不能修改"))
        })
    }

    /// Stores every trade of an accepted call; answers `(new_count, chg_count)`.
    pub(crate) fn accept(
        &mut self,
        sid: &str,
        shop_no: &str,
        trades: Vec<(String, Value)>,
        now_ms: i64,
        lean: bool,
    ) -> (u64, u64) {
        let (mut new_count, mut chg_count) = (0, 0);
        let shop = self
            .trades
            .entry((sid.to_owned(), shop_no.to_owned()))
            .or_default();
        for (tid, trade) in trades {
            match shop.get_mut(&tid) {
                Some(existing) => {
                    existing.versions += 1;
                    if !lean {
                        existing.history.push(trade.clone());
                        existing.trade = trade;
                    }
                    existing.last_accepted_ms = now_ms;
                    chg_count += 1;
                }
                None => {
                    let (trade, history) = if lean {
                        (Value::Null, Vec::new())
                    } else {
                        (trade.clone(), vec![trade])
                    };
                    let accepted = AcceptedTrade {
                        sid: sid.to_owned(),
                        shop_no: shop_no.to_owned(),
                        tid: tid.clone(),
                        trade,
                        versions: 1,
                        history,
                        first_accepted_ms: now_ms,
                        last_accepted_ms: now_ms,
                    };
                    shop.insert(tid, accepted);
                    new_count += 1;
                }
            }
        }
        (new_count, chg_count)
    }
}

fn lines(trade: &Value) -> impl Iterator<Item = &Value> {
    trade
        .get("order_list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A line amount compared by value, so `"2"` and `"2.00"` are the same quantity.
fn amount(line: &Value, key: &str) -> Option<Dec> {
    line.get(key)
        .and_then(Value::as_str)
        .and_then(|text| parse_decimal(text).ok())
}

/// WDT's order transitions: from 30 (paid) only to 70 (completed) or 80 (refunded); 70, 80
/// and 90 are final. A refused move is answered like WDT's per-trade errors.
pub(crate) fn transition_refused(from: i64, to: i64) -> Option<String> {
    let allowed = from == to
        || match from {
            30 => matches!(to, 70 | 80),
            70 | 80 | 90 => false,
            _ => true,
        };
    (!allowed)
        .then(|| format!("订单状态不能从{from}变为{to} (trade_status {from} cannot move to {to})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn version(num: &str, price: &str) -> Value {
        json!({"tid": "T1", "order_list": [{"oid": "O1", "num": num, "price": price}]})
    }

    /// `Store::accept` of `trade` as T1 at shop S of account `sid`, in full (not lean).
    fn accept_t1(store: &mut Store, trade: Value, now_ms: i64) -> (u64, u64) {
        store.accept("sid", "S", vec![("T1".into(), trade)], now_ms, false)
    }

    /// `Store::conflict` on a trade given as a `Value`, read back as `trade_push` reads it.
    fn conflict(store: &Store, shop_no: &str, trade: &Value) -> Option<String> {
        store.conflict(
            "sid",
            shop_no,
            "T1",
            &Json::parse(&trade.to_string()).unwrap(),
        )
    }

    /// A second version counts as a change, keeps history, and num/price are compared by value.
    #[test]
    fn versions_and_fixed_lines() {
        let mut store = Store::default();
        assert_eq!(accept_t1(&mut store, version("2", "10.5"), 1), (1, 0));
        assert_eq!(conflict(&store, "S", &version("2.00", "10.50")), None);
        assert_eq!(conflict(&store, "OTHER", &version("3", "10.5")), None);
        assert_eq!(
            conflict(&store, "S", &version("3", "10.5")).as_deref(),
            Some("oid O1: num/price 不能修改")
        );
        assert_eq!(accept_t1(&mut store, version("2", "10.5"), 2), (0, 1));
        let trade = store.trade("T1").unwrap();
        assert_eq!((trade.versions, trade.history.len()), (2, 2));
        assert_eq!((trade.first_accepted_ms, trade.last_accepted_ms), (1, 2));
    }

    /// The listing is sorted by shop, then tid, whatever the order of acceptance.
    #[test]
    fn trades_are_listed_by_shop_then_tid() {
        let mut store = Store::default();
        store.accept("sid", "S2", vec![("T1".into(), Value::Null)], 1, true);
        store.accept(
            "sid",
            "S1",
            vec![("T2".into(), Value::Null), ("T10".into(), Value::Null)],
            2,
            true,
        );
        store.accept("sid", "S1", vec![("T1".into(), Value::Null)], 3, true);
        let listed: Vec<(String, String)> = store
            .trades()
            .into_iter()
            .map(|t| (t.shop_no, t.tid))
            .collect();
        let pair = |shop: &str, tid: &str| (shop.to_owned(), tid.to_owned());
        assert_eq!(
            listed,
            [
                pair("S1", "T1"),
                pair("S1", "T10"),
                pair("S1", "T2"),
                pair("S2", "T1")
            ]
        );
        assert_eq!(store.trade_count(), 4);
        assert_eq!(
            store.trade("T1").unwrap().shop_no,
            "S1",
            "the latest accepted"
        );
    }

    /// The call log keeps only the newest calls.
    #[test]
    fn call_log_is_bounded() {
        let mut store = Store::default();
        for at_ms in 0..(CALL_LOG_CAPACITY as i64 + 5) {
            store.record(CallRecord {
                sid: String::new(),
                at_ms,
                shop_no: String::new(),
                switch: 1,
                tids: Vec::new(),
                sign_ok: true,
                code: 0,
                message: String::new(),
                http_status: 200,
                new_count: 0,
                chg_count: 0,
            });
        }
        let calls = store.calls();
        assert_eq!(calls.len(), CALL_LOG_CAPACITY);
        assert_eq!(calls[0].at_ms, 5);
    }

    /// WDT's transitions: from 30 only to 70 or 80; 70, 80 and 90 are final.
    #[test]
    fn order_transitions() {
        for (from, to) in [(30, 30), (30, 70), (30, 80), (10, 30), (10, 90), (70, 70)] {
            assert_eq!(transition_refused(from, to), None, "{from} → {to}");
        }
        for (from, to) in [(30, 90), (30, 10), (70, 30), (80, 70), (90, 70)] {
            assert!(transition_refused(from, to).is_some(), "{from} → {to}");
        }
    }
}
