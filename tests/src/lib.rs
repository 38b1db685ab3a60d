//! Helpers for the end-to-end tests: fixture loading, and spawning the real services
//! (ingest, transform, deliver, the WDT sandbox) on ephemeral loopback ports with a
//! temporary data directory.

use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wdtpipe_common::config::Secret;
use wdtpipe_common::grpc::GrpcTls;
use wdtpipe_deliver::config::{DeliverConfig, RetryPolicy, WdtConfig};
use wdtpipe_ingest::config::{IngestConfig, Limits};
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::{
    DeadLetter, DeadLetterFilter, DeliveryState, GetStatusRequest, ListDeadLettersRequest,
    TradeStatus,
};
use wdtpipe_sandbox::SandboxConfig;
use wdtpipe_transform::config::TransformConfig;
use wdtpipe_transform::scheme::BuiltinOptions;

// The fixtures and waiting with a deadline are shared by every crate's tests.
pub use wdtpipe_testkit::{
    Fixture, eventually, eventually_blocking, fixture, fixtures, fixtures_dir, fresh_record,
    fresh_tid, record_with_tid,
};

/// The shutdown future handed to a service.
type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service task with the means to stop it.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), String>>,
}

impl Running {
    fn spawn<F>(serve: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(shutdown));
        Self {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.map_err(|e| e.to_string())?
    }
}

pub use wdtpipe_testkit::sandbox::RunningSandbox;

/// A sandbox and a pipeline delivering to it, with `options` (its `wdt` set to the
/// sandbox, with the test account).
pub async fn with_sandbox(options: PipelineOptions) -> (RunningSandbox, Pipeline) {
    with_sandbox_faults(wdtpipe_sandbox::Faults::default(), options).await
}

/// [`with_sandbox`] with WDT's `faults` from the start.
pub async fn with_sandbox_faults(
    faults: wdtpipe_sandbox::Faults,
    options: PipelineOptions,
) -> (RunningSandbox, Pipeline) {
    let config = SandboxConfig {
        faults,
        ..sandbox_config()
    };
    let sandbox = RunningSandbox::start(config).await;
    let pipeline = Pipeline::start(PipelineOptions {
        wdt: wdt_for(sandbox.wdt_url()),
        ..options
    })
    .await;
    (sandbox, pipeline)
}

/// A sandbox that is down: it drops every connection without answering (a transport
/// error for deliver) until the test calls `set_faults(Faults::default())`.
pub fn down_sandbox() -> SandboxConfig {
    SandboxConfig {
        faults: wdtpipe_sandbox::Faults {
            drop_rate: 1.0,
            ..wdtpipe_sandbox::Faults::default()
        },
        ..sandbox_config()
    }
}

/// Settings of a test pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// WDT endpoint and account.
    pub wdt: WdtConfig,
    pub retry: RetryPolicy,
    /// The built-in mapping's settings, and the scheme files transform serves.
    pub scheme: BuiltinOptions,
    pub schemes_dir: Option<PathBuf>,
    /// WDT accounts besides `wdt`: the names transform reads from `connectors_file`, and
    /// the accounts deliver pushes with.
    pub connectors_file: Option<PathBuf>,
    pub connectors: std::collections::BTreeMap<String, WdtConfig>,
    /// gRPC TLS for every stage (server certificate and trusted CA).
    pub tls: GrpcTls,
    /// Ingest's edge: limits and sender secrets.
    pub limits: Limits,
    pub webhook_secrets: Vec<Secret>,
    /// Deliver's admission and admin token.
    pub high_water_trades: u64,
    pub min_free_bytes: u64,
    pub admin_token: Secret,
    /// Deliver shards (transform routes by tid).
    pub shards: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            wdt: WdtConfig::default(),
            // Short waits so retries happen within a test.
            retry: RetryPolicy {
                base_ms: 20,
                cap_ms: 200,
                pause_probe_ms: 200,
                ..RetryPolicy::default()
            },
            scheme: BuiltinOptions::default(),
            schemes_dir: None,
            connectors_file: None,
            connectors: std::collections::BTreeMap::new(),
            tls: GrpcTls::default(),
            limits: Limits::default(),
            webhook_secrets: Vec::new(),
            high_water_trades: DeliverConfig::default().high_water_trades,
            min_free_bytes: DeliverConfig::default().min_free_bytes,
            admin_token: Secret::default(),
            shards: 1,
        }
    }
}

/// TLS settings using the test certificates in `fixtures/tls` (localhost, 127.0.0.1).
pub fn test_tls() -> GrpcTls {
    let dir = fixtures_dir().join("tls");
    GrpcTls {
        cert: Some(dir.join("server.pem")),
        key: Some(dir.join("server.key")),
        ca: Some(dir.join("ca.pem")),
        domain: Some("localhost".into()),
    }
}

/// The credentials every test sandbox uses.
pub fn sandbox_config() -> SandboxConfig {
    SandboxConfig::default()
}

/// WDT settings that point at `url` with the test sandbox's credentials.
pub fn wdt_for(url: String) -> WdtConfig {
    let sandbox = sandbox_config();
    WdtConfig {
        url,
        sid: sandbox.sid,
        appkey: sandbox.appkey,
        appsecret: sandbox.appsecret.into(),
        timeout_ms: 5_000,
        ..WdtConfig::default()
    }
}

async fn bind_any(what: &str) -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind {what}: {e}"))
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("http", &self.http)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// ingest + transform + deliver (one or more shards) on ephemeral ports, each with its own
/// shutdown, and metrics endpoints.
pub struct Pipeline {
    /// Ingest's HTTP base URL (callbacks, health, metrics).
    pub http: String,
    pub ingest_grpc: SocketAddr,
    pub transform_grpc: SocketAddr,
    pub transform_metrics: SocketAddr,
    /// Shard 0's gRPC address (the only shard unless `shards` > 1).
    pub deliver_grpc: SocketAddr,
    /// Every deliver shard's gRPC and metrics address, in shard order.
    pub shards: Vec<SocketAddr>,
    pub deliver_metrics: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub options: PipelineOptions,
    _temp: Option<tempfile::TempDir>,
    ingest: Option<Running>,
    transform: Option<Running>,
    delivers: Vec<Option<Running>>,
    client: reqwest::Client,
}

impl Pipeline {
    /// Starts the three stages with a fresh temporary data directory.
    pub async fn start(options: PipelineOptions) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().to_path_buf();
        let mut pipeline = Self::start_in(options, &data_dir).await;
        pipeline._temp = Some(temp);
        pipeline
    }

    /// Starts the three stages on an existing data directory.
    pub async fn start_in(options: PipelineOptions, data_dir: &Path) -> Self {
        let http = bind_any("http").await;
        let ingest_grpc = bind_any("ingest").await;
        let transform_listeners = wdtpipe_transform::Listeners {
            grpc: bind_any("transform").await,
            metrics: Some(bind_any("transform metrics").await),
        };
        let mut deliver_listeners = Vec::new();
        for _ in 0..options.shards.max(1) {
            deliver_listeners.push(wdtpipe_deliver::Listeners {
                grpc: bind_any("deliver").await,
                metrics: Some(bind_any("deliver metrics").await),
            });
        }
        let addr = |l: &TcpListener| l.local_addr().expect("addr");
        let http_addr = addr(&http);
        let ingest_addr = addr(&ingest_grpc);
        let transform_addr = addr(&transform_listeners.grpc);
        let shards: Vec<SocketAddr> = deliver_listeners.iter().map(|l| addr(&l.grpc)).collect();

        let mut pipeline = Self {
            http: format!("http://{http_addr}"),
            ingest_grpc: ingest_addr,
            transform_grpc: transform_addr,
            transform_metrics: addr(transform_listeners.metrics.as_ref().expect("metrics")),
            deliver_grpc: shards[0],
            deliver_metrics: deliver_listeners
                .iter()
                .map(|l| addr(l.metrics.as_ref().expect("metrics")))
                .collect(),
            shards: shards.clone(),
            data_dir: data_dir.to_path_buf(),
            options: options.clone(),
            _temp: None,
            ingest: None,
            transform: None,
            delivers: Vec::new(),
            client: reqwest::Client::new(),
        };
        for (shard, listeners) in deliver_listeners.into_iter().enumerate() {
            let running = pipeline.spawn_deliver(shard, listeners);
            pipeline.delivers.push(Some(running));
        }
        let transform = TransformConfig {
            grpc_addr: transform_addr,
            metrics_addr: None,
            deliver_urls: shards.iter().map(|a| format!("http://{a}")).collect(),
            scheme: options.scheme.clone(),
            schemes_dir: options.schemes_dir.clone(),
            // Scheme files edited by a test are seen within a few milliseconds.
            schemes_poll_ms: 20,
            connectors_file: options.connectors_file.clone(),
            deliver_timeout_ms: 10_000,
            // Health follows the next stage within a tick of a test's waits.
            readiness_ms: 50,
            tls: options.tls.clone(),
        };
        pipeline.transform = Some(Running::spawn(move |shutdown| async move {
            wdtpipe_transform::serve(transform, transform_listeners, shutdown)
                .await
                .map_err(|e| e.to_string())
        }));
        let ingest = IngestConfig {
            http_addr,
            grpc_addr: ingest_addr,
            transform_url: format!("http://{transform_addr}"),
            limits: options.limits,
            webhook_secrets: options.webhook_secrets.clone(),
            tls: options.tls.clone(),
            readiness_ms: 50,
            ..IngestConfig::default()
        };
        pipeline.ingest = Some(Running::spawn(move |shutdown| async move {
            wdtpipe_ingest::serve(ingest, http, ingest_grpc, shutdown)
                .await
                .map_err(|e| e.to_string())
        }));
        pipeline
    }

    /// Shard `n`'s data directory: the pipeline's for a single shard, a subdirectory each
    /// otherwise.
    pub fn shard_dir(&self, shard: usize) -> PathBuf {
        if self.shards.len() == 1 {
            self.data_dir.clone()
        } else {
            self.data_dir.join(format!("shard-{shard}"))
        }
    }

    fn deliver_config(&self, shard: usize) -> DeliverConfig {
        DeliverConfig {
            grpc_addr: self.shards[shard],
            metrics_addr: None,
            shard: format!("shard-{shard}"),
            data_dir: self.shard_dir(shard),
            wdt: self.options.wdt.clone(),
            connectors: self.options.connectors.clone(),
            retry: self.options.retry.clone(),
            drain_timeout_ms: 5_000,
            high_water_trades: self.options.high_water_trades,
            min_free_bytes: self.options.min_free_bytes,
            admin_token: self.options.admin_token.clone(),
            tls: self.options.tls.clone(),
            ..DeliverConfig::default()
        }
    }

    fn spawn_deliver(&self, shard: usize, listeners: wdtpipe_deliver::Listeners) -> Running {
        let config = self.deliver_config(shard);
        Running::spawn(move |shutdown| async move {
            wdtpipe_deliver::serve(config, listeners, shutdown)
                .await
                .map_err(|e| e.to_string())
        })
    }

    /// Stops every deliver shard (gracefully) and waits until they closed their outboxes.
    pub async fn stop_deliver(&mut self) {
        for slot in &mut self.delivers {
            if let Some(deliver) = slot.take() {
                deliver.stop().await.expect("deliver stopped cleanly");
            }
        }
    }

    /// Starts every deliver shard again on the same gRPC addresses and data directories
    /// (metrics on new ports).
    pub async fn restart_deliver(&mut self) {
        self.stop_deliver().await;
        for shard in 0..self.shards.len() {
            let listeners = wdtpipe_deliver::Listeners {
                grpc: TcpListener::bind(self.shards[shard])
                    .await
                    .expect("rebind deliver"),
                // A fresh port: another test may have taken the old one meanwhile, and
                // nothing needs the metrics address to stay the same.
                metrics: Some(bind_any("deliver metrics").await),
            };
            if let Some(metrics) = &listeners.metrics {
                self.deliver_metrics[shard] = metrics.local_addr().expect("metrics addr");
            }
            self.delivers[shard] = Some(self.spawn_deliver(shard, listeners));
        }
    }

    /// POSTs a callback body as JSON; returns the status and the JSON answer.
    pub async fn post(&self, body: &[u8]) -> (u16, Value) {
        self.post_with(body, &[]).await
    }

    /// POSTs fixture 01's record once per tid, in one callback, and checks it is accepted.
    pub async fn accept_tids<T: AsRef<str>>(&self, tids: impl IntoIterator<Item = T>) {
        let records: Vec<Value> = tids
            .into_iter()
            .map(|tid| record_with_tid(tid.as_ref()))
            .collect();
        let body = serde_json::to_vec(&records).expect("JSON");
        let (status, answer) = self.post(&body).await;
        assert_eq!(status, 200, "{answer}");
    }

    /// POSTs a callback body with extra headers.
    pub async fn post_with(&self, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
        self.post_to("/v1/callback", body, headers).await
    }

    /// POSTs a callback body to a path of ingest's HTTP address (`/v1/callback/{scheme}`).
    pub async fn post_to(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> (u16, Value) {
        let response = self.send(path, "application/json", body, headers).await;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("answer body");
        let body = serde_json::from_slice(&bytes).expect("JSON answer");
        (status, body)
    }

    /// POSTs `body` as `content_type` with extra headers to a path of ingest's HTTP address,
    /// and returns the response as it came (for its headers).
    pub async fn send(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.http))
            .header("content-type", content_type)
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("ingest answers")
    }

    /// The schemes transform serves, over gRPC `ListSchemes` (plaintext).
    pub async fn list_schemes(&self) -> wdtpipe_proto::v1::ListSchemesResponse {
        wdtpipe_proto::v1::transform_client::TransformClient::connect(format!(
            "http://{}",
            self.transform_grpc
        ))
        .await
        .expect("transform answers")
        .list_schemes(wdtpipe_proto::v1::ListSchemesRequest {})
        .await
        .expect("ListSchemes answers")
        .into_inner()
    }

    /// A gRPC client for deliver shard 0 (over TLS when the pipeline uses it).
    pub async fn deliver_client(&self) -> DeliverClient<tonic::transport::Channel> {
        self.shard_client(0)
    }

    /// A gRPC client for one deliver shard.
    pub fn shard_client(&self, shard: usize) -> DeliverClient<tonic::transport::Channel> {
        let channel = wdtpipe_common::grpc::lazy_channel(
            &self.shards[shard].to_string(),
            wdtpipe_common::grpc::ClientTimeouts::default(),
            &self.options.tls,
        )
        .expect("deliver channel");
        DeliverClient::new(channel)
    }

    /// Deliver's status of a tid (one entry per shop holding it).
    pub async fn status(&self, tid: &str) -> Vec<TradeStatus> {
        let mut trades = Vec::new();
        for shard in 0..self.shards.len() {
            trades.extend(
                self.shard_client(shard)
                    .get_status(GetStatusRequest {
                        tid: tid.to_owned(),
                        ..Default::default()
                    })
                    .await
                    .expect("status")
                    .into_inner()
                    .trades,
            );
        }
        trades
    }

    /// The dead letters `filter` matches on one shard (its first page).
    pub async fn dead_letters_on(&self, shard: usize, filter: DeadLetterFilter) -> Vec<DeadLetter> {
        self.shard_client(shard)
            .list_dead_letters(ListDeadLettersRequest {
                filter: Some(filter),
                ..ListDeadLettersRequest::default()
            })
            .await
            .expect("dead letters listed")
            .into_inner()
            .letters
    }

    /// The dead letters `filter` matches on every shard, in shard order.
    pub async fn dead_letters(&self, filter: DeadLetterFilter) -> Vec<DeadLetter> {
        let mut letters = Vec::new();
        for shard in 0..self.shards.len() {
            letters.extend(self.dead_letters_on(shard, filter.clone()).await);
        }
        letters
    }

    /// Waits up to `deadline` for `tid`'s status to reach `state` on some shop, and returns
    /// that shop's status.
    pub async fn status_in(
        &self,
        tid: &str,
        state: DeliveryState,
        deadline: std::time::Duration,
    ) -> TradeStatus {
        let what = format!("{tid} {}", state.as_str_name());
        wdtpipe_testkit::eventually(&what, deadline, || async {
            self.status(tid)
                .await
                .into_iter()
                .find(|s| s.state == state as i32)
        })
        .await
    }

    /// The operator console over this pipeline on an ephemeral loopback port: operator
    /// token [`CONSOLE_TOKEN`], deliver's admin token, a fast refresh, the audit log in the
    /// data directory; `tweak` changes what a test needs.
    pub async fn console(
        &self,
        tweak: impl FnOnce(&mut wdtpipe_console::config::ConsoleConfig),
    ) -> RunningConsole {
        let listener = bind_any("console").await;
        let addr = listener.local_addr().expect("console addr");
        let mut config = wdtpipe_console::config::ConsoleConfig {
            addr,
            token: Secret::new(CONSOLE_TOKEN),
            admin_token: self.options.admin_token.clone(),
            transform_url: format!("http://{}", self.transform_grpc),
            deliver_urls: self.shards.iter().map(|a| format!("http://{a}")).collect(),
            ingest_url: self.http.clone(),
            refresh_ms: 100,
            audit_file: self.data_dir.join("console-audit.jsonl"),
            tls: self.options.tls.clone(),
            ..Default::default()
        };
        tweak(&mut config);
        let audit_file = config.audit_file.clone();
        let running = Running::spawn(move |shutdown| async move {
            wdtpipe_console::serve(config, listener, shutdown)
                .await
                .map_err(|e| e.to_string())
        });
        RunningConsole {
            url: format!("http://{addr}"),
            audit_file,
            running,
        }
    }

    /// Stops every stage gracefully.
    pub async fn shutdown(mut self) {
        for running in [self.ingest.take(), self.transform.take()]
            .into_iter()
            .flatten()
        {
            running.stop().await.expect("stage stopped cleanly");
        }
        self.stop_deliver().await;
    }
}

/// The operator token of test consoles.
pub const CONSOLE_TOKEN: &str = "console-operator-token";

/// A console serving over a test pipeline.
pub struct RunningConsole {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    pub audit_file: PathBuf,
    running: Running,
}

impl std::fmt::Debug for RunningConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningConsole")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RunningConsole {
    /// Stops the console gracefully (its event streams end, its alerts drain).
    pub async fn stop(self) {
        self.running.stop().await.expect("console stopped cleanly");
    }
}
