//! Sender authentication with the Standard Webhooks scheme.
//!
//! The sender signs `{webhook-id}.{webhook-timestamp}.{body}` with HMAC-SHA256 under a
//! shared secret (`whsec_` + base64 key) and sends `webhook-signature: v1,<base64>` (several
//! space-separated signatures are allowed). Several secrets may be configured at once so a
//! secret can be rotated without downtime; a signature by any of them is accepted. The
//! comparison is constant-time, and the timestamp must be within the tolerance of now.
//!
//! The work an unsigned sender can cause is bounded: a header with more than
//! [`MAX_SIGNATURES`] `v1` signatures is refused before any MAC is computed, and the body is
//! hashed once per secret (never once per secret *and* signature): each secret's MAC is
//! compared with every candidate.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::Duration;
use wdtpipe_common::config::Secret;
use wdtpipe_common::metrics::Counter;
use wdtpipe_common::sign::constant_time_eq;

type HmacSha256 = Hmac<Sha256>;

/// Most `v1` signatures one `webhook-signature` header may carry. A sender sends one, two
/// while it rotates its secret; more is refused unread.
pub const MAX_SIGNATURES: usize = 8;

/// Length of an HMAC-SHA256 tag; a candidate of any other length cannot match.
const TAG_BYTES: usize = 32;

/// Why a callback's signature was not accepted (HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header (sender signatures are required)")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not Unix seconds")]
    InvalidTimestamp,
    #[error("timestamp outside tolerance ({0} s)")]
    TimestampOutsideTolerance(u64),
    #[error("webhook-signature holds no v1 signature")]
    NoSignature,
    #[error("webhook-signature holds more than {MAX_SIGNATURES} v1 signatures")]
    TooManySignatures,
    #[error("signature mismatch")]
    SignatureMismatch,
}

/// Why a configured secret is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook secret #{0} is not whsec_ followed by base64")]
pub struct BadSecret(pub usize);

/// Verifies callbacks against the configured secrets.
#[derive(Clone)]
pub struct WebhookVerifier {
    keys: Vec<Vec<u8>>,
    tolerance: Duration,
    /// MACs computed over a body so far: at most one per secret per callback. Exported as
    /// `wdtpipe_ingest_signature_macs_total`.
    macs: Counter,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("secrets", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// Decodes a `whsec_<base64>` secret (the prefix is optional) into its key.
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
    STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
}

impl WebhookVerifier {
    /// A verifier for these secrets; `None` when none is configured (signatures off).
    pub fn new(secrets: &[Secret], tolerance: Duration) -> Result<Option<Self>, BadSecret> {
        let keys = secrets
            .iter()
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, s)| decode_secret(s.expose()).ok_or(BadSecret(i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!keys.is_empty()).then_some(Self {
            keys,
            tolerance,
            macs: Counter::default(),
        }))
    }

    /// Counts the MACs this verifier computes into `counter` (a metric).
    pub fn with_mac_counter(mut self, counter: Counter) -> Self {
        self.macs = counter;
        self
    }

    /// Checks the headers and body of one callback at `now_secs` (Unix seconds).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<(), AuthError> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or(AuthError::MissingHeader(name))
        };
        let id = header("webhook-id")?;
        let timestamp = header("webhook-timestamp")?;
        let signatures = header("webhook-signature")?;
        let sent_at: i64 = timestamp.parse().map_err(|_| AuthError::InvalidTimestamp)?;
        if sent_at.abs_diff(now_secs) > self.tolerance.as_secs() {
            return Err(AuthError::TimestampOutsideTolerance(
                self.tolerance.as_secs(),
            ));
        }
        let candidates = candidates(signatures)?;
        if candidates.is_empty() {
            return Err(AuthError::NoSignature);
        }
        let mut matched = false;
        for key in &self.keys {
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            self.macs.inc();
            let tag = mac.finalize().into_bytes();
            // Every candidate is compared, matched or not, in constant time each.
            for candidate in &candidates {
                matched |= constant_time_eq(&tag, candidate);
            }
            if matched {
                return Ok(());
            }
        }
        Err(AuthError::SignatureMismatch)
    }
}

/// The `v1` signatures of a `webhook-signature` header, decoded; entries of other versions
/// and ones that cannot be an HMAC-SHA256 tag are left out. More than [`MAX_SIGNATURES`]
/// `v1` entries is an error, found before anything is decoded.
fn candidates(header: &str) -> Result<Vec<[u8; TAG_BYTES]>, AuthError> {
    let v1: Vec<&str> = header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .take(MAX_SIGNATURES + 1)
        .collect();
    if v1.len() > MAX_SIGNATURES {
        return Err(AuthError::TooManySignatures);
    }
    Ok(v1
        .into_iter()
        .filter_map(|s| STANDARD.decode(s).ok())
        .filter_map(|bytes| <[u8; TAG_BYTES]>::try_from(bytes.as_slice()).ok())
        .collect())
}

/// Signs a body the way a Standard Webhooks sender does: the `webhook-signature` value.
/// Used by tests, the CLI and anyone integrating against this endpoint.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = decode_secret(secret)?;
    let mut mac = HmacSha256::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(id: &str, ts: i64, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", signature.parse().unwrap());
        h
    }

    fn verifier(secrets: &[&str]) -> WebhookVerifier {
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        WebhookVerifier::new(&secrets, Duration::from_secs(300))
            .unwrap()
            .unwrap()
    }

    /// The Standard Webhooks reference vector.
    #[test]
    fn reference_vector() {
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let v = verifier(&[SECRET]);
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, &signature);
        assert_eq!(v.verify(&h, body, 1614265330 + 299), Ok(()));
    }

    #[test]
    fn rejections() {
        let v = verifier(&[SECRET]);
        let now = 1_700_000_000;
        let good = sign(SECRET, "id1", now, b"{}").unwrap();
        assert_eq!(
            v.verify(&headers("id1", now, &good), b"{ }", now),
            Err(AuthError::SignatureMismatch)
        );
        assert_eq!(
            v.verify(&headers("id2", now, &good), b"{}", now),
            Err(AuthError::SignatureMismatch)
        );
        assert_eq!(
            v.verify(&headers("id1", now, &good), b"{}", now + 301),
            Err(AuthError::TimestampOutsideTolerance(300))
        );
        assert_eq!(
            v.verify(&headers("id1", now, "v2,abc"), b"{}", now),
            Err(AuthError::NoSignature)
        );
        assert_eq!(
            v.verify(&HeaderMap::new(), b"{}", now),
            Err(AuthError::MissingHeader("webhook-id"))
        );
        let mut h = headers("id1", now, &good);
        h.insert("webhook-timestamp", "soon".parse().unwrap());
        assert_eq!(v.verify(&h, b"{}", now), Err(AuthError::InvalidTimestamp));
    }

    /// During a rotation both secrets are accepted, and a header may carry several signatures.
    #[test]
    fn rotation() {
        let old = "whsec_b2xkLXNlY3JldC1rZXk=";
        let v = verifier(&[SECRET, old]);
        let now = 1_700_000_000;
        let by_old = sign(old, "id", now, b"x").unwrap();
        assert_eq!(v.verify(&headers("id", now, &by_old), b"x", now), Ok(()));
        let both = format!("v1,AAAA {by_old}");
        assert_eq!(v.verify(&headers("id", now, &both), b"x", now), Ok(()));
        let other = verifier(&[SECRET]);
        assert_eq!(
            other.verify(&headers("id", now, &by_old), b"x", now),
            Err(AuthError::SignatureMismatch)
        );
    }

    /// Bogus signatures cost at most one MAC per secret; more than eight cost none.
    #[test]
    fn work_is_bounded_by_the_secrets() {
        let secrets = ["whsec_a2V5LW9uZQ==", "whsec_a2V5LXR3bw==", SECRET];
        let v = verifier(&secrets);
        let now = 1_700_000_000;
        let bogus = |n: usize| vec!["v1,".to_owned() + &STANDARD.encode([7u8; 32]); n].join(" ");
        let body = vec![b'x'; 64 * 1024];
        assert_eq!(
            v.verify(&headers("id", now, &bogus(200)), &body, now),
            Err(AuthError::TooManySignatures)
        );
        assert_eq!(v.macs.get(), 0);
        assert_eq!(
            v.verify(&headers("id", now, &bogus(MAX_SIGNATURES)), &body, now),
            Err(AuthError::SignatureMismatch)
        );
        assert_eq!(v.macs.get(), 3, "one per secret");
        // Candidates that cannot be a tag (wrong length, not base64) are no signature.
        assert_eq!(
            v.verify(&headers("id", now, "v1,AAAA v1,!!"), &body, now),
            Err(AuthError::NoSignature)
        );
        assert_eq!(v.macs.get(), 3);
        // Signatures of other versions do not count towards the cap.
        let good = sign(SECRET, "id", now, &body).unwrap();
        let header = format!("{} {good}", vec!["v2,abc"; 50].join(" "));
        assert_eq!(v.verify(&headers("id", now, &header), &body, now), Ok(()));
    }

    #[test]
    fn secrets_are_validated_and_never_debug_printed() {
        assert_eq!(
            WebhookVerifier::new(&[Secret::new("whsec_!!!")], Duration::ZERO).unwrap_err(),
            BadSecret(1)
        );
        assert!(WebhookVerifier::new(&[], Duration::ZERO).unwrap().is_none());
        let printed = format!("{:?}", verifier(&[SECRET]));
        assert!(
            !printed.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "{printed}"
        );
    }
}
