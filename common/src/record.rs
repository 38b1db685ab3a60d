//! The source record's field tables: the JSON key of every text field of
//! `StockoutRecord`, `StockoutDetail` and `Kuaidi100Data`, read by ingest's parsers (to
//! fill them) and by transform's scheme rules (to read them by key).

use std::collections::HashMap;
use wdtpipe_proto::v1::{Kuaidi100Data, StockoutDetail, StockoutRecord};

/// Text fields of a message, by their JSON keys.
pub trait Fields {
    /// Every JSON key the schema has, in declaration order.
    const KEYS: &'static [&'static str];
    /// The text field stored under a JSON key, if the schema has one.
    fn field_mut(&mut self, key: &str) -> Option<&mut String>;
    /// The text of the field stored under a JSON key, if the schema has one.
    fn field(&self, key: &str) -> Option<&str>;
    /// Every non-empty text field with its JSON key, keys in byte order.
    fn sorted_fields(&self) -> impl Iterator<Item = (&'static str, &str)>;
    /// Keys the schema does not know, with their JSON text.
    fn extra(&self) -> &HashMap<String, String>;
    fn extra_mut(&mut self) -> &mut HashMap<String, String>;
    /// The position of a known key in [`Fields::KEYS`].
    fn index_of(key: &str) -> Option<usize>;
    /// Which known keys the sender sent with an empty value (null, `""`, blank): bit `i`
    /// of this set is `KEYS[i]`.
    fn empty_fields(&self) -> &[u8];
    fn empty_fields_mut(&mut self) -> &mut Vec<u8>;

    /// Stores `text` under a known key (or in `extra`), remembering a known key sent empty.
    fn set_text(&mut self, key: &str, text: &str) {
        if !text.is_empty() {
            match self.field_mut(key) {
                Some(field) => {
                    field.clear();
                    field.push_str(text);
                }
                None => {
                    self.extra_mut().insert(key.to_owned(), text.to_owned());
                }
            }
            return;
        }
        match Self::index_of(key) {
            Some(index) => {
                if let Some(field) = self.field_mut(key) {
                    field.clear();
                }
                let bits = self.empty_fields_mut();
                if bits.len() <= index / 8 {
                    bits.resize(index / 8 + 1, 0);
                }
                bits[index / 8] |= 1 << (index % 8);
            }
            None => {
                self.extra_mut().insert(key.to_owned(), String::new());
            }
        }
    }

    /// Whether the known key at `index` was sent (non-empty, or empty and remembered).
    fn sent_at(&self, index: usize) -> bool {
        let empty = self
            .empty_fields()
            .get(index / 8)
            .is_some_and(|byte| byte & (1 << (index % 8)) != 0);
        empty || self.field(Self::KEYS[index]).is_some_and(|t| !t.is_empty())
    }

    /// Whether the sender sent `key` (a known field non-empty or sent empty, or an unknown
    /// key).
    fn was_sent(&self, key: &str) -> bool {
        match Self::index_of(key) {
            Some(index) => self.sent_at(index),
            None => self.extra().contains_key(key),
        }
    }
}

macro_rules! field_table {
    ($ty:ident { $($key:literal => $field:ident),* $(,)? }) => {
        impl Fields for $ty {
            const KEYS: &'static [&'static str] = &[$($key),*];
            fn field_mut(&mut self, key: &str) -> Option<&mut String> {
                match key {
                    $($key => Some(&mut self.$field),)*
                    _ => None,
                }
            }
            fn field(&self, key: &str) -> Option<&str> {
                match key {
                    $($key => Some(self.$field.as_str()),)*
                    _ => None,
                }
            }
            fn index_of(key: &str) -> Option<usize> {
                static INDEX: std::sync::OnceLock<HashMap<&'static str, usize>> =
                    std::sync::OnceLock::new();
                INDEX
                    .get_or_init(|| Self::KEYS.iter().enumerate().map(|(i, k)| (*k, i)).collect())
                    .get(key)
                    .copied()
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
            fn extra(&self) -> &HashMap<String, String> {
                &self.extra
            }
            fn extra_mut(&mut self) -> &mut HashMap<String, String> {
                &mut self.extra
            }
            fn empty_fields(&self) -> &[u8] {
                &self.empty_fields
            }
            fn empty_fields_mut(&mut self) -> &mut Vec<u8> {
                &mut self.empty_fields
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

/// The tid of a record that yields one trade (MAPPING.md): the first non-empty of `tid`,
/// the first item of `src_tids` (split on `,`), `src_trade_no`, `trade_no`.
pub fn single_tid(record: &StockoutRecord) -> Option<String> {
    let from_src_tids = record
        .src_tids
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty());
    [
        Some(record.tid.as_str()),
        from_src_tids,
        Some(record.src_trade_no.as_str()),
        Some(record.trade_no.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|s| !s.is_empty())
    .map(str::to_owned)
}

/// The tid errors and status name for a record, in every stage: its single tid, else the
/// first `src_tid` of its lines, else empty.
pub fn tid_hint(record: &StockoutRecord) -> String {
    single_tid(record).unwrap_or_else(|| {
        record
            .details_list
            .iter()
            .map(|l| l.src_tid.as_str())
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key reads and writes its own field, and the tables name as many keys as the
    /// messages have text fields (a field added to the proto needs its key here).
    #[test]
    fn every_text_field_has_a_key() {
        fn check<T: Fields + Default + prost::Message>(expected_text_fields: usize) {
            assert_eq!(T::KEYS.len(), expected_text_fields);
            let mut message = T::default();
            for (i, key) in T::KEYS.iter().enumerate() {
                message.set_text(key, &format!("v{i}"));
            }
            for (i, key) in T::KEYS.iter().enumerate() {
                assert_eq!(message.field(key), Some(format!("v{i}").as_str()), "{key}");
            }
            assert!(message.extra().is_empty());
            // Every text field was written: the encoding holds each value once.
            let encoded = message.encode_to_vec();
            for i in 0..T::KEYS.len() {
                let value = format!("v{i}");
                assert!(
                    encoded
                        .windows(value.len() + 1)
                        .any(|w| w[0] as usize == value.len() && &w[1..] == value.as_bytes()),
                    "v{i}"
                );
            }
        }
        check::<StockoutRecord>(151);
        check::<StockoutDetail>(20);
        check::<Kuaidi100Data>(11);
    }

    #[test]
    fn presence_of_empty_keys() {
        let mut record = StockoutRecord::default();
        record.set_text("nick_name", "");
        record.set_text("custom", "");
        assert!(record.was_sent("nick_name"));
        assert!(record.was_sent("custom"));
        assert!(!record.was_sent("customer_name"));
        assert!(!record.was_sent("other"));
        record.set_text("nick_name", "");
        let index = StockoutRecord::index_of("nick_name").unwrap();
        assert_eq!(record.empty_fields[index / 8], 1 << (index % 8));
    }

    /// The one tid rule both stages name a record by.
    #[test]
    fn tid_hint_follows_the_mapping() {
        let mut record = StockoutRecord::default();
        assert_eq!(tid_hint(&record), "");
        record.details_list = vec![StockoutDetail {
            src_tid: "L1".into(),
            ..StockoutDetail::default()
        }];
        assert_eq!(tid_hint(&record), "L1");
        record.trade_no = "N".into();
        assert_eq!(tid_hint(&record), "N");
        record.src_tids = " , S1,S2".into();
        assert_eq!(tid_hint(&record), "S1");
        record.tid = "T".into();
        assert_eq!(single_tid(&record).as_deref(), Some("T"));
    }
}
