//! CPU per record of the mapping, built-in scheme against a scheme file, in one process:
//! `cargo run --release -p wdtpipe-transform --example map_cost -- CALLBACK.json SCHEME.toml`.
//! It maps the callback's records N times with each (alternating rounds) and prints the
//! mean microseconds per record, the figure BENCHMARKS.md sets beside the pipeline's CPU
//! per callback.

use std::time::Instant;
use wdtpipe_proto::v1::StockoutRecord;
use wdtpipe_transform::mapping::map_record;
use wdtpipe_transform::scheme::{BuiltinOptions, Scheme, load_file};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(callback), Some(scheme)) = (args.next(), args.next()) else {
        eprintln!("usage: map_cost CALLBACK.json SCHEME.toml [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(5);
    let body = std::fs::read(&callback).expect("callback readable");
    let records: Vec<StockoutRecord> = parse(&body);
    let file = load_file(
        std::path::Path::new(&scheme),
        &BuiltinOptions::default(),
        &["default".to_owned()],
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let builtin = Scheme::default();
    const N: usize = 20_000;
    let time = |scheme: &Scheme| {
        let started = Instant::now();
        for _ in 0..N {
            for (i, record) in records.iter().enumerate() {
                let mapped = map_record(record, i as u32 + 1, scheme).expect("maps");
                std::hint::black_box(mapped);
            }
        }
        started.elapsed().as_secs_f64() * 1e6 / (N * records.len()) as f64
    };
    for round in 1..=rounds {
        let a = time(&builtin);
        let b = time(&file);
        println!(
            "round {round}: built-in {a:.2} µs/record, {} {b:.2} µs/record (+{:.2} µs)",
            file.label(),
            b - a
        );
    }
}

/// The records of a callback body, read by the same rules as ingest (a simplified reader:
/// one record or an array of them, scalars as text, `details_list` and `kuaidi100Data`
/// objects).
fn parse(body: &[u8]) -> Vec<StockoutRecord> {
    use wdtpipe_common::record::Fields;
    use wdtpipe_proto::v1::{Kuaidi100Data, StockoutDetail};
    fn text(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(s) => s.trim().to_owned(),
            serde_json::Value::Null => String::new(),
            serde_json::Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
            other => other.to_string(),
        }
    }
    let value: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .map(|item| {
            let mut record = StockoutRecord::default();
            for (key, value) in item.as_object().expect("an object") {
                match key.as_str() {
                    "details_list" => {
                        for line in value.as_array().into_iter().flatten() {
                            let mut detail = StockoutDetail::default();
                            for (k, v) in line.as_object().into_iter().flatten() {
                                detail.set_text(k, &text(v));
                            }
                            record.details_list.push(detail);
                        }
                    }
                    "kuaidi100Data" => {
                        let mut data = Kuaidi100Data::default();
                        for (k, v) in value.as_object().into_iter().flatten() {
                            data.set_text(k, &text(v));
                        }
                        record.kuaidi100_data = Some(data);
                    }
                    _ => record.set_text(key, &text(value)),
                }
            }
            record
        })
        .collect()
}
