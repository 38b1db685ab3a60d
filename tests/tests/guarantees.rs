//! DESIGN.md's delivery guarantees, end to end: a flaky WDT still gets every trade, and a
//! record sent twice is queued once.

use std::time::Duration;
use wdtpipe_proto::v1::{DeadLetterFilter, DeliveryState, ListDeadLettersRequest};
use wdtpipe_sandbox::Faults;
use wdtpipe_tests::{
    Pipeline, PipelineOptions, RunningSandbox, eventually, fixtures, sandbox_config, wdt_for,
};

const DEADLINE: Duration = Duration::from_secs(60);

async fn with_sandbox(faults: Faults) -> (RunningSandbox, Pipeline) {
    let sandbox = RunningSandbox::start(
        wdtpipe_sandbox::SandboxConfig {
            faults,
            ..sandbox_config()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let pipeline = Pipeline::start(PipelineOptions {
        wdt: wdt_for(sandbox.wdt_url()),
        ..PipelineOptions::default()
    })
    .await;
    (sandbox, pipeline)
}

/// A record like fixture 01 with its own tid.
fn generated(tid: &str) -> Vec<u8> {
    serde_json::to_vec(&wdtpipe_tests::record_with_tid(tid)).unwrap()
}

/// With 20% server errors, throttling, 429s and dropped connections at WDT, every accepted
/// trade is still delivered and nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_wdt_still_gets_everything() {
    let (sandbox, pipeline) = with_sandbox(Faults {
        error_rate: 0.2,
        throttle_rate: 0.1,
        http_429_rate: 0.05,
        drop_rate: 0.05,
        ..Faults::default()
    })
    .await;
    let mut tids: Vec<String> = Vec::new();
    for fixture in fixtures().into_iter().filter(|f| f.status() == 200) {
        let (status, _) = pipeline.post(&fixture.body).await;
        assert_eq!(status, 200, "{}", fixture.name);
        tids.extend(
            fixture
                .trades()
                .iter()
                .map(|t| t["trade"]["tid"].as_str().unwrap().to_owned()),
        );
    }
    // Keep sending until WDT has answered at least one call with a 500 and one with the
    // throttling code, so the faults are known to have been exercised (the rates are random).
    let exercised = |calls: &[wdtpipe_sandbox::CallRecord]| {
        calls.iter().any(|c| c.http_status == 500) && calls.iter().any(|c| c.code == 1040)
    };
    let mut i = 0;
    while i < 60 || (!exercised(&sandbox.sandbox.calls()) && i < 5_000) {
        let tid = format!("FLAKY-{i:04}");
        let (status, _) = pipeline.post(&generated(&tid)).await;
        assert_eq!(status, 200);
        tids.push(tid);
        i += 1;
    }
    eventually(
        "every trade delivered despite the faults",
        DEADLINE,
        || async {
            tids.iter()
                .all(|t| sandbox.sandbox.trade(t).is_some())
                .then_some(())
        },
    )
    .await;
    for tid in &tids {
        let status = eventually("delivery recorded", DEADLINE, || async {
            pipeline
                .status(tid)
                .await
                .into_iter()
                .find(|s| s.state == DeliveryState::Delivered as i32)
        })
        .await;
        assert_eq!(status.tid, *tid);
    }
    let calls = sandbox.sandbox.calls();
    assert!(
        calls.iter().any(|c| c.http_status == 500),
        "faults were injected"
    );
    assert!(
        calls.iter().any(|c| c.code == 1040),
        "throttling was injected"
    );
    let letters = pipeline
        .deliver_client()
        .await
        .list_dead_letters(ListDeadLettersRequest {
            filter: Some(DeadLetterFilter {
                all: true,
                ..DeadLetterFilter::default()
            }),
            limit: 0,
            ..ListDeadLettersRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        letters.total, 0,
        "nothing dead-lettered: {:?}",
        letters.letters
    );
    pipeline.shutdown().await;
    sandbox.stop().await;
}

/// Sending every fixture twice acknowledges both, queues each record once and pushes each
/// trade once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_sent_twice_is_queued_once() {
    let (sandbox, pipeline) = with_sandbox(Faults::default()).await;
    let valid: Vec<_> = fixtures()
        .into_iter()
        .filter(|f| f.status() == 200)
        .collect();
    for fixture in &valid {
        let (first_status, first) = pipeline.post(&fixture.body).await;
        let (second_status, second) = pipeline.post(&fixture.body).await;
        assert_eq!(
            (first_status, second_status),
            (200, 200),
            "{}",
            fixture.name
        );
        let receipts = |answer: &serde_json::Value| answer["receipts"].as_array().unwrap().clone();
        for (a, b) in receipts(&first).iter().zip(receipts(&second)) {
            assert_eq!(a["duplicate"], false, "{}", fixture.name);
            assert_eq!(b["duplicate"], true, "{}", fixture.name);
            assert_eq!(a["record_id"], b["record_id"]);
        }
    }
    let tids: Vec<String> = valid
        .iter()
        .flat_map(|f| f.trades())
        .map(|t| t["trade"]["tid"].as_str().unwrap().to_owned())
        .collect();
    eventually("every trade delivered", DEADLINE, || async {
        tids.iter()
            .all(|t| sandbox.sandbox.trade(t).is_some())
            .then_some(())
    })
    .await;
    for tid in &tids {
        assert_eq!(
            sandbox.sandbox.trade(tid).unwrap().versions,
            1,
            "{tid} pushed once"
        );
        assert_eq!(
            pipeline.status(tid).await[0].versions,
            1,
            "{tid} queued once"
        );
    }
    pipeline.shutdown().await;
    sandbox.stop().await;
}
