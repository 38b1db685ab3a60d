//! The process-wide shutdown signal: a future that completes on SIGINT or SIGTERM.

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// One shutdown shared by several servers and tasks: each takes its own
/// [`Stop::stopped`] future or [`Stop::receiver`].
#[derive(Debug, Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

/// Triggers a [`Stop`] made by [`Stop::manual`].
#[derive(Debug)]
pub struct StopTrigger(tokio::sync::watch::Sender<bool>);

impl StopTrigger {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Stop {
    /// Fans `shutdown` out once it completes (spawned on the current runtime).
    pub fn spawn(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        let (trigger, stop) = Self::manual();
        tokio::spawn(async move {
            shutdown.await;
            trigger.stop();
        });
        stop
    }

    /// A stop triggered by hand.
    pub fn manual() -> (StopTrigger, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (StopTrigger(tx), Self(rx))
    }

    /// Completes once the stop is triggered.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// The underlying flag, for tasks that select on its changes.
    pub fn receiver(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.clone()
    }
}
