//! `wdtpipe scheme preview --scheme FILE CALLBACK.json`: the trades a callback would become
//! with a scheme, nothing sent and nothing written, each field with what produced it (the
//! built-in mapping, or the scheme's rule and what it read: the path's text, the key a table
//! looked up). `--diff` shows only what differs from the built-in scheme; `--json` is for
//! machines.

use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use wdtpipe_common::rejection;
use wdtpipe_common::trade_json::trade_value;
use wdtpipe_proto::v1::TradeOrder;
use wdtpipe_transform::mapping::{Mapped, map_record, map_record_traced};
use wdtpipe_transform::rules::Trace;
use wdtpipe_transform::scheme::Scheme;

/// One record's preview.
#[derive(Debug)]
pub struct RecordPreview {
    pub position: u32,
    /// The record's trades in the fixtures' form, each field with its producer.
    pub trades: Vec<Value>,
    pub skipped: bool,
    /// The 422 the record would get.
    pub error: Option<String>,
}

/// Maps every record of `body` with `scheme` (and with the built-in scheme for `diff`).
pub fn preview(scheme: &Scheme, body: &[u8], diff: bool) -> anyhow::Result<Vec<RecordPreview>> {
    let records = wdtpipe_ingest::parse::parse(body, &wdtpipe_ingest::config::Limits::default())
        .map_err(|e| anyhow::anyhow!("the callback does not parse: {e}"))?;
    let builtin = Scheme::builtin(scheme.builtin.clone());
    let mut previews = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let position = i as u32 + 1;
        let (mapped, trace) = map_record_traced(record, position, scheme);
        let baseline = diff
            .then(|| map_record(record, position, &builtin).ok())
            .flatten();
        let (trades, skipped, error) = match mapped {
            Ok(Mapped::Trades(trades)) => (trades, false, None),
            Ok(Mapped::Skipped { .. }) => (Vec::new(), true, None),
            Err(r) => (Vec::new(), false, Some(rejection::message(&r))),
        };
        let base: Vec<TradeOrder> = baseline.map(Mapped::into_trades).unwrap_or_default();
        let trades = trades
            .iter()
            .enumerate()
            .map(|(t, trade)| annotate(t, trade, &trace, diff.then(|| base.get(t)).flatten(), diff))
            .collect();
        previews.push(RecordPreview {
            position,
            trades,
            skipped,
            error,
        });
    }
    Ok(previews)
}

/// A trade as `{shop_no, tid, fields: {path: {value, from}}}`; with `diff`, only fields
/// whose value differs from `base` (all of them when the built-in scheme maps no trade).
fn annotate(
    index: usize,
    trade: &TradeOrder,
    trace: &[Trace],
    base: Option<&TradeOrder>,
    diff: bool,
) -> Value {
    let value = trade_value(trade);
    let base_value = base.map(trade_value);
    let producer = |field: &str, line: Option<usize>| {
        trace
            .iter()
            .find(|t| t.trade == index && t.field == field && t.line == line)
            .map_or_else(|| "built-in".to_owned(), |t| t.rule.clone())
    };
    let mut fields = Map::new();
    let mut add = |path: String, field: &str, line: Option<usize>, v: &Value, b: Option<&Value>| {
        if diff && base_value.is_some() && b == Some(v) {
            return;
        }
        fields.insert(path, json!({"value": v, "from": producer(field, line)}));
    };
    let base_field = |key: &str| base_value.as_ref().and_then(|b| b.get(key));
    add(
        "shop_no".into(),
        "shop_no",
        None,
        &Value::String(trade.shop_no.clone()),
        base.map(|b| Value::String(b.shop_no.clone())).as_ref(),
    );
    for (key, v) in value.as_object().into_iter().flatten() {
        if key == "order_list" {
            continue;
        }
        add(key.clone(), key, None, v, base_field(key));
    }
    // A field the built-in scheme writes and the scheme leaves out.
    if diff && let Some(Value::Object(b)) = &base_value {
        for key in b
            .keys()
            .filter(|k| *k != "order_list" && value.get(*k).is_none())
        {
            add(key.clone(), key, None, &Value::Null, b.get(key));
        }
    }
    let lines = value["order_list"].as_array().cloned().unwrap_or_default();
    for (l, line) in lines.iter().enumerate() {
        let base_line = base_value
            .as_ref()
            .and_then(|b| b["order_list"].get(l))
            .cloned();
        for (key, v) in line.as_object().into_iter().flatten() {
            let b = base_line.as_ref().and_then(|b| b.get(key));
            add(format!("order_list[{}].{key}", l + 1), key, Some(l), v, b);
        }
    }
    json!({"shop_no": trade.shop_no, "tid": trade.tid, "fields": fields})
}

/// The preview for people: per trade, one line per field with what produced it.
pub fn render(previews: &[RecordPreview], diff: bool) -> String {
    let mut out = String::new();
    for p in previews {
        if let Some(error) = &p.error {
            let _ = writeln!(out, "record {}: 422 {error}", p.position);
            continue;
        }
        if p.skipped {
            let _ = writeln!(
                out,
                "record {}: skipped by the scheme (nothing pushed)",
                p.position
            );
            continue;
        }
        for trade in &p.trades {
            let _ = writeln!(
                out,
                "record {}: trade {} → shop {}",
                p.position,
                trade["tid"].as_str().unwrap_or_default(),
                trade["shop_no"].as_str().unwrap_or_default()
            );
            let fields = trade["fields"].as_object().cloned().unwrap_or_default();
            if diff && fields.is_empty() {
                let _ = writeln!(out, "  (the same as the built-in scheme)");
            }
            for (path, field) in fields {
                let _ = writeln!(
                    out,
                    "  {path} = {}   ← {}",
                    field["value"],
                    field["from"].as_str().unwrap_or_default()
                );
            }
        }
    }
    out
}

/// The preview for machines.
pub fn json(previews: &[RecordPreview]) -> Value {
    Value::Array(
        previews
            .iter()
            .map(|p| {
                json!({"record": p.position, "trades": p.trades, "skipped": p.skipped, "error": p.error})
            })
            .collect(),
    )
}
