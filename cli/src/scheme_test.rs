//! `wdtpipe scheme test [PATH…]`: runs every `[[tests]]` block of scheme files.
//!
//! A test's callback is parsed as ingest parses it and mapped as transform maps it; nothing
//! is sent. Its checks: `expect` (the exact trades, in the fixtures' expected form),
//! `expect_error` (the field a 422 names) and `assert` (CEL over `trades` and `error`, every
//! one true). A failure names the test, the field, what was expected and what came, and the
//! rule that produced the value. A test that checks nothing, or a misspelled key, is an
//! error of the file, never a pass.

use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use wdtpipe_common::rejection;
use wdtpipe_common::trade_json::trade_value;
use wdtpipe_transform::mapping::map_records;
use wdtpipe_transform::scheme::dir::files_in;
use wdtpipe_transform::scheme::expr::{json_value, result_bool};
use wdtpipe_transform::scheme::{BuiltinOptions, Scheme, SchemeTest, TestInput, load_file};

/// One test's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scheme file.
    pub file: PathBuf,
    pub name: String,
    /// Empty when the test passed.
    pub failures: Vec<String>,
}

/// What a callback became: the trades (fixtures' form), or the 422 (message and field).
struct Mapped {
    trades: Vec<Value>,
    error: Option<(String, String)>,
}

fn run_mapping(scheme: &Scheme, body: &[u8]) -> Mapped {
    let records =
        match wdtpipe_ingest::parse::parse(body, &wdtpipe_ingest::config::Limits::default()) {
            Ok(records) => records,
            Err(error) => {
                return Mapped {
                    trades: Vec::new(),
                    error: Some((error.to_string(), String::new())),
                };
            }
        };
    let positioned = records.iter().enumerate().map(|(i, r)| (i as u32 + 1, r));
    match map_records(positioned, scheme) {
        Ok(mapped) => Mapped {
            trades: mapped
                .iter()
                .flat_map(|m| m.trades())
                .map(|t| json!({"shop_no": t.shop_no, "trade": trade_value(t)}))
                .collect(),
            error: None,
        },
        Err(r) => Mapped {
            trades: Vec::new(),
            error: Some((rejection::message(&r), r.field)),
        },
    }
}

/// Runs one test.
fn run_test(scheme: &Scheme, file: &Path, test: &SchemeTest) -> Outcome {
    let mut failures = Vec::new();
    let body = match &test.input {
        TestInput::Body(body) => Ok(body.clone().into_bytes()),
        TestInput::File(path) => std::fs::read(path)
            .map_err(|e| format!("cannot read the input {}: {e}", path.display())),
    };
    match body {
        Err(error) => failures.push(error),
        Ok(body) => {
            let got = run_mapping(scheme, &body);
            if let Some(expect) = &test.expect {
                check_expect(scheme, expect, &got, &mut failures);
            }
            if let Some(field) = &test.expect_error {
                match &got.error {
                    None => failures.push(format!(
                        "expect_error: the record should be invalid on {field}, but it maps ({} trade(s))",
                        got.trades.len()
                    )),
                    Some((message, named)) if !names_field(named, field) => {
                        failures.push(format!(
                            "expect_error: the record should be invalid on {field}, but the error names {named}: {message}"
                        ));
                    }
                    Some(_) => {}
                }
            }
            let trades = json_value(&Value::Array(got.trades.clone()));
            let error = match &got.error {
                Some((message, _)) => json_value(&Value::String(message.clone())),
                None => json_value(&Value::Null),
            };
            for assert in &test.asserts {
                let result = assert
                    .eval(&[("trades", &trades), ("error", &error)])
                    .and_then(result_bool);
                match result {
                    Ok(true) => {}
                    Ok(false) => failures.push(format!("assert {:?} is false", assert.text)),
                    Err(e) => failures.push(format!("assert {:?} failed: {e}", assert.text)),
                }
            }
        }
    }
    Outcome {
        file: file.to_owned(),
        name: test.name.clone(),
        failures,
    }
}

/// Whether a rejection's field (`shop_no`, `details_list[2].goods_no`) is the one named.
fn names_field(field: &str, wanted: &str) -> bool {
    field == wanted
        || field.rsplit('.').next() == Some(wanted)
        || field
            .split('/')
            .any(|part| part.rsplit('.').next() == Some(wanted))
}

/// `expect`: the exact trades, or the exact rejection.
fn check_expect(scheme: &Scheme, path: &Path, got: &Mapped, failures: &mut Vec<String>) {
    let expected: Value = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(value) => value,
        Err(e) => {
            failures.push(format!("expect: cannot read {}: {e}", path.display()));
            return;
        }
    };
    let (status, trades, why) = match &expected {
        Value::Array(trades) => (200, trades.clone(), None),
        object => (
            object["status"].as_u64().unwrap_or(200),
            object["trades"].as_array().cloned().unwrap_or_default(),
            object["why"].as_str().map(str::to_owned),
        ),
    };
    if status != 200 {
        match &got.error {
            None => failures.push(format!(
                "expect: a {status} was expected ({}), but the record maps",
                why.as_deref().unwrap_or("-")
            )),
            Some((message, _)) if why.as_deref().is_some_and(|w| !message.contains(w)) => {
                failures.push(format!(
                    "expect: the error should name {:?}, got: {message}",
                    why.unwrap_or_default()
                ));
            }
            Some(_) => {}
        }
        return;
    }
    if let Some((message, _)) = &got.error {
        failures.push(format!("expect: trades were expected, got: {message}"));
        return;
    }
    if trades.len() != got.trades.len() {
        failures.push(format!(
            "expect: {} trade(s) expected, got {}",
            trades.len(),
            got.trades.len()
        ));
    }
    let mut differences = Vec::new();
    for (i, (want, have)) in trades.iter().zip(&got.trades).enumerate() {
        diff(&format!("trades[{i}]"), want, have, &mut differences);
    }
    for (path, want, have) in differences.iter().take(20) {
        failures.push(format!(
            "{path}: expected {want}, got {have} (from {})",
            producer(scheme, path)
        ));
    }
    if differences.len() > 20 {
        failures.push(format!("… and {} more differences", differences.len() - 20));
    }
}

/// Every path where two JSON values differ, with both sides (`-` for absent).
fn diff(path: &str, want: &Value, have: &Value, out: &mut Vec<(String, String, String)>) {
    match (want, have) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let absent = Value::String("-".into());
                let (x, y) = (a.get(key).unwrap_or(&absent), b.get(key).unwrap_or(&absent));
                diff(&format!("{path}.{key}"), x, y, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if want != have => out.push((path.to_owned(), want.to_string(), have.to_string())),
        _ => {}
    }
}

/// The rule behind a path of the expected form (`trades[0].trade.order_list[1].goods_no`).
fn producer(scheme: &Scheme, path: &str) -> String {
    let field = path.rsplit('.').next().unwrap_or(path);
    let field = field.split('[').next().unwrap_or(field);
    scheme.producer(field, path.contains(".order_list["))
}

/// Every scheme file under `paths` (files, or directories of them).
pub fn scheme_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(files_in(path).unwrap_or_default());
        } else {
            files.push(path.clone());
        }
    }
    files
}

/// Runs every test of every file; errors of files that do not load are reported as
/// failures of the file.
pub fn run_files(files: &[PathBuf], connectors: &[String]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for file in files {
        match load_file(file, &BuiltinOptions::default(), connectors) {
            Ok(scheme) => {
                for test in &scheme.tests {
                    outcomes.push(run_test(&scheme, file, test));
                }
            }
            Err(errors) => outcomes.push(Outcome {
                file: file.clone(),
                name: "(the file does not load)".to_owned(),
                failures: errors.iter().map(ToString::to_string).collect(),
            }),
        }
    }
    outcomes
}

/// A human report: one line per test, the failures under it, a closing count.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let verdict = if o.failures.is_empty() {
            "ok  "
        } else {
            "FAIL"
        };
        let _ = writeln!(out, "{verdict} {}: {}", o.file.display(), o.name);
        for failure in &o.failures {
            let _ = writeln!(out, "       {failure}");
        }
    }
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let _ = writeln!(
        out,
        "scheme tests: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    out
}

/// A JUnit XML report: a test suite per scheme file.
pub fn junit(outcomes: &[Outcome]) -> String {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"wdtpipe scheme test\" tests=\"{}\" failures=\"{failed}\">\n",
        outcomes.len()
    );
    let mut files: Vec<&PathBuf> = outcomes.iter().map(|o| &o.file).collect();
    files.dedup();
    for file in files {
        let tests: Vec<&Outcome> = outcomes.iter().filter(|o| &o.file == file).collect();
        let failed = tests.iter().filter(|o| !o.failures.is_empty()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">",
            escape(&file.display().to_string()),
            tests.len()
        );
        for test in tests {
            let name = escape(&test.name);
            if test.failures.is_empty() {
                let _ = writeln!(out, "    <testcase name=\"{name}\"/>");
            } else {
                let message = escape(&test.failures.join("\n"));
                let first = escape(&test.failures[0]);
                let _ = writeln!(
                    out,
                    "    <testcase name=\"{name}\">\n      <failure message=\"{first}\">{message}</failure>\n    </testcase>"
                );
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
