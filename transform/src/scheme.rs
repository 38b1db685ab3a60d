//! The integration scheme: the parts of the default mapping a deployment may override
//! (target shop and carrier table), loaded from config.

use serde::Deserialize;
use std::collections::HashMap;

/// The default kuaidi100 `com` → WDT `logistics_type` table (exact, case-sensitive).
pub const DEFAULT_CARRIERS: &[(&str, i32)] = &[
    ("youzhengguonei", 2),
    ("ems", 3),
    ("yuantong", 4),
    ("zhongtong", 5),
    ("shentong", 6),
    ("shunfeng", 8),
    ("yunda", 9),
    ("debangkuaidi", 88),
    ("jtexpress", 108),
];

/// Mapping overrides. `Scheme::default()` is MAPPING.md's default scheme.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scheme {
    /// Target shop for every trade (`WDT_SHOP_NO`); `None` uses each record's `shop_no`.
    pub shop_no: Option<String>,
    /// kuaidi100 `com` → `logistics_type`, used when the record's own `logistics_type`
    /// is not an integer.
    pub carriers: HashMap<String, i32>,
}

impl Default for Scheme {
    fn default() -> Self {
        Self {
            shop_no: None,
            carriers: DEFAULT_CARRIERS
                .iter()
                .map(|(com, code)| ((*com).to_owned(), *code))
                .collect(),
        }
    }
}

impl Scheme {
    /// The default scheme with a target shop override (empty means none).
    pub fn with_shop(shop_no: Option<String>) -> Self {
        Self {
            shop_no: shop_no
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_owned()),
            ..Self::default()
        }
    }

    /// The `logistics_type` for a kuaidi100 carrier code.
    pub fn carrier(&self, com: &str) -> Option<i32> {
        self.carriers.get(com).copied()
    }
}
