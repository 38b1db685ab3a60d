//! Secrets never reach the logs: a full run with every secret in play (WDT appsecret, sender
//! webhook secret, admin token) and the failures that tempt code to print them (a sign
//! error at WDT, bad and missing sender signatures, wrong admin tokens). All log output at
//! debug level is captured and searched.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wdtpipe_common::config::Secret;
use wdtpipe_proto::v1::{DeadLetterFilter, ReplayRequest};
use wdtpipe_sandbox::{Faults, SandboxConfig};
use wdtpipe_tests::{Pipeline, PipelineOptions, RunningSandbox, eventually, fixture, wdt_for};

const APPSECRET: &str = "APPSECRET-d41d8cd98f00b204";
const WEBHOOK_KEY: &str = "webhook-key-e9800998ecf8427e"; // base64 below
const WEBHOOK_SECRET: &str = "whsec_d2ViaG9vay1rZXktZTk4MDA5OThlY2Y4NDI3ZQ==";
const ADMIN_TOKEN: &str = "ADMIN-TOKEN-a87ff679a2f3e71d";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs the pipeline through failures with every secret configured; no secret appears in
/// any log line or in any answer a client receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_or_answers() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(logs.clone())
        .init();

    let sandbox = RunningSandbox::start(SandboxConfig {
        appsecret: APPSECRET.into(),
        faults: Faults {
            sign_error_shops: vec!["SHOP01".into()],
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let mut wdt = wdt_for(sandbox.wdt_url());
    wdt.appsecret = Secret::new(APPSECRET);
    let options = PipelineOptions {
        wdt,
        webhook_secrets: vec![Secret::new(WEBHOOK_SECRET)],
        admin_token: Secret::new(ADMIN_TOKEN),
        ..PipelineOptions::default()
    };
    let debug_printed = format!("{options:?}");
    let pipeline = Pipeline::start(options).await;
    let mut answers = vec![debug_printed];

    let body = fixture("01-").body;
    let (_, unsigned) = pipeline.post(&body).await;
    answers.push(unsigned.to_string());
    let bad = [
        ("webhook-id", "m1"),
        ("webhook-timestamp", "1"),
        ("webhook-signature", "v1,AAAA"),
    ];
    let (_, stale) = pipeline.post_with(&body, &bad).await;
    answers.push(stale.to_string());
    let now = jiff::Timestamp::now().as_second();
    let signature = wdtpipe_ingest::auth::sign(WEBHOOK_SECRET, "m2", now, &body).unwrap();
    let good = [
        ("webhook-id", "m2"),
        ("webhook-timestamp", &now.to_string()),
        ("webhook-signature", signature.as_str()),
    ];
    let (status, accepted) = pipeline.post_with(&body, &good).await;
    assert_eq!(status, 200, "{accepted}");
    answers.push(accepted.to_string());

    // WDT refuses our sign for SHOP01: the shop pauses and says why, loudly.
    let paused = eventually(
        "the shop paused on the sign error",
        Duration::from_secs(20),
        || async {
            pipeline
                .status("T0001")
                .await
                .into_iter()
                .find(|s| !s.shop_paused.is_empty())
        },
    )
    .await;
    answers.push(format!("{paused:?}"));
    sandbox.sandbox.set_faults(Faults::default());
    eventually(
        "delivered after the fix",
        Duration::from_secs(20),
        || async { sandbox.sandbox.trade("T0001") },
    )
    .await;

    let mut client = pipeline.deliver_client().await;
    let mut wrong = tonic::Request::new(ReplayRequest {
        filter: Some(DeadLetterFilter {
            all: true,
            ..DeadLetterFilter::default()
        }),
    });
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer guess".parse().unwrap());
    answers.push(client.replay(wrong).await.unwrap_err().to_string());

    pipeline.shutdown().await;
    sandbox.stop().await;

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("WDT rejects our configuration"),
        "the sign error was logged"
    );
    assert!(logs.contains("delivered"), "the run was logged");
    let secrets = [
        APPSECRET,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.trim_start_matches("whsec_"),
        WEBHOOK_KEY,
        ADMIN_TOKEN,
    ];
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret leaked into the logs: {secret}"
        );
        for answer in &answers {
            assert!(
                !answer.contains(secret),
                "a secret leaked into an answer: {answer}"
            );
        }
    }
}
