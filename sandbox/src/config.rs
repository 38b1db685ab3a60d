//! Sandbox settings: the WDT account it accepts, how strict it is, and the faults it injects.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The account and rules the sandbox checks every `trade_push.php` call against.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The seller account (`sid`) calls must carry.
    pub sid: String,
    /// The interface account (`appkey`) calls must carry.
    pub appkey: String,
    /// The secret that signs calls; never sent, never logged.
    pub appsecret: String,
    /// Allowed distance between a call's `timestamp` and the sandbox clock, in seconds.
    pub max_skew_secs: i64,
    /// Also require `paid = Σ(price·num + adjust_amount − discount − share_discount)
    /// + post_amount + other_amount` exactly.
    pub check_paid_identity: bool,
    /// Faults injected from the start (changeable later with [`crate::Sandbox::set_faults`]).
    pub faults: Faults,
    /// Keep only counts and times of accepted trades, not their JSON (for benchmarks with
    /// millions of trades); the num/price rule is then not checked.
    pub lean: bool,
    /// More WDT accounts served beside the one above (`sid`, `appkey`, `appsecret`): a
    /// call is checked against the account its `sid` names.
    pub accounts: Vec<SandboxAccount>,
}

/// A WDT account the sandbox serves.
#[derive(Clone, PartialEq, Eq)]
pub struct SandboxAccount {
    pub sid: String,
    pub appkey: String,
    pub appsecret: String,
}

impl fmt::Debug for SandboxAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxAccount")
            .field("sid", &self.sid)
            .field("appkey", &self.appkey)
            .field("appsecret", &"<redacted>")
            .finish()
    }
}

impl SandboxConfig {
    /// The account a call's `sid` names: the main one or one of `accounts`.
    pub fn account(&self, sid: &str) -> Option<SandboxAccount> {
        if sid == self.sid {
            return Some(SandboxAccount {
                sid: self.sid.clone(),
                appkey: self.appkey.clone(),
                appsecret: self.appsecret.clone(),
            });
        }
        self.accounts.iter().find(|a| a.sid == sid).cloned()
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            sid: "sandbox".to_owned(),
            appkey: "sandbox-key".to_owned(),
            appsecret: "sandbox-secret".to_owned(),
            max_skew_secs: 300,
            check_paid_identity: false,
            lean: false,
            faults: Faults::default(),
            accounts: Vec::new(),
        }
    }
}

// Written by hand so the appsecret never reaches a log line.
impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("sid", &self.sid)
            .field("appkey", &self.appkey)
            .field("appsecret", &"<redacted>")
            .field("max_skew_secs", &self.max_skew_secs)
            .field("check_paid_identity", &self.check_paid_identity)
            .field("faults", &self.faults)
            .field("accounts", &self.accounts)
            .finish()
    }
}

/// Misbehaviour injected into `trade_push.php` answers. Rates are probabilities in `[0, 1]`,
/// drawn independently per call; the default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability of answering HTTP 500.
    pub error_rate: f64,
    /// Probability of answering code 1040 with WDT's per-minute throttling message.
    pub throttle_rate: f64,
    /// Delay added before every `trade_push.php` answer, in milliseconds.
    pub latency_ms: u64,
    /// Probability of closing the connection without any answer.
    pub drop_rate: f64,
    /// Trades whose tid contains this text are rejected; the code 99 message is a JSON array
    /// naming them. Empty text matches nothing.
    pub reject_tid_pattern: Option<String>,
    /// Like `reject_tid_pattern`, but the code 99 message is plain text naming no tid.
    pub reject_without_tid: Option<String>,
    /// Calls for these `shop_no` always answer the sign-error code.
    pub sign_error_shops: Vec<String>,
    /// Calls for these `shop_no` answer code 99 "店铺不存在" (the shop does not exist in
    /// the account, or is not of platform 自有/其它): a rejection naming no tid.
    pub unknown_shops: Vec<String>,
    /// When set, HTTP 500 and 429 answers carry `Retry-After` with this many seconds.
    pub retry_after_secs: Option<u64>,
    /// Probability of answering HTTP 429.
    pub http_429_rate: f64,
}

impl Faults {
    /// Draws once against `rate`; `0` (or less, or NaN) never fires, `1` always does.
    pub(crate) fn roll(rate: f64) -> bool {
        rate > 0.0 && rand::random::<f64>() < rate
    }

    /// True when `tid` contains the (non-empty) pattern.
    pub(crate) fn matches(pattern: Option<&str>, tid: &str) -> bool {
        pattern.is_some_and(|p| !p.is_empty() && tid.contains(p))
    }
}

/// Command-line flags (and environment variables) of the `wdt-sandbox` binary.
#[derive(Clone, clap::Parser)]
#[command(
    name = "wdt-sandbox",
    version,
    about = "A WDT Enterprise trade_push.php simulator"
)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_ADDR", default_value = "127.0.0.1:8090")]
    pub addr: String,
    /// Seller account (`sid`) accepted.
    #[arg(long, env = "WDT_SID", default_value = "sandbox")]
    pub sid: String,
    /// Interface account (`appkey`) accepted.
    #[arg(long, env = "WDT_APPKEY", default_value = "sandbox-key")]
    pub appkey: String,
    /// Secret used to check signatures.
    #[arg(
        long,
        env = "WDT_APPSECRET",
        default_value = "sandbox-secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub appsecret: String,
    /// Allowed clock skew of `timestamp`, in seconds.
    #[arg(long, default_value_t = 300)]
    pub max_skew_secs: i64,
    /// Require paid to equal the sum of the lines plus post and other amounts.
    #[arg(long)]
    pub check_paid_identity: bool,
    /// Probability of answering HTTP 500.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub error_rate: f64,
    /// Probability of answering code 1040 (throttled).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub throttle_rate: f64,
    /// Probability of answering HTTP 429.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub http_429_rate: f64,
    /// Probability of closing the connection without an answer.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    pub drop_rate: f64,
    /// Delay added before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// `Retry-After` seconds on HTTP 500 and 429 answers.
    #[arg(long)]
    pub retry_after_secs: Option<u64>,
    /// Reject trades whose tid contains this text (message names the tids).
    #[arg(long)]
    pub reject_tid_pattern: Option<String>,
    /// Reject trades whose tid contains this text (message names no tid).
    #[arg(long)]
    pub reject_without_tid: Option<String>,
    /// Answer the sign-error code for this shop (repeatable).
    #[arg(long = "sign-error-shop")]
    pub sign_error_shops: Vec<String>,
    /// Answer code 99 "店铺不存在" for this shop (repeatable).
    #[arg(long = "unknown-shop")]
    pub unknown_shops: Vec<String>,
}

// Written by hand so the appsecret never reaches a log line.
impl fmt::Debug for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cli")
            .field("addr", &self.addr)
            .field("sid", &self.sid)
            .field("appkey", &self.appkey)
            .field("appsecret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Cli {
    /// The sandbox settings these flags describe.
    pub fn config(&self) -> SandboxConfig {
        SandboxConfig {
            sid: self.sid.clone(),
            appkey: self.appkey.clone(),
            appsecret: self.appsecret.clone(),
            max_skew_secs: self.max_skew_secs,
            check_paid_identity: self.check_paid_identity,
            lean: false,
            accounts: Vec::new(),
            faults: Faults {
                error_rate: self.error_rate,
                throttle_rate: self.throttle_rate,
                latency_ms: self.latency_ms,
                drop_rate: self.drop_rate,
                reject_tid_pattern: self.reject_tid_pattern.clone(),
                reject_without_tid: self.reject_without_tid.clone(),
                sign_error_shops: self.sign_error_shops.clone(),
                unknown_shops: self.unknown_shops.clone(),
                retry_after_secs: self.retry_after_secs,
                http_429_rate: self.http_429_rate,
            },
        }
    }
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("`{text}` is not a probability between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The debug form of the settings never shows the appsecret.
    #[test]
    fn debug_redacts_the_appsecret() {
        let text = format!("{:?}", SandboxConfig::default());
        assert!(!text.contains("sandbox-secret"));
        assert!(text.contains("<redacted>"));
    }

    /// Faults read from partial JSON default the rest, and unknown keys are refused.
    #[test]
    fn faults_json_defaults_and_refuses_typos() {
        let faults: Faults = serde_json::from_str(r#"{"error_rate":0.5}"#).unwrap();
        assert_eq!(faults.error_rate, 0.5);
        assert_eq!(faults.latency_ms, 0);
        assert!(serde_json::from_str::<Faults>(r#"{"eror_rate":0.5}"#).is_err());
    }

    /// Flags become settings, and a rate outside [0, 1] is refused.
    #[test]
    fn flags_become_settings() {
        let cli = Cli::try_parse_from([
            "wdt-sandbox",
            "--sid",
            "s1",
            "--error-rate",
            "0.25",
            "--reject-tid-pattern",
            "BAD",
        ])
        .unwrap();
        let config = cli.config();
        assert_eq!(config.sid, "s1");
        assert_eq!(config.faults.error_rate, 0.25);
        assert_eq!(config.faults.reject_tid_pattern.as_deref(), Some("BAD"));
        assert!(Cli::try_parse_from(["wdt-sandbox", "--drop-rate", "1.5"]).is_err());
    }

    /// Empty patterns match nothing; a zero rate never fires and a rate of one always does.
    #[test]
    fn patterns_and_rates() {
        assert!(!Faults::matches(Some(""), "T1"));
        assert!(!Faults::matches(None, "T1"));
        assert!(Faults::matches(Some("BAD"), "T-BAD-1"));
        assert!((0..100).all(|_| !Faults::roll(0.0)));
        assert!((0..100).all(|_| Faults::roll(1.0)));
    }
}
