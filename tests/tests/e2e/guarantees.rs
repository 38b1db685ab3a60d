//! DESIGN.md's delivery guarantees, end to end: a flaky WDT still gets every trade, and a
//! record sent twice is queued once.

use std::time::Duration;
use wdtpipe_proto::v1::{DeadLetterFilter, DeliveryState};
use wdtpipe_sandbox::Faults;
use wdtpipe_tests::{
    Pipeline, PipelineOptions, RunningSandbox, eventually, fixtures, sandbox_config, wdt_for,
};

const DEADLINE: Duration = Duration::from_secs(60);

async fn with_sandbox(faults: Faults) -> (RunningSandbox, Pipeline) {
    wdtpipe_tests::with_sandbox_faults(faults, PipelineOptions::default()).await
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
        let status = pipeline
            .status_in(tid, DeliveryState::Delivered, DEADLINE)
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
        .dead_letters(DeadLetterFilter {
            all: true,
            ..DeadLetterFilter::default()
        })
        .await;
    assert_eq!(letters.len(), 0, "nothing dead-lettered: {:?}", letters);
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

/// A tmpfs of `bytes` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} (this test needs root: .ci/run runs it as root)",
            dir.path().display()
        );
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file of zeros until the disk is full (or `limit` bytes are written).
    fn fill(&self, name: &str, limit: u64) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path().join(name)).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0;
        while written < limit {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = file.sync_all();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Issue 16's disk-full run: with WDT down, callbacks fill the outbox's disk down to
/// `DELIVER_MIN_FREE_BYTES`; from then on they get 503 with `Retry-After` (never a 200
/// that is not kept). The disk then fills completely (another process): writes stop, the
/// health says NOT_SERVING and `Stats` says why, and nothing crashes. Once space is freed
/// and WDT is back, without a restart, new callbacks are accepted and every acknowledged
/// callback reaches WDT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "mounts a tmpfs, so it needs root; .ci/run runs it"]
async fn a_full_disk_refuses_then_recovers_without_a_restart() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use wdtpipe_proto::v1::StatsRequest;
    let disk = Tmpfs::mount(48 << 20);
    let sandbox = RunningSandbox::start(wdtpipe_sandbox::SandboxConfig {
        faults: Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
        ..sandbox_config()
    })
    .await;
    // Most of the disk is taken already: what is left fills in a few thousand callbacks.
    disk.fill("filler-1", 26 << 20);
    let data = disk.path().join("data");
    let pipeline = Pipeline::start_in(
        PipelineOptions {
            wdt: wdt_for(sandbox.wdt_url()),
            min_free_bytes: 12 << 20,
            ..PipelineOptions::default()
        },
        &data,
    )
    .await;

    // Callbacks until the watermark refuses them.
    let client = reqwest::Client::new();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    while refused < 20 {
        let batch: Vec<String> = (0..16).map(|i| format!("F{}", n + i)).collect();
        n += 16;
        let posts = batch.iter().map(|tid| {
            let (client, url, body) = (
                client.clone(),
                format!("{}/v1/callback", pipeline.http),
                generated(tid),
            );
            async move {
                let answer = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let retry_after = answer.headers().get("retry-after").is_some();
                (
                    answer.status().as_u16(),
                    retry_after,
                    answer.text().await.unwrap(),
                )
            }
        });
        for (tid, (status, retry_after, body)) in batch.iter().zip(futures_join_all(posts).await) {
            match status {
                200 => acknowledged.push(tid.clone()),
                503 => {
                    assert!(retry_after, "a 503 says when to retry");
                    assert!(body.contains("disk"), "{body}");
                    refused += 1;
                }
                other => panic!("callback {tid}: HTTP {other}: {body}"),
            }
        }
        assert!(n < 40_000, "the watermark never refused a callback");
    }
    assert!(!acknowledged.is_empty());
    let stats = || async {
        pipeline
            .deliver_client()
            .await
            .stats(StatsRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    let low = stats().await;
    assert!(low.free_bytes < low.min_free_bytes, "{low:?}");
    assert!(
        low.storage_error.is_empty(),
        "settling still writes: {low:?}"
    );

    // Another process takes the rest of the disk: the outbox stops writing, and says so.
    disk.fill("filler-2", u64::MAX);
    let failing = eventually("Stats says the outbox cannot write", DEADLINE, || async {
        let answer = stats().await;
        (!answer.storage_error.is_empty()).then_some(answer)
    })
    .await;
    assert!(failing.storage_error.contains("disk full"), "{failing:?}");
    let status = pipeline.status(&acknowledged[0]).await;
    assert!(
        status[0].storage_error.contains("disk full"),
        "the status says why nothing moves: {status:?}"
    );
    let health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", pipeline.deliver_grpc))
            .unwrap()
            .connect_lazy(),
    );
    let health_is = |status: ServingStatus| {
        let mut health = health.clone();
        async move {
            let answer = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "wdtpipe.v1.Deliver".into(),
                })
                .await
                .unwrap()
                .into_inner();
            (answer.status == status as i32).then_some(())
        }
    };
    eventually("health NOT_SERVING", DEADLINE, || {
        health_is(ServingStatus::NotServing)
    })
    .await;
    let (status, answer) = pipeline.post(&generated("F-DURING")).await;
    assert_eq!(status, 503, "{answer}");

    // Space is freed and WDT is back: everything resumes by itself.
    std::fs::remove_file(disk.path().join("filler-1")).unwrap();
    std::fs::remove_file(disk.path().join("filler-2")).unwrap();
    sandbox.sandbox.set_faults(Faults::default());
    eventually("health SERVING again", DEADLINE, || {
        health_is(ServingStatus::Serving)
    })
    .await;
    // A new callback is accepted, as a sender sees it: a 503 is tried again, anything else
    // fails the test. When the filler raced a commit, sled itself hit ENOSPC; after the
    // writer reopens it, its first writes can still fail with ENOSPC (seen locally for
    // under a second) until a further reopen: senders get 503s meanwhile, never a 200
    // that is not kept.
    let accepted = eventually("a new callback accepted", DEADLINE, || async {
        let (status, answer) = pipeline.post(&generated("F-AFTER")).await;
        match status {
            200 => Some(()),
            503 => {
                eprintln!(
                    "F-AFTER refused: {answer}; deliver says: {:?}",
                    stats().await.storage_error
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
                None
            }
            other => panic!("HTTP {other}: {answer}"),
        }
    });
    accepted.await;
    acknowledged.push("F-AFTER".into());
    eventually("every acknowledged callback at WDT", DEADLINE, || async {
        acknowledged
            .iter()
            .all(|tid| sandbox.sandbox.trade(tid).is_some())
            .then_some(())
    })
    .await;
    let after = stats().await;
    assert!(after.storage_error.is_empty(), "{after:?}");
    assert!(after.failed_commits > 0);
    pipeline.shutdown().await;
}

/// `join_all` without another dependency: runs the futures concurrently, answers in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// Issue 18 end to end: the sandbox is taken down (it drops every connection) while
/// callbacks for three shops keep coming; `Stats` says the account is unreachable and when
/// the next probe goes; once the sandbox is back, every acknowledged callback reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wdt_down_then_back_every_shop_drains() {
    use wdtpipe_proto::v1::StatsRequest;
    let (sandbox, pipeline) = with_sandbox(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let mut tids = Vec::new();
    for n in 0..15 {
        let tid = format!("DOWN-{n}");
        let mut record = wdtpipe_tests::record_with_tid(&tid);
        record["shop_no"] = format!("SHOP-{}", n % 3).into();
        let (status, answer) = pipeline.post(&serde_json::to_vec(&record).unwrap()).await;
        assert_eq!(status, 200, "{answer}");
        tids.push(tid);
    }
    let stats = eventually(
        "Stats says the account is unreachable",
        DEADLINE,
        || async {
            let answer = pipeline
                .deliver_client()
                .await
                .stats(StatsRequest {})
                .await
                .unwrap()
                .into_inner();
            answer
                .shops
                .iter()
                .any(|s| s.paused_reason.contains("unreachable since"))
                .then_some(answer)
        },
    )
    .await;
    assert!(
        stats
            .shops
            .iter()
            .all(|s| s.paused_reason.contains("next probe")),
        "{stats:?}"
    );
    assert!(tids.iter().all(|tid| sandbox.sandbox.trade(tid).is_none()));
    sandbox.sandbox.set_faults(Faults::default());
    eventually("every callback at WDT", DEADLINE, || async {
        tids.iter()
            .all(|tid| sandbox.sandbox.trade(tid).is_some())
            .then_some(())
    })
    .await;
    pipeline.shutdown().await;
}
