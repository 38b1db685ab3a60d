//! The default mapping from a stockout record to `trade_push` trades (MAPPING.md).
//!
//! A pure function: no I/O, no clock. Every rule reads text fields of the record and either
//! writes a trade field or rejects the record naming the field and the rule. A field is
//! validated only when a rule reads it, except the header's `paid`, `receivable`,
//! `cod_amount`, `post_amount` and the non-empty time fields, which are always read.

use crate::scheme::Scheme;
use rust_decimal::Decimal;
use wdtpipe_common::decimal::{DecimalError, Integer, format_decimal, parse_decimal};
use wdtpipe_common::rejection::rejection;
use wdtpipe_common::time::{ZERO_TIME, normalize_time};
use wdtpipe_proto::v1::{RecordRejection, StockoutDetail, StockoutRecord, TradeLine, TradeOrder};

/// Longest `tid` and `oid` WDT accepts, in code points.
pub const MAX_ID_CHARS: usize = 40;
/// Longest `buyer_nick` WDT accepts, in code points.
pub const MAX_NICK_CHARS: usize = 100;

/// kuaidi100 `state` values that mean "signed for".
const SIGNED_STATES: [i64; 6] = [3, 301, 302, 303, 304, 501];

/// Maps one record (at its 1-based `position` in the request) into its trades.
pub fn map_record(
    record: &StockoutRecord,
    position: u32,
    scheme: &Scheme,
) -> Result<Vec<TradeOrder>, RecordRejection> {
    Mapper {
        record,
        position,
        scheme,
        tid_hint: single_tid(record).unwrap_or_else(|| first_src_tid(record)),
    }
    .map()
}

/// Maps every record of a request; the first invalid record rejects the request.
pub fn map_records<'a>(
    records: impl IntoIterator<Item = (u32, &'a StockoutRecord)>,
    scheme: &Scheme,
) -> Result<Vec<Vec<TradeOrder>>, RecordRejection> {
    records
        .into_iter()
        .map(|(position, record)| map_record(record, position, scheme))
        .collect()
}

struct Mapper<'a> {
    record: &'a StockoutRecord,
    position: u32,
    scheme: &'a Scheme,
    /// The tid named in error messages.
    tid_hint: String,
}

/// One line, mapped, before it is placed in its trade.
struct Line<'a> {
    group: usize,
    line: TradeLine,
    /// `price·num − discount − share_discount`, exact.
    net: Decimal,
    /// 1-based position in `details_list`, for error messages.
    n: usize,
    /// The line's own `paid` text, read only where a rule uses it.
    paid: &'a str,
}

impl Mapper<'_> {
    fn reject(
        &self,
        tid: &str,
        field: impl Into<String>,
        rule: impl Into<String>,
    ) -> RecordRejection {
        rejection(self.position, tid, field, rule)
    }

    fn decimal(&self, field: &str, text: &str) -> Result<Decimal, RecordRejection> {
        self.decimal_at(&self.tid_hint, field, text)
    }

    fn decimal_at(&self, tid: &str, field: &str, text: &str) -> Result<Decimal, RecordRejection> {
        parse_decimal(text).map_err(|e: DecimalError| self.reject(tid, field, e.to_string()))
    }

    fn time(&self, field: &str, text: &str) -> Result<Option<String>, RecordRejection> {
        normalize_time(text).map_err(|e| self.reject(&self.tid_hint, field, e.to_string()))
    }

    /// An integer written into an `int32` enum field.
    fn int32(&self, field: &str, value: i64) -> Result<i32, RecordRejection> {
        i32::try_from(value).map_err(|_| self.reject(&self.tid_hint, field, "integer out of range"))
    }

    fn map(&self) -> Result<Vec<TradeOrder>, RecordRejection> {
        let r = self.record;

        // Always read, whether or not a rule below ends up using them.
        let paid = self.decimal("paid", &r.paid)?;
        let receivable = self.decimal("receivable", &r.receivable)?;
        let cod_amount = self.decimal("cod_amount", &r.cod_amount)?;
        let post_amount = self.decimal("post_amount", &r.post_amount)?;
        let trade_time = self.time("trade_time", &r.trade_time)?;
        let pay_time = self.time("pay_time", &r.pay_time)?;

        if r.details_list.is_empty() {
            return Err(self.reject(&self.tid_hint, "details_list", "missing or empty"));
        }

        // One trade per src_tid when every line names one and there are several.
        let groups = split_groups(&r.details_list);
        let tids: Vec<String> = match &groups {
            Some(groups) => groups.clone(),
            None => {
                let tid = single_tid(r).ok_or_else(|| {
                    self.reject(
                        "",
                        "tid",
                        "no tid: tid, src_tids, src_trade_no and trade_no are all empty",
                    )
                })?;
                if tid.chars().count() > MAX_ID_CHARS {
                    return Err(self.reject(
                        &tid,
                        "tid",
                        format!("longer than {MAX_ID_CHARS} characters"),
                    ));
                }
                vec![tid]
            }
        };
        if groups.is_some() {
            for (n, line) in r.details_list.iter().enumerate() {
                if line.src_tid.chars().count() > MAX_ID_CHARS {
                    return Err(self.reject(
                        &line.src_tid,
                        format!("details_list[{}].src_tid", n + 1),
                        format!("longer than {MAX_ID_CHARS} characters"),
                    ));
                }
            }
        }

        let shop_no = match &self.scheme.shop_no {
            Some(shop) => shop.clone(),
            None if r.shop_no.is_empty() => {
                return Err(self.reject(
                    &self.tid_hint,
                    "shop_no",
                    "empty and no target shop (WDT_SHOP_NO) is configured",
                ));
            }
            None => r.shop_no.clone(),
        };

        let delivery_term = match Integer::parse(&r.delivery_term).value() {
            Some(term @ 1..=3) => term as i32,
            _ if cod_amount > Decimal::ZERO => 2,
            _ => 1,
        };
        let pay_status = if paid.is_zero() {
            0
        } else if receivable > Decimal::ZERO && paid < receivable {
            1
        } else {
            2
        };
        let trade_status = self.trade_status(paid, pay_status, delivery_term);
        let pay_time = match pay_time {
            Some(time) if pay_status != 0 => time,
            _ => ZERO_TIME.to_owned(),
        };

        let buyer_nick = [&r.nick_name, &r.customer_name, &r.receiver_name]
            .into_iter()
            .map(|name| without_astral(name))
            .find(|name| !name.is_empty())
            .map(|name| name.chars().take(MAX_NICK_CHARS).collect::<String>())
            .ok_or_else(|| {
                self.reject(
                    &self.tid_hint,
                    "buyer_nick",
                    "nick_name, customer_name and receiver_name are all empty (after removing emoji)",
                )
            })?;
        if r.receiver_name.is_empty() {
            return Err(self.reject(&self.tid_hint, "receiver_name", "empty"));
        }
        if r.receiver_address.is_empty() {
            return Err(self.reject(&self.tid_hint, "receiver_address", "empty"));
        }
        let receiver_mobile = if r.receiver_mobile.is_empty() {
            &r.receiver_telno
        } else {
            &r.receiver_mobile
        };
        if receiver_mobile.is_empty() {
            return Err(self.reject(
                &self.tid_hint,
                "receiver_mobile",
                "receiver_mobile and receiver_telno are both empty",
            ));
        }

        let logistics_type = match Integer::parse(&r.logistics_type) {
            Integer::Value(v) => self.int32("logistics_type", v)?,
            Integer::OutOfRange => {
                return Err(self.reject(&self.tid_hint, "logistics_type", "integer out of range"));
            }
            Integer::NotAnInteger => r
                .kuaidi100_data
                .as_ref()
                .and_then(|k| self.scheme.carrier(&k.com))
                .unwrap_or(-1),
        };
        let fenxiao_type = match Integer::parse(&r.fenxiao_type) {
            Integer::Value(v) => Some(self.int32("fenxiao_type", v)?),
            Integer::OutOfRange => {
                return Err(self.reject(&self.tid_hint, "fenxiao_type", "integer out of range"));
            }
            Integer::NotAnInteger => None,
        };

        let lines = self.lines(&tids, groups.is_some(), trade_status)?;
        // A split trade's paid sums the lines' own `paid` when every line has one.
        let every_line_paid = lines.iter().all(|l| !l.paid.is_empty());

        let header = TradeOrder {
            shop_no,
            tid: String::new(),
            trade_status,
            pay_status,
            delivery_term,
            trade_time: trade_time.unwrap_or_default(),
            pay_time,
            buyer_nick,
            receiver_name: r.receiver_name.clone(),
            receiver_province: r.receiver_province.clone(),
            receiver_city: r.receiver_city.clone(),
            receiver_district: r.receiver_district.clone(),
            receiver_address: r.receiver_address.clone(),
            receiver_mobile: receiver_mobile.clone(),
            receiver_telno: r.receiver_telno.clone(),
            receiver_zip: r.receiver_zip.clone(),
            logistics_type,
            post_amount: String::new(),
            cod_amount: String::new(),
            ext_cod_fee: "0".to_owned(),
            other_amount: "0".to_owned(),
            paid: String::new(),
            fenxiao_type,
            fenxiao_nick: r.fenxiao_nick.clone(),
            buyer_message: r.buyer_message.clone(),
            seller_memo: r.cs_remark.clone(),
            ..TradeOrder::default()
        };

        let split = groups.is_some();
        let mut trades = Vec::with_capacity(tids.len());
        for (group, tid) in tids.into_iter().enumerate() {
            let first = group == 0;
            let group_lines = lines.iter().filter(|l| l.group == group);
            let trade_paid = if split {
                let mut total = if first { post_amount } else { Decimal::ZERO };
                for l in group_lines.clone() {
                    let amount = if every_line_paid {
                        self.decimal_at(&tid, &format!("details_list[{}].paid", l.n), l.paid)?
                    } else {
                        l.net
                    };
                    total = total
                        .checked_add(amount)
                        .ok_or_else(|| self.reject(&tid, "paid", "decimal out of range"))?;
                }
                total
            } else {
                paid
            };
            let (post, cod) = if first {
                (post_amount, cod_amount)
            } else {
                (Decimal::ZERO, Decimal::ZERO)
            };
            trades.push(TradeOrder {
                tid,
                post_amount: format_decimal(post),
                cod_amount: format_decimal(cod),
                paid: format_decimal(trade_paid),
                order_list: group_lines.map(|l| l.line.clone()).collect(),
                ..header.clone()
            });
        }
        Ok(trades)
    }

    fn trade_status(&self, paid: Decimal, pay_status: i32, delivery_term: i32) -> i32 {
        let r = self.record;
        let signed_for = r.kuaidi100_data.as_ref().is_some_and(|k| {
            Integer::parse(&k.ischeck).is(1)
                || Integer::parse(&k.state)
                    .value()
                    .is_some_and(|s| SIGNED_STATES.contains(&s))
        });
        let status = Integer::parse(&r.status);
        if signed_for || status.is(110) {
            70
        } else if status.is(5) {
            if paid > Decimal::ZERO { 80 } else { 90 }
        } else if pay_status == 0 && delivery_term != 2 {
            10
        } else {
            30
        }
    }

    /// Maps every line in record order, each into its trade's group.
    fn lines(
        &self,
        tids: &[String],
        split: bool,
        trade_status: i32,
    ) -> Result<Vec<Line<'_>>, RecordRejection> {
        self.record
            .details_list
            .iter()
            .enumerate()
            .map(|(index, detail)| {
                let group = if split {
                    tids.iter()
                        .position(|t| *t == detail.src_tid)
                        .unwrap_or_default()
                } else {
                    0
                };
                self.line(index + 1, detail, group, &tids[group], trade_status)
            })
            .collect()
    }

    fn line<'d>(
        &self,
        n: usize,
        d: &'d StockoutDetail,
        group: usize,
        tid: &str,
        trade_status: i32,
    ) -> Result<Line<'d>, RecordRejection> {
        let path = |field: &str| format!("details_list[{n}].{field}");
        let invalid = |field: &str, rule: &str| self.reject(tid, path(field), rule);
        let decimal = |field: &str, text: &str| self.decimal_at(tid, &path(field), text);

        let oid = if !d.src_oid.is_empty() {
            d.src_oid.clone()
        } else if !d.rec_id.is_empty() {
            format!("{tid}-{}", d.rec_id)
        } else {
            format!("{tid}-{n}")
        };
        if oid.chars().count() > MAX_ID_CHARS {
            return Err(invalid(
                "oid",
                &format!("longer than {MAX_ID_CHARS} characters: {oid}"),
            ));
        }

        let (num_field, num_text) =
            first_non_empty(&[("num", &d.num), ("goods_count", &d.goods_count)]);
        let num = decimal(num_field, num_text)?;
        if num <= Decimal::ZERO {
            return Err(invalid(num_field, "must be above 0"));
        }
        let (price_field, price_text) =
            first_non_empty(&[("price", &d.price), ("sell_price", &d.sell_price)]);
        let price = decimal(price_field, price_text)?;
        let discount = decimal("discount", &d.discount)?;
        let out_of_range = || invalid("share_discount", "decimal out of range");
        let gross = price.checked_mul(num).ok_or_else(out_of_range)?;
        let share_discount = if !d.share_discount.is_empty() {
            decimal("share_discount", &d.share_discount)?
        } else if !d.share_amount.is_empty() {
            let share_amount = decimal("share_amount", &d.share_amount)?;
            gross
                .checked_sub(discount)
                .and_then(|v| v.checked_sub(share_amount))
                .ok_or_else(out_of_range)?
                .max(Decimal::ZERO)
        } else {
            Decimal::ZERO
        };
        let net = gross
            .checked_sub(discount)
            .and_then(|v| v.checked_sub(share_discount))
            .ok_or_else(out_of_range)?;

        if d.goods_no.is_empty() && d.spec_no.is_empty() {
            return Err(invalid(
                "goods_no/spec_no",
                "goods_no and spec_no are both empty",
            ));
        }
        if d.goods_name.is_empty() {
            return Err(invalid("goods_name", "empty"));
        }
        let goods_id = [&d.goods_id, &d.goods_no, &d.spec_no]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_default();
        let refund = Integer::parse(&d.refund_status);
        let refund_status = match refund.value() {
            Some(v @ 0..=5) => v as i32,
            _ => 0,
        };
        let status = if refund.is(5) { 80 } else { trade_status };

        Ok(Line {
            group,
            net,
            n,
            paid: &d.paid,
            line: TradeLine {
                oid,
                num: format_decimal(num),
                price: format_decimal(price),
                status,
                refund_status,
                goods_id,
                spec_id: d.spec_id.clone(),
                goods_no: d.goods_no.clone(),
                spec_no: d.spec_no.clone(),
                goods_name: d.goods_name.clone(),
                spec_name: d.spec_name.clone(),
                adjust_amount: "0".to_owned(),
                discount: format_decimal(discount),
                share_discount: format_decimal(share_discount),
                remark: d.remark.clone(),
            },
        })
    }
}

/// The distinct `src_tid`s in order of first appearance, when every line has one and there
/// are at least two; `None` means "one trade with all lines".
fn split_groups(lines: &[StockoutDetail]) -> Option<Vec<String>> {
    if lines.iter().any(|l| l.src_tid.is_empty()) {
        return None;
    }
    let mut tids: Vec<String> = Vec::new();
    for line in lines {
        if !tids.contains(&line.src_tid) {
            tids.push(line.src_tid.clone());
        }
    }
    (tids.len() >= 2).then_some(tids)
}

/// The tid of an unsplit record: `tid`, the first item of `src_tids`, `src_trade_no`,
/// `trade_no`, whichever is first non-empty.
fn single_tid(r: &StockoutRecord) -> Option<String> {
    let from_src_tids = r.src_tids.split(',').map(str::trim).find(|s| !s.is_empty());
    [
        Some(r.tid.as_str()),
        from_src_tids,
        Some(r.src_trade_no.as_str()),
        Some(r.trade_no.as_str()),
    ]
    .into_iter()
    .flatten()
    .find(|s| !s.is_empty())
    .map(str::to_owned)
}

fn first_src_tid(r: &StockoutRecord) -> String {
    r.details_list
        .iter()
        .map(|l| l.src_tid.as_str())
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// The first non-empty `(field, text)`, or the first field with empty text.
fn first_non_empty<'a>(candidates: &[(&'static str, &'a String)]) -> (&'static str, &'a str) {
    candidates
        .iter()
        .find(|(_, text)| !text.is_empty())
        .or(candidates.first())
        .map(|(field, text)| (*field, text.as_str()))
        .unwrap_or(("", ""))
}

/// Removes characters outside the Basic Multilingual Plane (emoji and the like). The text
/// was trimmed when read; what remains is taken as it is (MAPPING.md does not trim again).
fn without_astral(text: &str) -> String {
    text.chars().filter(|c| u32::from(*c) <= 0xFFFF).collect()
}
