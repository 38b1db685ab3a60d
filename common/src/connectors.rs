//! WDT accounts (connectors, SCHEMES.md "Connectors"): `CONNECTORS_FILE` holds one TOML
//! table per account; `default` comes from the `WDT_*` settings unless the file has a table
//! of that name. Transform reads the names (a scheme may only name one that exists);
//! deliver reads the accounts and keeps one client per account.
//!
//! ```toml
//! [brand-b]
//! url = "https://api.wangdian.cn/openapi2"
//! sid = "brandb"
//! appkey = "brandb-key"
//! appsecret_env = "WDT_APPSECRET_BRAND_B"   # the secret itself never sits in a file
//! switch = 1
//! ```

use crate::config::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The account trades are pushed with when their scheme names none.
pub const DEFAULT: &str = "default";

/// Separates a shop from its account in deliver's lane names (see [`lane`]).
const LANE_SEPARATOR: char = '\u{1f}';

/// One account as the file writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorEntry {
    pub url: String,
    pub sid: String,
    pub appkey: String,
    /// The environment variable holding the appsecret.
    pub appsecret_env: String,
    #[serde(default = "strict")]
    pub switch: u8,
    /// Timeout of one call, in milliseconds (default: deliver's `wdt.timeout_ms`).
    pub timeout_ms: Option<u64>,
}

fn strict() -> u8 {
    1
}

/// `[a-z0-9][a-z0-9_-]{0,62}`, like scheme ids.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && name.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Reads `CONNECTORS_FILE`.
pub fn load(path: &Path) -> Result<BTreeMap<String, ConnectorEntry>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let entries: BTreeMap<String, ConnectorEntry> =
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })?;
    if let Some(bad) = entries.keys().find(|name| !valid_name(name)) {
        return Err(ConfigError::Invalid {
            name: "CONNECTORS_FILE",
            reason: format!(
                "{}: connector {bad:?} must be 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit",
                path.display()
            ),
        });
    }
    Ok(entries)
}

/// Every account name: `default` and the file's tables.
pub fn names(path: Option<&Path>) -> Result<Vec<String>, ConfigError> {
    let mut names = vec![DEFAULT.to_owned()];
    if let Some(path) = path {
        names.extend(load(path)?.into_keys().filter(|name| name != DEFAULT));
    }
    Ok(names)
}

/// The queue a trade waits in at deliver: its shop within its account. For the default
/// account that is the shop itself, so outboxes written before accounts existed read the
/// same; another account's shop is `shop`, a unit separator, then the account.
pub fn lane<'a>(shop_no: &'a str, connector: &str) -> std::borrow::Cow<'a, str> {
    if connector.is_empty() || connector == DEFAULT {
        std::borrow::Cow::Borrowed(shop_no)
    } else {
        std::borrow::Cow::Owned(format!("{shop_no}{LANE_SEPARATOR}{connector}"))
    }
}

/// The shop and account (`""` for the default one) of a lane.
pub fn split_lane(lane: &str) -> (&str, &str) {
    lane.split_once(LANE_SEPARATOR).unwrap_or((lane, ""))
}

/// Whether a shop number can be told apart in a lane (it holds no unit separator).
pub fn valid_shop(shop_no: &str) -> bool {
    !shop_no.contains(LANE_SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_round_trip() {
        assert_eq!(lane("SHOP01", ""), "SHOP01");
        assert_eq!(lane("SHOP01", "default"), "SHOP01");
        assert_eq!(
            split_lane(&lane("SHOP01", "brand-b")),
            ("SHOP01", "brand-b")
        );
        assert_eq!(split_lane("SHOP01"), ("SHOP01", ""));
        assert!(!valid_shop("a\u{1f}b"));
    }

    #[test]
    fn files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[brand-b]\nurl = \"http://x\"\nsid = \"s\"\nappkey = \"k\"\nappsecret_env = \"E\"\n",
        )
        .unwrap();
        assert_eq!(names(Some(&path)).unwrap(), ["default", "brand-b"]);
        assert_eq!(load(&path).unwrap()["brand-b"].switch, 1);
        std::fs::write(&path, "[brand-b]\nurl = \"http://x\"\nsecret = \"s\"\n").unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
        std::fs::write(
            &path,
            "[Brand]\nurl = \"u\"\nsid = \"s\"\nappkey = \"k\"\nappsecret_env = \"E\"\n",
        )
        .unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("\"Brand\""));
    }
}
