//! Shared pieces of wdt-pipeline used by every stage: configuration loading, tracing setup,
//! the shutdown signal, gRPC plumbing (health, reflection, rejection details), the WDT md5
//! signer, exact decimals, China-time normalisation and the WDT trade JSON form.

pub mod cli;
pub mod config;
pub mod connectors;
pub mod dead_letters;
pub mod decimal;
pub mod form;
pub mod grpc;
pub mod json;
pub mod kuaidi100;
pub mod metrics;
pub mod record;
pub mod rejection;
pub mod request;
pub mod runtime;
pub mod service;
pub mod shutdown;
pub mod sign;
pub mod telemetry;
pub mod time;
pub mod trade_json;

/// A status's `scheme@version` for people: a status written before schemes existed names
/// none, and the built-in mapping mapped it.
pub fn scheme_label(scheme: &str) -> &str {
    if scheme.is_empty() {
        "default@builtin"
    } else {
        scheme
    }
}

/// Milliseconds since the Unix epoch, the time unit stored and reported everywhere.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// [`format_ms`], or `-` for a time that never was (0), as status lines show it.
pub fn format_when(ms: i64) -> String {
    if ms > 0 {
        format_ms(ms)
    } else {
        "-".to_owned()
    }
}

/// Formats Unix milliseconds as `YYYY-MM-DD HH:MM:SS.mmm` China time, for humans.
pub fn format_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => jiff::tz::Offset::constant(8)
            .to_datetime(ts)
            .strftime("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}
