//! The per-trade rules of `trade_push.php`: required fields, enums, money text, sizes and
//! (optionally) the paid identity. Each check answers the first rule a trade breaks.

use crate::json::{Json, Object};
use wdtpipe_common::decimal::{Dec, is_decimal_text, parse_decimal};

/// `trade_status` and line `status`.
const TRADE_STATUS: &[i64] = &[10, 20, 30, 40, 50, 70, 80, 90];
const DELIVERY_TERM: &[i64] = &[1, 2, 3];
const PAY_STATUS: &[i64] = &[0, 1, 2];
const REFUND_STATUS: &[i64] = &[0, 1, 2, 3, 4, 5];
/// Most lines one trade may carry.
pub(crate) const MAX_LINES: usize = 200;
const ZERO_TIME: &str = "0000-00-00 00:00:00";

/// Checks one trade of `trade_list`; `Err` holds the first rule it breaks.
pub(crate) fn validate_trade(trade: &Json<'_>, check_paid_identity: bool) -> Result<(), String> {
    let Some(t) = trade.as_object() else {
        return Err("订单必须是JSON对象 (trade must be an object)".to_owned());
    };
    required_text(t, "tid", Some(40))?;
    required_enum(t, "trade_status", TRADE_STATUS)?;
    required_enum(t, "delivery_term", DELIVERY_TERM)?;
    optional_enum(t, "pay_status", PAY_STATUS)?;
    required_time(t, "pay_time")?;
    optional_time(t, "trade_time")?;
    required_text(t, "buyer_nick", Some(100))?;
    required_text(t, "receiver_name", None)?;
    required_text(t, "receiver_address", Some(256))?;
    required_text(t, "receiver_mobile", None)?;
    let post_amount = money(t, "post_amount")?;
    money(t, "cod_amount")?;
    money(t, "ext_cod_fee")?;
    let other_amount = money(t, "other_amount")?;
    let paid = money(t, "paid")?;
    if present(t, "logistics_type").is_some_and(|v| v.as_i64().is_none()) {
        return Err("logistics_type 必须是整数".to_owned());
    }
    let lines = match present(t, "order_list") {
        None => return Err("order_list 不能为空".to_owned()),
        Some(Json::Array(lines)) if lines.is_empty() => {
            return Err("order_list 不能为空".to_owned());
        }
        Some(Json::Array(lines)) if lines.len() > MAX_LINES => {
            return Err(format!("order_list 超过{MAX_LINES}条"));
        }
        Some(Json::Array(lines)) => lines,
        Some(_) => return Err("order_list 必须是JSON数组".to_owned()),
    };
    let mut lines_total = Dec::ZERO;
    for (index, line) in lines.iter().enumerate() {
        let line_total = validate_line(line).map_err(|error| {
            match line
                .get("oid")
                .and_then(Json::as_str)
                .filter(|oid| !oid.is_empty())
            {
                Some(oid) => format!("oid {oid}: {error}"),
                None => format!("order_list[{index}]: {error}"),
            }
        })?;
        lines_total = lines_total
            .checked_add(line_total)
            .ok_or_else(out_of_range)?;
    }
    if check_paid_identity {
        let expected = lines_total
            .checked_add(post_amount)
            .and_then(|sum| sum.checked_add(other_amount))
            .ok_or_else(out_of_range)?;
        if expected != paid {
            return Err(format!(
                "paid 与订单金额不符 (expected {})",
                expected.normalize()
            ));
        }
    }
    Ok(())
}

/// Checks one line; answers `price·num + adjust_amount − discount − share_discount`.
fn validate_line(line: &Json<'_>) -> Result<Dec, String> {
    let Some(l) = line.as_object() else {
        return Err("明细必须是JSON对象 (line must be an object)".to_owned());
    };
    required_text(l, "oid", Some(40))?;
    let num = money(l, "num")?;
    if num <= Dec::ZERO {
        return Err("num 必须大于0".to_owned());
    }
    let price = money(l, "price")?;
    required_enum(l, "status", TRADE_STATUS)?;
    required_enum(l, "refund_status", REFUND_STATUS)?;
    required_text(l, "goods_id", None)?;
    let goods_no = optional_text(l, "goods_no")?;
    let spec_no = optional_text(l, "spec_no")?;
    if goods_no.is_none() && spec_no.is_none() {
        return Err("goods_no 和 spec_no 不能同时为空".to_owned());
    }
    required_text(l, "goods_name", None)?;
    let adjust = money(l, "adjust_amount")?;
    let discount = money(l, "discount")?;
    let share_discount = money(l, "share_discount")?;
    price
        .checked_mul(num)
        .and_then(|v| v.checked_add(adjust))
        .and_then(|v| v.checked_sub(discount))
        .and_then(|v| v.checked_sub(share_discount))
        .ok_or_else(out_of_range)
}

fn out_of_range() -> String {
    "金额超出范围 (amount out of range)".to_owned()
}

/// The value of `key`, treating `null` as absent.
fn present<'a, 'j>(o: &'a Object<'j>, key: &str) -> Option<&'a Json<'j>> {
    o.get(key).filter(|v| !v.is_null())
}

/// A text field that may be absent or empty; present, it must be a JSON string.
fn optional_text<'a>(o: &'a Object<'_>, key: &str) -> Result<Option<&'a str>, String> {
    match present(o, key) {
        None => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} 必须是字符串")),
    }
}

/// A non-empty JSON string of at most `max_chars` code points.
fn required_text<'a>(
    o: &'a Object<'_>,
    key: &str,
    max_chars: Option<usize>,
) -> Result<&'a str, String> {
    let text = optional_text(o, key)?.ok_or_else(|| format!("{key} 不能为空"))?;
    match max_chars {
        Some(max) if text.chars().count() > max => Err(format!("{key} 超过{max}个字符")),
        _ => Ok(text),
    }
}

fn required_enum(o: &Object<'_>, key: &str, allowed: &[i64]) -> Result<i64, String> {
    optional_enum(o, key, allowed)?.ok_or_else(|| format!("{key} 不能为空"))
}

/// An enum field: a JSON integer (never a string) from `allowed`.
fn optional_enum(o: &Object<'_>, key: &str, allowed: &[i64]) -> Result<Option<i64>, String> {
    let Some(value) = present(o, key) else {
        return Ok(None);
    };
    let Some(n) = value.as_i64() else {
        return Err(format!("{key} 必须是整数"));
    };
    if allowed.contains(&n) {
        Ok(Some(n))
    } else {
        Err(format!("{key} 取值无效: {n}"))
    }
}

/// A required money or quantity field: a JSON string `-?[0-9]+(\.[0-9]{1,4})?`.
fn money(o: &Object<'_>, key: &str) -> Result<Dec, String> {
    let text = match present(o, key) {
        None => return Err(format!("{key} 不能为空")),
        Some(Json::String(s)) if s.is_empty() => return Err(format!("{key} 不能为空")),
        Some(Json::String(s)) => s.as_ref(),
        Some(_) => return Err(format!("{key} 必须是字符串形式的数字")),
    };
    if !is_money_text(text) {
        return Err(format!("{key} 不是合法的金额: {text}"));
    }
    parse_decimal(text).map_err(|_| format!("{key} 超出范围: {text}"))
}

/// True for `-?[0-9]+(\.[0-9]{1,4})?`.
fn is_money_text(text: &str) -> bool {
    is_decimal_text(text) && text.split_once('.').is_none_or(|(_, frac)| frac.len() <= 4)
}

fn required_time(o: &Object<'_>, key: &str) -> Result<(), String> {
    match optional_text(o, key)? {
        None => Err(format!("{key} 不能为空")),
        Some(text) => check_time(key, text),
    }
}

fn optional_time(o: &Object<'_>, key: &str) -> Result<(), String> {
    match optional_text(o, key)? {
        None => Ok(()),
        Some(text) => check_time(key, text),
    }
}

/// `YYYY-MM-DD HH:MM:SS` with plausible ranges, or WDT's zero time.
fn check_time(key: &str, text: &str) -> Result<(), String> {
    if text == ZERO_TIME || is_wdt_time(text) {
        Ok(())
    } else {
        Err(format!("{key} 格式错误, 应为 YYYY-MM-DD HH:MM:SS: {text}"))
    }
}

fn is_wdt_time(text: &str) -> bool {
    let b = text.as_bytes();
    let shape = b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return false;
    }
    let field = |range: std::ops::Range<usize>| text[range].parse::<u32>().unwrap_or(u32::MAX);
    (1..=12).contains(&field(5..7))
        && (1..=31).contains(&field(8..10))
        && field(11..13) < 24
        && field(14..16) < 60
        && field(17..19) < 60
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Checks a trade built as a `Value`, read back the way `trade_push` reads it.
    fn check(t: &Value, check_paid_identity: bool) -> Result<(), String> {
        validate_trade(&Json::parse(&t.to_string()).unwrap(), check_paid_identity)
    }

    fn trade() -> Value {
        json!({
            "tid": "T1", "trade_status": 30, "pay_status": 2, "delivery_term": 1,
            "trade_time": "2024-05-01 10:00:00", "pay_time": "2024-05-01 10:01:00",
            "buyer_nick": "张三", "receiver_name": "张三", "receiver_address": "某路1号",
            "receiver_mobile": "13800000000", "logistics_type": -1,
            "post_amount": "5", "cod_amount": "0", "ext_cod_fee": "0", "other_amount": "0",
            "paid": "24.00",
            "order_list": [{
                "oid": "O1", "num": "2", "price": "10.00", "status": 30, "refund_status": 0,
                "goods_id": "G1", "spec_no": "SKU1", "goods_name": "杯子",
                "adjust_amount": "0", "discount": "0", "share_discount": "1"
            }]
        })
    }

    fn with(path: &[&str], value: Value) -> Value {
        let mut t = trade();
        let mut cursor = &mut t;
        for key in &path[..path.len() - 1] {
            cursor = match key.parse::<usize>() {
                Ok(i) => &mut cursor[i],
                Err(_) => &mut cursor[*key],
            };
        }
        cursor[path[path.len() - 1]] = value;
        t
    }

    fn error(t: &Value) -> String {
        check(t, true).unwrap_err()
    }

    /// The reference trade passes, with and without the paid identity.
    #[test]
    fn valid_trade_passes() {
        assert_eq!(check(&trade(), false), Ok(()));
        assert_eq!(check(&trade(), true), Ok(()));
    }

    /// Required text fields refuse absence, emptiness, null and non-strings.
    #[test]
    fn required_text_fields() {
        assert_eq!(
            error(&with(&["buyer_nick"], json!(""))),
            "buyer_nick 不能为空"
        );
        assert_eq!(
            error(&with(&["receiver_mobile"], Value::Null)),
            "receiver_mobile 不能为空"
        );
        assert_eq!(error(&with(&["tid"], json!(123))), "tid 必须是字符串");
        assert_eq!(
            error(&json!([1])),
            "订单必须是JSON对象 (trade must be an object)"
        );
    }

    /// Lengths count code points: 40 CJK characters fit a tid, 41 do not.
    #[test]
    fn lengths_count_code_points() {
        assert!(check(&with(&["tid"], json!("订".repeat(40))), true).is_ok());
        assert_eq!(
            error(&with(&["tid"], json!("订".repeat(41)))),
            "tid 超过40个字符"
        );
        let long_nick = "x".repeat(101);
        assert_eq!(
            error(&with(&["buyer_nick"], json!(long_nick))),
            "buyer_nick 超过100个字符"
        );
    }

    /// Enums must be JSON integers from their set.
    #[test]
    fn enums() {
        assert_eq!(
            error(&with(&["trade_status"], json!("30"))),
            "trade_status 必须是整数"
        );
        assert_eq!(
            error(&with(&["trade_status"], json!(60))),
            "trade_status 取值无效: 60"
        );
        assert_eq!(
            error(&with(&["delivery_term"], json!(4))),
            "delivery_term 取值无效: 4"
        );
        assert_eq!(
            error(&with(&["pay_status"], json!(3))),
            "pay_status 取值无效: 3"
        );
        assert_eq!(
            error(&with(&["order_list", "0", "refund_status"], json!(6))),
            "oid O1: refund_status 取值无效: 6"
        );
        assert_eq!(
            error(&with(&["logistics_type"], json!("8"))),
            "logistics_type 必须是整数"
        );
        let mut t = trade();
        t.as_object_mut().unwrap().remove("pay_status");
        assert!(check(&t, true).is_ok());
    }

    /// Money is a JSON string with at most four decimal places.
    #[test]
    fn money_fields() {
        assert_eq!(
            error(&with(&["paid"], json!(24))),
            "paid 必须是字符串形式的数字"
        );
        assert_eq!(
            error(&with(&["paid"], json!("24.00001"))),
            "paid 不是合法的金额: 24.00001"
        );
        assert_eq!(
            error(&with(&["post_amount"], json!("1e3"))),
            "post_amount 不是合法的金额: 1e3"
        );
        assert_eq!(
            error(&with(&["cod_amount"], json!(""))),
            "cod_amount 不能为空"
        );
        assert_eq!(
            error(&with(&["order_list", "0", "num"], json!("0"))),
            "oid O1: num 必须大于0"
        );
    }

    /// Times are `YYYY-MM-DD HH:MM:SS` or the zero time.
    #[test]
    fn times() {
        assert!(check(&with(&["pay_time"], json!(ZERO_TIME)), true).is_ok());
        assert!(
            error(&with(&["pay_time"], json!("2024-05-01T10:01:00")))
                .starts_with("pay_time 格式错误")
        );
        assert!(
            error(&with(&["trade_time"], json!("2024-13-01 10:00:00")))
                .starts_with("trade_time 格式错误")
        );
        assert_eq!(error(&with(&["pay_time"], json!(""))), "pay_time 不能为空");
    }

    /// Line rules: goods_no/spec_no not both empty, order_list present and bounded.
    #[test]
    fn lines() {
        assert_eq!(
            error(&with(&["order_list", "0", "spec_no"], json!(""))),
            "oid O1: goods_no 和 spec_no 不能同时为空"
        );
        let goods_no_only = with_line_field(
            with(&["order_list", "0", "spec_no"], json!("")),
            "goods_no",
            json!("GN"),
        );
        assert!(check(&goods_no_only, true).is_ok());
        assert_eq!(
            error(&with(&["order_list"], json!([]))),
            "order_list 不能为空"
        );
        let line = trade()["order_list"][0].clone();
        let many: Vec<Value> = (0..=MAX_LINES)
            .map(|i| {
                let mut l = line.clone();
                l["oid"] = json!(format!("O{i}"));
                l
            })
            .collect();
        assert_eq!(
            error(&with(&["order_list"], json!(many))),
            "order_list 超过200条"
        );
        assert_eq!(
            error(&with(&["order_list", "0", "oid"], json!(""))),
            "order_list[0]: oid 不能为空"
        );
    }

    /// The paid identity is exact when enabled and ignored otherwise.
    #[test]
    fn paid_identity() {
        let t = with(&["paid"], json!("24.01"));
        assert!(check(&t, false).is_ok());
        assert_eq!(error(&t), "paid 与订单金额不符 (expected 24)");
    }

    fn with_line_field(mut t: Value, key: &str, value: Value) -> Value {
        t["order_list"][0][key] = value;
        t
    }
}
