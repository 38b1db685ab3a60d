//! A second WDT account for tests of many accounts: `brand-b` in a `CONNECTORS_FILE`, and a
//! scheme `b` that pushes with it.

use std::path::{Path, PathBuf};

/// The environment variable `brand-b`'s appsecret is read from.
pub const BRAND_B_SECRET_ENV: &str = "WDT_APPSECRET_BRAND_B";

/// Writes, under `dir`, `connectors.toml` with the account `brand-b` (sid `brandb`, appkey
/// `brandb-key`, WDT at `wdt_url`, its secret in [`BRAND_B_SECRET_ENV`]) and a schemes
/// directory holding `b.toml`, the built-in mapping pushed with `brand-b`. Returns the
/// connectors file and the schemes directory.
pub fn brand_b(dir: &Path, wdt_url: &str) -> (PathBuf, PathBuf) {
    let connectors = dir.join("connectors.toml");
    std::fs::write(
        &connectors,
        format!(
            "[brand-b]\nurl = \"{wdt_url}\"\nsid = \"brandb\"\nappkey = \"brandb-key\"\nappsecret_env = \"{BRAND_B_SECRET_ENV}\"\n"
        ),
    )
    .expect("connectors file written");
    let schemes = dir.join("schemes");
    std::fs::create_dir_all(&schemes).expect("schemes directory");
    std::fs::write(
        schemes.join("b.toml"),
        "id = \"b\"\nconnector = \"brand-b\"\n",
    )
    .expect("scheme file written");
    (connectors, schemes)
}
