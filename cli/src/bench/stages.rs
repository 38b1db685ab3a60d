//! The services a bench run starts: ingest, transform and deliver as processes, or one
//! `wdtpipe up` process with `--up` (their memory read from `/proc`), and the WDT sandbox
//! inside the bench.

use super::*;

/// A service process the bench started; killed if still running when dropped.
pub(super) struct Service {
    pub(super) name: &'static str,
    pub(super) child: Child,
}

impl Service {
    /// Starts `name` from `bin_dir` with `args`; `name` is also the binary's file name.
    pub(super) fn start(
        bin_dir: &Path,
        (name, args): (&'static str, &[&str]),
        threads: usize,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let path = bin_dir.join(name);
        let mut command = Command::new(&path);
        command.args(args);
        if threads > 0 {
            command.env("TOKIO_WORKER_THREADS", threads.to_string());
        }
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release)",
                path.display()
            )
        })?;
        Ok(Self { name, child })
    }

    /// Fails if the service has already exited (its own error is on stderr, above).
    pub(super) fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!(
                "{} exited during startup ({status}); its error is above",
                self.name
            ),
            None => Ok(()),
        }
    }

    /// Peak resident memory so far (`VmHWM`), in bytes.
    pub(super) fn peak_rss(&self) -> Option<u64> {
        proc_kib(self.child.id(), "VmHWM:").map(|kib| kib * 1024)
    }

    /// Restarts the peak counter (Linux `clear_refs` 5).
    pub(super) fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Sends SIGTERM and waits for the service to exit. The wait yields to the runtime: a
    /// service drains its connections before exiting, and the bench's own gRPC connections
    /// to it must be able to answer that (on the one-thread runtime, a blocking wait would
    /// hold them until the deadline).
    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status}", self.name);
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("{} did not stop within 30 s of SIGTERM", self.name)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The three stages as processes wired over loopback, or one `wdtpipe up` process running
/// them all (`--up`); deliver points at `wdt_url`.
pub(super) struct Stages {
    /// The processes: ingest, transform and deliver, or `wdtpipe`.
    pub(super) services: Vec<Service>,
    pub(super) http: String,
    pub(super) deliver_url: String,
    /// The gRPC addresses of transform and deliver, checked at startup.
    pub(super) grpc: [SocketAddr; 2],
    pub(super) _temp: Option<tempfile::TempDir>,
}

impl Stages {
    /// `retry_cap_ms` bounds deliver's backoff (the backlog run uses a short one, so the
    /// drain starts soon after WDT is back instead of at the next retry up to 5 min later).
    pub(super) fn start(
        args: &BenchArgs,
        wdt_url: &str,
        retry_cap_ms: Option<u64>,
    ) -> anyhow::Result<Self> {
        let bin_dir = match &args.bin_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_exe()?
                .parent()
                .context("executable has a directory")?
                .to_path_buf(),
        };
        let (temp, data_dir) = match &args.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir()?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let sandbox = SandboxConfig::default();
        let (http, ingest_grpc, transform_grpc, deliver_grpc) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let mut deliver_env = vec![
            ("DELIVER_GRPC_ADDR", deliver_grpc.to_string()),
            ("DELIVER_METRICS_ADDR", "off".into()),
            ("DATA_DIR", data_dir.display().to_string()),
            ("WDT_URL", wdt_url.to_owned()),
            ("WDT_SID", sandbox.sid.clone()),
            ("WDT_APPKEY", sandbox.appkey.clone()),
            ("WDT_APPSECRET", sandbox.appsecret.clone()),
        ];
        if let Some(cap) = retry_cap_ms {
            let config_file = data_dir.with_extension("deliver.toml");
            std::fs::write(&config_file, format!("[retry]\ncap_ms = {cap}\n"))?;
            deliver_env.push(("DELIVER_CONFIG", config_file.display().to_string()));
        }
        let mut transform_env = vec![
            ("TRANSFORM_GRPC_ADDR", transform_grpc.to_string()),
            ("TRANSFORM_METRICS_ADDR", "off".into()),
        ];
        if let Some(scheme) = &args.scheme {
            // The scheme alone in a directory of its own.
            let dir = data_dir.with_extension("schemes");
            std::fs::create_dir_all(&dir)?;
            std::fs::copy(scheme, dir.join("bench.toml"))
                .with_context(|| format!("cannot copy {}", scheme.display()))?;
            transform_env.push(("SCHEMES_DIR", dir.display().to_string()));
        }
        let ingest_env = vec![
            ("INGEST_HTTP_ADDR", http.to_string()),
            ("INGEST_GRPC_ADDR", ingest_grpc.to_string()),
        ];
        let services = if args.up {
            // As users run it, without the console (the bench reads deliver's Stats itself).
            let env: Vec<_> = [deliver_env, transform_env, ingest_env]
                .concat()
                .into_iter()
                .chain([("CONSOLE_ADDR", "off".to_owned())])
                .collect();
            vec![Service::start(
                &bin_dir,
                ("wdtpipe", &["up"]),
                args.threads,
                &env,
            )?]
        } else {
            transform_env.push(("DELIVER_URL", format!("http://{deliver_grpc}")));
            let mut ingest_env = ingest_env;
            ingest_env.push(("TRANSFORM_URL", format!("http://{transform_grpc}")));
            vec![
                Service::start(&bin_dir, ("deliver", &[]), args.threads, &deliver_env)?,
                Service::start(&bin_dir, ("transform", &[]), args.threads, &transform_env)?,
                Service::start(&bin_dir, ("ingest", &[]), args.threads, &ingest_env)?,
            ]
        };
        Ok(Self {
            services,
            http: format!("http://{http}"),
            deliver_url: format!("http://{deliver_grpc}"),
            grpc: [transform_grpc, deliver_grpc],
            _temp: temp,
        })
    }

    /// Waits until every stage listens and ingest answers `/healthz`, so that the first
    /// callbacks and stats calls find the whole pipeline up. Fails at once, naming it, if a
    /// service exits while starting (a port taken, a bad setting).
    pub(super) async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for service in &mut self.services {
                service.check_running()?;
            }
            if self.listening().await
                && reqwest::get(format!("{}/healthz", self.http))
                    .await
                    .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the pipeline did not come up within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether transform and deliver accept connections (a request then waits for them).
    pub(super) async fn listening(&self) -> bool {
        for addr in self.grpc {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Each process's peak resident memory, by name.
    pub(super) fn peak_rss(&self) -> Value {
        self.services
            .iter()
            .map(|service| (service.name.to_owned(), json!(service.peak_rss())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    pub(super) fn reset_peaks(&self) {
        for service in &self.services {
            service.reset_peak();
        }
    }

    pub(super) async fn stats(&self) -> anyhow::Result<StatsResponse> {
        let channel = lazy_channel(
            &self.deliver_url,
            ClientTimeouts::default(),
            &GrpcTls::default(),
        )?;
        Ok(DeliverClient::new(channel)
            .stats(StatsRequest {})
            .await?
            .into_inner())
    }

    /// Stops the processes, the first stage first (as they were started in reverse).
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        for service in self.services.into_iter().rev() {
            service.stop().await?;
        }
        Ok(())
    }
}

/// The sandbox inside the bench process.
pub(super) struct RunningSandbox {
    pub(super) sandbox: Sandbox,
    pub(super) _stop: oneshot::Sender<()>,
}

pub(super) async fn start_sandbox(listener: tokio::net::TcpListener) -> RunningSandbox {
    let sandbox = Sandbox::new(SandboxConfig {
        lean: true,
        ..SandboxConfig::default()
    });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(wdtpipe_sandbox::serve(
        sandbox.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    RunningSandbox {
        sandbox,
        _stop: stop,
    }
}
