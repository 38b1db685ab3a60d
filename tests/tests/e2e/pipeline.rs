//! End-to-end tests: ingest, transform and deliver as real gRPC services on ephemeral
//! ports, a real sled outbox in a temporary directory, and the WDT sandbox over real HTTP.

use serde_json::{Value, json};
use std::time::Duration;
use wdtpipe_deliver::config::WdtConfig;
use wdtpipe_proto::v1::DeliveryState;
use wdtpipe_proto::v1::SubmitRequest;
use wdtpipe_proto::v1::ingest_client::IngestClient;
use wdtpipe_tests::{
    Pipeline, PipelineOptions, RunningSandbox, down_sandbox, eventually, fixture, fixtures,
    record_with_tid, sandbox_config, wdt_for, with_sandbox,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// Every shared fixture gets its expected answer; the sandbox receives exactly the expected
/// trades, each once, in correctly signed calls; invalid requests leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_flows_to_wdt() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    let mut expected: Vec<Value> = Vec::new();
    let mut rejected_tids: Vec<String> = Vec::new();
    for fixture in fixtures() {
        let (status, answer) = pipeline.post(&fixture.body).await;
        assert_eq!(status, fixture.status(), "{}: {answer}", fixture.name);
        if status == 200 {
            assert_eq!(answer["code"], 0, "{}", fixture.name);
            expected.extend(fixture.trades());
        } else {
            assert_eq!(answer["code"], 422, "{}", fixture.name);
            let message = answer["message"].as_str().unwrap();
            assert!(
                message.contains(fixture.why()),
                "{}: {message}",
                fixture.name
            );
            rejected_tids.extend(fixture.body_tids());
        }
    }
    let want = expected.len();
    eventually("every valid trade at the sandbox", DEADLINE, || async {
        (sandbox.sandbox.trades().len() >= want).then_some(())
    })
    .await;

    let accepted = sandbox.sandbox.trades();
    assert_eq!(accepted.len(), want, "no extra trades");
    for want in &expected {
        let tid = want["trade"]["tid"].as_str().unwrap();
        let got = accepted
            .iter()
            .find(|t| t.tid == tid)
            .unwrap_or_else(|| panic!("{tid} missing"));
        assert_eq!(
            json!({"shop_no": got.shop_no, "trade": got.trade}),
            *want,
            "{tid}"
        );
        assert_eq!(got.versions, 1, "{tid} pushed once");
    }
    for tid in &rejected_tids {
        assert!(
            accepted.iter().all(|t| &t.tid != tid),
            "{tid} from a rejected request reached WDT"
        );
        assert!(
            pipeline.status(tid).await.is_empty(),
            "{tid} from a rejected request was queued"
        );
    }
    let calls = sandbox.sandbox.calls();
    assert!(!calls.is_empty());
    assert!(
        calls.iter().all(|c| c.sign_ok && c.code == 0),
        "every call signed and accepted: {calls:?}"
    );

    let status = pipeline.status("T0001").await;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, DeliveryState::Delivered as i32);
    assert!(
        status[0].new_count >= 1,
        "new_count is the call's: at least this trade was new"
    );
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Trades accepted while WDT is down stay queued across a deliver restart on the same
/// data directory, and are delivered once WDT is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_trades_survive_a_deliver_restart() {
    // WDT drops every connection unanswered until the test lets it answer.
    let sandbox = RunningSandbox::start(down_sandbox()).await;
    let mut pipeline = Pipeline::start(PipelineOptions {
        wdt: wdt_for(sandbox.wdt_url()),
        ..PipelineOptions::default()
    })
    .await;
    let fixtures = [fixture("01-"), fixture("07-")];
    for f in &fixtures {
        let (status, answer) = pipeline.post(&f.body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let status = eventually("a failed attempt on T0001", DEADLINE, || async {
        pipeline
            .status("T0001")
            .await
            .into_iter()
            .find(|s| s.attempts > 0)
    })
    .await;
    assert_ne!(status.state, DeliveryState::Delivered as i32);
    assert!(
        status.last_error.contains("transport error"),
        "{}",
        status.last_error
    );

    pipeline.stop_deliver().await;
    sandbox
        .sandbox
        .set_faults(wdtpipe_sandbox::Faults::default());
    pipeline.restart_deliver().await;

    let expected: Vec<Value> = fixtures.iter().flat_map(|f| f.trades()).collect();
    eventually(
        "queued trades delivered after restart",
        DEADLINE,
        || async { (sandbox.sandbox.trades().len() == expected.len()).then_some(()) },
    )
    .await;
    for want in &expected {
        let tid = want["trade"]["tid"].as_str().unwrap();
        let got = sandbox.sandbox.trade(tid).unwrap();
        assert_eq!(got.trade, want["trade"], "{tid}");
    }
    let t0001 = pipeline
        .status_in("T0001", DeliveryState::Delivered, DEADLINE)
        .await;
    assert!(
        t0001.history.len() >= 2,
        "the failed attempts and the success are in the history"
    );
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Internal clients get the callback's semantics over gRPC: receipts on success, and
/// INVALID_ARGUMENT naming the record and field for an invalid record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_submit_has_the_callback_semantics() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    let mut client = IngestClient::connect(format!("http://{}", pipeline.ingest_grpc))
        .await
        .unwrap();
    let records = wdtpipe_ingest::parse::full::parse_body(&fixture("08-").body).unwrap();
    let receipts = client
        .submit(SubmitRequest {
            records: records.clone(),
            source: "test".into(),
            ..SubmitRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .receipts;
    let tids: Vec<&str> = receipts.iter().map(|r| r.tids[0].as_str()).collect();
    assert_eq!(tids, ["T0009", "T0010", "T0011"]);

    let mut bad = records;
    bad[1].receiver_name.clear();
    bad[0].tid = "NEW-1".into();
    let error = client
        .submit(SubmitRequest {
            records: bad,
            ..SubmitRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        error.message(),
        "record 2 (tid T0010): receiver_name: empty"
    );
    let rejection = wdtpipe_common::rejection::from_status(&error).unwrap();
    assert_eq!(
        (rejection.position, rejection.field.as_str()),
        (2, "receiver_name")
    );

    eventually("gRPC-submitted trades delivered", DEADLINE, || async {
        (sandbox.sandbox.trades().len() == 3).then_some(())
    })
    .await;
    assert!(
        pipeline.status("NEW-1").await.is_empty(),
        "nothing of the rejected request was queued"
    );
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Bad requests get clear 4xx JSON answers and the service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    let (status, answer) = pipeline.post(b"{not json").await;
    assert_eq!(status, 400);
    assert_eq!(answer["code"], 400);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON")
    );

    let (status, answer) = pipeline.post(b"[]").await;
    assert_eq!((status, answer["code"].as_u64()), (422, Some(422)));

    let (status, answer) = pipeline.post(br#"[{"tid":"X"}, 5]"#).await;
    assert_eq!(status, 422);
    assert_eq!(answer["message"], "record 2: record: not a JSON object");

    let response = pipeline
        .send("/v1/callback", "text/plain", &fixture("01-").body, &[])
        .await;
    assert_eq!(response.status().as_u16(), 415);

    let (status, _) = pipeline.post(&fixture("01-").body).await;
    assert_eq!(status, 200, "still serving after bad requests");
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// When the next stage is unreachable ingest answers 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_transform_is_a_503() {
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/callback", http.local_addr().unwrap());
    // A transform address that refuses connections: a port bound (so nothing else takes
    // it meanwhile) but not listening.
    let refusing = tokio::net::TcpSocket::new_v4().unwrap();
    refusing.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let transform_url = format!("http://{}", refusing.local_addr().unwrap());
    let config = wdtpipe_ingest::config::IngestConfig {
        transform_url,
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wdtpipe_ingest::serve(config, http, grpc, async move {
        let _ = stopped.await;
    }));
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(fixture("01-").body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], 503);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    drop(refusing);
}

/// Tids WDT rejects land in the dead-letter store with WDT's message while the rest of
/// their batch is delivered; once the cause is fixed, replay delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_tids_are_dead_lettered_then_replayed() {
    use wdtpipe_proto::v1::{DeadLetterFilter, ListDeadLettersRequest, ReplayRequest};
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    sandbox.sandbox.set_faults(wdtpipe_sandbox::Faults {
        reject_tid_pattern: Some("T0010".into()),
        ..Default::default()
    });
    let (status, _) = pipeline.post(&fixture("08-").body).await;
    assert_eq!(status, 200);
    eventually("T0009 and T0011 delivered", DEADLINE, || async {
        (sandbox.sandbox.trade("T0009").is_some() && sandbox.sandbox.trade("T0011").is_some())
            .then_some(())
    })
    .await;
    let dead = pipeline
        .status_in("T0010", DeliveryState::Dead, DEADLINE)
        .await;
    assert!(
        dead.last_error.contains("rejected by sandbox rule"),
        "{}",
        dead.last_error
    );
    let mut client = pipeline.deliver_client().await;
    let letters = client
        .list_dead_letters(ListDeadLettersRequest {
            filter: Some(DeadLetterFilter {
                tid: "T0010".into(),
                ..Default::default()
            }),
            limit: 0,
            ..ListDeadLettersRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(letters.total, 1);
    assert_eq!(letters.letters[0].trade.as_ref().unwrap().tid, "T0010");
    assert!(sandbox.sandbox.trade("T0010").is_none());

    let refused = client
        .replay(ReplayRequest { filter: None })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::InvalidArgument,
        "replay needs a scope"
    );

    sandbox
        .sandbox
        .set_faults(wdtpipe_sandbox::Faults::default());
    let replayed = client
        .replay(ReplayRequest {
            filter: Some(DeadLetterFilter {
                tid: "T0010".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.replayed, 1);
    let delivered = eventually("T0010 delivered after replay", DEADLINE, || async {
        sandbox.sandbox.trade("T0010")
    })
    .await;
    assert_eq!(
        json!({"shop_no": delivered.shop_no, "trade": delivered.trade}),
        fixture("08-").trades()[1]
    );
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Scheme files in `SCHEMES_DIR`: `POST /v1/callback/{id}` maps with that scheme and
/// `/v1/callback` with the built-in `default`; an unknown id answers 404; a record the
/// scheme skips is acknowledged with `"skipped": true` and nothing is queued; every trade
/// records `scheme id@version`, which its status shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemes_map_their_own_callbacks() {
    let schemes = tempfile::tempdir().unwrap();
    let mall = r#"id = "mall"
skip = "record.status == '5'"

[trade]
shop_no = { from = "warehouse_no", table = "shops" }
seller_memo = { expr = "'via mall: ' + record.stockout_no" }

[tables.shops]
WH01 = "SHOP-MALL"
"#;
    std::fs::write(schemes.path().join("mall.toml"), mall).unwrap();
    std::fs::write(schemes.path().join(".hidden.toml"), "not = toml = at all").unwrap();
    std::fs::write(schemes.path().join("mall.toml~"), "backup").unwrap();
    let version = wdtpipe_transform::scheme::dir::version_of(mall.as_bytes());
    let sandbox = RunningSandbox::start(sandbox_config()).await;
    let pipeline = Pipeline::start(PipelineOptions {
        wdt: wdt_for(sandbox.wdt_url()),
        schemes_dir: Some(schemes.path().to_owned()),
        ..PipelineOptions::default()
    })
    .await;

    let (status, answer) = pipeline
        .post_to("/v1/callback/mall", &fixture("01-").body, &[])
        .await;
    assert_eq!(status, 200, "{answer}");
    let receipt = &answer["receipts"][0];
    assert_eq!(receipt["scheme"], format!("mall@{version}"));
    assert_eq!(receipt["skipped"], false);
    assert_eq!(receipt["tid"], "T0001");

    let (status, answer) = pipeline.post(&fixture("04-").body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["receipts"][0]["scheme"], "default@builtin");

    let (status, answer) = pipeline
        .post_to("/v1/callback/nope", &fixture("01-").body, &[])
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        answer,
        json!({"code": 404, "message": "no scheme \"nope\""})
    );

    let mut cancelled: Value = serde_json::from_slice(&fixture("01-").body).unwrap();
    cancelled["tid"] = "T-CANCELLED".into();
    cancelled["status"] = "5".into();
    let cancelled = serde_json::to_vec(&cancelled).unwrap();
    let (status, answer) = pipeline.post_to("/v1/callback/mall", &cancelled, &[]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["receipts"][0]["skipped"], true);
    assert_eq!(answer["receipts"][0]["tids"], json!([]));

    let delivered = eventually("both trades at the sandbox", DEADLINE, || async {
        let mall = sandbox.sandbox.trade("T0001")?;
        let default = sandbox.sandbox.trade("T0004")?;
        Some((mall, default))
    })
    .await;
    assert_eq!(delivered.0.shop_no, "SHOP-MALL");
    assert_eq!(delivered.0.trade["seller_memo"], "via mall: CK1922121676");
    assert_eq!(delivered.1.shop_no, "SHOP01");
    let statuses = pipeline.status("T0001").await;
    assert_eq!(statuses[0].scheme, format!("mall@{version}"));
    let listed = pipeline.list_schemes().await.schemes;
    let listed: Vec<(String, String, u32)> = listed
        .into_iter()
        .map(|s| (s.id, s.version, s.trade_rules))
        .collect();
    assert_eq!(
        listed,
        [
            ("default".to_owned(), "builtin".to_owned(), 0),
            ("mall".to_owned(), version.clone(), 2)
        ]
    );
    // The same mapping as a dry run with provenance, for a serving scheme and for a text.
    let records = wdtpipe_ingest::parse::full::parse_body(&fixture("01-").body).unwrap();
    let mut transform = wdtpipe_proto::v1::transform_client::TransformClient::connect(format!(
        "http://{}",
        pipeline.transform_grpc
    ))
    .await
    .unwrap();
    let preview = transform
        .preview(wdtpipe_proto::v1::PreviewRequest {
            records: records.clone(),
            scheme: "mall".into(),
            scheme_text: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.scheme, format!("mall@{version}"));
    assert_eq!(preview.records[0].trades[0].shop_no, "SHOP-MALL");
    let fields: Vec<(&str, &str)> = preview.records[0]
        .fields
        .iter()
        .map(|f| (f.field.as_str(), f.rule.as_str()))
        .collect();
    assert!(
        fields.contains(&(
            "shop_no",
            "{ from = \"warehouse_no\", table = \"shops\" }: looked up \"WH01\" in table shops: \"SHOP-MALL\""
        )),
        "{fields:?}"
    );
    let draft = transform
        .preview(wdtpipe_proto::v1::PreviewRequest {
            records,
            scheme: String::new(),
            scheme_text: "id = \"draft\"\n[trade]\nshop_no = { value = \"X\" }\n".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(draft.records[0].trades[0].shop_no, "X");
    assert_eq!(
        sandbox.sandbox.trade("T0001").unwrap().versions,
        1,
        "nothing sent"
    );

    let skipped = pipeline.status("T-CANCELLED").await;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].state, DeliveryState::Skipped as i32);
    assert_eq!(skipped[0].scheme, format!("mall@{version}"));
    assert!(skipped[0].last_error.contains("skipped by scheme mall@"));
    assert!(skipped[0].trade.is_none(), "nothing queued");
    let (status, answer) = pipeline.post_to("/v1/callback/mall", &cancelled, &[]).await;
    assert_eq!(
        (status, &answer["receipts"][0]["duplicate"]),
        (200, &json!(true)),
        "a skipped record sent again is a duplicate"
    );
    assert!(sandbox.sandbox.trade("T-CANCELLED").is_none());
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// A broken scheme file stops transform at start, naming file, line and column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_scheme_directory_is_refused_at_start() {
    let schemes = tempfile::tempdir().unwrap();
    std::fs::write(
        schemes.path().join("bad.toml"),
        "id = \"bad\"\n\n[trade]\nshop_no = { from = \"warehouse_no\", table = \"nope\" }\n",
    )
    .unwrap();
    let listeners = wdtpipe_transform::Listeners {
        grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        metrics: None,
    };
    let config = wdtpipe_transform::config::TransformConfig {
        schemes_dir: Some(schemes.path().to_owned()),
        ..Default::default()
    };
    let error = wdtpipe_transform::serve(config, listeners, std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("bad.toml:4:44: table \"nope\" does not exist"),
        "{error}"
    );
}

fn memo_scheme(memo: &str) -> String {
    format!("id = \"mall\"\n\n[trade]\nseller_memo = {{ value = \"{memo}\" }}\n")
}

/// Writes a file whole (a rename), as an editor or a ConfigMap update does.
fn replace_file(path: &std::path::Path, text: &str) {
    let temp = path.with_extension("toml.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// A scheme file changed while callbacks flow: no callback fails, each request is mapped
/// whole by the old or the new version (never a mix), and each trade carries what its
/// version says. A broken file is then refused: the last good version keeps serving, and
/// the refusal is counted and reported by `ListSchemes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemes_reload_while_callbacks_flow() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let schemes = tempfile::tempdir().unwrap();
    let file = schemes.path().join("mall.toml");
    let (v1, v2) = (memo_scheme("v1"), memo_scheme("v2"));
    let version = |text: &str| {
        format!(
            "mall@{}",
            wdtpipe_transform::scheme::dir::version_of(text.as_bytes())
        )
    };
    let (label1, label2) = (version(&v1), version(&v2));
    std::fs::write(&file, &v1).unwrap();
    let sandbox = RunningSandbox::start(sandbox_config()).await;
    let pipeline = Arc::new(
        Pipeline::start(PipelineOptions {
            wdt: wdt_for(sandbox.wdt_url()),
            schemes_dir: Some(schemes.path().to_owned()),
            ..PipelineOptions::default()
        })
        .await,
    );

    // (sent after the refusal was seen, tid, label) of every acknowledged record.
    let acked: Arc<Mutex<Vec<(bool, String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let refusal_seen = Arc::new(AtomicBool::new(false));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..3 {
        let (pipeline, acked, stop) = (pipeline.clone(), acked.clone(), stop.clone());
        let refusal_seen = refusal_seen.clone();
        senders.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let after_refusal = refusal_seen.load(Ordering::SeqCst);
                let tids = [format!("R{sender}-{n}-A"), format!("R{sender}-{n}-B")];
                let body = json!([record_with_tid(&tids[0]), record_with_tid(&tids[1])]);
                let (status, answer) = pipeline
                    .post_to(
                        "/v1/callback/mall",
                        &serde_json::to_vec(&body).unwrap(),
                        &[],
                    )
                    .await;
                assert_eq!(status, 200, "{answer}");
                let labels: Vec<String> = answer["receipts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["scheme"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(labels[0], labels[1], "one version for a whole request");
                let mut acked = acked.lock().unwrap();
                for (tid, label) in tids.into_iter().zip(labels) {
                    acked.push((after_refusal, tid, label));
                }
            }
        });
    }
    let seen = |label: String, acked: Arc<Mutex<Vec<(bool, String, String)>>>| async move {
        acked
            .lock()
            .unwrap()
            .iter()
            .any(|(_, _, l)| *l == label)
            .then_some(())
    };
    eventually("v1 serving", DEADLINE, || {
        seen(label1.clone(), acked.clone())
    })
    .await;
    replace_file(&file, &v2);
    eventually("v2 serving", DEADLINE, || {
        seen(label2.clone(), acked.clone())
    })
    .await;

    replace_file(
        &file,
        "id = \"mall\"\n[trade]\nshop_no = { from = \"x\", table = \"missing\" }\n",
    );
    let transform = format!("http://{}", pipeline.transform_grpc);
    let refused = eventually("the broken file refused", DEADLINE, || async {
        let answer =
            wdtpipe_proto::v1::transform_client::TransformClient::connect(transform.clone())
                .await
                .ok()?
                .list_schemes(wdtpipe_proto::v1::ListSchemesRequest {})
                .await
                .ok()?
                .into_inner();
        (!answer.last_reload_error.is_empty()).then_some(answer)
    })
    .await;
    assert!(
        refused.last_reload_error.contains("mall.toml:3:")
            && refused
                .last_reload_error
                .contains("table \"missing\" does not exist"),
        "{}",
        refused.last_reload_error
    );
    let mall = refused.schemes.iter().find(|s| s.id == "mall").unwrap();
    assert_eq!(format!("mall@{}", mall.version), label2, "v2 keeps serving");
    refusal_seen.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(result) = senders.join_next().await {
        result.expect("no sender failed");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.iter().any(|(after, _, _)| *after),
        "callbacks kept flowing after the refusal"
    );
    for (after_refusal, tid, label) in &acked {
        assert!(*label == label1 || *label == label2, "{tid}: {label}");
        if *after_refusal {
            assert_eq!(*label, label2, "{tid}: the last good version keeps serving");
        }
    }
    let metrics = reqwest::get(format!("http://{}/metrics", pipeline.transform_metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wdtpipe_transform_scheme_reloads_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("wdtpipe_transform_scheme_reloads_total{result=\"ok\"} 1"));

    eventually(
        "every acknowledged trade at WDT",
        Duration::from_secs(60),
        || async {
            acked
                .iter()
                .all(|(_, tid, _)| sandbox.sandbox.trade(tid).is_some())
                .then_some(())
        },
    )
    .await;
    for (_, tid, label) in &acked {
        let memo = sandbox.sandbox.trade(tid).unwrap().trade["seller_memo"].clone();
        let want = if *label == label1 { "v1" } else { "v2" };
        assert_eq!(memo, want, "{tid} mapped by {label}");
    }
    Arc::into_inner(pipeline).unwrap().shutdown().await;
    sandbox.stop().await;
}

/// Two WDT accounts side by side: a scheme names the connector `brand-b`; its trades reach
/// the sandbox's `brandb` account signed with that account's secret, the built-in scheme's
/// trades the default account. With a wrong secret for `brand-b`, its shop pauses there
/// (Stats names the account) while the default account keeps delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connectors_deliver_apart() {
    use wdtpipe_sandbox::{SandboxAccount, SandboxConfig};
    let brand_b = SandboxAccount {
        sid: "brandb".into(),
        appkey: "brandb-key".into(),
        appsecret: "brandb-secret".into(),
    };
    let sandbox = RunningSandbox::start(SandboxConfig {
        accounts: vec![brand_b.clone()],
        ..sandbox_config()
    })
    .await;
    let files = tempfile::tempdir().unwrap();
    let (connectors_file, schemes) =
        wdtpipe_testkit::accounts::brand_b(files.path(), &sandbox.wdt_url());
    let start = |secret: &str| {
        let account = WdtConfig {
            sid: brand_b.sid.clone(),
            appkey: brand_b.appkey.clone(),
            appsecret: secret.to_owned().into(),
            ..wdt_for(sandbox.wdt_url())
        };
        Pipeline::start(PipelineOptions {
            wdt: wdt_for(sandbox.wdt_url()),
            schemes_dir: Some(schemes.clone()),
            connectors_file: Some(connectors_file.clone()),
            connectors: [("brand-b".to_owned(), account)].into(),
            ..PipelineOptions::default()
        })
    };

    let pipeline = start("brandb-secret").await;
    let (status, answer) = pipeline
        .post_to("/v1/callback/b", &fixture("01-").body, &[])
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = pipeline.post(&fixture("04-").body).await;
    assert_eq!(status, 200, "{answer}");
    let (b, default) = eventually("both accounts delivered", DEADLINE, || async {
        Some((
            sandbox.sandbox.trade("T0001")?,
            sandbox.sandbox.trade("T0004")?,
        ))
    })
    .await;
    assert_eq!((b.sid.as_str(), b.shop_no.as_str()), ("brandb", "SHOP01"));
    assert_eq!(default.sid, "sandbox");
    assert!(
        sandbox
            .sandbox
            .calls()
            .iter()
            .filter(|c| c.code == 0)
            .all(|c| c.sign_ok),
        "every accepted call was signed with its account's secret"
    );
    let status = pipeline.status("T0001").await;
    assert_eq!(
        (status[0].shop_no.as_str(), status[0].connector.as_str()),
        ("SHOP01", "brand-b")
    );
    pipeline.shutdown().await;

    let pipeline = start("not-the-secret").await;
    let mut record: Value = serde_json::from_slice(&fixture("01-").body).unwrap();
    record["tid"] = "T-B-PAUSED".into();
    let (status, answer) = pipeline
        .post_to("/v1/callback/b", &serde_json::to_vec(&record).unwrap(), &[])
        .await;
    assert_eq!(status, 200, "{answer}");
    let mut client = pipeline.deliver_client().await;
    let paused = eventually("brand-b's shop paused", DEADLINE, || {
        let mut client = client.clone();
        async move {
            let stats = client
                .stats(wdtpipe_proto::v1::StatsRequest {})
                .await
                .ok()?
                .into_inner();
            stats
                .shops
                .into_iter()
                .find(|s| s.connector == "brand-b" && !s.paused_reason.is_empty())
        }
    })
    .await;
    assert_eq!(paused.shop_no, "SHOP01");
    let mut other: Value = serde_json::from_slice(&fixture("01-").body).unwrap();
    other["tid"] = "T-DEFAULT-FLOWS".into();
    let (status, answer) = pipeline.post(&serde_json::to_vec(&other).unwrap()).await;
    assert_eq!(status, 200, "{answer}");
    let delivered = eventually("the default account keeps delivering", DEADLINE, || async {
        sandbox.sandbox.trade("T-DEFAULT-FLOWS")
    })
    .await;
    assert_eq!(
        (delivered.sid.as_str(), delivered.shop_no.as_str()),
        ("sandbox", "SHOP01")
    );
    assert!(sandbox.sandbox.trade("T-B-PAUSED").is_none());
    let stats = client
        .stats(wdtpipe_proto::v1::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let default_shop = stats
        .shops
        .iter()
        .find(|s| s.connector.is_empty() && s.shop_no == "SHOP01")
        .unwrap();
    assert!(default_shop.paused_reason.is_empty(), "{default_shop:?}");
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Re-map after a scheme fix (issue 15): a scheme maps a warehouse to a shop WDT does not
/// have; the trades dead-letter, each keeping its record and scheme. Re-map is refused
/// without the admin token. The file is fixed (live reload) and `Transform.Remap` delivers
/// the records to the right shop: their dead letters and dead entries are gone; a record
/// the fix leaves invalid stays a dead letter with the new reason; a tid whose newer version
/// waits keeps it. `scheme` re-maps a letter with another scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_remapped_after_a_scheme_fix() {
    use wdtpipe_proto::v1::transform_client::TransformClient;
    use wdtpipe_proto::v1::{DeadLetterFilter, RemapRequest};
    const TOKEN: &str = "remap-admin-token";
    let schemes = tempfile::tempdir().unwrap();
    let broken = "id = \"mall\"\n\n[trade]\nshop_no = { from = \"warehouse_no\", table = \"shops\" }\n\n[tables.shops]\nWH01 = \"SHOP-GONE\"\nWH02 = \"SHOP-GONE\"\n";
    let fixed = "id = \"mall\"\n\n[trade]\nshop_no = { from = \"warehouse_no\", table = \"shops\" }\n\n[tables.shops]\nWH01 = \"SHOP-MALL\"\n";
    std::fs::write(schemes.path().join("mall.toml"), broken).unwrap();
    let sandbox = RunningSandbox::start(sandbox_config()).await;
    let gone_shop = wdtpipe_sandbox::Faults {
        unknown_shops: vec!["SHOP-GONE".into()],
        ..Default::default()
    };
    sandbox.sandbox.set_faults(gone_shop.clone());
    let pipeline = Pipeline::start(PipelineOptions {
        wdt: wdt_for(sandbox.wdt_url()),
        schemes_dir: Some(schemes.path().to_owned()),
        admin_token: wdtpipe_common::config::Secret::new(TOKEN),
        shards: 2,
        ..PipelineOptions::default()
    })
    .await;
    let mut still_invalid = record_with_tid("R-WH02");
    still_invalid["warehouse_no"] = "WH02".into();
    let records = [
        record_with_tid("R-1"),
        record_with_tid("R-2"),
        still_invalid,
        record_with_tid("R-NEWER"),
    ];
    for record in &records {
        let (status, answer) = pipeline
            .post_to(
                "/v1/callback/mall",
                &serde_json::to_vec(record).unwrap(),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let tids = ["R-1", "R-2", "R-WH02", "R-NEWER"];
    for tid in tids {
        eventually(&format!("{tid} dead at SHOP-GONE"), DEADLINE, || async {
            pipeline.status(tid).await.into_iter().find(|s| {
                s.state == DeliveryState::Dead as i32 && s.last_error.contains("店铺不存在")
            })
        })
        .await;
    }
    let all = DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    };
    let dead_letters = || async {
        let mut letters = pipeline.dead_letters(all.clone()).await;
        letters.sort_by(|a, b| a.tid.cmp(&b.tid));
        letters
    };
    let broken_label = format!(
        "mall@{}",
        wdtpipe_transform::scheme::dir::version_of(broken.as_bytes())
    );
    let letters = dead_letters().await;
    assert_eq!(letters.len(), 4);
    for letter in &letters {
        assert_eq!(letter.scheme, broken_label, "{}", letter.tid);
        let record = letter.record.as_ref().expect("the letter keeps its record");
        assert_eq!(record.tid, letter.tid);
    }

    let mut transform = TransformClient::connect(format!("http://{}", pipeline.transform_grpc))
        .await
        .unwrap();
    let remap = |token: Option<&str>, filter: DeadLetterFilter, scheme: &str| {
        let mut request = tonic::Request::new(RemapRequest {
            filter: Some(filter),
            scheme: scheme.to_owned(),
        });
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    };
    for token in [None, Some("wrong")] {
        let refused = transform
            .remap(remap(token, all.clone(), ""))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    }
    let refused = transform
        .remap(remap(Some(TOKEN), DeadLetterFilter::default(), ""))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::InvalidArgument,
        "a scope is needed"
    );
    assert_eq!(
        dead_letters().await.len(),
        4,
        "refused calls change nothing"
    );

    // The fix, seen by the running transform.
    std::fs::write(schemes.path().join("mall.toml"), fixed).unwrap();
    let fixed_version = wdtpipe_transform::scheme::dir::version_of(fixed.as_bytes());
    eventually("the fixed scheme serving", DEADLINE, || async {
        let listed = pipeline.list_schemes().await.schemes;
        listed
            .iter()
            .any(|s| s.id == "mall" && s.version == fixed_version)
            .then_some(())
    })
    .await;
    // A newer version of R-NEWER, mapped by the fixed scheme, waits (WDT answers 500).
    sandbox.sandbox.set_faults(wdtpipe_sandbox::Faults {
        error_rate: 1.0,
        ..gone_shop.clone()
    });
    let mut newer = record_with_tid("R-NEWER");
    newer["buyer_message"] = "the newer version".into();
    let (status, answer) = pipeline
        .post_to(
            "/v1/callback/mall",
            &serde_json::to_vec(&newer).unwrap(),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    // Tried and failed, it waits (for a retry, or for the account's probe: WDT answers no
    // call while it fails them all).
    eventually("R-NEWER's newer version waiting", DEADLINE, || async {
        pipeline.status("R-NEWER").await.into_iter().find(|s| {
            s.shop_no == "SHOP-MALL"
                && s.attempts >= 1
                && (s.state == DeliveryState::Retrying as i32
                    || s.state == DeliveryState::Queued as i32)
        })
    })
    .await;

    let done = transform
        .remap(remap(Some(TOKEN), all.clone(), ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            done.repaired,
            done.requeued,
            done.superseded,
            done.still_invalid
        ),
        (3, 2, 1, 1),
        "{done:?}"
    );
    let mut requeued = done.tids.clone();
    requeued.sort();
    assert_eq!(requeued, ["R-1", "R-2"]);
    assert_eq!(done.problems.len(), 1, "{done:?}");
    assert_eq!(done.problems[0].tid, "R-WH02");
    assert!(
        done.problems[0].reason.contains("still invalid")
            && done.problems[0].reason.contains("shop_no"),
        "{}",
        done.problems[0].reason
    );

    sandbox
        .sandbox
        .set_faults(wdtpipe_sandbox::Faults::default());
    for tid in ["R-1", "R-2", "R-NEWER"] {
        let accepted = eventually(&format!("{tid} delivered"), DEADLINE, || async {
            sandbox.sandbox.trade(tid)
        })
        .await;
        assert_eq!(accepted.shop_no, "SHOP-MALL", "{tid}");
        let statuses = pipeline.status(tid).await;
        assert_eq!(
            statuses.len(),
            1,
            "{tid}: the dead entry at SHOP-GONE is gone: {statuses:?}"
        );
    }
    let newer_at_wdt = eventually("R-NEWER's newer version at WDT", DEADLINE, || async {
        sandbox
            .sandbox
            .trade("R-NEWER")
            .filter(|t| t.trade["buyer_message"] == "the newer version")
    })
    .await;
    assert_eq!(newer_at_wdt.shop_no, "SHOP-MALL");
    let status = &pipeline.status("R-1").await[0];
    assert_eq!(status.state, DeliveryState::Delivered as i32);
    assert_eq!(status.scheme, format!("mall@{fixed_version}"));
    let letters = dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].tid, "R-WH02");
    assert!(
        letters[0].reason.contains("still invalid"),
        "{}",
        letters[0].reason
    );

    // Another scheme for the one the fix does not cover: the built-in mapping's shop.
    let done = transform
        .remap(remap(
            Some(TOKEN),
            DeadLetterFilter {
                tid: "R-WH02".into(),
                ..DeadLetterFilter::default()
            },
            "default",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((done.repaired, done.requeued), (1, 1), "{done:?}");
    let accepted = eventually("R-WH02 delivered", DEADLINE, || async {
        sandbox.sandbox.trade("R-WH02")
    })
    .await;
    assert_eq!(accepted.shop_no, "SHOP01");
    assert!(dead_letters().await.is_empty());
    pipeline.shutdown().await;
}

/// A pipeline (with `shards` deliver shards) serving the kuaidi100 scheme `k100`, and the
/// sandbox it delivers to; the scheme directory lives as long as the first value.
async fn with_kuaidi100_scheme(shards: usize) -> (tempfile::TempDir, RunningSandbox, Pipeline) {
    let schemes = tempfile::tempdir().unwrap();
    std::fs::write(
        schemes.path().join("k100.toml"),
        "id = \"k100\"\nsource = \"kuaidi100\"\ndescription = \"快递100状态回传原始订单\"\n",
    )
    .unwrap();
    let sandbox = RunningSandbox::start(sandbox_config()).await;
    let pipeline = Pipeline::start(PipelineOptions {
        wdt: wdt_for(sandbox.wdt_url()),
        schemes_dir: Some(schemes.path().to_owned()),
        shards,
        ..PipelineOptions::default()
    })
    .await;
    (schemes, sandbox, pipeline)
}

/// A kuaidi100 push (form body) for a scheme, answered in kuaidi100's format.
async fn push_kuaidi100(pipeline: &Pipeline, path: &str, param: &str, sign: &str) -> (u16, Value) {
    let body = wdtpipe_common::form::encode([("param", param), ("sign", sign)]);
    let answer = reqwest::Client::new()
        .post(format!("{}{path}", pipeline.http))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn kuaidi100_param(number: &str, state: &str, context: &str) -> String {
    json!({
        "status": "polling",
        "message": "",
        "lastResult": {
            "message": "ok", "nu": number, "com": "shunfeng", "state": state,
            "ischeck": if state == "0" { "0" } else { "1" }, "condition": "F00",
            "data": [{"time": "2026-12-03 10:00:00", "ftime": "2026-12-03 10:00:00", "context": context}]
        }
    })
    .to_string()
}

/// Issue 17, end to end through ingest, transform, deliver and the sandbox: an order
/// delivered at 30 is re-pushed at 70 when kuaidi100 says its parcel was signed for, with
/// its refunded line kept at 80 and every other field as it was; an in-transit state
/// pushes nothing but shows in the status; the same push twice is applied once; `?tid=`
/// names the order; an unknown tracking number is a dead letter, replayed once the order
/// has come; a later stockout callback for a completed order keeps 70 (WDT does not move
/// an order back); JSON to a kuaidi100 scheme and a push to a callback scheme are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuaidi100_sign_off_completes_the_order() {
    use wdtpipe_proto::v1::{DeadLetterFilter, ReplayRequest};
    let (_schemes, sandbox, pipeline) = with_kuaidi100_scheme(1).await;
    let order = |tid: &str, number: &str| {
        let mut record = record_with_tid(tid);
        record["logistics_no"] = number.into();
        record["details_list"][1]["refund_status"] = "5".into();
        record
    };
    let post = |record: Value| {
        let pipeline = &pipeline;
        async move {
            let (status, answer) = pipeline.post(&serde_json::to_vec(&record).unwrap()).await;
            assert_eq!(status, 200, "{answer}");
        }
    };
    post(order("K-1", "SF100")).await;
    let at_30 = eventually("K-1 delivered at 30", DEADLINE, || async {
        sandbox.sandbox.trade("K-1")
    })
    .await;
    assert_eq!(at_30.trade["trade_status"], 30);
    assert_eq!(at_30.trade["order_list"][1]["status"], 80);

    // In transit: recorded, nothing pushed.
    let ok = json!({"result": true, "returnCode": "200", "message": "成功"});
    let (status, answer) = push_kuaidi100(
        &pipeline,
        "/v1/callback/k100",
        &kuaidi100_param("SF100", "0", "快件已发车"),
        "",
    )
    .await;
    assert_eq!((status, &answer), (200, &ok));
    let note = pipeline.status("K-1").await[0].tracking.clone().unwrap();
    assert_eq!((note.number.as_str(), note.state.as_str()), ("SF100", "0"));
    assert_eq!(note.event_context, "快件已发车");
    assert!(
        note.outcome
            .contains("not one of the scheme's sign-off states"),
        "{note:?}"
    );

    // Signed for: the order is re-pushed at 70, the refunded line kept at 80.
    let signed = kuaidi100_param("SF100", "3", "已签收，签收人：本人");
    let (status, answer) = push_kuaidi100(&pipeline, "/v1/callback/k100", &signed, "").await;
    assert_eq!((status, &answer), (200, &ok));
    let at_70 = eventually("K-1 at 70", DEADLINE, || async {
        sandbox
            .sandbox
            .trade("K-1")
            .filter(|t| t.trade["trade_status"] == 70)
    })
    .await;
    assert_eq!(at_70.trade["order_list"][0]["status"], 70);
    assert_eq!(
        at_70.trade["order_list"][1]["status"], 80,
        "refunded line kept"
    );
    let mut same = at_70.trade.clone();
    same["trade_status"] = 30.into();
    same["order_list"][0]["status"] = 30.into();
    assert_eq!(same, at_30.trade, "every other field as it was");
    assert_eq!(at_70.versions, 2);
    // The same push again: applied once.
    let (status, _) = push_kuaidi100(&pipeline, "/v1/callback/k100", &signed, "").await;
    assert_eq!(status, 200);

    // `?tid=` names the order, whatever the tracking number.
    post(order("K-2", "")).await;
    eventually("K-2 delivered", DEADLINE, || async {
        sandbox.sandbox.trade("K-2")
    })
    .await;
    let (status, _) = push_kuaidi100(
        &pipeline,
        "/v1/callback/k100?tid=K-2",
        &kuaidi100_param("YT-OTHER", "301", "本人签收"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    eventually("K-2 at 70", DEADLINE, || async {
        sandbox
            .sandbox
            .trade("K-2")
            .filter(|t| t.trade["trade_status"] == 70)
    })
    .await;

    // An unknown tracking number: a dead letter, replayed once the order has come.
    let (status, _) = push_kuaidi100(
        &pipeline,
        "/v1/callback/k100",
        &kuaidi100_param("SF-LATE", "304", "快递柜签收"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let letters = pipeline
        .dead_letters(DeadLetterFilter {
            all: true,
            ..DeadLetterFilter::default()
        })
        .await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.contains("SF-LATE"),
        "{}",
        letters[0].reason
    );
    post(order("K-3", "SF-LATE")).await;
    eventually("K-3 delivered at 30", DEADLINE, || async {
        sandbox.sandbox.trade("K-3")
    })
    .await;
    let replayed = pipeline
        .deliver_client()
        .await
        .replay(ReplayRequest {
            filter: Some(DeadLetterFilter {
                all: true,
                ..DeadLetterFilter::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.replayed, 1);
    eventually("K-3 at 70", DEADLINE, || async {
        sandbox
            .sandbox
            .trade("K-3")
            .filter(|t| t.trade["trade_status"] == 70)
    })
    .await;

    // A later stockout callback for K-1 keeps 70 (and its line at 80).
    let mut later = order("K-1", "SF100");
    later["buyer_message"] = "later callback".into();
    post(later).await;
    let kept = eventually("K-1's later version at WDT", DEADLINE, || async {
        sandbox
            .sandbox
            .trade("K-1")
            .filter(|t| t.trade["buyer_message"] == "later callback")
    })
    .await;
    assert_eq!(kept.trade["trade_status"], 70);
    assert_eq!(kept.trade["order_list"][1]["status"], 80);

    // The wrong kind of input for each scheme.
    let (status, answer) = pipeline
        .post_to("/v1/callback/k100", &fixture("01-").body, &[])
        .await;
    assert_eq!(status, 415, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("kuaidi100"),
        "{answer}"
    );
    let (status, answer) = push_kuaidi100(&pipeline, "/v1/callback/default", &signed, "").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["result"], false);
    assert_eq!(answer["returnCode"], "400");
    pipeline.shutdown().await;
}

/// With two deliver shards, a kuaidi100 push for a tracking number no trade carried yet is
/// kept on the number's shard; the order then lands on the other shard, where `dlq replay`
/// on the letter's shard cannot see it, and `Transform.Remap` (`wdtpipe dlq remap`) looks
/// the number up on every shard and applies it there, removing the letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuaidi100_letters_are_applied_across_shards_by_remap() {
    use wdtpipe_proto::v1::transform_client::TransformClient;
    use wdtpipe_proto::v1::{DeadLetterFilter, RemapRequest, ReplayRequest};
    use wdtpipe_transform::shard::shard_of;
    let (_schemes, sandbox, pipeline) = with_kuaidi100_scheme(2).await;
    // A tid and a tracking number that land on different shards.
    let tid = "X-1";
    let number = (0..100)
        .map(|n| format!("SF-X{n}"))
        .find(|nu| shard_of(nu, 2) != shard_of(tid, 2))
        .unwrap();
    let (status, _) = push_kuaidi100(
        &pipeline,
        "/v1/callback/k100",
        &kuaidi100_param(&number, "3", "已签收"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let letter_shard = shard_of(&number, 2);
    let all = DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    };
    let letters = pipeline.dead_letters_on(letter_shard, all.clone()).await;
    assert_eq!(letters.len(), 1);

    let mut order = record_with_tid(tid);
    order["logistics_no"] = number.clone().into();
    let (status, answer) = pipeline.post(&serde_json::to_vec(&order).unwrap()).await;
    assert_eq!(status, 200, "{answer}");
    eventually("X-1 delivered at 30", DEADLINE, || async {
        sandbox.sandbox.trade(tid)
    })
    .await;
    let replayed = pipeline
        .shard_client(letter_shard)
        .replay(ReplayRequest {
            filter: Some(all.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.replayed, 0, "the order is on the other shard");

    let mut transform = TransformClient::connect(format!("http://{}", pipeline.transform_grpc))
        .await
        .unwrap();
    let done = transform
        .remap(RemapRequest {
            filter: Some(all.clone()),
            scheme: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.repaired, 1, "{done:?}");
    assert_eq!(done.tids, [tid]);
    eventually("X-1 at 70", DEADLINE, || async {
        sandbox
            .sandbox
            .trade(tid)
            .filter(|t| t.trade["trade_status"] == 70)
    })
    .await;
    for shard in 0..2 {
        let left = pipeline.dead_letters_on(shard, all.clone()).await;
        assert!(left.is_empty(), "shard {shard}: {left:?}");
    }
    pipeline.shutdown().await;
}
