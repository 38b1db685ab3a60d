//! The mapping rules of MAPPING.md one by one, beyond what the shared fixtures cover, plus
//! property tests over generated records.

use proptest::prelude::*;
use rust_decimal::Decimal;
use std::str::FromStr;
use wdtpipe_proto::v1::{Kuaidi100Data, StockoutDetail, StockoutRecord, TradeOrder};
use wdtpipe_transform::mapping::map_record;
use wdtpipe_transform::scheme::Scheme;

fn line(src_tid: &str, oid: &str) -> StockoutDetail {
    StockoutDetail {
        rec_id: "1".into(),
        src_tid: src_tid.into(),
        src_oid: oid.into(),
        goods_id: "G-ID".into(),
        goods_no: "G1".into(),
        spec_no: "G1-1".into(),
        goods_name: "杯子".into(),
        num: "2".into(),
        price: "10.5".into(),
        discount: "1".into(),
        ..StockoutDetail::default()
    }
}

/// A valid single-trade record: tid T1, one shop, two lines, paid in full.
fn base() -> StockoutRecord {
    StockoutRecord {
        tid: "T1".into(),
        shop_no: "S1".into(),
        status: "95".into(),
        paid: "40".into(),
        receivable: "40".into(),
        post_amount: "0".into(),
        cod_amount: "0".into(),
        delivery_term: "1".into(),
        trade_time: "2026-11-27 09:15:02".into(),
        pay_time: "2026-11-27 09:16:40".into(),
        nick_name: "nick".into(),
        receiver_name: "李四".into(),
        receiver_address: "中关村大街 27 号".into(),
        receiver_mobile: "13800000000".into(),
        logistics_type: "4".into(),
        details_list: vec![line("T1", "T1-1"), line("T1", "T1-2")],
        ..StockoutRecord::default()
    }
}

fn map(record: &StockoutRecord) -> Result<Vec<TradeOrder>, String> {
    map_record(record, 1, &Scheme::default())
        .map(|m| m.into_trades())
        .map_err(|r| wdtpipe_common::rejection::message(&r))
}

fn one(record: &StockoutRecord) -> TradeOrder {
    let mut trades = map(record).unwrap();
    assert_eq!(trades.len(), 1);
    trades.remove(0)
}

fn rejected(record: &StockoutRecord) -> String {
    map(record).expect_err("record should be rejected")
}

fn with(f: impl FnOnce(&mut StockoutRecord)) -> StockoutRecord {
    let mut r = base();
    f(&mut r);
    r
}

/// `tid` falls back to the first non-empty `src_tids` item, then `src_trade_no`, then `trade_no`.
#[test]
fn tid_fallbacks() {
    let r = with(|r| {
        r.tid.clear();
        r.src_tids = " , T2 ,T3".into();
    });
    assert_eq!(one(&r).tid, "T2");
    let r = with(|r| {
        r.tid.clear();
        r.src_trade_no = "ST".into();
        r.trade_no = "TN".into();
    });
    assert_eq!(one(&r).tid, "ST");
    let r = with(|r| {
        r.tid.clear();
        r.trade_no = "TN".into();
    });
    assert_eq!(one(&r).tid, "TN");
    let r = with(|r| r.tid.clear());
    assert!(rejected(&r).starts_with("record 1: tid: no tid"));
    let r = with(|r| r.tid = "X".repeat(41));
    assert!(rejected(&r).contains("tid: longer than 40 characters"));
    let r = with(|r| r.tid = "单".repeat(40));
    assert_eq!(
        one(&r).tid.chars().count(),
        40,
        "40 CJK characters are within the limit"
    );
}

/// Two or more distinct src_tids on every line split the record, in first-appearance order,
/// postage and COD on the first trade only; paid from the lines' own `paid` when all have one.
#[test]
fn merged_orders_split_per_src_tid() {
    let mut r = base();
    r.tid = "MERGED".into();
    r.post_amount = "6".into();
    r.cod_amount = "3".into();
    r.details_list = vec![line("B", "B-1"), line("A", "A-1"), line("B", "B-2")];
    let trades = map(&r).unwrap();
    let tids: Vec<&str> = trades.iter().map(|t| t.tid.as_str()).collect();
    assert_eq!(tids, ["B", "A"]);
    let oids: Vec<&str> = trades[0]
        .order_list
        .iter()
        .map(|l| l.oid.as_str())
        .collect();
    assert_eq!(oids, ["B-1", "B-2"]);
    assert_eq!(
        (
            trades[0].post_amount.as_str(),
            trades[0].cod_amount.as_str()
        ),
        ("6", "3")
    );
    assert_eq!(
        (
            trades[1].post_amount.as_str(),
            trades[1].cod_amount.as_str()
        ),
        ("0", "0")
    );
    // net per line: 10.5·2 − 1 − 0 = 20
    assert_eq!(trades[0].paid, "46");
    assert_eq!(trades[1].paid, "20");

    for (i, paid) in ["7.5", "8", "9.25"].iter().enumerate() {
        r.details_list[i].paid = (*paid).into();
    }
    let trades = map(&r).unwrap();
    assert_eq!(trades[0].paid, "22.75", "7.5 + 9.25 + postage 6");
    assert_eq!(trades[1].paid, "8");

    r.details_list[1].paid = "abc".into();
    assert!(rejected(&r).contains("details_list[2].paid: not a decimal"));

    r.details_list[1].src_tid.clear();
    let trade = one(&r);
    assert_eq!(
        trade.tid, "MERGED",
        "a line without src_tid means one trade"
    );
    assert_eq!(trade.paid, "40");
    assert_eq!(trade.order_list.len(), 3);

    let mut same = base();
    same.details_list = vec![line("Z", "Z-1"), line("Z", "Z-2")];
    assert_eq!(one(&same).tid, "T1", "one distinct src_tid does not split");
}

#[test]
fn split_tid_longer_than_40_is_rejected() {
    let mut r = base();
    r.details_list = vec![line(&"L".repeat(41), "x-1"), line("A", "A-1")];
    assert!(rejected(&r).contains("details_list[1].src_tid: longer than 40 characters"));
}

/// The configured shop wins; without one an empty record shop is invalid.
#[test]
fn shop() {
    let r = with(|r| r.shop_no.clear());
    assert!(rejected(&r).contains("shop_no: empty"));
    let trades = map_record(&r, 1, &Scheme::with_shop(Some("WDT1".into())))
        .unwrap()
        .into_trades();
    assert_eq!(trades[0].shop_no, "WDT1");
}

/// trade_status: signed for → 70; completed → 70; cancelled → 80/90; unpaid → 10; else 30.
#[test]
fn trade_status_rules() {
    let kuaidi = |ischeck: &str, state: &str| {
        Some(Kuaidi100Data {
            ischeck: ischeck.into(),
            state: state.into(),
            ..Kuaidi100Data::default()
        })
    };
    assert_eq!(
        one(&with(|r| r.kuaidi100_data = kuaidi("1", "0"))).trade_status,
        70
    );
    assert_eq!(
        one(&with(|r| r.kuaidi100_data = kuaidi("01", ""))).trade_status,
        70
    );
    for state in ["3", "301", "302", "303", "304", "501"] {
        assert_eq!(
            one(&with(|r| r.kuaidi100_data = kuaidi("0", state))).trade_status,
            70,
            "{state}"
        );
    }
    assert_eq!(
        one(&with(|r| r.kuaidi100_data = kuaidi("0", "5"))).trade_status,
        30
    );
    assert_eq!(one(&with(|r| r.status = "110".into())).trade_status, 70);
    assert_eq!(one(&with(|r| r.status = "0110".into())).trade_status, 70);
    assert_eq!(one(&with(|r| r.status = "110.0".into())).trade_status, 30);
    assert_eq!(one(&with(|r| r.status = "5".into())).trade_status, 80);
    let cancelled_unpaid = with(|r| {
        r.status = "5".into();
        r.paid = "0".into();
    });
    assert_eq!(one(&cancelled_unpaid).trade_status, 90);
    let unpaid = with(|r| r.paid = "0".into());
    let trade = one(&unpaid);
    assert_eq!((trade.trade_status, trade.pay_status), (10, 0));
    assert_eq!(trade.pay_time, "0000-00-00 00:00:00");
    let lines: Vec<i32> = trade.order_list.iter().map(|l| l.status).collect();
    assert_eq!(lines, [10, 10], "lines follow the trade status");
    let cod = with(|r| {
        r.paid = "0".into();
        r.delivery_term = "2".into();
    });
    assert_eq!(one(&cod).trade_status, 30);
}

/// pay_status from paid and receivable; delivery_term from the record, else COD, else 1.
#[test]
fn pay_status_and_delivery_term() {
    assert_eq!(one(&with(|r| r.paid = "39.99".into())).pay_status, 1);
    assert_eq!(one(&with(|r| r.paid = "41".into())).pay_status, 2);
    let no_receivable = with(|r| {
        r.paid = "1".into();
        r.receivable = "0".into();
    });
    assert_eq!(one(&no_receivable).pay_status, 2);
    assert_eq!(
        one(&with(|r| r.delivery_term = "3".into())).delivery_term,
        3
    );
    assert_eq!(
        one(&with(|r| r.delivery_term = "03".into())).delivery_term,
        3
    );
    let fallback_cod = with(|r| {
        r.delivery_term = "7".into();
        r.cod_amount = "0.01".into();
    });
    assert_eq!(one(&fallback_cod).delivery_term, 2);
    assert_eq!(
        one(&with(|r| r.delivery_term = "2.0".into())).delivery_term,
        1
    );
    assert_eq!(one(&with(|r| r.delivery_term.clear())).delivery_term, 1);
}

/// Times are normalised to China time; a bad time is invalid even where a rule replaces it.
#[test]
fn times() {
    let trade = one(&with(|r| {
        r.trade_time = "2026-11-27T01:15:02.5Z".into();
        r.pay_time = "1795742200000".into();
    }));
    assert_eq!(trade.trade_time, "2026-11-27 09:15:02");
    assert_eq!(trade.pay_time, "2026-11-27 09:16:40");
    assert!(
        rejected(&with(|r| r.trade_time = "2026-02-30 00:00:00".into()))
            .contains("trade_time: not a valid time")
    );
    let unpaid_bad_time = with(|r| {
        r.paid = "0".into();
        r.pay_time = "yesterday".into();
    });
    assert!(rejected(&unpaid_bad_time).contains("pay_time: not a valid time"));
    let trade = one(&with(|r| r.trade_time.clear()));
    assert_eq!(trade.trade_time, "", "an empty trade_time is left out");
    let paid_no_time = with(|r| r.pay_time.clear());
    assert_eq!(one(&paid_no_time).pay_time, "0000-00-00 00:00:00");
}

/// buyer_nick: emoji removed, first non-empty of nick/customer/receiver, cut to 100.
#[test]
fn buyer_nick() {
    assert_eq!(
        one(&with(|r| r.nick_name = "小红🌸店铺😀".into())).buyer_nick,
        "小红店铺"
    );
    let emoji_only = with(|r| {
        r.nick_name = "😀😀".into();
        r.customer_name = "张三".into();
    });
    assert_eq!(one(&emoji_only).buyer_nick, "张三");
    let inner_space = with(|r| r.nick_name = "🌸 Lily".into());
    assert_eq!(
        one(&inner_space).buyer_nick,
        " Lily",
        "only the emoji is removed"
    );
    let receiver = with(|r| r.nick_name.clear());
    assert_eq!(one(&receiver).buyer_nick, "李四");
    let long = with(|r| r.nick_name = "长".repeat(150));
    assert_eq!(one(&long).buyer_nick.chars().count(), 100);
    let nobody = with(|r| {
        r.nick_name = "🎉".into();
        r.receiver_name = "😀".into();
    });
    let message = rejected(&nobody);
    assert!(message.contains("buyer_nick"), "{message}");
}

/// Receiver fields: name and address required, mobile falls back to telno.
#[test]
fn receiver() {
    let telno = with(|r| {
        r.receiver_mobile.clear();
        r.receiver_telno = "010-1234".into();
    });
    let trade = one(&telno);
    assert_eq!(
        (
            trade.receiver_mobile.as_str(),
            trade.receiver_telno.as_str()
        ),
        ("010-1234", "010-1234")
    );
    assert!(rejected(&with(|r| r.receiver_mobile.clear())).contains("receiver_mobile"));
    assert!(rejected(&with(|r| r.receiver_address.clear())).contains("receiver_address: empty"));
    let no_name = with(|r| {
        r.receiver_name.clear();
        r.nick_name = "n".into();
    });
    assert!(rejected(&no_name).contains("receiver_name: empty"));
}

/// logistics_type: the record's integer, else the carrier table on kuaidi100 `com`, else -1;
/// fenxiao_type only when an integer.
#[test]
fn carrier_and_fenxiao() {
    let kuaidi = |com: &str| {
        Some(Kuaidi100Data {
            com: com.into(),
            ..Kuaidi100Data::default()
        })
    };
    assert_eq!(
        one(&with(|r| r.logistics_type = "-1".into())).logistics_type,
        -1
    );
    let from_table = with(|r| {
        r.logistics_type = "SF".into();
        r.kuaidi100_data = kuaidi("jtexpress");
    });
    assert_eq!(one(&from_table).logistics_type, 108);
    let case_sensitive = with(|r| {
        r.logistics_type.clear();
        r.kuaidi100_data = kuaidi("ShunFeng");
    });
    assert_eq!(one(&case_sensitive).logistics_type, -1);
    assert_eq!(one(&with(|r| r.logistics_type.clear())).logistics_type, -1);
    assert_eq!(one(&base()).fenxiao_type, None);
    assert_eq!(
        one(&with(|r| r.fenxiao_type = "2".into())).fenxiao_type,
        Some(2)
    );
    assert_eq!(
        one(&with(|r| r.fenxiao_type = "x".into())).fenxiao_type,
        None
    );
}

/// Line rules: oid fallbacks, num from goods_count, price from sell_price, refund status,
/// goods_id fallbacks and the required goods fields.
#[test]
fn line_rules() {
    let mut r = base();
    r.details_list[0].src_oid.clear();
    r.details_list[0].rec_id = "77".into();
    r.details_list[1].src_oid.clear();
    r.details_list[1].rec_id.clear();
    let trade = one(&r);
    assert_eq!(trade.order_list[0].oid, "T1-77");
    assert_eq!(trade.order_list[1].oid, "T1-2");

    let mut r = base();
    r.details_list[0].src_oid = "O".repeat(41);
    assert!(rejected(&r).contains("details_list[1].oid: longer than 40"));

    let mut r = base();
    r.details_list[0].num.clear();
    r.details_list[0].goods_count = "3.0".into();
    r.details_list[0].price.clear();
    r.details_list[0].sell_price = "9.90".into();
    r.details_list[1].price.clear();
    let trade = one(&r);
    assert_eq!(
        (
            trade.order_list[0].num.as_str(),
            trade.order_list[0].price.as_str()
        ),
        ("3", "9.9")
    );
    assert_eq!(trade.order_list[1].price, "0");

    for num in ["0", "-1", ""] {
        let mut r = base();
        r.details_list[1].num = num.into();
        assert!(
            rejected(&r).contains("details_list[2].num: must be above 0"),
            "{num:?}"
        );
    }
    let mut r = base();
    r.details_list[1].num = "1e3".into();
    assert!(rejected(&r).contains("details_list[2].num: not a decimal"));

    let mut r = base();
    r.details_list[0].refund_status = "5".into();
    r.details_list[1].refund_status = "9".into();
    let trade = one(&r);
    assert_eq!(
        (
            trade.order_list[0].status,
            trade.order_list[0].refund_status
        ),
        (80, 5)
    );
    assert_eq!(
        (
            trade.order_list[1].status,
            trade.order_list[1].refund_status
        ),
        (30, 0)
    );

    let mut r = base();
    r.details_list[0].goods_id.clear();
    r.details_list[1].goods_id.clear();
    r.details_list[1].goods_no.clear();
    let trade = one(&r);
    assert_eq!(trade.order_list[0].goods_id, "G1");
    assert_eq!(trade.order_list[1].goods_id, "G1-1");
    assert_eq!(
        trade.order_list[1].goods_no, "",
        "an empty goods_no is left out"
    );

    let mut r = base();
    r.details_list[1].goods_name.clear();
    assert!(rejected(&r).contains("details_list[2].goods_name: empty"));

    let mut r = base();
    r.details_list.clear();
    assert!(rejected(&r).contains("details_list: missing or empty"));
}

/// share_discount: given, else derived from share_amount (never below 0), else 0; written
/// values are rounded to 4 places, half away from zero.
#[test]
fn share_discount_and_rounding() {
    let mut r = base();
    r.details_list[0].share_discount = "1.23456".into();
    r.details_list[0].share_amount = "not read".into();
    r.details_list[1].share_amount = "25".into();
    let trade = one(&r);
    assert_eq!(trade.order_list[0].share_discount, "1.2346");
    assert_eq!(
        trade.order_list[1].share_discount, "0",
        "20 − 25 is below 0"
    );
    let mut r = base();
    r.details_list[0].share_amount = "19.99995".into();
    assert_eq!(one(&r).order_list[0].share_discount, "0.0001");
}

/// Fields no rule reads are not validated; the always-read header amounts are.
#[test]
fn only_read_fields_are_validated() {
    let mut r = base();
    r.discount = "abc".into();
    r.consign_time = "garbage".into();
    r.details_list[0].paid = "abc".into();
    r.details_list[0].sell_price = "abc".into();
    r.details_list[0].goods_count = "abc".into();
    r.status = "abc".into();
    assert_eq!(one(&r).tid, "T1");
    for field in ["paid", "receivable", "cod_amount", "post_amount"] {
        let mut r = base();
        match field {
            "paid" => r.paid = "+1".into(),
            "receivable" => r.receivable = ".5".into(),
            "cod_amount" => r.cod_amount = "1,0".into(),
            _ => r.post_amount = "1e2".into(),
        }
        r.delivery_term = "1".into();
        assert!(
            rejected(&r).contains(&format!("{field}: not a decimal")),
            "{field}"
        );
    }
}

fn decimal_text() -> impl Strategy<Value = String> {
    (0u32..100_000, 0u32..4, any::<bool>()).prop_map(|(units, places, trailing)| {
        let value = Decimal::new(i64::from(units), places);
        let text = value.to_string();
        if trailing && !text.contains('.') {
            format!("{text}.00")
        } else {
            text
        }
    })
}

fn arb_line() -> impl Strategy<Value = StockoutDetail> {
    (
        prop_oneof![
            Just("A".to_owned()),
            Just("B".to_owned()),
            Just("C".to_owned())
        ],
        1u32..20,
        decimal_text(),
        decimal_text(),
        proptest::option::of(decimal_text()),
    )
        .prop_map(|(src_tid, num, price, discount, paid)| StockoutDetail {
            src_tid,
            goods_no: "G".into(),
            goods_name: "g".into(),
            num: num.to_string(),
            price,
            discount,
            paid: paid.unwrap_or_default(),
            ..StockoutDetail::default()
        })
}

fn is_canonical(text: &str) -> bool {
    wdtpipe_common::decimal::is_decimal_text(text)
        && text != "-0"
        && (!text.contains('.')
            || (!text.ends_with('0') && text.split_once('.').unwrap().1.len() <= 4))
}

proptest! {
    /// Any well-formed record maps: every line lands in exactly one trade, tids are unique,
    /// money is canonical text, and split trades' paid adds up to the lines plus postage.
    #[test]
    fn well_formed_records_map(lines in prop::collection::vec(arb_line(), 1..8), post in decimal_text()) {
        let mut r = base();
        r.post_amount = post.clone();
        r.details_list = lines.clone();
        let trades = map(&r).unwrap();
        let total_lines: usize = trades.iter().map(|t| t.order_list.len()).sum();
        prop_assert_eq!(total_lines, lines.len());
        let mut tids: Vec<&str> = trades.iter().map(|t| t.tid.as_str()).collect();
        tids.sort_unstable();
        tids.dedup();
        prop_assert_eq!(tids.len(), trades.len());
        for t in &trades {
            for money in [&t.post_amount, &t.cod_amount, &t.paid, &t.ext_cod_fee, &t.other_amount] {
                prop_assert!(is_canonical(money), "{}", money);
            }
            for l in &t.order_list {
                for money in [&l.num, &l.price, &l.discount, &l.share_discount, &l.adjust_amount] {
                    prop_assert!(is_canonical(money), "{}", money);
                }
            }
        }
        if trades.len() > 1 {
            let all_paid = lines.iter().all(|l| !l.paid.is_empty());
            let d = |s: &str| Decimal::from_str(if s.is_empty() { "0" } else { s }).unwrap();
            let lines_total: Decimal = lines
                .iter()
                .map(|l| if all_paid { d(&l.paid) } else { d(&l.price) * d(&l.num) - d(&l.discount) })
                .sum();
            let want = lines_total + d(&post);
            let got: Decimal = trades.iter().map(|t| d(&t.paid)).sum();
            // Each trade's paid is rounded to 4 places on its own.
            prop_assert!((got - want).abs() <= Decimal::new(5, 5) * Decimal::from(trades.len()));
        }
    }
}

/// A scheme file's text: no rules at all, or every trade and line field ruled by
/// `expr = "default"` (its own built-in value, written back through the rule machinery).
fn scheme_text(identity: bool) -> String {
    use wdtpipe_transform::scheme::fields::{LineField, TradeField};
    let mut text = String::from("id = \"prop\"\n");
    if identity {
        text.push_str("[trade]\n");
        for field in TradeField::ALL {
            text.push_str(&format!("{field} = {{ expr = \"default\" }}\n"));
        }
        text.push_str("[line]\n");
        for field in LineField::ALL {
            text.push_str(&format!("{field} = {{ expr = \"default\" }}\n"));
        }
    }
    text
}

fn scheme_of(identity: bool) -> Scheme {
    wdtpipe_transform::scheme::file::parse(
        std::path::Path::new("prop.toml"),
        scheme_text(identity).as_bytes(),
        &wdtpipe_transform::scheme::BuiltinOptions::default(),
        &["default".to_owned()],
    )
    .unwrap()
}

/// Records around `base()`, valid and invalid: missing ids and names, long tids, bad
/// money, every status, tracking data or none, merged orders, refunded lines.
fn arb_record() -> impl Strategy<Value = StockoutRecord> {
    let text =
        |choices: &'static [&'static str]| prop::sample::select(choices).prop_map(str::to_owned);
    (
        (
            text(&["T1", "", "T-0123456789-0123456789-0123456789-0123456789"]),
            text(&["S1", ""]),
            text(&["40", "0", "12.5", "abc", ""]),
            text(&["95", "5", "110", "", "0110"]),
            text(&["nick", "", "😀"]),
            text(&["13800000000", ""]),
        ),
        (
            text(&["4", "", "x", "99999999999"]),
            text(&["1", "", "2"]),
            proptest::option::of((text(&["zhongtong", "nope", ""]), text(&["3", "0", ""]))),
            prop::collection::vec(
                (
                    arb_line(),
                    text(&["0", "5", "9", ""]),
                    text(&["G", ""]),
                    text(&["2", "0", ""]),
                ),
                1..5,
            ),
        ),
    )
        .prop_map(
            |((tid, shop, paid, status, nick, mobile), (logistics, fenxiao, kuaidi, lines))| {
                let mut r = base();
                r.tid = tid;
                r.shop_no = shop;
                r.paid = paid;
                r.status = status;
                r.nick_name = nick;
                r.receiver_mobile = mobile;
                r.logistics_type = logistics;
                r.fenxiao_type = fenxiao;
                r.kuaidi100_data = kuaidi.map(|(com, state)| Kuaidi100Data {
                    com,
                    state,
                    ..Kuaidi100Data::default()
                });
                r.details_list = lines
                    .into_iter()
                    .map(|(mut line, refund, goods_no, num)| {
                        line.refund_status = refund;
                        line.goods_no = goods_no;
                        line.num = num;
                        line
                    })
                    .collect();
                r
            },
        )
}

proptest! {
    /// With a scheme file without rules, every record maps exactly as with the built-in
    /// scheme, rejections included; with every field ruled by its own `default`, every
    /// record the built-in scheme maps maps to the same trades, and every one it rejects is
    /// rejected.
    #[test]
    fn empty_and_identity_schemes_map_as_the_built_in_one(record in arb_record()) {
        let builtin = map_record(&record, 1, &Scheme::default());
        let empty = map_record(&record, 1, &scheme_of(false));
        prop_assert_eq!(&builtin, &empty);
        let identity = map_record(&record, 1, &scheme_of(true));
        match (&builtin, &identity) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "built-in {:?}\nidentity {:?}", a, b),
        }
    }
}
