//! The `trade_push.php` protocol: the checks in WDT's order, the injected faults, and the
//! all-or-nothing store. Knows nothing of HTTP frameworks; `http` turns an [`Answer`] into a
//! response.

use crate::Sandbox;
use crate::config::Faults;
use crate::json::Json;
use crate::state::CallRecord;
use crate::validate::validate_trade;
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;

/// Most trades one call may carry.
pub const MAX_TRADES: usize = 50;

/// Why `trade_push.php` refused a call, with WDT's code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Code 104: the body is not a form.
    #[error("content type must be application/x-www-form-urlencoded")]
    ContentType,
    /// Code 104: a required field is missing or empty.
    #[error("缺少参数: {0}")]
    Missing(&'static str),
    /// Code 100.
    #[error("sid不存在 (invalid sid)")]
    Sid,
    /// Code 101.
    #[error("appkey不存在 (invalid appkey)")]
    Appkey,
    /// Code 103: not Unix seconds, or too far from the sandbox clock.
    #[error("timestamp超出允许范围 (timestamp outside the allowed window)")]
    Timestamp,
    /// Code 102.
    #[error("签名错误 (sign mismatch)")]
    Sign,
    /// Code 1040: the throttling fault.
    #[error("超过每分钟最大调用频率限制,请稍后重试")]
    Throttled,
    /// Code 104: `switch` is neither 0 nor 1.
    #[error("switch 只能是0或1")]
    Switch,
    /// Code 104.
    #[error("trade_list 不是合法的JSON数组")]
    TradeListNotArray,
    /// Code 104.
    #[error("trade_list 不能为空")]
    TradeListEmpty,
    /// Code 105.
    #[error("trade_list 超过50条")]
    TooManyTrades,
    /// Code 99: some trades are invalid; the message is a JSON array of `{tid, error}`.
    #[error("{0}")]
    Trades(String),
    /// Code 99: the `reject_without_tid` fault; the message names no tid.
    #[error("订单数据错误 (rejected by sandbox rule)")]
    RejectedWithoutTid,
    /// Code 99: the `unknown_shops` fault.
    #[error("店铺不存在 (shop {0} does not exist in this account)")]
    UnknownShop(String),
}

impl Refusal {
    /// The WDT `code` answered for this refusal.
    pub fn code(&self) -> i64 {
        match self {
            Refusal::Sid => 100,
            Refusal::Appkey => 101,
            Refusal::Sign => 102,
            Refusal::Timestamp => 103,
            Refusal::ContentType
            | Refusal::Missing(_)
            | Refusal::Switch
            | Refusal::TradeListNotArray
            | Refusal::TradeListEmpty => 104,
            Refusal::TooManyTrades => 105,
            Refusal::Throttled => 1040,
            Refusal::Trades(_) | Refusal::RejectedWithoutTid | Refusal::UnknownShop(_) => 99,
        }
    }
}

/// How to answer a call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// HTTP 200 with WDT's JSON.
    Wdt(WdtAnswer),
    /// An HTTP-level failure (500 or 429), optionally with `Retry-After` seconds.
    Http {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Close the connection without answering.
    Drop,
}

/// The JSON body WDT answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WdtAnswer {
    pub code: i64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chg_count: Option<u64>,
}

/// One entry of a code 99 message.
#[derive(Serialize)]
struct TidError<'a> {
    tid: &'a str,
    error: &'a str,
}

/// What is known of a call so far, for the call log.
struct Draft {
    /// The account the call named (empty until its `sid` is known to the sandbox).
    sid: String,
    shop_no: String,
    switch: u8,
    tids: Vec<String>,
    sign_ok: bool,
}

/// Answers one `trade_push.php` call and records it in the call log.
#[tracing::instrument(name = "trade_push", skip_all)]
pub(crate) async fn trade_push(
    sandbox: &Sandbox,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    let faults = sandbox.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let mut draft = Draft {
        sid: String::new(),
        shop_no: String::new(),
        switch: 1,
        tids: Vec::new(),
        sign_ok: false,
    };
    let now_ms = wdtpipe_common::now_ms();
    let answer = match check(sandbox, &faults, content_type, body, now_ms, &mut draft) {
        Ok(answer) => answer,
        Err(refusal) => Answer::Wdt(WdtAnswer {
            code: refusal.code(),
            message: refusal.to_string(),
            new_count: None,
            chg_count: None,
        }),
    };
    let (code, message, http_status, new_count, chg_count) = match &answer {
        Answer::Wdt(a) => (
            a.code,
            a.message.clone(),
            200,
            a.new_count.unwrap_or(0),
            a.chg_count.unwrap_or(0),
        ),
        Answer::Http { status, .. } => (-1, format!("injected HTTP {status}"), *status, 0, 0),
        Answer::Drop => (-1, "injected connection drop".to_owned(), 0, 0, 0),
    };
    if code == 0 {
        tracing::info!(
            shop_no = %draft.shop_no,
            switch = draft.switch,
            trades = draft.tids.len(),
            new_count,
            chg_count,
            "trade_push accepted"
        );
    } else {
        tracing::warn!(
            shop_no = %draft.shop_no,
            switch = draft.switch,
            trades = draft.tids.len(),
            sign_ok = draft.sign_ok,
            code,
            http_status,
            answer = %message,
            "trade_push refused"
        );
    }
    sandbox.with_store(|store| {
        store.record(CallRecord {
            at_ms: now_ms,
            sid: draft.sid,
            shop_no: draft.shop_no,
            switch: draft.switch,
            tids: draft.tids,
            sign_ok: draft.sign_ok,
            code,
            message,
            http_status,
            new_count,
            chg_count,
        });
    });
    answer
}

/// The checks in order; the first failure answers.
fn check(
    sandbox: &Sandbox,
    faults: &Faults,
    content_type: Option<&str>,
    body: &[u8],
    now_ms: i64,
    draft: &mut Draft,
) -> Result<Answer, Refusal> {
    let config = sandbox.config();

    // 1. Envelope.
    if !content_type.is_some_and(is_form) {
        return Err(Refusal::ContentType);
    }
    // Any body reads as a form (bytes that are not UTF-8 become U+FFFD), as WDT's PHP does;
    // what is missing or malformed is refused field by field below.
    let fields = wdtpipe_common::form::decode(body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    draft.shop_no = field("shop_no").unwrap_or_default().to_owned();
    if let Some(switch) = field("switch").and_then(read_switch) {
        draft.switch = switch;
    }
    let trade_list: Option<Vec<Json<'_>>> = field("trade_list")
        .and_then(|text| Json::parse(text).ok())
        .and_then(|value| match value {
            Json::Array(trades) => Some(trades),
            _ => None,
        });
    if let Some(trades) = &trade_list {
        draft.tids = trades.iter().map(|t| tid_of(t).to_owned()).collect();
    }
    let sid = field("sid").ok_or(Refusal::Missing("sid"))?;
    let appkey = field("appkey").ok_or(Refusal::Missing("appkey"))?;
    let timestamp = field("timestamp").ok_or(Refusal::Missing("timestamp"))?;
    let sign = field("sign").ok_or(Refusal::Missing("sign"))?;

    // 2. Account.
    let account = config.account(sid).ok_or(Refusal::Sid)?;
    if appkey != account.appkey {
        return Err(Refusal::Appkey);
    }
    draft.sid = sid.to_owned();

    // 3. Clock.
    let timestamp: i64 = timestamp.parse().map_err(|_| Refusal::Timestamp)?;
    let max_skew = u64::try_from(config.max_skew_secs).unwrap_or(0);
    if timestamp.abs_diff(now_ms / 1000) > max_skew {
        return Err(Refusal::Timestamp);
    }

    // 4. Signature.
    let signed = fields
        .iter()
        .filter(|(k, _)| k != "sign")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    if !wdtpipe_common::sign::verify(signed, &account.appsecret, sign)
        || faults.sign_error_shops.contains(&draft.shop_no)
    {
        return Err(Refusal::Sign);
    }
    draft.sign_ok = true;

    // 5. Faults.
    if Faults::roll(faults.throttle_rate) {
        return Err(Refusal::Throttled);
    }
    if Faults::roll(faults.error_rate) {
        return Ok(Answer::Http {
            status: 500,
            retry_after: faults.retry_after_secs,
        });
    }
    if Faults::roll(faults.http_429_rate) {
        return Ok(Answer::Http {
            status: 429,
            retry_after: faults.retry_after_secs,
        });
    }
    if Faults::roll(faults.drop_rate) {
        return Ok(Answer::Drop);
    }

    // 6. Call fields.
    if draft.shop_no.is_empty() {
        return Err(Refusal::Missing("shop_no"));
    }
    if faults.unknown_shops.contains(&draft.shop_no) {
        return Err(Refusal::UnknownShop(draft.shop_no.clone()));
    }
    if field("switch").is_some_and(|s| read_switch(s).is_none()) {
        return Err(Refusal::Switch);
    }
    if field("trade_list").is_none() {
        return Err(Refusal::Missing("trade_list"));
    }
    let trades = trade_list.ok_or(Refusal::TradeListNotArray)?;
    if trades.is_empty() {
        return Err(Refusal::TradeListEmpty);
    }
    if trades.len() > MAX_TRADES {
        return Err(Refusal::TooManyTrades);
    }

    // 7. Every trade on its own, then what the call holds twice.
    if trades
        .iter()
        .any(|t| Faults::matches(faults.reject_without_tid.as_deref(), tid_of(t)))
    {
        return Err(Refusal::RejectedWithoutTid);
    }
    let mut errors = Errors::default();
    let mut seen_tids = HashSet::new();
    let mut seen_oids = HashSet::new();
    for (index, trade) in trades.iter().enumerate() {
        let tid = tid_of(trade);
        let error = if Faults::matches(faults.reject_tid_pattern.as_deref(), tid) {
            Some("rejected by sandbox rule".to_owned())
        } else if let Err(error) = validate_trade(trade, config.check_paid_identity) {
            Some(if tid.is_empty() {
                format!("trade_list[{index}]: {error}")
            } else {
                error
            })
        } else if !seen_tids.insert(tid) {
            Some(format!("tid {tid} 重复"))
        } else {
            lines(trade)
                .filter_map(|line| line.get("oid").and_then(Json::as_str))
                .find(|oid| !seen_oids.insert(*oid))
                .map(|oid| format!("oid {oid} 重复"))
        };
        if let Some(error) = error {
            errors.add(tid, error);
        }
    }

    // 8. Against what was accepted before, and the store, under one lock so concurrent
    // calls for the same tid cannot interleave.
    sandbox.with_store(|store| {
        for trade in &trades {
            let tid = tid_of(trade);
            let conflict = (!errors.has(tid))
                .then(|| store.conflict(&draft.sid, &draft.shop_no, tid, trade))
                .flatten();
            if let Some(error) = conflict {
                errors.add(tid, error);
            }
        }
        if !errors.is_empty() {
            return Err(Refusal::Trades(errors.message()));
        }
        // A lean store keeps counts only: the trade is not converted for it.
        let accepted = trades
            .iter()
            .map(|trade| {
                let kept = if config.lean {
                    serde_json::Value::Null
                } else {
                    trade.to_value()
                };
                (tid_of(trade).to_owned(), kept)
            })
            .collect();
        let (new_count, chg_count) =
            store.accept(&draft.sid, &draft.shop_no, accepted, now_ms, config.lean);
        Ok(Answer::Wdt(WdtAnswer {
            code: 0,
            message: String::new(),
            new_count: Some(new_count),
            chg_count: Some(chg_count),
        }))
    })
}

/// The first error of every bad tid, in the order the tids appear.
#[derive(Default)]
struct Errors {
    list: Vec<(String, String)>,
    tids: HashSet<String>,
}

impl Errors {
    fn add(&mut self, tid: &str, error: String) {
        if self.tids.insert(tid.to_owned()) {
            self.list.push((tid.to_owned(), error));
        }
    }

    fn has(&self, tid: &str) -> bool {
        self.tids.contains(tid)
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `[{"tid":"T1","error":"..."}]`, CJK unescaped.
    fn message(&self) -> String {
        let list: Vec<TidError<'_>> = self
            .list
            .iter()
            .map(|(tid, error)| TidError { tid, error })
            .collect();
        serde_json::to_string(&list).unwrap_or_default()
    }
}

/// `application/x-www-form-urlencoded`, any parameters (such as a charset) allowed.
fn is_form(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|media| {
        media
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

fn read_switch(text: &str) -> Option<u8> {
    match text {
        "0" => Some(0),
        "1" => Some(1),
        _ => None,
    }
}

/// The trade's tid, or empty when it has none usable.
fn tid_of<'a>(trade: &'a Json<'_>) -> &'a str {
    trade.get("tid").and_then(Json::as_str).unwrap_or_default()
}

fn lines<'a, 'j>(trade: &'a Json<'j>) -> impl Iterator<Item = &'a Json<'j>> {
    trade
        .get("order_list")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The content type check allows parameters and ignores case, and nothing else.
    #[test]
    fn form_content_type() {
        assert!(is_form("application/x-www-form-urlencoded"));
        assert!(is_form("Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
        assert!(!is_form("application/json"));
        assert!(!is_form("multipart/form-data; boundary=x"));
    }

    /// Codes follow the table the deliver service classifies on.
    #[test]
    fn codes() {
        assert_eq!(Refusal::Sign.code(), 102);
        assert_eq!(Refusal::Timestamp.code(), 103);
        assert_eq!(Refusal::Missing("sid").to_string(), "缺少参数: sid");
        assert_eq!(Refusal::TooManyTrades.code(), 105);
        assert_eq!(Refusal::Throttled.code(), 1040);
        assert_eq!(Refusal::RejectedWithoutTid.code(), 99);
    }

    /// Bad tids are listed once each, first error kept, as a JSON array with CJK unescaped.
    #[test]
    fn error_message_lists_each_tid_once() {
        let mut errors = Errors::default();
        errors.add("T1", "buyer_nick 不能为空".to_owned());
        errors.add("T2", "paid 不能为空".to_owned());
        errors.add("T1", "second error".to_owned());
        assert_eq!(
            errors.message(),
            r#"[{"tid":"T1","error":"buyer_nick 不能为空"},{"tid":"T2","error":"paid 不能为空"}]"#
        );
    }
}
