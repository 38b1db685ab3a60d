//! The fields of `trade_push` a scheme rule may write (WDT_API.md), each with how a rule's
//! text is written into it (MAPPING.md's writing rules) and what its value must be.

use std::fmt;
use wdtpipe_common::decimal::{Integer, format_decimal, parse_decimal};
use wdtpipe_common::time::{ZERO_TIME, normalize_time};
use wdtpipe_proto::v1::{TradeLine, TradeOrder};

/// `trade_status` and line `status`.
pub const TRADE_STATUSES: &[i64] = &[10, 20, 30, 40, 50, 70, 80, 90];
/// `pay_status`.
pub const PAY_STATUSES: &[i64] = &[0, 1, 2];
/// `delivery_term`.
pub const DELIVERY_TERMS: &[i64] = &[1, 2, 3];
/// line `refund_status`.
pub const REFUND_STATUSES: &[i64] = &[0, 1, 2, 3, 4, 5];

/// How a field is written and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text written as it is; left out when empty unless `always`.
    Text { always: bool },
    /// A money or quantity decimal, always written (`"0"` when empty).
    Decimal,
    /// A time, normalised; `pay_time` is always written (the zero time when empty).
    Time { always: bool },
    /// An integer of this enum, always written.
    Enum(&'static [i64]),
    /// Any 32-bit integer; left out when empty unless `always`.
    Int { always: bool },
}

/// A field's value as a rule's `default` sees it: an integer for integer fields, a text
/// otherwise, null where the field is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    Int(i64),
    Null,
}

impl FieldValue {
    /// The value as a rule's text (`miss = "default"`): null is empty.
    pub fn text(&self) -> String {
        match self {
            FieldValue::Text(text) => text.clone(),
            FieldValue::Int(n) => n.to_string(),
            FieldValue::Null => String::new(),
        }
    }
}

enum View<'a> {
    Str(&'a str),
    I32(i32),
    OptI32(Option<i32>),
}

enum Slot<'a> {
    Str(&'a mut String),
    I32(&'a mut i32),
    OptI32(&'a mut Option<i32>),
}

macro_rules! field_enum {
    ($(#[$doc:meta])* $ty:ident for $msg:ident {
        $($var:ident => $name:literal, $kind:expr, $acc:ident($field:ident);)*
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty { $($var),* }

        impl $ty {
            /// Every field, in WDT's order.
            pub const ALL: &'static [$ty] = &[$($ty::$var),*];

            /// The field's name in `trade_push`.
            pub fn name(self) -> &'static str {
                match self { $($ty::$var => $name),* }
            }

            pub fn kind(self) -> Kind {
                match self { $($ty::$var => $kind),* }
            }

            /// The field of this name, if `trade_push` has one.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some($ty::$var),)* _ => None }
            }

            fn view(self, m: &$msg) -> View<'_> {
                match self { $($ty::$var => View::$acc(field_enum!(@view $acc, m.$field))),* }
            }

            fn slot(self, m: &mut $msg) -> Slot<'_> {
                match self { $($ty::$var => Slot::$acc(&mut m.$field)),* }
            }

            /// The field's value in `m`.
            pub fn get(self, m: &$msg) -> FieldValue {
                value_of(self.view(m), self.kind())
            }

            /// Writes a rule's result text into the field, by the field's writing rules;
            /// `Err` says why the text cannot be written.
            pub fn write(self, m: &mut $msg, text: &str) -> Result<(), String> {
                let (kind, name) = (self.kind(), self.name());
                write_slot(self.slot(m), kind, name, text)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
    (@view Str, $e:expr) => { $e.as_str() };
    (@view I32, $e:expr) => { $e };
    (@view OptI32, $e:expr) => { $e };
}

field_enum! {
    /// A field of a trade in `trade_list` (and `shop_no`, a field of the call).
    TradeField for TradeOrder {
        ShopNo => "shop_no", Kind::Text { always: true }, Str(shop_no);
        Tid => "tid", Kind::Text { always: true }, Str(tid);
        TradeStatus => "trade_status", Kind::Enum(TRADE_STATUSES), I32(trade_status);
        PayStatus => "pay_status", Kind::Enum(PAY_STATUSES), I32(pay_status);
        DeliveryTerm => "delivery_term", Kind::Enum(DELIVERY_TERMS), I32(delivery_term);
        TradeTime => "trade_time", Kind::Time { always: false }, Str(trade_time);
        PayTime => "pay_time", Kind::Time { always: true }, Str(pay_time);
        BuyerNick => "buyer_nick", Kind::Text { always: true }, Str(buyer_nick);
        BuyerEmail => "buyer_email", Kind::Text { always: false }, Str(buyer_email);
        ReceiverName => "receiver_name", Kind::Text { always: true }, Str(receiver_name);
        ReceiverProvince => "receiver_province", Kind::Text { always: false }, Str(receiver_province);
        ReceiverCity => "receiver_city", Kind::Text { always: false }, Str(receiver_city);
        ReceiverDistrict => "receiver_district", Kind::Text { always: false }, Str(receiver_district);
        ReceiverAddress => "receiver_address", Kind::Text { always: true }, Str(receiver_address);
        ReceiverMobile => "receiver_mobile", Kind::Text { always: true }, Str(receiver_mobile);
        ReceiverTelno => "receiver_telno", Kind::Text { always: false }, Str(receiver_telno);
        ReceiverZip => "receiver_zip", Kind::Text { always: false }, Str(receiver_zip);
        LogisticsType => "logistics_type", Kind::Int { always: true }, I32(logistics_type);
        InvoiceKind => "invoice_kind", Kind::Int { always: false }, OptI32(invoice_kind);
        InvoiceTitle => "invoice_title", Kind::Text { always: false }, Str(invoice_title);
        InvoiceContent => "invoice_content", Kind::Text { always: false }, Str(invoice_content);
        BuyerMessage => "buyer_message", Kind::Text { always: false }, Str(buyer_message);
        SellerMemo => "seller_memo", Kind::Text { always: false }, Str(seller_memo);
        SellerFlag => "seller_flag", Kind::Int { always: false }, OptI32(seller_flag);
        PostAmount => "post_amount", Kind::Decimal, Str(post_amount);
        CodAmount => "cod_amount", Kind::Decimal, Str(cod_amount);
        ExtCodFee => "ext_cod_fee", Kind::Decimal, Str(ext_cod_fee);
        OtherAmount => "other_amount", Kind::Decimal, Str(other_amount);
        Paid => "paid", Kind::Decimal, Str(paid);
        ToDeliverTime => "to_deliver_time", Kind::Time { always: false }, Str(to_deliver_time);
        FenxiaoType => "fenxiao_type", Kind::Int { always: false }, OptI32(fenxiao_type);
        FenxiaoNick => "fenxiao_nick", Kind::Text { always: false }, Str(fenxiao_nick);
    }
}

field_enum! {
    /// A field of a line in a trade's `order_list`.
    LineField for TradeLine {
        Oid => "oid", Kind::Text { always: true }, Str(oid);
        Num => "num", Kind::Decimal, Str(num);
        Price => "price", Kind::Decimal, Str(price);
        Status => "status", Kind::Enum(TRADE_STATUSES), I32(status);
        RefundStatus => "refund_status", Kind::Enum(REFUND_STATUSES), I32(refund_status);
        GoodsId => "goods_id", Kind::Text { always: true }, Str(goods_id);
        SpecId => "spec_id", Kind::Text { always: false }, Str(spec_id);
        GoodsNo => "goods_no", Kind::Text { always: false }, Str(goods_no);
        SpecNo => "spec_no", Kind::Text { always: false }, Str(spec_no);
        GoodsName => "goods_name", Kind::Text { always: true }, Str(goods_name);
        SpecName => "spec_name", Kind::Text { always: false }, Str(spec_name);
        AdjustAmount => "adjust_amount", Kind::Decimal, Str(adjust_amount);
        Discount => "discount", Kind::Decimal, Str(discount);
        ShareDiscount => "share_discount", Kind::Decimal, Str(share_discount);
        Remark => "remark", Kind::Text { always: false }, Str(remark);
    }
}

fn value_of(view: View<'_>, kind: Kind) -> FieldValue {
    match view {
        View::Str(text) => match kind {
            Kind::Text { always: false } | Kind::Time { always: false } if text.is_empty() => {
                FieldValue::Null
            }
            _ => FieldValue::Text(text.to_owned()),
        },
        View::I32(n) => FieldValue::Int(i64::from(n)),
        View::OptI32(Some(n)) => FieldValue::Int(i64::from(n)),
        View::OptI32(None) => FieldValue::Null,
    }
}

fn list(values: &[i64]) -> String {
    values
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The integer a text holds, for an integer field.
fn integer(name: &str, text: &str) -> Result<i32, String> {
    match Integer::parse(text) {
        Integer::Value(v) => {
            i32::try_from(v).map_err(|_| format!("{text:?} is out of range for {name}"))
        }
        Integer::OutOfRange => Err(format!("{text:?} is out of range for {name}")),
        Integer::NotAnInteger => Err(format!("{text:?} is not an integer")),
    }
}

fn write_slot(slot: Slot<'_>, kind: Kind, name: &str, text: &str) -> Result<(), String> {
    match (slot, kind) {
        (Slot::Str(field), Kind::Text { .. }) => *field = text.to_owned(),
        (Slot::Str(field), Kind::Decimal) => {
            let value = parse_decimal(text).map_err(|e| format!("{text:?}: {e}"))?;
            *field = format_decimal(value);
        }
        (Slot::Str(field), Kind::Time { always }) => {
            *field = match normalize_time(text).map_err(|e| format!("{text:?}: {e}"))? {
                Some(time) => time,
                None if always => ZERO_TIME.to_owned(),
                None => String::new(),
            };
        }
        (Slot::I32(field), Kind::Enum(values)) => {
            if text.is_empty() {
                return Err(format!(
                    "empty, but {name} is always written and must be one of {}",
                    list(values)
                ));
            }
            let n = integer(name, text)?;
            if !values.contains(&i64::from(n)) {
                return Err(format!("{n} is not one of {}", list(values)));
            }
            *field = n;
        }
        (Slot::I32(field), Kind::Int { .. }) => {
            if text.is_empty() {
                return Err(format!("empty, but {name} is always written as an integer"));
            }
            *field = integer(name, text)?;
        }
        (Slot::OptI32(field), Kind::Int { .. }) => {
            *field = if text.is_empty() {
                None
            } else {
                Some(integer(name, text)?)
            };
        }
        _ => unreachable!("the field table pairs each accessor with its kind"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for field in TradeField::ALL {
            assert_eq!(TradeField::from_name(field.name()), Some(*field));
        }
        for field in LineField::ALL {
            assert_eq!(LineField::from_name(field.name()), Some(*field));
        }
        assert_eq!(TradeField::from_name("order_list"), None);
        assert_eq!(TradeField::ALL.len(), 32);
    }

    #[test]
    fn writing_rules() {
        let mut trade = TradeOrder::default();
        TradeField::Paid.write(&mut trade, "12.50000").unwrap();
        assert_eq!(trade.paid, "12.5");
        TradeField::Paid.write(&mut trade, "").unwrap();
        assert_eq!(trade.paid, "0");
        assert!(TradeField::Paid.write(&mut trade, " 12").is_err());
        TradeField::PayTime.write(&mut trade, "").unwrap();
        assert_eq!(trade.pay_time, ZERO_TIME);
        TradeField::PayTime
            .write(&mut trade, "0000-00-00 00:00:00")
            .unwrap();
        assert_eq!(trade.pay_time, ZERO_TIME);
        TradeField::TradeTime
            .write(&mut trade, "2026-11-27T01:16:40Z")
            .unwrap();
        assert_eq!(trade.trade_time, "2026-11-27 09:16:40");
        assert!(
            TradeField::TradeTime
                .write(&mut trade, "yesterday")
                .is_err()
        );
        assert_eq!(
            TradeField::TradeStatus.write(&mut trade, "60"),
            Err("60 is not one of 10, 20, 30, 40, 50, 70, 80, 90".into())
        );
        TradeField::TradeStatus.write(&mut trade, "070").unwrap();
        assert_eq!(trade.trade_status, 70);
        assert!(TradeField::TradeStatus.write(&mut trade, "").is_err());
        TradeField::FenxiaoType.write(&mut trade, "-7").unwrap();
        assert_eq!(trade.fenxiao_type, Some(-7));
        TradeField::FenxiaoType.write(&mut trade, "").unwrap();
        assert_eq!(trade.fenxiao_type, None);
        assert!(TradeField::LogisticsType.write(&mut trade, "").is_err());
        assert!(TradeField::LogisticsType.write(&mut trade, "1.0").is_err());
        assert_eq!(TradeField::FenxiaoType.get(&trade), FieldValue::Null);
        assert_eq!(TradeField::TradeStatus.get(&trade), FieldValue::Int(70));
        assert_eq!(TradeField::BuyerEmail.get(&trade), FieldValue::Null);
        assert_eq!(
            TradeField::BuyerNick.get(&trade),
            FieldValue::Text(String::new())
        );
    }
}
