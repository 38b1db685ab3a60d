//! The schemes a running transform serves: loaded from `SCHEMES_DIR` at start, swapped
//! whole when the directory is reloaded. A request takes the set once and maps all its
//! records with it, so a reload never mixes two versions within a request.

use crate::metrics::TransformMetrics;
use crate::scheme::dir::files_in;
use crate::scheme::{BuiltinOptions, SchemeError, SchemeSet, load_dir};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// One loaded set of schemes and when it was loaded.
#[derive(Debug)]
pub struct Loaded {
    pub set: SchemeSet,
    pub loaded_at_ms: i64,
}

/// The serving set, replaced atomically.
#[derive(Debug)]
pub struct Catalog {
    dir: Option<PathBuf>,
    options: BuiltinOptions,
    connectors: Vec<String>,
    current: RwLock<Arc<Loaded>>,
    /// The last refused reload: when, and every error of it.
    last_error: Mutex<Option<(i64, String)>>,
}

/// Why a schemes directory was refused: every error of every file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in the scheme files:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct CatalogError(pub Vec<SchemeError>);

/// Reads the directory (if any) into a set; the built-in `default` is always there.
pub fn load_set(
    dir: Option<&Path>,
    options: &BuiltinOptions,
    connectors: &[String],
) -> Result<SchemeSet, CatalogError> {
    let schemes = match dir {
        Some(dir) => load_dir(dir, options, connectors).map_err(CatalogError)?,
        None => Vec::new(),
    };
    Ok(SchemeSet::from_schemes(options.clone(), schemes))
}

impl Catalog {
    /// Loads `dir` (or only the built-in scheme) with the WDT accounts schemes may name.
    pub fn load(
        dir: Option<PathBuf>,
        options: BuiltinOptions,
        connectors: Vec<String>,
    ) -> Result<Self, CatalogError> {
        let set = load_set(dir.as_deref(), &options, &connectors)?;
        Ok(Self {
            dir,
            options,
            connectors,
            current: RwLock::new(Arc::new(Loaded {
                set,
                loaded_at_ms: wdtpipe_common::now_ms(),
            })),
            last_error: Mutex::new(None),
        })
    }

    /// The last refused reload (when, and its errors), if any since the last good one.
    pub fn last_error(&self) -> Option<(i64, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The set serving now.
    pub fn current(&self) -> Arc<Loaded> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The WDT accounts a scheme may name.
    pub fn connectors(&self) -> &[String] {
        &self.connectors
    }

    /// The schemes directory, if one is configured.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Reads the directory again: a set that loads whole replaces the serving one; one that
    /// does not is refused and the serving set stays.
    pub fn reload(&self) -> Result<Arc<Loaded>, CatalogError> {
        let set = match load_set(self.dir.as_deref(), &self.options, &self.connectors) {
            Ok(set) => set,
            Err(error) => {
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((wdtpipe_common::now_ms(), error.to_string()));
                return Err(error);
            }
        };
        let loaded = Arc::new(Loaded {
            set,
            loaded_at_ms: wdtpipe_common::now_ms(),
        });
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&loaded);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(loaded)
    }

    /// Reloads, logging and counting the outcome (`wdtpipe_transform_scheme_reloads_total`).
    fn reload_and_report(&self, metrics: &TransformMetrics, why: &str) {
        match self.reload() {
            Ok(loaded) => {
                metrics.reload("ok");
                let schemes: Vec<String> = loaded.set.iter().map(|s| s.label()).collect();
                tracing::info!(why, schemes = %schemes.join(", "), "schemes reloaded");
            }
            Err(error) => {
                metrics.reload("refused");
                for e in &error.0 {
                    tracing::error!(
                        why,
                        file = %e.file.display(),
                        line = e.line,
                        column = e.column,
                        error = %e.message,
                        "scheme reload refused; the schemes loaded before keep serving"
                    );
                }
            }
        }
    }
}

/// A fingerprint of the scheme files of a directory: their names and contents. `None`
/// when the directory cannot be read (a reload then reports why).
pub fn fingerprint(dir: &Path) -> Option<[u8; 32]> {
    let mut hash = Sha256::new();
    for file in files_in(dir).ok()? {
        hash.update(file.as_os_str().as_encoded_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&file).ok()?);
        hash.update([0]);
    }
    Some(hash.finalize().into())
}

/// Reloads the catalog's directory when its files change (checked every `interval`) and on
/// SIGHUP, until `stop` turns true. Polling sees every way a file can change, including the
/// symlink swaps of a Kubernetes ConfigMap volume, and needs no watcher per platform.
pub async fn watch_dir(
    catalog: Arc<Catalog>,
    metrics: Arc<TransformMetrics>,
    interval: Duration,
    mut hangup: Hangup,
    mut stop: watch::Receiver<bool>,
) {
    let Some(dir) = catalog.dir().map(Path::to_owned) else {
        return;
    };
    let mut seen = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || fingerprint(&dir))
            .await
            .ok()
            .flatten()
    };
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = recv_hangup(&mut hangup) => true,
            _ = stop.changed() => return,
        };
        if *stop.borrow() {
            return;
        }
        let now = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || fingerprint(&dir))
                .await
                .ok()
                .flatten()
        };
        if forced || now != seen {
            seen = now;
            let catalog = Arc::clone(&catalog);
            let metrics = Arc::clone(&metrics);
            let why = if forced { "SIGHUP" } else { "files changed" };
            let _ =
                tokio::task::spawn_blocking(move || catalog.reload_and_report(&metrics, why)).await;
        }
    }
}

/// SIGHUP, where the platform has it.
#[cfg(unix)]
pub type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangup = Option<()>;

/// Starts listening for SIGHUP. From then on the signal no longer ends the process (its
/// default), for as long as the process lives; call it before anyone may send one.
#[cfg(unix)]
pub fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
pub fn hangup_signal() -> Hangup {
    None
}

/// The next SIGHUP; never, where there is no signal stream.
async fn recv_hangup(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    let _ = hangup;
    std::future::pending().await
}
