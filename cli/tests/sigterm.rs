//! Shutdown under load: `wdtpipe up` (every stage, over loopback gRPC) gets SIGTERM while
//! callbacks flow. It must exit 0 within a bounded time, and after a restart on the same
//! data directory every callback it acknowledged reaches WDT.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wdtpipe_sandbox::{Sandbox, SandboxConfig};

/// `wdtpipe up` as a child process; killed if still running when dropped.
struct Up {
    child: Child,
    callback_url: String,
}

impl Up {
    fn start(data_dir: &Path, wdt_url: &str) -> Self {
        let config = SandboxConfig::default();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wdtpipe"))
            .arg("up")
            .env("DATA_DIR", data_dir)
            .env("WDT_URL", wdt_url)
            .env("WDT_SID", &config.sid)
            .env("WDT_APPKEY", &config.appkey)
            .env("WDT_APPSECRET", &config.appsecret)
            .env("INGEST_HTTP_ADDR", "127.0.0.1:0")
            .env("INGEST_GRPC_ADDR", "127.0.0.1:0")
            .env("TRANSFORM_GRPC_ADDR", "127.0.0.1:0")
            .env("DELIVER_GRPC_ADDR", "127.0.0.1:0")
            .env("TRANSFORM_METRICS_ADDR", "127.0.0.1:0")
            .env("DELIVER_METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wdtpipe starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (found, url) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(rest) = line.trim().strip_prefix("callbacks    POST ") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = found.send(url);
                }
            }
        });
        let callback_url = url
            .recv_timeout(Duration::from_secs(30))
            .expect("up prints its callback URL");
        Self {
            child,
            callback_url,
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wdtpipe did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn callback(template: &serde_json::Value, tid: &str) -> Vec<u8> {
    let mut record = template.clone();
    record["tid"] = tid.into();
    record["src_tids"] = tid.into();
    for (i, line) in record["details_list"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        line["src_tid"] = tid.into();
        line["src_oid"] = format!("{tid}-{}", i + 1).into();
    }
    serde_json::to_vec(&record).unwrap()
}

/// SIGTERM during load: exit code 0, and no acknowledged callback is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_cleanly_and_loses_nothing() {
    let sandbox = Sandbox::new(SandboxConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wdt_url = format!("http://{}/openapi2", listener.local_addr().unwrap());
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(wdtpipe_sandbox::serve(
        sandbox.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let data = tempfile::tempdir().unwrap();
    let mut up = Up::start(data.path(), &wdt_url);

    let template: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/callbacks/01-basic.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..4 {
        let (template, acked, stop, client, url) = (
            template.clone(),
            acked.clone(),
            stop.clone(),
            client.clone(),
            up.callback_url.clone(),
        );
        senders.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let tid = format!("TERM{sender}-{n}");
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(callback(&template, &tid))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        acked.lock().unwrap().push(tid)
                    }
                    Ok(_) => {}
                    // The server has stopped accepting.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    up.sigterm();
    let status = tokio::task::block_in_place(|| up.wait(Duration::from_secs(30)));
    stop.store(true, Ordering::Relaxed);
    while senders.join_next().await.is_some() {}
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "callbacks were acknowledged before the signal"
    );

    let _restarted = Up::start(data.path(), &wdt_url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<&String> = acked
            .iter()
            .filter(|t| sandbox.trade(t).is_none())
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged tids lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{} callbacks acknowledged before SIGTERM; all delivered after the restart",
        acked.len()
    );
}
