//! Maps one stockout record to `trade_push` trades with an integration scheme.
//!
//! A pure function, no I/O, no clock, in three steps (SCHEMES.md, "Rules"):
//! 1. **Built-in** ([`crate::builtin`]): MAPPING.md computes every field from the record
//!    alone. What it *reads* must be readable (a malformed decimal or time rejects the
//!    record here, even where a rule will replace the field); what it *checks* is left for
//!    step 3, so a rule can supply what the record lacks.
//! 2. **Rules** ([`crate::rules`]): each `[trade]` rule replaces its field in every trade,
//!    then the built-in line `status` follows the final `trade_status`, then each `[line]`
//!    rule replaces its line field. A rule sees the record and the built-in value of its own
//!    field (`default`), never another rule's result.
//! 3. **Checks**: the final values must hold what WDT requires (tid, shop, buyer and
//!    receiver present, ids ≤ 40 characters, `num` > 0, goods codes, …). A failing built-in
//!    value is reported with the built-in rule's words; a failing rule result as
//!    `scheme rule: …`.
//!
//! A scheme's `skip` expression, when true, acknowledges the record without mapping it.

use crate::builtin::{Draft, drafts};
use crate::rules::{Evaluator, Trace};
use crate::scheme::Scheme;
use crate::scheme::fields::{LineField, TradeField};
use rust_decimal::Decimal;
use wdtpipe_common::decimal::parse_decimal;
use wdtpipe_common::rejection::RecordAt;
use wdtpipe_proto::v1::{RecordRejection, StockoutRecord, TradeOrder};

/// Longest `tid` and `oid` WDT accepts, in code points.
pub const MAX_ID_CHARS: usize = 40;
/// Longest `buyer_nick` WDT accepts, in code points.
pub const MAX_NICK_CHARS: usize = 100;

/// What a record became.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// Its trades, in order (one, or one per `src_tid` of a merged order).
    Trades(Vec<TradeOrder>),
    /// The scheme's `skip` expression was true: acknowledged, nothing to push. `tid` is
    /// the tid the built-in rule names for the record (empty when it names none), for its
    /// status.
    Skipped { tid: String },
}

impl Mapped {
    /// The trades (none for a skipped record).
    pub fn into_trades(self) -> Vec<TradeOrder> {
        match self {
            Mapped::Trades(trades) => trades,
            Mapped::Skipped { .. } => Vec::new(),
        }
    }

    /// The trades (none for a skipped record).
    pub fn trades(&self) -> &[TradeOrder] {
        match self {
            Mapped::Trades(trades) => trades,
            Mapped::Skipped { .. } => &[],
        }
    }

    pub fn is_skipped(&self) -> bool {
        matches!(self, Mapped::Skipped { .. })
    }
}

/// Maps one record (at its 1-based `position` in the request) with `scheme`.
pub fn map_record(
    record: &StockoutRecord,
    position: u32,
    scheme: &Scheme,
) -> Result<Mapped, RecordRejection> {
    map_with_trace(
        &Evaluator::new(record, position, scheme),
        record,
        position,
        scheme,
    )
}

/// [`map_record`], and what each of the scheme's rules did (a preview).
pub fn map_record_traced(
    record: &StockoutRecord,
    position: u32,
    scheme: &Scheme,
) -> (Result<Mapped, RecordRejection>, Vec<Trace>) {
    let evaluator = Evaluator::new(record, position, scheme).traced();
    let result = map_with_trace(&evaluator, record, position, scheme);
    (result, evaluator.into_trace())
}

fn map_with_trace(
    evaluator: &Evaluator<'_>,
    record: &StockoutRecord,
    position: u32,
    scheme: &Scheme,
) -> Result<Mapped, RecordRejection> {
    if let Some(skip) = &scheme.skip
        && evaluator.skip(skip)?
    {
        return Ok(Mapped::Skipped {
            tid: crate::builtin::tid_hint(record),
        });
    }
    let mut drafts = drafts(record, position, &scheme.builtin)?;
    if !scheme.trade_rules.is_empty() || !scheme.line_rules.is_empty() {
        for (index, draft) in drafts.iter_mut().enumerate() {
            evaluator.apply(index, draft)?;
        }
    } else {
        for draft in &mut drafts {
            draft.follow_trade_status();
        }
    }
    let check = Checks {
        at: RecordAt(position),
    };
    check.tids(&drafts)?;
    for draft in &drafts {
        check.header(draft)?;
    }
    for draft in &drafts {
        check.lines(draft)?;
    }
    Ok(Mapped::Trades(
        drafts.into_iter().map(|d| d.trade).collect(),
    ))
}

/// Maps every record of a request; the first invalid record rejects the request.
pub fn map_records<'a>(
    records: impl IntoIterator<Item = (u32, &'a StockoutRecord)>,
    scheme: &Scheme,
) -> Result<Vec<Mapped>, RecordRejection> {
    records
        .into_iter()
        .map(|(position, record)| map_record(record, position, scheme))
        .collect()
}

/// Step 3: the checks on final values.
struct Checks {
    at: RecordAt,
}

impl Checks {
    /// A rule's result that fails a check.
    fn rule_failed(&self, draft: &Draft, field: impl Into<String>, why: &str) -> RecordRejection {
        draft.rule_failed(self.at.0, field, why)
    }

    fn tids(&self, drafts: &[Draft]) -> Result<(), RecordRejection> {
        for draft in drafts {
            let tid = &draft.trade.tid;
            let too_long = tid.chars().count() > MAX_ID_CHARS;
            if draft.ruled(TradeField::Tid) {
                if tid.is_empty() {
                    return Err(self.rule_failed(draft, "tid", "empty, but tid is required"));
                }
                if too_long {
                    return Err(self.rule_failed(
                        draft,
                        "tid",
                        &format!("longer than {MAX_ID_CHARS} characters"),
                    ));
                }
            } else if let Some((field, rule)) = &draft.tid_problem {
                return Err(self.at.reject(tid, field.clone(), rule.clone()));
            }
        }
        Ok(())
    }

    fn header(&self, draft: &Draft) -> Result<(), RecordRejection> {
        let t = &draft.trade;
        let builtin = |field: &str, rule: &str| self.at.reject(&draft.tid_hint, field, rule);
        let required = [
            (
                TradeField::ShopNo,
                &t.shop_no,
                "empty and no target shop (WDT_SHOP_NO) is configured",
            ),
            (
                TradeField::BuyerNick,
                &t.buyer_nick,
                "nick_name, customer_name and receiver_name are all empty (after removing emoji)",
            ),
            (TradeField::ReceiverName, &t.receiver_name, "empty"),
            (TradeField::ReceiverAddress, &t.receiver_address, "empty"),
            (
                TradeField::ReceiverMobile,
                &t.receiver_mobile,
                "receiver_mobile and receiver_telno are both empty",
            ),
        ];
        for (field, value, builtin_rule) in required {
            if value.is_empty() {
                return Err(if draft.ruled(field) {
                    self.rule_failed(
                        draft,
                        field.name(),
                        &format!("empty, but {field} is required"),
                    )
                } else {
                    builtin(field.name(), builtin_rule)
                });
            }
        }
        if t.buyer_nick.chars().count() > MAX_NICK_CHARS {
            return Err(self.rule_failed(
                draft,
                "buyer_nick",
                &format!("longer than {MAX_NICK_CHARS} characters"),
            ));
        }
        Ok(())
    }

    fn lines(&self, draft: &Draft) -> Result<(), RecordRejection> {
        for (line, source) in draft.trade.order_list.iter().zip(&draft.lines) {
            let n = source.n;
            let path = |field: &str| format!("details_list[{n}].{field}");
            let ruled = |field: LineField| source.ruled(field);
            let builtin =
                |field: &str, rule: String| self.at.reject(&draft.trade.tid, path(field), rule);
            let rule_failed =
                |field: LineField, why: String| self.rule_failed(draft, path(field.name()), &why);

            if line.oid.is_empty() {
                return Err(rule_failed(
                    LineField::Oid,
                    "empty, but oid is required".into(),
                ));
            }
            if line.oid.chars().count() > MAX_ID_CHARS {
                let why = format!("longer than {MAX_ID_CHARS} characters: {}", line.oid);
                return Err(if ruled(LineField::Oid) {
                    rule_failed(LineField::Oid, why)
                } else {
                    builtin("oid", why)
                });
            }
            // Checked as written: a rule's `0.00001` writes "0".
            let num = parse_decimal(&line.num).unwrap_or_default();
            if num <= Decimal::ZERO {
                return Err(if ruled(LineField::Num) {
                    rule_failed(LineField::Num, format!("{} is not above 0", line.num))
                } else {
                    builtin(source.num_field, "must be above 0".into())
                });
            }
            if line.goods_no.is_empty() && line.spec_no.is_empty() {
                let why = "goods_no and spec_no are both empty".to_owned();
                return Err(if ruled(LineField::GoodsNo) || ruled(LineField::SpecNo) {
                    self.rule_failed(draft, path("goods_no/spec_no"), &why)
                } else {
                    builtin("goods_no/spec_no", why)
                });
            }
            if line.goods_name.is_empty() {
                return Err(if ruled(LineField::GoodsName) {
                    rule_failed(
                        LineField::GoodsName,
                        "empty, but goods_name is required".into(),
                    )
                } else {
                    builtin("goods_name", "empty".into())
                });
            }
            if line.goods_id.is_empty() {
                return Err(if ruled(LineField::GoodsId) {
                    rule_failed(LineField::GoodsId, "empty, but goods_id is required".into())
                } else {
                    builtin(
                        "goods_id",
                        "goods_id, goods_no and spec_no are all empty".into(),
                    )
                });
            }
        }
        Ok(())
    }
}
