//! The stockout record's field tables (JSON key ↔ proto field), its canonical JSON form and
//! the `record_id` derived from it.
//!
//! The canonical form is what makes the same record sent twice (reordered keys, numbers as
//! strings, details as a string) produce the same id: every non-empty field as a JSON
//! string, keys sorted, lines in order, compact.

use std::collections::HashMap;
use wdtpipe_proto::v1::{Kuaidi100Data, StockoutDetail, StockoutRecord};

/// Text fields of a message, by their JSON keys.
pub trait Fields {
    /// The text field stored under a JSON key, if the schema has one.
    fn field_mut(&mut self, key: &str) -> Option<&mut String>;
    /// Every non-empty text field with its JSON key, keys in byte order.
    fn sorted_fields(&self) -> impl Iterator<Item = (&'static str, &str)>;
    /// Keys the schema does not know, with their JSON text.
    fn extra_mut(&mut self) -> &mut HashMap<String, String>;
}

macro_rules! field_table {
    ($ty:ident { $($key:literal => $field:ident),* $(,)? }) => {
        impl Fields for $ty {
            fn field_mut(&mut self, key: &str) -> Option<&mut String> {
                match key {
                    $($key => Some(&mut self.$field),)*
                    _ => None,
                }
            }
            fn sorted_fields(&self) -> impl Iterator<Item = (&'static str, &str)> {
                static ORDER: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
                let fields = [$(($key, self.$field.as_str())),*];
                let order = ORDER.get_or_init(|| {
                    let mut order: Vec<usize> = (0..fields.len()).collect();
                    order.sort_unstable_by(|&a, &b| fields[a].0.as_bytes().cmp(fields[b].0.as_bytes()));
                    order
                });
                order
                    .iter()
                    .map(move |&i| fields[i])
                    .filter(|(_, value)| !value.is_empty())
            }
            fn extra_mut(&mut self) -> &mut HashMap<String, String> {
                &mut self.extra
            }
        }
    };
}

/// JSON key of `details_list`.
pub const DETAILS_KEY: &str = "details_list";
/// JSON key of the tracking data.
pub const KUAIDI100_KEY: &str = "kuaidi100Data";

field_table! {
    StockoutRecord {
        "bad_reason" => bad_reason,
        "batch_no" => batch_no,
        "block_reason" => block_reason,
        "buyer_message" => buyer_message,
        "calc_post_cost" => calc_post_cost,
        "calc_weight" => calc_weight,
        "checker_name" => checker_name,
        "checkouter_id" => checkouter_id,
        "cod_amount" => cod_amount,
        "consign_status" => consign_status,
        "consign_time" => consign_time,
        "consigner_id" => consigner_id,
        "created" => created,
        "cs_remark" => cs_remark,
        "currency" => currency,
        "custom_type" => custom_type,
        "customer_id" => customer_id,
        "customer_name" => customer_name,
        "customer_no" => customer_no,
        "delivery_term" => delivery_term,
        "discount" => discount,
        "ebill_status" => ebill_status,
        "employee_no" => employee_no,
        "error_info" => error_info,
        "examiner_id" => examiner_id,
        "examiner_name" => examiner_name,
        "examiner_no" => examiner_no,
        "fenxiao_nick" => fenxiao_nick,
        "fenxiao_type" => fenxiao_type,
        "flag_id" => flag_id,
        "flag_name" => flag_name,
        "freeze_reason" => freeze_reason,
        "fullname" => fullname,
        "goods_count" => goods_count,
        "goods_total_amount" => goods_total_amount,
        "goods_total_cost" => goods_total_cost,
        "goods_type_count" => goods_type_count,
        "has_invoice" => has_invoice,
        "id_card" => id_card,
        "id_card_type" => id_card_type,
        "invoice_content" => invoice_content,
        "invoice_id" => invoice_id,
        "invoice_print_status" => invoice_print_status,
        "invoice_title" => invoice_title,
        "invoice_type" => invoice_type,
        "is_allocated" => is_allocated,
        "lock_id" => lock_id,
        "logistics_code" => logistics_code,
        "logistics_id" => logistics_id,
        "logistics_name" => logistics_name,
        "logistics_no" => logistics_no,
        "logistics_print_status" => logistics_print_status,
        "logistics_template_id" => logistics_template_id,
        "logistics_type" => logistics_type,
        "md5_str" => md5_str,
        "modified" => modified,
        "nick_name" => nick_name,
        "note_count" => note_count,
        "operator_id" => operator_id,
        "operator_name" => operator_name,
        "order_no" => order_no,
        "order_type" => order_type,
        "order_type_name" => order_type_name,
        "outer_no" => outer_no,
        "pack_score" => pack_score,
        "package_cost" => package_cost,
        "package_fee" => package_fee,
        "package_id" => package_id,
        "packager_id" => packager_id,
        "packager_name" => packager_name,
        "packager_no" => packager_no,
        "paid" => paid,
        "pay_time" => pay_time,
        "pick_error_count" => pick_error_count,
        "pick_score" => pick_score,
        "picker_id" => picker_id,
        "picker_name" => picker_name,
        "picker_no" => picker_no,
        "picklist_no" => picklist_no,
        "picklist_print_status" => picklist_print_status,
        "picklist_seq" => picklist_seq,
        "platform_id" => platform_id,
        "pos_allocate_mode" => pos_allocate_mode,
        "post_amount" => post_amount,
        "post_cost" => post_cost,
        "post_fee" => post_fee,
        "post_weight" => post_weight,
        "pre_charge_time" => pre_charge_time,
        "print_batch_no" => print_batch_no,
        "print_remark" => print_remark,
        "printer_id" => printer_id,
        "printer_name" => printer_name,
        "printer_no" => printer_no,
        "raw_goods_count" => raw_goods_count,
        "reason_id" => reason_id,
        "receivable" => receivable,
        "receiver_address" => receiver_address,
        "receiver_area" => receiver_area,
        "receiver_city" => receiver_city,
        "receiver_city_code" => receiver_city_code,
        "receiver_country" => receiver_country,
        "receiver_district" => receiver_district,
        "receiver_district_code" => receiver_district_code,
        "receiver_dtb" => receiver_dtb,
        "receiver_mobile" => receiver_mobile,
        "receiver_name" => receiver_name,
        "receiver_province" => receiver_province,
        "receiver_province_code" => receiver_province_code,
        "receiver_ring" => receiver_ring,
        "receiver_telno" => receiver_telno,
        "receiver_zip" => receiver_zip,
        "refund_status" => refund_status,
        "remark" => remark,
        "reserve" => reserve,
        "salesman_name" => salesman_name,
        "salesman_no" => salesman_no,
        "sendbill_print_status" => sendbill_print_status,
        "sendbill_template_id" => sendbill_template_id,
        "shop_name" => shop_name,
        "shop_no" => shop_no,
        "shop_remark" => shop_remark,
        "sorter_id" => sorter_id,
        "src_order_id" => src_order_id,
        "src_order_no" => src_order_no,
        "src_order_type" => src_order_type,
        "src_tids" => src_tids,
        "src_trade_no" => src_trade_no,
        "status" => status,
        "stock_check_time" => stock_check_time,
        "stockout_id" => stockout_id,
        "stockout_no" => stockout_no,
        "stockout_reason" => stockout_reason,
        "stockout_receiver_dtb" => stockout_receiver_dtb,
        "subtype" => subtype,
        "tax" => tax,
        "tax_rate" => tax_rate,
        "to_deliver_time" => to_deliver_time,
        "trade_id" => trade_id,
        "trade_no" => trade_no,
        "trade_status" => trade_status,
        "trade_time" => trade_time,
        "trade_type" => trade_type,
        "unknown_goods_amount" => unknown_goods_amount,
        "warehouse_id" => warehouse_id,
        "warehouse_name" => warehouse_name,
        "warehouse_no" => warehouse_no,
        "warehouse_type" => warehouse_type,
        "watcher_id" => watcher_id,
        "weight" => weight,
        "wms_status" => wms_status,
        "tid" => tid,
    }
}

field_table! {
    StockoutDetail {
        "rec_id" => rec_id,
        "src_tid" => src_tid,
        "src_oid" => src_oid,
        "goods_id" => goods_id,
        "spec_id" => spec_id,
        "goods_no" => goods_no,
        "spec_no" => spec_no,
        "goods_name" => goods_name,
        "spec_name" => spec_name,
        "num" => num,
        "goods_count" => goods_count,
        "price" => price,
        "sell_price" => sell_price,
        "discount" => discount,
        "share_amount" => share_amount,
        "share_discount" => share_discount,
        "paid" => paid,
        "refund_status" => refund_status,
        "gift_type" => gift_type,
        "remark" => remark,
    }
}

field_table! {
    Kuaidi100Data {
        "message" => message,
        "nu" => nu,
        "ischeck" => ischeck,
        "com" => com,
        "status" => status,
        "data" => data,
        "state" => state,
        "condition" => condition,
        "routeInfo" => route_info,
        "isLoop" => is_loop,
        "tid" => tid,
    }
}

/// The canonical JSON text of a record (see the module docs): written directly, keys
/// sorted by byte order, non-empty text fields only.
pub fn canonical_json(record: &StockoutRecord) -> String {
    let mut out = String::with_capacity(4096);
    let mut others = extra_entries(&record.extra);
    if !record.details_list.is_empty() {
        others.push((DETAILS_KEY, Entry::Lines(&record.details_list)));
    }
    if let Some(kuaidi) = &record.kuaidi100_data {
        others.push((KUAIDI100_KEY, Entry::Kuaidi(kuaidi)));
    }
    write_object(&mut out, record.sorted_fields(), others);
    out
}

/// md5 (lowercase hex) of the record's canonical JSON.
pub fn record_id(record: &StockoutRecord) -> String {
    wdtpipe_common::sign::md5_hex(canonical_json(record).as_bytes())
}

enum Entry<'a> {
    Text(&'a str),
    Lines(&'a [StockoutDetail]),
    Kuaidi(&'a Kuaidi100Data),
}

/// The non-empty keys the schema does not know (rare), unsorted.
fn extra_entries(extra: &HashMap<String, String>) -> Vec<(&str, Entry<'_>)> {
    extra
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), Entry::Text(v)))
        .collect()
}

/// Writes an object of the schema's fields (already in key order) and `others`, merged in
/// key order.
fn write_object<'a>(
    out: &mut String,
    fields: impl Iterator<Item = (&'static str, &'a str)>,
    mut others: Vec<(&'a str, Entry<'a>)>,
) {
    others.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut fields = fields.peekable();
    let mut others = others.into_iter().peekable();
    out.push('{');
    let mut first = true;
    loop {
        let field_first = match (fields.peek(), others.peek()) {
            (Some((field, _)), Some((other, _))) => field.as_bytes() <= other.as_bytes(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let (key, value) = if field_first {
            fields
                .next()
                .map(|(key, text)| (key as &'a str, Entry::Text(text)))
        } else {
            others.next()
        }
        .expect("peeked");
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, key);
        out.push(':');
        match value {
            Entry::Text(text) => write_string(out, text),
            Entry::Lines(lines) => {
                out.push('[');
                for (n, line) in lines.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    write_object(out, line.sorted_fields(), extra_entries(&line.extra));
                }
                out.push(']');
            }
            Entry::Kuaidi(kuaidi) => {
                write_object(out, kuaidi.sorted_fields(), extra_entries(&kuaidi.extra))
            }
        }
    }
    out.push('}');
}

/// How each byte is written inside a JSON string: 0 as itself, `u` as `\u00XX`, any other
/// byte `c` as `\c` (serde_json's escapes).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// `text` as a JSON string exactly as serde_json writes it (non-ASCII unescaped). Runs that
/// need no escape (nearly all of a record) are copied whole.
fn write_string(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    out.push('"');
    let mut plain = 0;
    for (at, &byte) in text.as_bytes().iter().enumerate() {
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        // Every escaped byte is ASCII, so `at` is a char boundary.
        out.push_str(&text[plain..at]);
        if escape == b'u' {
            let _ = write!(out, "\\u{:04x}", byte);
        } else {
            out.push('\\');
            out.push(char::from(escape));
        }
        plain = at + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written canonical form is what serde_json would write for the same object.
    #[test]
    fn canonical_form_matches_serde_json() {
        let mut record = StockoutRecord {
            tid: "T\"1\\\n\u{1}\t中".into(),
            paid: "12.50".into(),
            ..StockoutRecord::default()
        };
        record.extra.insert("zz".into(), "x".into());
        record.extra.insert("aa".into(), "y".into());
        record.details_list.push(StockoutDetail {
            num: "2".into(),
            ..StockoutDetail::default()
        });
        record.kuaidi100_data = Some(Kuaidi100Data {
            ischeck: "1".into(),
            ..Kuaidi100Data::default()
        });
        let expected = serde_json::json!({
            "aa": "y", "paid": "12.50", "tid": "T\"1\\\n\u{1}\t中", "zz": "x",
            "details_list": [{"num": "2"}], "kuaidi100Data": {"ischeck": "1"},
        })
        .to_string();
        assert_eq!(canonical_json(&record), expected);
    }

    /// Every ASCII character, alone and between multi-byte text, escapes as serde_json's.
    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut texts: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        texts.push((0u8..0x80).map(char::from).collect());
        texts.extend((0u8..0x80).map(|b| format!("中{}é😀", char::from(b))));
        texts.push(String::new());
        for text in texts {
            let mut out = String::new();
            write_string(&mut out, &text);
            assert_eq!(out, serde_json::to_string(&text).unwrap(), "{text:?}");
        }
    }

    /// Keys of every table, known and unknown, that the generated records below draw from.
    const KEYS: [&str; 12] = [
        "tid",
        "paid",
        "shop_no",
        "md5_str",
        "src_tid",
        "num",
        "nu",
        "com",
        "routeInfo",
        "a",
        "zz_extra",
        "Tid",
    ];

    fn set<T: Fields>(message: &mut T, key: &str, value: &str) {
        match message.field_mut(key) {
            Some(field) => *field = value.to_owned(),
            None => {
                message.extra_mut().insert(key.to_owned(), value.to_owned());
            }
        }
    }

    fn object(pairs: &[(usize, String)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (KEYS[*k].to_owned(), serde_json::Value::from(v.as_str())))
            .collect()
    }

    proptest::proptest! {
        /// Any record (schema fields, unknown keys, lines, tracking data, texts to escape)
        /// has the canonical form serde_json writes for the same non-empty texts.
        #[test]
        fn any_record_has_serde_jsons_canonical_form(
            top in proptest::collection::vec((0..KEYS.len(), "[a-z\\\\\"\u{0}-\u{1f}中]{0,6}"), 0..10),
            lines in proptest::collection::vec(
                proptest::collection::vec((0..KEYS.len(), "[a-z\"中]{0,4}"), 0..5), 0..3),
            kuaidi in proptest::option::of(
                proptest::collection::vec((0..KEYS.len(), "[a-z\"中]{0,4}"), 0..5)),
        ) {
            // A key set twice keeps its last value, as in the expected object.
            let mut record = StockoutRecord::default();
            for (k, v) in &top {
                set(&mut record, KEYS[*k], v);
            }
            let mut expected = serde_json::Map::new();
            let last: std::collections::BTreeMap<usize, String> = top.iter().cloned().collect();
            expected.extend(object(&last.into_iter().collect::<Vec<_>>()));
            if !lines.is_empty() {
                let mut values = Vec::new();
                for pairs in &lines {
                    let mut line = StockoutDetail::default();
                    for (k, v) in pairs {
                        set(&mut line, KEYS[*k], v);
                    }
                    let last: std::collections::BTreeMap<usize, String> =
                        pairs.iter().cloned().collect();
                    values.push(serde_json::Value::Object(object(
                        &last.into_iter().collect::<Vec<_>>(),
                    )));
                    record.details_list.push(line);
                }
                expected.insert(DETAILS_KEY.into(), serde_json::Value::Array(values));
            }
            if let Some(pairs) = &kuaidi {
                let mut data = Kuaidi100Data::default();
                for (k, v) in pairs {
                    set(&mut data, KEYS[*k], v);
                }
                let last: std::collections::BTreeMap<usize, String> =
                    pairs.iter().cloned().collect();
                expected.insert(
                    KUAIDI100_KEY.into(),
                    serde_json::Value::Object(object(&last.into_iter().collect::<Vec<_>>())),
                );
                record.kuaidi100_data = Some(data);
            }
            proptest::prop_assert_eq!(
                canonical_json(&record),
                serde_json::Value::Object(expected).to_string()
            );
        }
    }
}
