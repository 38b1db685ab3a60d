//! The public edge under pressure: sender signatures, every limit with its status code,
//! backpressure from a full outbox, gRPC over TLS with an admin token.

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wdtpipe_common::config::Secret;
use wdtpipe_ingest::auth::sign;
use wdtpipe_ingest::config::{IngestConfig, Limits};
use wdtpipe_proto::v1::{DeadLetterFilter, ReplayRequest};
use wdtpipe_tests::{
    Pipeline, PipelineOptions, RunningSandbox, down_sandbox, eventually, fixture, test_tls,
    wdt_for, with_sandbox,
};

const DEADLINE: Duration = Duration::from_secs(20);
const SECRET_A: &str = "whsec_c2VjcmV0LWtleS1udW1iZXItb25lLTEyMzQ1Ng==";
const SECRET_B: &str = "whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24tNjc4OQ==";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Headers of a Standard Webhooks signed request.
fn signed(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        (
            "webhook-signature".into(),
            sign(secret, id, timestamp, body).unwrap(),
        ),
    ]
}

async fn post(pipeline: &Pipeline, body: &[u8], headers: &[(String, String)]) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pipeline.post_with(body, &headers).await
}

/// Signed, unsigned, tampered, stale and rotated-secret callbacks each get their exact answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_signatures() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions {
        webhook_secrets: vec![Secret::new(SECRET_A), Secret::new(SECRET_B)],
        ..PipelineOptions::default()
    })
    .await;
    let body = fixture("01-").body;

    let (status, answer) = pipeline.post(&body).await;
    assert_eq!(status, 401);
    assert_eq!(answer["code"], 401);
    assert_eq!(
        answer["message"],
        "unauthorized: missing webhook-id header (sender signatures are required)"
    );

    let good = signed(SECRET_A, "msg-1", now(), &body);
    let (status, answer) = post(&pipeline, &body, &good).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["receipts"][0]["duplicate"], false);

    let (status, answer) = post(&pipeline, &body, &good).await;
    assert_eq!(status, 200, "a redelivered webhook is acknowledged");
    assert_eq!(
        answer["receipts"][0]["duplicate"], true,
        "webhook-id doubles as the idempotency key"
    );

    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let (status, answer) = post(
        &pipeline,
        &tampered,
        &signed(SECRET_A, "msg-2", now(), &body),
    )
    .await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (401, Some("unauthorized: signature mismatch"))
    );

    let stale = now() - 600;
    let (status, answer) = post(&pipeline, &body, &signed(SECRET_A, "msg-3", stale, &body)).await;
    assert_eq!(
        (status, answer["message"].as_str()),
        (
            401,
            Some("unauthorized: timestamp outside tolerance (300 s)")
        )
    );

    let other = fixture("04-").body;
    let (status, _) = post(&pipeline, &other, &signed(SECRET_B, "msg-4", now(), &other)).await;
    assert_eq!(status, 200, "the second secret of a rotation is accepted");

    let unknown = "whsec_dW5rbm93bi1zZW5kZXIta2V5LTAwMDAwMA==";
    let (status, _) = post(&pipeline, &other, &signed(unknown, "msg-5", now(), &other)).await;
    assert_eq!(status, 401);

    eventually("signed callbacks delivered", DEADLINE, || async {
        (sandbox.sandbox.trade("T0001").is_some() && sandbox.sandbox.trade("T0004").is_some())
            .then_some(())
    })
    .await;
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// The MACs ingest has computed over callback bodies, read from its `/metrics`.
async fn signature_macs(pipeline: &Pipeline) -> u64 {
    let text = reqwest::get(format!("{}/metrics", pipeline.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("wdtpipe_ingest_signature_macs_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no signature MAC counter in:\n{text}"))
}

/// An unsigned sender cannot make ingest hash a big body many times: with 8 secrets, a
/// 4 MiB body with 200 bogus signatures is refused before any MAC is computed, and one with
/// 8 bogus signatures costs one MAC per secret, not one per secret and signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_signatures_cost_one_mac_per_secret() {
    let secrets: Vec<Secret> = (0..8u8)
        .map(|i| {
            use base64::Engine as _;
            let key = format!("secret-key-number-{i}-0123456789");
            Secret::new(format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(key)
            ))
        })
        .collect();
    let (sandbox, pipeline) = with_sandbox(PipelineOptions {
        webhook_secrets: secrets.clone(),
        ..PipelineOptions::default()
    })
    .await;
    let limit = Limits::default().body_bytes;
    let mut body = br#"{"tid":"T-BIG","pad":""#.to_vec();
    body.resize(limit - 2, b'x');
    body.extend_from_slice(br#""}"#);
    assert_eq!(body.len(), limit);
    let bogus = |n: usize| {
        (0..n)
            .map(|i| {
                use base64::Engine as _;
                let tag = [u8::try_from(i % 251).unwrap(); 32];
                format!(
                    "v1,{}",
                    base64::engine::general_purpose::STANDARD.encode(tag)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let headers = |signatures: String| {
        vec![
            ("webhook-id".to_owned(), "msg-bogus".to_owned()),
            ("webhook-timestamp".to_owned(), now().to_string()),
            ("webhook-signature".to_owned(), signatures),
        ]
    };

    let (status, answer) = post(&pipeline, &body, &headers(bogus(200))).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["message"],
        "unauthorized: webhook-signature holds more than 8 v1 signatures"
    );
    assert_eq!(signature_macs(&pipeline).await, 0, "refused unread");

    let (status, answer) = post(&pipeline, &body, &headers(bogus(8))).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["message"], "unauthorized: signature mismatch");
    assert_eq!(signature_macs(&pipeline).await, 8, "one MAC per secret");

    // A real signature by the last secret among 7 bogus ones is still accepted, for the
    // same 8 MACs.
    let small = fixture("01-").body;
    let last = secrets.last().unwrap().expose();
    let good = sign(last, "msg-good", now(), &small).unwrap();
    let mixed = format!("{} {good}", bogus(7));
    let mut h = headers(mixed);
    h[0].1 = "msg-good".to_owned();
    let (status, answer) = post(&pipeline, &small, &h).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(signature_macs(&pipeline).await, 16);
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Every limit answers with its status code and a JSON error, and the service still
/// accepts a valid callback afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_has_its_status() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions {
        limits: Limits {
            body_bytes: 64 * 1024,
            records: 3,
            json_depth: 8,
            string_bytes: 2_000,
            ..Limits::default()
        },
        ..PipelineOptions::default()
    })
    .await;
    let valid = fixture("01-").body;
    let record: Value = serde_json::from_slice(&valid).unwrap();
    let cases: Vec<(&str, Vec<u8>, Option<&str>, u16)> = vec![
        ("body too large", vec![b' '; 65 * 1024], None, 413),
        (
            "too many records",
            serde_json::to_vec(&vec![record.clone(); 4]).unwrap(),
            None,
            413,
        ),
        (
            "nested too deep",
            format!("{}1{}", "[".repeat(9), "]".repeat(9)).into_bytes(),
            None,
            400,
        ),
        (
            "string too long",
            format!(r#"{{"tid":"{}"}}"#, "x".repeat(2_001)).into_bytes(),
            None,
            400,
        ),
        (
            "not JSON",
            b"tid=T1".to_vec(),
            Some("application/x-www-form-urlencoded"),
            415,
        ),
        ("not JSON either", valid.clone(), Some("text/plain"), 415),
        (
            "invalid UTF-8",
            b"{\"tid\":\"\xff\xfe\"}".to_vec(),
            None,
            400,
        ),
        (
            "exponent number",
            br#"{"paid": 1e999999}"#.to_vec(),
            None,
            422,
        ),
        (
            "huge number",
            br#"{"paid": 123456789012345678901234567890123456789}"#.to_vec(),
            None,
            422,
        ),
    ];
    for (what, body, content_type, want) in cases {
        let content_type = content_type.unwrap_or("application/json");
        let response = pipeline
            .send("/v1/callback", content_type, &body, &[])
            .await;
        let status = response.status().as_u16();
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(status, want, "{what}: {answer}");
        assert_eq!(answer["code"], want, "{what}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    let three = serde_json::to_vec(&vec![record.clone(); 3]).unwrap();
    let (status, _) = pipeline
        .post_with(
            &three,
            &[("content-type", "application/json; charset=utf-8")],
        )
        .await;
    assert_eq!(status, 200, "at the record limit, with a charset");
    let (status, _) = pipeline.post(&fixture("04-").body).await;
    assert_eq!(status, 200, "still serving");
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Accepts TCP connections and never answers: a downstream stage that hangs.
async fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A request that outlives its timeout gets 503; beyond the concurrency limit a request gets
/// 503 with Retry-After at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_concurrency_get_503() {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/callback", http.local_addr().unwrap());
    let config = IngestConfig {
        transform_url: format!("http://{}", black_hole().await),
        limits: Limits {
            request_timeout_ms: 400,
            concurrent_requests: 2,
            ..Limits::default()
        },
        retry_after_secs: 2,
        ..IngestConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(wdtpipe_ingest::serve(config, http, grpc, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let send = || {
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(fixture("01-").body)
            .send()
    };
    const TIMED_OUT: &str = "pipeline unavailable, retry later: request timed out";
    const BUSY: &str = "too many concurrent requests, retry later";
    let read = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        (
            status,
            retry_after,
            body["message"].as_str().unwrap().to_owned(),
        )
    };
    // Three requests at once against a limit of two: the admitted ones hang on the black
    // hole until the timeout, and at least one finds both permits taken. Which one is
    // refused depends on timing, so every answer is checked for being one of the two
    // documented 503s.
    let mut answers = Vec::new();
    let give_up = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let round = [
            tokio::spawn(send()),
            tokio::spawn(send()),
            tokio::spawn(send()),
        ];
        let mut busy = None;
        for pending in round {
            let answer = read(pending.await.unwrap().unwrap()).await;
            if answer.2 == BUSY {
                busy.get_or_insert(answer.clone());
            }
            answers.push(answer);
        }
        if let Some(answer) = busy {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "the concurrency limit never refused"
        );
    };
    assert_eq!(
        refused.1.as_deref(),
        Some("2"),
        "Retry-After on the refusal"
    );
    for (status, retry_after, message) in &answers {
        assert_eq!(*status, 503);
        assert_eq!(retry_after.as_deref(), Some("2"));
        assert!(message == TIMED_OUT || message == BUSY, "{message}");
    }
    assert!(
        answers.iter().any(|(_, _, m)| m == TIMED_OUT),
        "admitted requests time out"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Above the outbox high-water mark deliver refuses new batches and senders get 503 with
/// Retry-After; once it drains callbacks are accepted again, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_pushes_back() {
    // WDT drops every connection unanswered until the test lets it answer.
    let sandbox = RunningSandbox::start(down_sandbox()).await;
    let pipeline = Pipeline::start(PipelineOptions {
        wdt: wdt_for(sandbox.wdt_url()),
        high_water_trades: 3,
        ..PipelineOptions::default()
    })
    .await;
    let (status, _) = pipeline.post(&fixture("08-").body).await;
    assert_eq!(status, 200, "three trades fit under the mark");
    let response = pipeline
        .send(
            "/v1/callback",
            "application/json",
            &fixture("01-").body,
            &[],
        )
        .await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("high-water mark"),
        "{answer}"
    );

    sandbox
        .sandbox
        .set_faults(wdtpipe_sandbox::Faults::default());
    let (status, _) = eventually(
        "callbacks accepted again after the drain",
        DEADLINE,
        || async {
            let (status, answer) = pipeline.post(&fixture("01-").body).await;
            (status == 200).then_some((status, answer))
        },
    )
    .await;
    assert_eq!(status, 200);
    eventually("everything acknowledged delivered", DEADLINE, || async {
        ["T0001", "T0009", "T0010", "T0011"]
            .iter()
            .all(|t| sandbox.sandbox.trade(t).is_some())
            .then_some(())
    })
    .await;
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Every gRPC hop runs over TLS, and the mutating admin RPCs need the bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_with_an_admin_token() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions {
        tls: test_tls(),
        admin_token: Secret::new("s3cret-admin-token"),
        ..PipelineOptions::default()
    })
    .await;
    let (status, answer) = pipeline.post(&fixture("01-").body).await;
    assert_eq!(
        status, 200,
        "ingest → transform → deliver over TLS: {answer}"
    );
    eventually("delivered", DEADLINE, || async {
        sandbox.sandbox.trade("T0001")
    })
    .await;
    assert_eq!(pipeline.status("T0001").await.len(), 1, "status over TLS");

    let plaintext = wdtpipe_proto::v1::deliver_client::DeliverClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", pipeline.deliver_grpc))
            .unwrap()
            .connect_lazy(),
    );
    let status = plaintext
        .clone()
        .get_status(wdtpipe_proto::v1::GetStatusRequest {
            tid: "T0001".into(),
            ..Default::default()
        })
        .await;
    assert!(
        status.is_err(),
        "a plaintext client cannot talk to a TLS server"
    );

    let all = || ReplayRequest {
        filter: Some(DeadLetterFilter {
            all: true,
            ..DeadLetterFilter::default()
        }),
    };
    let mut client = pipeline.deliver_client().await;
    let refused = client.replay(all()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(all());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        client.replay(wrong).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let mut right = tonic::Request::new(all());
    right.metadata_mut().insert(
        "authorization",
        "Bearer s3cret-admin-token".parse().unwrap(),
    );
    assert_eq!(client.replay(right).await.unwrap().into_inner().replayed, 0);
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// A body over 256 KiB (here 80 records, ~310 KB) is checked, parsed and hashed on a
/// blocking thread: it is accepted whole, every record with its receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_body_is_accepted_whole() {
    let (sandbox, pipeline) = with_sandbox(PipelineOptions::default()).await;
    let records: Vec<Value> = (0..80)
        .map(|n| wdtpipe_tests::record_with_tid(&format!("BIG-{n}")))
        .collect();
    let body = serde_json::to_vec(&records).unwrap();
    assert!(body.len() > 256 * 1024, "{}", body.len());
    let (status, answer) = pipeline.post(&body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["receipts"].as_array().unwrap().len(), 80);
    assert_eq!(answer["receipts"][79]["tid"], "BIG-79");
    eventually("every big-body trade at WDT", DEADLINE, || async {
        (0..80)
            .all(|n| sandbox.sandbox.trade(&format!("BIG-{n}")).is_some())
            .then_some(())
    })
    .await;
    pipeline.shutdown().await;
    sandbox.stop().await;
}
