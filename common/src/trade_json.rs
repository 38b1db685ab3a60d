//! The JSON form of a trade as `trade_push.php` receives it in `trade_list`.
//!
//! Enums are JSON integers, money and quantities JSON strings, and optional fields are left
//! out when empty. `shop_no` is a form field of the call, not part of the trade. The text is
//! produced once per call and both signed and sent, so they are byte-identical.

use serde::ser::{Serialize, SerializeMap, Serializer};
use wdtpipe_proto::v1::{TradeLine, TradeOrder};

/// Serializes one trade in WDT's shape.
#[derive(Debug)]
pub struct WdtTrade<'a>(pub &'a TradeOrder);

/// Serializes one order line in WDT's shape.
#[derive(Debug)]
pub struct WdtLine<'a>(pub &'a TradeLine);

/// The `trade_list` form field for a call: a compact JSON array, CJK unescaped.
pub fn trade_list_json<'a>(trades: impl IntoIterator<Item = &'a TradeOrder>) -> String {
    let list: Vec<WdtTrade<'_>> = trades.into_iter().map(WdtTrade).collect();
    serde_json::to_string(&list).expect("trade JSON serialization cannot fail")
}

/// One trade as a JSON value (used by dry runs, tests and the CLI).
pub fn trade_value(trade: &TradeOrder) -> serde_json::Value {
    serde_json::to_value(WdtTrade(trade)).expect("trade JSON serialization cannot fail")
}

fn opt_str<M: SerializeMap>(map: &mut M, key: &str, value: &str) -> Result<(), M::Error> {
    if value.is_empty() {
        Ok(())
    } else {
        map.serialize_entry(key, value)
    }
}

impl Serialize for WdtTrade<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("tid", &t.tid)?;
        m.serialize_entry("trade_status", &t.trade_status)?;
        m.serialize_entry("pay_status", &t.pay_status)?;
        m.serialize_entry("delivery_term", &t.delivery_term)?;
        opt_str(&mut m, "trade_time", &t.trade_time)?;
        m.serialize_entry("pay_time", &t.pay_time)?;
        m.serialize_entry("buyer_nick", &t.buyer_nick)?;
        opt_str(&mut m, "buyer_email", &t.buyer_email)?;
        m.serialize_entry("receiver_name", &t.receiver_name)?;
        opt_str(&mut m, "receiver_province", &t.receiver_province)?;
        opt_str(&mut m, "receiver_city", &t.receiver_city)?;
        opt_str(&mut m, "receiver_district", &t.receiver_district)?;
        m.serialize_entry("receiver_address", &t.receiver_address)?;
        m.serialize_entry("receiver_mobile", &t.receiver_mobile)?;
        opt_str(&mut m, "receiver_telno", &t.receiver_telno)?;
        opt_str(&mut m, "receiver_zip", &t.receiver_zip)?;
        m.serialize_entry("logistics_type", &t.logistics_type)?;
        if let Some(kind) = t.invoice_kind {
            m.serialize_entry("invoice_kind", &kind)?;
        }
        opt_str(&mut m, "invoice_title", &t.invoice_title)?;
        opt_str(&mut m, "invoice_content", &t.invoice_content)?;
        m.serialize_entry("post_amount", &t.post_amount)?;
        m.serialize_entry("cod_amount", &t.cod_amount)?;
        m.serialize_entry("ext_cod_fee", &t.ext_cod_fee)?;
        m.serialize_entry("other_amount", &t.other_amount)?;
        m.serialize_entry("paid", &t.paid)?;
        opt_str(&mut m, "to_deliver_time", &t.to_deliver_time)?;
        if let Some(kind) = t.fenxiao_type {
            m.serialize_entry("fenxiao_type", &kind)?;
        }
        opt_str(&mut m, "fenxiao_nick", &t.fenxiao_nick)?;
        opt_str(&mut m, "buyer_message", &t.buyer_message)?;
        opt_str(&mut m, "seller_memo", &t.seller_memo)?;
        if let Some(flag) = t.seller_flag {
            m.serialize_entry("seller_flag", &flag)?;
        }
        let lines: Vec<WdtLine<'_>> = t.order_list.iter().map(WdtLine).collect();
        m.serialize_entry("order_list", &lines)?;
        m.end()
    }
}

impl Serialize for WdtLine<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let l = self.0;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("oid", &l.oid)?;
        m.serialize_entry("num", &l.num)?;
        m.serialize_entry("price", &l.price)?;
        m.serialize_entry("status", &l.status)?;
        m.serialize_entry("refund_status", &l.refund_status)?;
        m.serialize_entry("goods_id", &l.goods_id)?;
        opt_str(&mut m, "spec_id", &l.spec_id)?;
        opt_str(&mut m, "goods_no", &l.goods_no)?;
        opt_str(&mut m, "spec_no", &l.spec_no)?;
        m.serialize_entry("goods_name", &l.goods_name)?;
        opt_str(&mut m, "spec_name", &l.spec_name)?;
        m.serialize_entry("adjust_amount", &l.adjust_amount)?;
        m.serialize_entry("discount", &l.discount)?;
        m.serialize_entry("share_discount", &l.share_discount)?;
        opt_str(&mut m, "remark", &l.remark)?;
        m.end()
    }
}
