//! `wdtpipe scheme validate` and `wdtpipe scheme new` as a user runs them.

use std::process::{Command, Output};

fn wdtpipe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wdtpipe"))
        .env_clear()
        .args(args)
        .output()
        .expect("wdtpipe runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every error of every file, with file, line and column, and exit 1; a directory of valid
/// files exits 0.
#[test]
fn validate_reports_every_error_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "id = \"good\"\n[trade]\nseller_memo = { value = \"m\" }\n",
    )
    .unwrap();
    let out = wdtpipe(&["scheme", "validate", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("1 scheme file(s), 0 error(s): all valid"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "id = \"bad\"\nconnector = \"nope\"\n[trade]\nshopno = { value = \"S\" }\npaid = { expr = \"record.paid +\" }\n[line]\ngoods_no = { from = \"goods_no\", table = \"skus\" }\n",
    )
    .unwrap();
    let worse = dir.path().join("worse.toml");
    std::fs::write(
        &worse,
        "id = \"worse\"\n[trade]\ntid = { from = \"a\", tabel = \"x\" }\n",
    )
    .unwrap();
    let out = wdtpipe(&["scheme", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let bad = bad.display();
    let worse = worse.display();
    for expected in [
        format!("{bad}:2:13: connector \"nope\" does not exist (known: default)"),
        format!(
            "{bad}:4:1: [trade] \"shopno\" is not a field of a trade_push trade; did you mean \"shop_no\"?"
        ),
        format!("{bad}:5:"),
        format!("{bad}:7:41: table \"skus\" does not exist (tables: none)"),
        format!("{worse}:3:21: unknown field `tabel`"),
        "3 scheme file(s), 5 error(s)".to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.contains("expr does not compile"), "{text}");
}

/// `scheme new` writes a starting file that validates as written, and never overwrites.
#[test]
fn new_writes_a_file_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    let path = path.to_str().unwrap();
    let out = wdtpipe(&["scheme", "new", path]);
    assert!(out.status.success(), "{out:?}");
    let out = wdtpipe(&["scheme", "validate", path]);
    assert!(out.status.success(), "{}", stdout(&out));
    let again = wdtpipe(&["scheme", "new", path]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}

/// The callback the test files below map: one record, one line.
const BODY: &str = r#"{"tid": "T1", "shop_no": "SHOP00", "warehouse_no": "WH01", "paid": "10", "nick_name": "buyer",
 "receiver_name": "张三", "receiver_address": "中关村大街 1 号", "receiver_mobile": "13800000000",
 "details_list": [{"goods_no": "A-1", "goods_name": "杯子", "num": "1", "price": "10"}]}"#;

const SCHEME: &str = r#"id = "t"
[trade]
shop_no = { from = "warehouse_no", table = "shops" }
[tables.shops]
WH01 = "SHOP01"
"#;

/// `scheme test`: the starting file's own tests pass; a failing `expect`, `expect_error`
/// and `assert` each fail the run (exit 1), naming the field, both values and the rule;
/// a misspelled check key is an error, not a pass; `--junit` writes the report.
#[test]
fn test_runs_every_check_and_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.toml");
    assert!(
        wdtpipe(&["scheme", "new", template.to_str().unwrap()])
            .status
            .success()
    );
    let out = wdtpipe(&["scheme", "test", template.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("scheme tests: 2 passed, 0 failed"),
        "{}",
        stdout(&out)
    );

    // The input is a file next to the scheme; the expected trades say SHOP02.
    std::fs::write(dir.path().join("in.json"), BODY).unwrap();
    let trades = wdtpipe(&["scheme", "test", template.to_str().unwrap()]);
    assert!(trades.status.success());
    let passing = dir.path().join("passing.toml");
    std::fs::write(
        &passing,
        format!(
            "{SCHEME}[[tests]]\nname = \"shop\"\ninput = \"in.json\"\nassert = [\"trades[0].shop_no == 'SHOP01'\", \"error == null\"]\n"
        ),
    )
    .unwrap();
    let out = wdtpipe(&["scheme", "test", passing.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));

    let expected = json_expected("SHOP02");
    std::fs::write(dir.path().join("want.json"), expected).unwrap();
    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        format!(
            "{SCHEME}[[tests]]\nname = \"exact trades\"\ninput = \"in.json\"\nexpect = \"want.json\"\n\n\
             [[tests]]\nname = \"should be invalid\"\ninput = \"in.json\"\nexpect_error = \"receiver_name\"\n\n\
             [[tests]]\nname = \"every assert must hold\"\ninput = \"in.json\"\nassert = [\"size(trades) == 1\", \"trades[0].trade.paid == '11'\"]\n"
        ),
    )
    .unwrap();
    let report = dir.path().join("junit.xml");
    let out = wdtpipe(&[
        "scheme",
        "test",
        failing.to_str().unwrap(),
        "--junit",
        report.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for expected in [
        "FAIL",
        "exact trades",
        "trades[0].shop_no: expected \"SHOP02\", got \"SHOP01\" (from [trade] shop_no = { from = \"warehouse_no\", table = \"shops\" })",
        "expect_error: the record should be invalid on receiver_name, but it maps (1 trade(s))",
        "assert \"trades[0].trade.paid == '11'\" is false",
        "scheme tests: 0 passed, 3 failed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("assert \"size(trades) == 1\""), "{text}");
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(
        xml.contains("<testsuites name=\"wdtpipe scheme test\" tests=\"3\" failures=\"3\">"),
        "{xml}"
    );

    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        format!("{SCHEME}[[tests]]\nname = \"typo\"\ninput = \"in.json\"\nasert = [\"false\"]\n"),
    )
    .unwrap();
    let out = wdtpipe(&["scheme", "test", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("unknown field `asert`"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("did you mean \"assert\"?"),
        "{}",
        stdout(&out)
    );
}

/// The expected form of BODY mapped by SCHEME, with `shop` as its shop.
fn json_expected(shop: &str) -> String {
    format!(
        r#"{{"status": 200, "trades": [{{"shop_no": "{shop}", "trade": {{
  "tid": "T1", "trade_status": 30, "pay_status": 2, "delivery_term": 1,
  "pay_time": "0000-00-00 00:00:00", "buyer_nick": "buyer", "receiver_name": "张三",
  "receiver_address": "中关村大街 1 号", "receiver_mobile": "13800000000", "logistics_type": -1,
  "post_amount": "0", "cod_amount": "0", "ext_cod_fee": "0", "other_amount": "0", "paid": "10",
  "order_list": [{{"oid": "T1-1", "num": "1", "price": "10", "status": 30, "refund_status": 0,
    "goods_id": "A-1", "goods_no": "A-1", "goods_name": "杯子", "adjust_amount": "0",
    "discount": "0", "share_discount": "0"}}]}}}}]}}"#
    )
}

/// `scheme preview`: each field with what produced it — the built-in mapping, a `from`
/// path, an expression, a table and the key it looked up; `--diff` shows only what the
/// scheme changes, and nothing for a scheme without rules.
#[test]
fn preview_shows_what_produced_each_field() {
    let dir = tempfile::tempdir().unwrap();
    let callback = dir.path().join("in.json");
    std::fs::write(&callback, BODY).unwrap();
    let scheme = dir.path().join("s.toml");
    std::fs::write(
        &scheme,
        format!(
            "{SCHEME}seller_memo = {{ expr = \"'memo ' + record.tid\" }}\nbuyer_email = {{ from = \"nick_name\" }}\n"
        )
        .replacen("[tables.shops]\nWH01 = \"SHOP01\"\n", "", 1)
            + "[tables.shops]\nWH01 = \"SHOP01\"\n",
    )
    .unwrap();
    let out = wdtpipe(&[
        "scheme",
        "preview",
        "--scheme",
        scheme.to_str().unwrap(),
        callback.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for expected in [
        "record 1: trade T1 → shop SHOP01",
        "shop_no = \"SHOP01\"   ← { from = \"warehouse_no\", table = \"shops\" }: looked up \"WH01\" in table shops: \"SHOP01\"",
        "seller_memo = \"memo T1\"   ← { expr = \"'memo ' + record.tid\" }: gave \"memo T1\"",
        "buyer_email = \"buyer\"   ← { from = \"nick_name\" }: gave \"buyer\"",
        "buyer_nick = \"buyer\"   ← built-in",
        "order_list[1].goods_no = \"A-1\"   ← built-in",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let diff = stdout(&wdtpipe(&[
        "scheme",
        "preview",
        "--diff",
        "--scheme",
        scheme.to_str().unwrap(),
        callback.to_str().unwrap(),
    ]));
    assert!(
        diff.contains("seller_memo") && diff.contains("buyer_email"),
        "{diff}"
    );
    assert!(
        !diff.contains("buyer_nick") && !diff.contains("goods_no"),
        "{diff}"
    );

    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "id = \"empty\"\n").unwrap();
    let out = wdtpipe(&[
        "scheme",
        "preview",
        "--diff",
        "--json",
        "--scheme",
        empty.to_str().unwrap(),
        callback.to_str().unwrap(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json[0]["trades"][0]["fields"],
        serde_json::json!({}),
        "{json}"
    );
}

/// The README's example schemes and accounts (`examples/`) validate, and their tests pass.
#[test]
fn the_examples_validate_and_pass_their_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let schemes = root.join("schemes");
    let connectors = root.join("connectors.toml");
    for tool in ["validate", "test"] {
        let out = wdtpipe(&[
            "scheme",
            tool,
            schemes.to_str().unwrap(),
            "--connectors-file",
            connectors.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "scheme {tool}: {}", stdout(&out));
    }
}
