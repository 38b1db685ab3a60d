//! Golden mapping tests: every shared sample callback, parsed as ingest parses it and mapped
//! as transform maps it, produces exactly the expected trades (compared as JSON values), or
//! the expected rejection.

use serde_json::{Value, json};
use wdtpipe_common::trade_json::trade_value;
use wdtpipe_ingest::callback::{CallbackError, parse_body};
use wdtpipe_tests::{Fixture, fixtures};
use wdtpipe_transform::mapping::map_records;
use wdtpipe_transform::scheme::Scheme;

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
        .flatten()
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
