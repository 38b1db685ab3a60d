//! A faithful simulator of WDT Enterprise's `trade_push.php` over real HTTP: the envelope,
//! account, clock and md5 sign checks, the per-trade rules, per-tid state (updates, fixed
//! num/price), the all-or-nothing answer, and injectable faults. Tests, benchmarks and the
//! `wdtpipe up` demo deliver to it.

mod config;
mod http;
mod json;
mod push;
mod state;
mod validate;

pub use config::{Cli, Faults, SandboxAccount, SandboxConfig};
pub use push::{MAX_TRADES, Refusal};
pub use state::{AcceptedTrade, CALL_LOG_CAPACITY, CallRecord};

use state::Store;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

/// A running sandbox's shared state; clones share it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SandboxConfig,
    faults: Mutex<Faults>,
    store: Mutex<Store>,
}

impl Sandbox {
    /// A sandbox with no trades, no calls, and the faults of `config`.
    pub fn new(config: SandboxConfig) -> Self {
        let faults = Mutex::new(config.faults.clone());
        Sandbox {
            inner: Arc::new(Inner {
                config,
                faults,
                store: Mutex::new(Store::default()),
            }),
        }
    }

    /// The settings it was started with (the faults there are the initial ones).
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The HTTP routes: `trade_push.php` (under `/openapi2` and at the root), `/sandbox/*`
    /// inspection and control, `/healthz`.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// The latest accepted version of every `(shop_no, tid)`, sorted by `(shop_no, tid)`.
    pub fn trades(&self) -> Vec<AcceptedTrade> {
        self.with_store(|store| store.trades())
    }

    /// `(tid, first accepted ms)` of every accepted trade (lighter than [`Sandbox::trades`]).
    pub fn first_accepted(&self) -> Vec<(String, i64)> {
        self.with_store(|store| store.first_accepted())
    }

    /// How many (shop_no, tid) pairs were accepted (cheap, unlike [`Sandbox::trades`]).
    pub fn trade_count(&self) -> usize {
        self.with_store(|store| store.trade_count())
    }

    /// The accepted trade with this tid (the most recently accepted if several shops hold it).
    pub fn trade(&self, tid: &str) -> Option<AcceptedTrade> {
        self.with_store(|store| store.trade(tid))
    }

    /// Every `trade_push.php` call, oldest first (the last [`CALL_LOG_CAPACITY`]).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.with_store(|store| store.calls())
    }

    /// Replaces the injected faults; calls already past the fault stage are not affected.
    pub fn set_faults(&self, faults: Faults) {
        *self
            .inner
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = faults;
    }

    /// The faults injected now.
    pub fn faults(&self) -> Faults {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets every trade and call (faults stay).
    pub fn reset(&self) {
        self.with_store(Store::reset);
    }

    fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut self
            .inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

/// Serves the sandbox on `listener` until `shutdown` completes, then drains open requests.
pub async fn serve(
    sandbox: Sandbox,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, sid = %sandbox.config().sid, "wdt sandbox listening");
    }
    axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(shutdown)
        .await
}
