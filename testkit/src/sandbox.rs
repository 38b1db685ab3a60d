//! A WDT sandbox serving on a loopback port, for every test that delivers to WDT over real
//! HTTP.

use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wdtpipe_sandbox::{Sandbox, SandboxConfig};

/// A WDT sandbox served on an ephemeral loopback port. It stops when dropped, or at
/// [`RunningSandbox::stop`], which also waits until it has stopped. It derefs to its
/// [`Sandbox`], whose trades, calls and faults the test reads and sets.
pub struct RunningSandbox {
    pub sandbox: Sandbox,
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for RunningSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningSandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningSandbox {
    /// Starts a sandbox with `config` on `127.0.0.1`, on a port of the system's choosing.
    pub async fn start(config: SandboxConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the sandbox");
        let addr = listener.local_addr().expect("sandbox address");
        let sandbox = Sandbox::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(wdtpipe_sandbox::serve(
            sandbox.clone(),
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            sandbox,
            addr,
            stop,
            task,
        }
    }

    /// The `WDT_URL` pointing at this sandbox (deliver appends `/trade_push.php`).
    pub fn wdt_url(&self) -> String {
        format!("http://{}/openapi2", self.addr)
    }

    /// Stops the sandbox and waits until it has drained its open requests.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("the sandbox task did not panic")
            .expect("sandbox stopped cleanly");
    }
}

impl std::ops::Deref for RunningSandbox {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}
