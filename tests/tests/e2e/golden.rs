//! Golden mapping tests: every shared sample callback, parsed as ingest parses it and mapped
//! as transform maps it, produces exactly the expected trades (compared as JSON values), or
//! the expected rejection.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wdtpipe_common::trade_json::trade_value;
use wdtpipe_ingest::parse::full::{CallbackError, parse_body};
use wdtpipe_tests::{Fixture, fixtures};
use wdtpipe_transform::mapping::map_records;
use wdtpipe_transform::scheme::{BuiltinOptions, Scheme, load_file};

/// Parses and maps a body; `Ok` holds `{"shop_no", "trade"}` values, `Err` the message.
fn convert(body: &[u8], scheme: &Scheme) -> Result<Vec<Value>, String> {
    let records = parse_body(body).map_err(|e: CallbackError| e.to_string())?;
    let mapped = map_records(
        records.iter().enumerate().map(|(i, r)| (i as u32 + 1, r)),
        scheme,
    )
    .map_err(|r| wdtpipe_common::rejection::message(&r))?;
    Ok(mapped
        .iter()
        .flat_map(|m| m.trades())
        .map(|t| json!({"shop_no": t.shop_no, "trade": trade_value(t)}))
        .collect())
}

fn check(fixture: &Fixture) {
    let got = convert(&fixture.body, &Scheme::default());
    match fixture.status() {
        200 => {
            let got = got.unwrap_or_else(|e| panic!("{}: rejected: {e}", fixture.name));
            assert_eq!(
                got.len(),
                fixture.trades().len(),
                "{}: trade count",
                fixture.name
            );
            for (g, want) in got.iter().zip(fixture.trades()) {
                assert_eq!(
                    g,
                    &want,
                    "{}: trade differs\n got: {}\nwant: {}",
                    fixture.name,
                    serde_json::to_string_pretty(g).unwrap(),
                    serde_json::to_string_pretty(&want).unwrap()
                );
            }
        }
        422 => {
            let message = got.expect_err(&format!("{}: should be rejected", fixture.name));
            assert!(
                message.contains(fixture.why()),
                "{}: message {message:?} does not name {:?}",
                fixture.name,
                fixture.why()
            );
            assert!(
                message.starts_with("record "),
                "{}: {message}",
                fixture.name
            );
        }
        other => panic!("{}: unexpected expected status {other}", fixture.name),
    }
}

/// Every shared fixture maps to exactly its expected trades or rejection.
#[test]
fn every_fixture_matches_its_expectation() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 19,
        "fixtures were copied into tests/fixtures"
    );
    for fixture in &fixtures {
        check(fixture);
    }
}

/// The invalid batch names the second record, the one that is bad.
#[test]
fn batch_rejection_names_the_bad_record() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("17-"))
        .unwrap();
    let message = convert(&fixture.body, &Scheme::default()).unwrap_err();
    assert_eq!(
        message,
        "record 2 (tid T0022): receiver_mobile: receiver_mobile and receiver_telno are both empty"
    );
}

/// A configured target shop replaces every record's own shop.
#[test]
fn target_shop_override() {
    let fixture = fixtures()
        .into_iter()
        .find(|f| f.name.starts_with("07-"))
        .unwrap();
    let got = convert(&fixture.body, &Scheme::with_shop(Some("WDT-SHOP".into()))).unwrap();
    assert!(got.iter().all(|t| t["shop_no"] == "WDT-SHOP"));
}

/// One scheme golden case: `tests/fixtures/schemes/<case>/` holds `scheme.toml`,
/// `callback.json` and `expected.json` (`{"status": 200, "trades": [...], "skipped": [..]}`
/// with the 1-based positions of skipped records, or `{"status": 422, "why": "..."}`, the
/// message exactly).
fn check_scheme_case(dir: &Path) -> Result<(), String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let scheme_path = dir.join("scheme.toml");
    let scheme = load_file(
        &scheme_path,
        &BuiltinOptions::default(),
        &["default".to_owned()],
    )
    .map_err(|errors| format!("{name}: scheme does not load: {errors:?}"))?;
    let body = std::fs::read(dir.join("callback.json")).unwrap();
    let records = parse_body(&body).map_err(|e| format!("{name}: {e}"))?;
    let got = match map_records(
        records.iter().enumerate().map(|(i, r)| (i as u32 + 1, r)),
        &scheme,
    ) {
        Ok(mapped) => json!({
            "status": 200,
            "trades": mapped
                .iter()
                .flat_map(|m| m.trades())
                .map(|t| json!({"shop_no": t.shop_no, "trade": trade_value(t)}))
                .collect::<Vec<_>>(),
            "skipped": mapped
                .iter()
                .enumerate()
                .filter(|(_, m)| m.is_skipped())
                .map(|(i, _)| i + 1)
                .collect::<Vec<_>>(),
        }),
        Err(rejection) => json!({
            "status": 422,
            "why": wdtpipe_common::rejection::message(&rejection),
        }),
    };
    let expected_path = dir.join("expected.json");
    if std::env::var_os("BLESS_SCHEME_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        std::fs::write(&expected_path, text).unwrap();
    }
    let want: Value = serde_json::from_slice(
        &std::fs::read(&expected_path).map_err(|e| format!("{name}: expected.json: {e}"))?,
    )
    .unwrap();
    if got != want {
        return Err(format!(
            "{name}: got\n{}\nwant\n{}",
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&want).unwrap()
        ));
    }
    Ok(())
}

/// Every scheme golden case (each rule kind, each `miss` policy, invalid results, `skip`
/// in a mixed batch) maps its callback to exactly its expected trades or rejection.
#[test]
fn every_scheme_case_matches_its_expectation() {
    let root = wdtpipe_tests::fixtures_dir().join("schemes");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 14, "{dirs:?}");
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|dir| check_scheme_case(dir).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A scheme file without rules maps every fixture exactly as the built-in scheme does.
#[test]
fn an_empty_scheme_maps_as_the_built_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.toml");
    std::fs::write(&path, "id = \"empty\"\n").unwrap();
    let empty = load_file(&path, &BuiltinOptions::default(), &["default".to_owned()]).unwrap();
    assert_eq!(empty.version.len(), 12);
    for fixture in fixtures() {
        assert_eq!(
            convert(&fixture.body, &empty),
            convert(&fixture.body, &Scheme::default()),
            "{}",
            fixture.name
        );
    }
}

/// The benchmark's ten-rule scheme loads and maps the bench's callback (fixture 01) with
/// every rule applying, so `wdtpipe bench --scheme` measures what it says.
#[test]
fn the_bench_scheme_maps_the_bench_callback() {
    let path = wdtpipe_tests::fixtures_dir().join("bench/ten-rules.toml");
    let scheme = load_file(&path, &BuiltinOptions::default(), &["default".to_owned()]).unwrap();
    let rules = |kind: fn(&wdtpipe_transform::scheme::Rule) -> bool| {
        scheme.trade_rules.iter().filter(|(_, r)| kind(r)).count()
            + scheme.line_rules.iter().filter(|(_, r)| kind(r)).count()
    };
    use wdtpipe_transform::scheme::RuleSource;
    assert_eq!(rules(|r| matches!(r.source, RuleSource::Expr(_))), 3);
    assert_eq!(rules(|r| r.lookup.is_some()), 3);
    assert_eq!(scheme.trade_rules.len() + scheme.line_rules.len(), 10);
    let trades = convert(&fixture_body("01-"), &scheme).unwrap();
    let trade = &trades[0]["trade"];
    assert_eq!(trades[0]["shop_no"], "SHOP01");
    assert_eq!(trade["seller_memo"], "CK1922121676 / 周末送货");
    assert_eq!(trade["logistics_type"], 8, "shunfeng, from the table");
    assert_eq!(trade["fenxiao_nick"], "官方商城");
    assert_eq!(trade["order_list"][0]["goods_no"], "SKU-G2002");
    assert_eq!(trade["order_list"][0]["remark"], "保温杯 500ml x3");
}

fn fixture_body(prefix: &str) -> Vec<u8> {
    wdtpipe_tests::fixture(prefix).body
}
