//! The built-in mapping (MAPPING.md): every field of every trade computed from the record
//! alone, before any scheme rule.
//!
//! What a rule reads must be readable, so reading errors (a malformed decimal or time, an
//! integer out of range) reject the record here. Value checks (required fields, lengths,
//! `num` > 0, goods codes) are not made here: the draft keeps the value as computed and
//! [`crate::mapping`] checks the final values, after the rules.

use crate::mapping::MAX_ID_CHARS;
use crate::scheme::BuiltinOptions;
use crate::scheme::fields::{LineField, TradeField};
use rust_decimal::Decimal;
use wdtpipe_common::decimal::{DecimalError, Integer, format_decimal, parse_decimal};
use wdtpipe_common::rejection::{RecordAt, rejection};
use wdtpipe_common::time::{ZERO_TIME, normalize_time};
use wdtpipe_proto::v1::{RecordRejection, StockoutDetail, StockoutRecord, TradeLine, TradeOrder};

/// Longest `buyer_nick` the built-in rule writes (it cuts, a rule's value is refused).
const MAX_NICK_CHARS: usize = crate::mapping::MAX_NICK_CHARS;

/// kuaidi100 `state` values that mean "signed for".
pub(crate) const SIGNED_STATES: [i64; 6] = [3, 301, 302, 303, 304, 501];

/// One trade as the built-in mapping made it, with what the checks need to know.
#[derive(Debug, Clone)]
pub struct Draft {
    pub trade: TradeOrder,
    /// Where each of the trade's lines came from, in `order_list` order.
    pub lines: Vec<LineSource>,
    /// The tid named in errors about the record's header.
    pub tid_hint: String,
    /// Why the built-in tid fails its check (field, rule), if it does.
    pub tid_problem: Option<(String, String)>,
    /// Trade fields a scheme rule wrote (bit = `TradeField` index).
    pub ruled_fields: u64,
}

/// A line's origin in the record.
#[derive(Debug, Clone)]
pub struct LineSource {
    /// 1-based position in `details_list`.
    pub n: usize,
    /// `details_list[n].num` or `…goods_count`: the field `num` was read from.
    pub num_field: &'static str,
    /// The line's `refund_status` is 5: its built-in `status` is 80.
    pub refunded: bool,
    /// Line fields a scheme rule wrote (bit = `LineField` index).
    pub ruled_fields: u32,
}

impl LineSource {
    pub fn ruled(&self, field: LineField) -> bool {
        self.ruled_fields & (1 << field as u32) != 0
    }

    /// Marks a line field as written by a rule.
    pub fn mark(&mut self, field: LineField) {
        self.ruled_fields |= 1 << field as u32;
    }
}

impl Draft {
    pub fn ruled(&self, field: TradeField) -> bool {
        self.ruled_fields & (1 << field as u64) != 0
    }

    /// Marks a trade field as written by a rule.
    pub fn mark(&mut self, field: TradeField) {
        self.ruled_fields |= 1 << field as u64;
    }

    /// A rule's result that cannot be written or fails a check: named by the trade's tid
    /// (as far as the rules have made it), else the record's.
    pub fn rule_failed(
        &self,
        position: u32,
        field: impl Into<String>,
        why: &str,
    ) -> RecordRejection {
        let tid = if self.trade.tid.is_empty() {
            &self.tid_hint
        } else {
            &self.trade.tid
        };
        rejection(position, tid, field, format!("scheme rule: {why}"))
    }

    /// The built-in line `status`: 80 for a refunded line, else the trade's (final)
    /// `trade_status`; lines whose status a rule wrote keep it.
    pub fn follow_trade_status(&mut self) {
        let status = self.trade.trade_status;
        for (line, source) in self.trade.order_list.iter_mut().zip(&self.lines) {
            if !source.ruled(LineField::Status) {
                line.status = if source.refunded { 80 } else { status };
            }
        }
    }
}

/// The built-in drafts of a record's trades (one, or one per `src_tid`).
pub(crate) fn drafts(
    record: &StockoutRecord,
    position: u32,
    options: &BuiltinOptions,
) -> Result<Vec<Draft>, RecordRejection> {
    Builtin {
        record,
        at: RecordAt(position),
        options,
        tid_hint: tid_hint(record),
    }
    .drafts()
}

pub(crate) use wdtpipe_common::record::tid_hint;

struct Builtin<'a> {
    record: &'a StockoutRecord,
    at: RecordAt,
    options: &'a BuiltinOptions,
    /// The tid named in error messages about the header.
    tid_hint: String,
}

/// One line, mapped, before it is placed in its trade.
struct Line<'a> {
    group: usize,
    line: TradeLine,
    source: LineSource,
    /// `price·num − discount − share_discount`, exact.
    net: Decimal,
    /// The line's own `paid` text, read only where a rule uses it.
    paid: &'a str,
}

impl Builtin<'_> {
    fn decimal(&self, field: &str, text: &str) -> Result<Decimal, RecordRejection> {
        self.decimal_at(&self.tid_hint, field, text)
    }

    fn decimal_at(&self, tid: &str, field: &str, text: &str) -> Result<Decimal, RecordRejection> {
        parse_decimal(text).map_err(|e: DecimalError| self.at.reject(tid, field, e.to_string()))
    }

    fn time(&self, field: &str, text: &str) -> Result<Option<String>, RecordRejection> {
        normalize_time(text).map_err(|e| self.at.reject(&self.tid_hint, field, e.to_string()))
    }

    /// An integer field of the record: `None` when not an integer, an error when out of
    /// range for WDT's 32-bit fields.
    fn int32(&self, field: &str, text: &str) -> Result<Option<i32>, RecordRejection> {
        let out_of_range = || {
            self.at
                .reject(&self.tid_hint, field, "integer out of range")
        };
        match Integer::parse(text) {
            Integer::Value(v) => i32::try_from(v).map(Some).map_err(|_| out_of_range()),
            Integer::OutOfRange => Err(out_of_range()),
            Integer::NotAnInteger => Ok(None),
        }
    }

    fn drafts(&self) -> Result<Vec<Draft>, RecordRejection> {
        let r = self.record;

        // Always read, whether or not a rule ends up using them.
        let paid = self.decimal("paid", &r.paid)?;
        let receivable = self.decimal("receivable", &r.receivable)?;
        let cod_amount = self.decimal("cod_amount", &r.cod_amount)?;
        let post_amount = self.decimal("post_amount", &r.post_amount)?;
        let trade_time = self.time("trade_time", &r.trade_time)?;
        let pay_time = self.time("pay_time", &r.pay_time)?;

        if r.details_list.is_empty() {
            return Err(self
                .at
                .reject(&self.tid_hint, "details_list", "missing or empty"));
        }

        // One trade per src_tid when every line names one and there are several.
        let groups = split_groups(&r.details_list);
        let (tids, tid_problems) = match &groups {
            Some(groups) => {
                let problems = groups
                    .iter()
                    .map(|tid| {
                        (tid.chars().count() > MAX_ID_CHARS).then(|| {
                            let n = r
                                .details_list
                                .iter()
                                .position(|l| l.src_tid == *tid)
                                .unwrap_or_default();
                            (
                                format!("details_list[{}].src_tid", n + 1),
                                format!("longer than {MAX_ID_CHARS} characters"),
                            )
                        })
                    })
                    .collect();
                (groups.clone(), problems)
            }
            None => {
                let tid = wdtpipe_common::record::single_tid(r);
                let problem = match &tid {
                    None => Some((
                        "tid".to_owned(),
                        "no tid: tid, src_tids, src_trade_no and trade_no are all empty".to_owned(),
                    )),
                    Some(tid) if tid.chars().count() > MAX_ID_CHARS => Some((
                        "tid".to_owned(),
                        format!("longer than {MAX_ID_CHARS} characters"),
                    )),
                    Some(_) => None,
                };
                (vec![tid.unwrap_or_default()], vec![problem])
            }
        };

        let shop_no = match &self.options.shop_no {
            Some(shop) => shop.clone(),
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
            .unwrap_or_default();
        let receiver_mobile = if r.receiver_mobile.is_empty() {
            &r.receiver_telno
        } else {
            &r.receiver_mobile
        };
        let logistics_type = match self.int32("logistics_type", &r.logistics_type)? {
            Some(v) => v,
            None => r
                .kuaidi100_data
                .as_ref()
                .and_then(|k| self.options.carrier(&k.com))
                .unwrap_or(-1),
        };
        let fenxiao_type = self.int32("fenxiao_type", &r.fenxiao_type)?;

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
        let mut drafts = Vec::with_capacity(tids.len());
        for (group, (tid, tid_problem)) in tids.into_iter().zip(tid_problems).enumerate() {
            let first = group == 0;
            let group_lines = lines.iter().filter(|l| l.group == group);
            let trade_paid = if split {
                let mut total = if first { post_amount } else { Decimal::ZERO };
                for l in group_lines.clone() {
                    let amount = if every_line_paid {
                        self.decimal_at(
                            &tid,
                            &format!("details_list[{}].paid", l.source.n),
                            l.paid,
                        )?
                    } else {
                        l.net
                    };
                    total = total
                        .checked_add(amount)
                        .ok_or_else(|| self.at.reject(&tid, "paid", "decimal out of range"))?;
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
            drafts.push(Draft {
                trade: TradeOrder {
                    tid,
                    post_amount: format_decimal(post),
                    cod_amount: format_decimal(cod),
                    paid: format_decimal(trade_paid),
                    order_list: group_lines.clone().map(|l| l.line.clone()).collect(),
                    ..header.clone()
                },
                lines: group_lines.map(|l| l.source.clone()).collect(),
                tid_hint: self.tid_hint.clone(),
                tid_problem,
                ruled_fields: 0,
            });
        }
        Ok(drafts)
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
        let invalid = |field: &str, rule: &str| self.at.reject(tid, path(field), rule);
        let decimal = |field: &str, text: &str| self.decimal_at(tid, &path(field), text);

        let oid = if !d.src_oid.is_empty() {
            d.src_oid.clone()
        } else if !d.rec_id.is_empty() {
            format!("{tid}-{}", d.rec_id)
        } else {
            format!("{tid}-{n}")
        };
        let (num_field, num_text) =
            first_non_empty(&[("num", &d.num), ("goods_count", &d.goods_count)]);
        let num = decimal(num_field, num_text)?;
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
        let refunded = refund.is(5);

        Ok(Line {
            group,
            net,
            paid: &d.paid,
            source: LineSource {
                n,
                num_field: match num_field {
                    "goods_count" => "goods_count",
                    _ => "num",
                },
                refunded,
                ruled_fields: 0,
            },
            line: TradeLine {
                oid,
                num: format_decimal(num),
                price: format_decimal(price),
                status: if refunded { 80 } else { trade_status },
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
