//! The keys of one source only (`source = "kuaidi100"`: `salt_env`, `states`,
//! `trade_status`; a callback scheme's rules, tables and tests): an error in a scheme of
//! the other source.

use super::{RawScheme, Reader};
use crate::scheme::{Kuaidi100Options, Source};

impl Reader<'_> {
    /// The keys that belong to one source only: an error in a scheme of the other; for a
    /// kuaidi100 scheme, its options (the salt read from `salt_env` now).
    pub(super) fn source_keys(
        &mut self,
        raw: &RawScheme,
        source: Source,
    ) -> Option<Kuaidi100Options> {
        if source == Source::Callback {
            let only = "is a key of kuaidi100 schemes (source = \"kuaidi100\")";
            if let Some(key) = &raw.salt_env {
                self.error(key.span(), format!("salt_env {only}"));
            }
            if let Some(key) = &raw.states {
                self.error(key.span(), format!("states {only}"));
            }
            if let Some(key) = &raw.trade_status {
                self.error(key.span(), format!("trade_status {only}"));
            }
            return None;
        }
        let only = "is a key of callback schemes; a kuaidi100 scheme takes salt_env, states, trade_status and connector";
        if let Some(skip) = &raw.skip {
            self.error(skip.span(), format!("skip {only}"));
        }
        for (what, first) in [
            ("[trade]", raw.trade.keys().next().map(|k| k.span())),
            ("[line]", raw.line.keys().next().map(|k| k.span())),
            ("[tables]", raw.tables.keys().next().map(|k| k.span())),
            ("[[tests]]", raw.tests.first().map(|t| t.span())),
        ] {
            if let Some(span) = first {
                self.error(span, format!("{what} {only}"));
            }
        }
        let mut options = Kuaidi100Options::default();
        if let Some(name) = &raw.salt_env {
            match std::env::var(name.get_ref()) {
                Ok(salt) if !salt.is_empty() => {
                    options.salt = Some(wdtpipe_common::config::Secret::from(salt));
                }
                _ => self.error(
                    name.span(),
                    format!(
                        "salt_env: the environment variable {:?} is not set (it holds the salt kuaidi100 signs pushes with)",
                        name.get_ref()
                    ),
                ),
            }
            options.salt_env = Some(name.get_ref().clone());
        }
        if let Some(states) = &raw.states {
            options.states.clear();
            for state in states.get_ref() {
                match state.get_ref() {
                    toml::Value::Integer(n) if *n >= 0 => options.states.push(n.to_string()),
                    toml::Value::String(s)
                        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        options.states.push(s.clone());
                    }
                    _ => self.error(
                        state.span(),
                        "states: each state is a kuaidi100 lastResult.state code, e.g. 3 or 301",
                    ),
                }
            }
            if states.get_ref().is_empty() {
                self.error(
                    states.span(),
                    "states: give at least one state (default [3, 301, 302, 303, 304, 501])",
                );
            }
        }
        if let Some(status) = &raw.trade_status {
            match i32::try_from(*status.get_ref()) {
                Ok(n) if [10, 20, 30, 40, 50, 70, 80, 90].contains(&n) => options.trade_status = n,
                _ => self.error(
                    status.span(),
                    format!(
                        "trade_status {} is not a WDT trade_status (10, 20, 30, 40, 50, 70, 80, 90)",
                        status.get_ref()
                    ),
                ),
            }
        }
        Some(options)
    }
}
