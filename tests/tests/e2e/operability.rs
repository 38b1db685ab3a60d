//! Operability: an order's whole path in its status, sharded deliver, Prometheus metrics
//! that move with traffic, and health that follows the next stage.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use wdtpipe_proto::v1::{DeliveryState, GetRecordRequest, StatsRequest};
use wdtpipe_sandbox::Faults;
use wdtpipe_tests::{PipelineOptions, eventually, fixture, fixtures, with_sandbox};
use wdtpipe_transform::shard::shard_of;

const DEADLINE: Duration = Duration::from_secs(30);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A tid's status shows its whole life: received, mapped, written to which shard, a failed
/// attempt and its retry, then the rejection that dead-lettered it; the record lookup shows
/// the same path with the request id and trace context the sender gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_whole_path() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    sandbox.sandbox.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let (status, answer) = pipeline
        .post_with(
            &fixture("08-").body,
            &[("x-request-id", "req-life-1"), ("traceparent", TRACEPARENT)],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let record_id = answer["receipts"][1]["record_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let retried = eventually(
        "a failed attempt and a scheduled retry",
        DEADLINE,
        || async {
            pipeline
                .status("T0010")
                .await
                .into_iter()
                .find(|s| s.attempts >= 1)
        },
    )
    .await;
    assert!(
        retried
            .history
            .iter()
            .any(|a| a.outcome == "transient" && a.http_status == 500)
    );
    assert_ne!(retried.state, DeliveryState::Delivered as i32);

    sandbox.sandbox.set_faults(Faults {
        reject_tid_pattern: Some("T0010".into()),
        ..Faults::default()
    });
    let dead = pipeline
        .status_in("T0010", DeliveryState::Dead, DEADLINE)
        .await;
    assert_eq!(dead.request_id, "req-life-1");
    assert_eq!(dead.shard, "shard-0");
    assert_eq!(dead.record_id, record_id);
    assert!(dead.received_at_ms > 0);
    assert!(
        dead.received_at_ms <= dead.transformed_at_ms,
        "received before mapped"
    );
    assert!(
        dead.transformed_at_ms <= dead.enqueued_at_ms,
        "mapped before written"
    );
    assert!(
        dead.last_error.contains("rejected by sandbox rule"),
        "{}",
        dead.last_error
    );
    let outcomes: Vec<&str> = dead.history.iter().map(|a| a.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"transient") && outcomes.last() == Some(&"rejected"),
        "{outcomes:?}"
    );
    let times: Vec<i64> = dead.history.iter().map(|a| a.at_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "attempts in order");

    let record = pipeline
        .deliver_client()
        .await
        .get_record(GetRecordRequest {
            record_id: record_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(record.found);
    let info = record.record.unwrap();
    assert_eq!(
        (info.request_id.as_str(), info.traceparent.as_str()),
        ("req-life-1", TRACEPARENT)
    );
    assert_eq!(info.tids, ["T0010"]);
    assert_eq!(info.source, "http");
    assert!(
        info.received_at_ms <= info.transformed_at_ms
            && info.transformed_at_ms <= info.enqueued_at_ms
    );
    assert_eq!(record.trades.len(), 1);
    eventually("the others delivered", DEADLINE, || async {
        (sandbox.sandbox.trade("T0009").is_some() && sandbox.sandbox.trade("T0011").is_some())
            .then_some(())
    })
    .await;
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// With two deliver shards every trade is delivered, and each tid lives on exactly one
/// shard — the one `hash(tid) mod 2` names; Stats of both add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_tids_without_overlap() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions {
        shards: 2,
        ..PipelineOptions::default()
    })
    .await;
    let mut tids = Vec::new();
    for f in fixtures().into_iter().filter(|f| f.status() == 200) {
        let (status, _) = pipeline.post(&f.body).await;
        assert_eq!(status, 200, "{}", f.name);
        tids.extend(
            f.trades()
                .iter()
                .map(|t| t["trade"]["tid"].as_str().unwrap().to_owned()),
        );
    }
    eventually("every trade delivered", DEADLINE, || async {
        tids.iter()
            .all(|t| sandbox.sandbox.trade(t).is_some())
            .then_some(())
    })
    .await;
    let mut per_shard = [0usize; 2];
    for tid in &tids {
        let mut holders = Vec::new();
        for shard in 0..2 {
            let statuses = pipeline
                .shard_client(shard)
                .get_status(wdtpipe_proto::v1::GetStatusRequest {
                    tid: tid.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .trades;
            if !statuses.is_empty() {
                holders.push(shard);
            }
        }
        assert_eq!(
            holders,
            [shard_of(tid, 2)],
            "{tid} lives on exactly its shard"
        );
        per_shard[holders[0]] += 1;
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards got work: {per_shard:?}"
    );
    let mut delivered = 0;
    for (shard, &expected) in per_shard.iter().enumerate() {
        let stats = eventually("stats counted", DEADLINE, || async {
            let stats = pipeline
                .shard_client(shard)
                .stats(StatsRequest {})
                .await
                .unwrap()
                .into_inner();
            let total: u64 = stats.shops.iter().map(|s| s.delivered_total).sum();
            (total as usize == expected).then_some(stats)
        })
        .await;
        assert_eq!(stats.shard, format!("shard-{shard}"));
        assert_eq!(stats.queued_trades, 0);
        delivered += stats.shops.iter().map(|s| s.delivered_total).sum::<u64>();
    }
    assert_eq!(delivered as usize, tids.len());
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Parses Prometheus text exposition: every sample line is `name{labels} value`, and the
/// document ends with `# EOF`. Returns samples by their name and labels.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample line: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "labels closed: {line}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("sample value: {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(url: &str) -> BTreeMap<String, f64> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse_metrics(&response.text().await.unwrap())
}

/// `/metrics` of every service parses as Prometheus text, and its counters move with traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    let ingest_url = format!("{}/metrics", pipeline.http);
    let transform_url = format!("http://{}/metrics", pipeline.transform_metrics);
    let deliver_url = format!("http://{}/metrics", pipeline.deliver_metrics[0]);
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);

    let before_ingest = scrape(&ingest_url).await;
    let before_deliver = scrape(&deliver_url).await;
    for prefix in ["01-", "07-", "15-"] {
        pipeline.post(&fixture(prefix).body).await;
    }
    pipeline.post(&fixture("01-").body).await;
    eventually("delivered", DEADLINE, || async {
        ["T0001", "T0007", "T0008"]
            .iter()
            .all(|t| sandbox.sandbox.trade(t).is_some())
            .then_some(())
    })
    .await;
    let ingest = eventually("ingest counters", DEADLINE, || async {
        let m = scrape(&ingest_url).await;
        (get(&m, r#"wdtpipe_ingest_requests_total{status="200"}"#) >= 3.0).then_some(m)
    })
    .await;
    assert_eq!(
        get(&ingest, r#"wdtpipe_ingest_requests_total{status="422"}"#),
        1.0
    );
    assert!(
        get(&ingest, "wdtpipe_ingest_duplicate_records_total") >= 1.0,
        "the resent record"
    );
    assert!(
        get(&ingest, "wdtpipe_ingest_request_seconds_count")
            > get(&before_ingest, "wdtpipe_ingest_request_seconds_count")
    );
    let transform = scrape(&transform_url).await;
    assert!(get(&transform, "wdtpipe_transform_trades_total") >= 3.0);
    assert!(
        get(
            &transform,
            r#"wdtpipe_transform_requests_total{outcome="invalid"}"#
        ) >= 1.0
    );
    assert!(get(&transform, "wdtpipe_transform_deliver_call_seconds_count") >= 3.0);
    let deliver = eventually("deliver counters", DEADLINE, || async {
        let m = scrape(&deliver_url).await;
        (get(&m, "wdtpipe_deliver_delivered_trades_total") >= 3.0).then_some(m)
    })
    .await;
    assert!(
        get(&deliver, "wdtpipe_deliver_delivered_trades_total")
            > get(&before_deliver, "wdtpipe_deliver_delivered_trades_total")
    );
    assert!(
        get(
            &deliver,
            r#"wdtpipe_deliver_wdt_calls_total{outcome="delivered",code="0"}"#
        ) >= 1.0
    );
    assert!(get(&deliver, "wdtpipe_deliver_dedupe_hits_total") >= 1.0);
    assert_eq!(get(&deliver, "wdtpipe_deliver_outbox_queued_trades"), 0.0);
    assert!(deliver.contains_key("wdtpipe_deliver_oldest_queued_age_seconds"));
    // Each delivering call read its batch and wrote its results back.
    assert!(get(&deliver, "wdtpipe_deliver_ready_wait_seconds_count") >= 1.0);
    assert!(get(&deliver, "wdtpipe_deliver_write_back_seconds_count") >= 1.0);
    // The writer's load: it committed (and fsynced) the enqueues and settlements above.
    assert!(get(&deliver, "wdtpipe_deliver_outbox_flushes") >= 2.0);
    let busy = get(&deliver, "wdtpipe_deliver_outbox_writer_busy_seconds");
    let flushing = get(&deliver, "wdtpipe_deliver_outbox_writer_flush_seconds");
    assert!(
        busy > 0.0 && flushing > 0.0 && flushing <= busy,
        "busy {busy}, flush {flushing}"
    );
    pipeline.shutdown().await;
    sandbox.stop().await;
}

async fn health(addr: std::net::SocketAddr) -> Option<i32> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

/// gRPC health follows readiness: transform and ingest serve only while their next stage
/// answers; deliver serves once its store is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_next_stage() {
    const SERVING: i32 = 1;
    let (sandbox, mut pipeline) = with_sandbox(PipelineOptions::default()).await;
    for addr in [
        pipeline.deliver_grpc,
        pipeline.transform_grpc,
        pipeline.ingest_grpc,
    ] {
        eventually("serving", DEADLINE, || async {
            (health(addr).await == Some(SERVING)).then_some(())
        })
        .await;
    }
    pipeline.stop_deliver().await;
    eventually(
        "transform not serving without deliver",
        DEADLINE,
        || async {
            (health(pipeline.transform_grpc)
                .await
                .is_some_and(|s| s != SERVING))
            .then_some(())
        },
    )
    .await;
    pipeline.restart_deliver().await;
    eventually("transform serving again", DEADLINE, || async {
        (health(pipeline.transform_grpc).await == Some(SERVING)).then_some(())
    })
    .await;
    let (status, answer): (u16, Value) = pipeline.post(&fixture("01-").body).await;
    assert_eq!(status, 200, "{answer}");
    pipeline.shutdown().await;
    sandbox.stop().await;
}

// ---- Alerting rules, the PrometheusRule manifest and the Grafana dashboard (deploy/) ----

/// The repository's root (the tests crate sits one level below it).
fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read_repo_file(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The label names inside a selector's braces, `a="x", b!~'y'` (exposition labels or
/// PromQL matchers), reading quoted values whole so that commas inside them do not count.
fn label_names(inside: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = inside.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
        }
        if name.is_empty() {
            assert!(chars.peek().is_none(), "a label name in {{{inside}}}");
            return names;
        }
        while chars
            .next_if(|c| c.is_whitespace() || "=!~".contains(*c))
            .is_some()
        {}
        let quote = chars
            .next()
            .unwrap_or_else(|| panic!("a quoted value after {name} in {{{inside}}}"));
        assert!(
            quote == '"' || quote == '\'',
            "a quoted value in {{{inside}}}"
        );
        loop {
            match chars.next() {
                Some('\\') => {
                    chars.next();
                }
                Some(c) if c == quote => break,
                Some(_) => {}
                None => panic!("an unterminated value in {{{inside}}}"),
            }
        }
        names.push(name);
    }
}

/// `text` (what follows a `{`) split at its closing `}` (quote-aware): inside, and after.
fn braced(text: &str) -> (&str, &str) {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '}') => return (&text[..i], &text[i + 1..]),
            _ => {}
        }
    }
    panic!("an unclosed selector: {text}")
}

/// Every `wdtpipe_*` metric named in `text` (a PromQL expression, or any text), each with
/// the label names its selector matches on (empty without `{…}`).
fn selectors(text: &str) -> Vec<(String, Vec<String>)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("wdtpipe_") {
        let starts_name = rest[..at].chars().next_back().is_none_or(|c| !is_name(c));
        let tail = &rest[at..];
        let end = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        rest = &tail[end..];
        if !starts_name {
            continue;
        }
        let mut labels = Vec::new();
        if let Some(inside) = rest.strip_prefix('{') {
            let (matchers, after) = braced(inside);
            labels = label_names(matchers);
            rest = after;
        }
        found.push((tail[..end].to_owned(), labels));
    }
    found
}

/// Every string in a JSON document.
fn json_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// The names a query may use for the families of an OpenMetrics text (`_total` of a
/// counter, `_bucket`/`_sum`/`_count` of a histogram, a gauge's own name), with the label
/// names their samples carry. A labelled family nothing has touched yet is left out of the
/// text altogether (prometheus-client skips empty families), hence the traffic below.
fn exported_names(text: &str) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut names: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (family, kind) = declared.split_once(' ').expect("# TYPE name kind");
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.entry(format!("{family}{suffix}")).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').expect("sample line").0;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, label_names(braced(labels).0)),
                None => (series, Vec::new()),
            };
            names.entry(name.to_owned()).or_default().extend(labels);
        }
    }
    names
}

/// Labels Prometheus itself puts on every scraped series (deploy/prometheus/prometheus.yml
/// and podmonitor.yaml), which the rules and the dashboard may match on.
const TARGET_LABELS: [&str; 4] = ["job", "instance", "namespace", "pod"];

/// Every metric that deploy/prometheus/rules.yml, deploy/prometheusrule.yaml and the Grafana
/// dashboard name is one the running services export (scraped from ingest, transform and
/// deliver after real traffic, a delivery and a refused scheme reload), and every label
/// they match on is one its samples carry (or a target label); the dashboard is JSON whose
/// panels all query Prometheus through the `datasource` variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_use_only_exported_metrics() {
    let schemes = tempfile::tempdir().unwrap();
    std::fs::write(
        schemes.path().join("mall.toml"),
        "id = \"mall\"\n\n[trade]\nseller_memo = { value = \"via mall\" }\n",
    )
    .unwrap();
    std::fs::write(
        schemes.path().join("k100.toml"),
        "id = \"k100\"\nsource = \"kuaidi100\"\n",
    )
    .unwrap();
    let (sandbox, pipeline) = with_sandbox(PipelineOptions {
        schemes_dir: Some(schemes.path().to_owned()),
        ..PipelineOptions::default()
    })
    .await;
    let (status, answer) = pipeline.post(&fixture("01-").body).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = pipeline
        .post_to("/v1/callback/mall", &fixture("04-").body, &[])
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = pipeline.post(&fixture("15-").body).await;
    assert_eq!(status, 422);
    eventually("delivered", DEADLINE, || async {
        sandbox.sandbox.trade("T0001").is_some().then_some(())
    })
    .await;
    // A kuaidi100 push: in transit, for a parcel of no order.
    let param = serde_json::json!({
        "status": "polling",
        "lastResult": {"nu": "SF-METRICS", "com": "shunfeng", "state": "0", "ischeck": "0",
            "data": [{"time": "2026-12-03 10:00:00", "context": "快件已发车"}]}
    })
    .to_string();
    let pushed = reqwest::Client::new()
        .post(format!("{}/v1/callback/k100", pipeline.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(wdtpipe_common::form::encode([
            ("param", param.as_str()),
            ("sign", ""),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status().as_u16(), 200);
    // A broken scheme file: transform refuses the reload (and keeps serving).
    std::fs::write(schemes.path().join("broken.toml"), "id = = \"broken\"\n").unwrap();
    let transform_url = format!("http://{}/metrics", pipeline.transform_metrics);
    eventually("the refused reload counted", DEADLINE, || async {
        scrape(&transform_url)
            .await
            .keys()
            .any(|k| k.starts_with("wdtpipe_transform_scheme_reloads_total{result=\"refused\"}"))
            .then_some(())
    })
    .await;
    let deliver_url = format!("http://{}/metrics", pipeline.deliver_metrics[0]);
    eventually("the delivery counted", DEADLINE, || async {
        let m = scrape(&deliver_url).await;
        (m.get("wdtpipe_deliver_delivered_trades_total").copied() >= Some(1.0)).then_some(())
    })
    .await;

    let mut exported = BTreeMap::new();
    let mut urls = vec![format!("{}/metrics", pipeline.http), transform_url];
    urls.extend(
        pipeline
            .deliver_metrics
            .iter()
            .map(|a| format!("http://{a}/metrics")),
    );
    for url in &urls {
        let text = reqwest::get(url.as_str())
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        parse_metrics(&text);
        for (name, labels) in exported_names(&text) {
            assert!(
                exported.insert(name.clone(), labels).is_none(),
                "{name} exported by two services"
            );
        }
    }
    pipeline.shutdown().await;
    sandbox.stop().await;

    let dashboard_text = read_repo_file("deploy/grafana/wdtpipe.json");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("the dashboard is JSON");
    let mut strings = Vec::new();
    json_strings(&dashboard, &mut strings);
    let documents = [
        (
            "deploy/prometheus/rules.yml",
            read_repo_file("deploy/prometheus/rules.yml"),
        ),
        (
            "deploy/prometheusrule.yaml",
            read_repo_file("deploy/prometheusrule.yaml"),
        ),
        ("deploy/grafana/wdtpipe.json", strings.join("\n")),
    ];
    for (path, text) in &documents {
        let used = selectors(text);
        assert!(used.len() >= 10, "{path} names the pipeline's metrics");
        for (name, labels) in used {
            let carried = exported
                .get(&name)
                .unwrap_or_else(|| panic!("{path}: {name} is not exported by any service"));
            for label in labels {
                assert!(
                    carried.contains(&label) || TARGET_LABELS.contains(&label.as_str()),
                    "{path}: {name} has no label {label:?} (its samples carry {carried:?})"
                );
            }
        }
    }

    // The dashboard: Grafana's schema of the time, a Prometheus datasource variable that
    // every panel queries through, unique panel ids.
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["name"] == "datasource"
        && v["type"] == "datasource"
        && v["query"] == "prometheus"));
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "unique panel ids"
        );
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} queries something");
        for target in targets {
            assert!(!target["expr"].as_str().unwrap().is_empty(), "{title}");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
}

/// The `groups:` block of a rules file, from its `groups:` line to the end, with `indent`
/// taken off every line (blank lines stay blank).
fn groups_block<'a>(path: &str, text: &'a str, indent: &str) -> Vec<&'a str> {
    let start = text
        .lines()
        .position(|l| l == format!("{indent}groups:"))
        .unwrap_or_else(|| panic!("{path} has a `{indent}groups:` line"));
    text.lines()
        .skip(start)
        .map(|line| {
            if line.trim().is_empty() {
                ""
            } else {
                line.strip_prefix(indent)
                    .unwrap_or_else(|| panic!("{path}: {line:?} is inside spec"))
            }
        })
        .collect()
}

/// deploy/prometheusrule.yaml is a PrometheusRule of the namespace every manifest uses whose
/// `spec.groups` is exactly deploy/prometheus/rules.yml's `groups` (same rules, comments
/// and order).
#[test]
fn prometheus_rule_manifest_matches_rules_file() {
    let rules = read_repo_file("deploy/prometheus/rules.yml");
    let manifest = read_repo_file("deploy/prometheusrule.yaml");
    let top: Vec<&str> = manifest
        .lines()
        .filter(|l| !l.starts_with([' ', '#']) && !l.is_empty())
        .collect();
    assert_eq!(
        top,
        [
            "apiVersion: monitoring.coreos.com/v1",
            "kind: PrometheusRule",
            "metadata:",
            "spec:"
        ]
    );
    assert!(manifest.contains("\n  namespace: wdtpipe\n"));
    let spec_at = manifest.find("\nspec:\n").expect("spec:");
    let from_file = groups_block("rules.yml", &rules, "");
    let from_manifest = groups_block("prometheusrule.yaml", &manifest[spec_at..], "  ");
    for (n, (a, b)) in from_file.iter().zip(&from_manifest).enumerate() {
        assert_eq!(
            a,
            b,
            "line {} of rules.yml's groups differs in deploy/prometheusrule.yaml; regenerate it \
             as its header says",
            n + 1
        );
    }
    assert_eq!(from_file.len(), from_manifest.len(), "as many lines");
    assert!(from_file.iter().filter(|l| l.contains("- alert: ")).count() >= 10);
}

/// Runs `promtool` from the repository root and returns whether it succeeded, printing
/// what it said.
fn promtool(args: &[&str]) -> bool {
    let output = std::process::Command::new("promtool")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("promtool runs (Debian package prometheus)");
    println!(
        "promtool {}: {}\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.status.success()
}

/// promtool accepts deploy/prometheus/rules.yml, its unit tests
/// (deploy/prometheus/rules.test.yml: every alert firing and not firing) pass, and every
/// query of the Grafana dashboard parses as PromQL.
#[test]
#[ignore = "needs promtool (Debian package prometheus); .ci/run installs it"]
fn promtool_checks_and_tests_the_alert_rules() {
    assert!(promtool(&["check", "rules", "deploy/prometheus/rules.yml"]));
    assert!(promtool(&[
        "test",
        "rules",
        "deploy/prometheus/rules.test.yml"
    ]));

    // The dashboard's queries, with Grafana's variables filled in, as recording rules.
    let dashboard: Value =
        serde_json::from_str(&read_repo_file("deploy/grafana/wdtpipe.json")).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut count = 0;
    for target in dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
    {
        let expr = target["expr"]
            .as_str()
            .unwrap()
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$shard", ".*");
        assert!(!expr.contains('$'), "a variable left in {expr}");
        count += 1;
        rules.push_str(&format!(
            "      - record: dashboard:query_{count}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    assert!(count >= 10, "the dashboard has queries");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    std::fs::write(&file, rules).unwrap();
    assert!(promtool(&["check", "rules", file.to_str().unwrap()]));
}
