//! Tracing setup shared by every binary: `RUST_LOG` filter (default `info`), text or JSON
//! lines on stderr (stdout stays for command output). Span fields — the request id above
//! all — appear on every line logged inside the span.

use tracing_subscriber::EnvFilter;

/// Log line format (`LOG_FORMAT`): a value other than `text` or `json` is refused at start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. Safe to call more than once (later calls are no-ops).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
