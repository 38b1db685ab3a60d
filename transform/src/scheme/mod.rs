//! Integration schemes (SCHEMES.md): the mapping as data.
//!
//! A [`Scheme`] is the built-in mapping (MAPPING.md, with the deployment's
//! [`BuiltinOptions`]) plus rules that replace fields, a `skip` expression and the WDT
//! account (connector) its trades go to. The built-in scheme `default` has no rules. Scheme
//! files are read and checked by [`file`]; a directory of them becomes a [`SchemeSet`].

pub mod dir;
pub mod expr;
pub mod fields;
pub mod file;
mod suggest;

use self::fields::{LineField, TradeField};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use self::dir::{load_dir, load_file};
pub use self::file::SchemeError;

/// The id of the scheme `POST /v1/callback` uses, built in unless a file replaces it.
pub const DEFAULT_ID: &str = "default";
/// The version of the built-in scheme.
pub const BUILTIN_VERSION: &str = "builtin";
/// The WDT account a scheme writes to unless it names another.
pub use wdtpipe_common::connectors::DEFAULT as DEFAULT_CONNECTOR;

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

/// The deployment's settings of the built-in mapping, shared by every scheme: the target
/// shop (`WDT_SHOP_NO`) and the carrier table. The `[scheme]` table of transform's config
/// file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinOptions {
    /// Target shop for every trade (`WDT_SHOP_NO`); `None` uses each record's `shop_no`.
    pub shop_no: Option<String>,
    /// kuaidi100 `com` → `logistics_type`, used when the record's own `logistics_type`
    /// is not an integer.
    pub carriers: HashMap<String, i32>,
}

impl Default for BuiltinOptions {
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

impl BuiltinOptions {
    /// The defaults with a target shop (empty means none).
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

/// Where a scheme's records come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// JSON stockout records on the callback.
    Callback,
    /// kuaidi100's tracking pushes: a signed-for parcel re-pushes its order as completed.
    Kuaidi100,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Callback => "callback",
            Source::Kuaidi100 => "kuaidi100",
        }
    }
}

/// The `lastResult.state` values that mean "signed for" by default: 3 signed, 301 by the
/// recipient, 302 after a problem, 303 by someone else, 304 at a locker or station, 501
/// handed over.
pub const SIGNED_STATES: [&str; 6] = ["3", "301", "302", "303", "304", "501"];

/// What a kuaidi100 scheme does with a push (SCHEMES.md, "The kuaidi100 source").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kuaidi100Options {
    /// `salt_env`: the variable the salt was read from; `None` checks no sign.
    pub salt_env: Option<String>,
    /// The salt itself, read from `salt_env` when the scheme was loaded.
    pub salt: Option<wdtpipe_common::config::Secret>,
    /// `lastResult.state` values that re-push the order (`states`).
    pub states: Vec<String>,
    /// The `trade_status` the order is re-pushed with (`trade_status`, default 70).
    pub trade_status: i32,
}

impl Default for Kuaidi100Options {
    fn default() -> Self {
        Self {
            salt_env: None,
            salt: None,
            states: SIGNED_STATES.iter().map(|s| (*s).to_owned()).collect(),
            trade_status: 70,
        }
    }
}

/// A scheme, compiled: every expression parsed and every table resolved once, at load.
#[derive(Debug, Clone)]
pub struct Scheme {
    pub id: String,
    /// The first 12 hex digits of the SHA-256 of the file, or `builtin`.
    pub version: String,
    pub description: String,
    pub source: Source,
    /// With `source = "kuaidi100"`: what a push does.
    pub kuaidi100: Option<Kuaidi100Options>,
    /// The WDT account its trades are pushed with.
    pub connector: String,
    pub builtin: BuiltinOptions,
    /// When true for a record, the record is acknowledged and nothing is queued.
    pub skip: Option<expr::Expr>,
    pub trade_rules: Vec<(TradeField, Rule)>,
    pub line_rules: Vec<(LineField, Rule)>,
    /// The file it was read from; `None` for the built-in scheme.
    pub path: Option<PathBuf>,
    /// The fields of `record` and `line` its expressions read (`None`: all of them), so
    /// evaluation builds only those.
    pub record_needs: expr::Needed,
    pub line_needs: expr::Needed,
    /// The file's `[[tests]]`, run by `wdtpipe scheme test`.
    pub tests: Vec<SchemeTest>,
}

/// One `[[tests]]` block of a scheme file.
#[derive(Debug, Clone)]
pub struct SchemeTest {
    pub name: String,
    /// Where it starts in the file.
    pub line: usize,
    pub input: TestInput,
    /// A file of the exact trades (the fixtures' expected form).
    pub expect: Option<PathBuf>,
    /// The field the record must be invalid on.
    pub expect_error: Option<String>,
    /// CEL over `trades` and `error`: every one must be true.
    pub asserts: Vec<expr::Expr>,
}

/// A test's callback body.
#[derive(Debug, Clone)]
pub enum TestInput {
    /// Inline (`body`).
    Body(String),
    /// A file, relative to the scheme file (`input`).
    File(PathBuf),
}

impl Default for Scheme {
    /// The built-in scheme with the default options: MAPPING.md exactly.
    fn default() -> Self {
        Self::builtin(BuiltinOptions::default())
    }
}

impl Scheme {
    /// The built-in scheme `default` with these options.
    pub fn builtin(builtin: BuiltinOptions) -> Self {
        Self {
            id: DEFAULT_ID.to_owned(),
            version: BUILTIN_VERSION.to_owned(),
            description: "the built-in mapping (MAPPING.md)".to_owned(),
            source: Source::Callback,
            kuaidi100: None,
            connector: DEFAULT_CONNECTOR.to_owned(),
            builtin,
            skip: None,
            trade_rules: Vec::new(),
            line_rules: Vec::new(),
            path: None,
            record_needs: Some(Default::default()),
            line_needs: Some(Default::default()),
            tests: Vec::new(),
        }
    }

    /// The built-in scheme with a target shop override (empty means none).
    pub fn with_shop(shop_no: Option<String>) -> Self {
        Self::builtin(BuiltinOptions::with_shop(shop_no))
    }

    /// `id@version`, as every trade records it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    /// What produces a trade field (`shop_no`) or a line field (`order_list[].goods_no`):
    /// the scheme's rule, or the built-in mapping.
    pub fn producer(&self, field: &str, line: bool) -> String {
        let rule = if line {
            self.line_rules
                .iter()
                .find(|(f, _)| f.name() == field)
                .map(|(f, r)| format!("[line] {f} = {}", r.describe()))
        } else {
            self.trade_rules
                .iter()
                .find(|(f, _)| f.name() == field)
                .map(|(f, r)| format!("[trade] {f} = {}", r.describe()))
        };
        rule.unwrap_or_else(|| "the built-in mapping (MAPPING.md)".to_owned())
    }
}

/// A rule for one field: a source, then an optional table lookup.
#[derive(Debug, Clone)]
pub struct Rule {
    pub source: RuleSource,
    pub lookup: Option<Lookup>,
}

impl Rule {
    /// Whether the rule reads its field's built-in value (`default` in an expression, or a
    /// table's `miss = "default"`), which is then worth computing.
    pub fn reads_default(&self) -> bool {
        matches!(self.source, RuleSource::Expr(_))
            || self
                .lookup
                .as_ref()
                .is_some_and(|lookup| lookup.miss == Miss::Default)
    }

    /// The rule as a scheme file writes it, for reports.
    pub fn describe(&self) -> String {
        let source = match &self.source {
            RuleSource::Value(value) => format!("value = {value:?}"),
            RuleSource::From(paths) => {
                let paths: Vec<&str> = paths.iter().map(|p| p.text.as_str()).collect();
                if paths.len() == 1 {
                    format!("from = {:?}", paths[0])
                } else {
                    format!("from = {paths:?}")
                }
            }
            RuleSource::Expr(expr) => format!("expr = {:?}", expr.text),
        };
        match &self.lookup {
            None => format!("{{ {source} }}"),
            Some(lookup) => {
                let miss = match &lookup.miss {
                    Miss::Reject => String::new(),
                    Miss::Keep => ", miss = \"keep\"".to_owned(),
                    Miss::Default => ", miss = \"default\"".to_owned(),
                    Miss::Value(value) => format!(", miss_value = {value:?}"),
                };
                format!("{{ {source}, table = {:?}{miss} }}", lookup.table)
            }
        }
    }
}

/// Where a rule's text comes from.
#[derive(Debug, Clone)]
pub enum RuleSource {
    /// A literal (an integer is kept as its decimal text).
    Value(String),
    /// The first non-empty of these paths.
    From(Vec<FieldPath>),
    /// A CEL expression.
    Expr(expr::Expr),
}

/// A `from` path: steps into the record (or, in a `[line]` rule, into the line unless it
/// starts with `record.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    /// As written in the file.
    pub text: String,
    /// Read from the record's header (`record.` prefix, or any path of a `[trade]` rule).
    pub header: bool,
    pub steps: Vec<String>,
}

/// A table lookup and what a missing entry does.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub table: String,
    pub entries: Arc<HashMap<String, String>>,
    pub miss: Miss,
}

/// What a table lookup without an entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The record is invalid.
    Reject,
    /// The looked-up text itself.
    Keep,
    /// The built-in rule's value.
    Default,
    /// This literal.
    Value(String),
}

/// The schemes a transform serves, by id; `default` is always there.
#[derive(Debug, Clone)]
pub struct SchemeSet {
    schemes: HashMap<String, Arc<Scheme>>,
}

impl SchemeSet {
    /// These schemes, plus the built-in `default` unless one of them is `default`.
    pub fn from_schemes(options: BuiltinOptions, schemes: Vec<Scheme>) -> Self {
        let mut by_id: HashMap<String, Arc<Scheme>> = schemes
            .into_iter()
            .map(|s| (s.id.clone(), Arc::new(s)))
            .collect();
        by_id
            .entry(DEFAULT_ID.to_owned())
            .or_insert_with(|| Arc::new(Scheme::builtin(options)));
        Self { schemes: by_id }
    }

    /// The scheme of this id (`""` is `default`).
    pub fn get(&self, id: &str) -> Option<&Arc<Scheme>> {
        self.schemes
            .get(if id.is_empty() { DEFAULT_ID } else { id })
    }

    /// Every scheme, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Scheme>> {
        let mut schemes: Vec<&Arc<Scheme>> = self.schemes.values().collect();
        schemes.sort_by(|a, b| a.id.cmp(&b.id));
        schemes.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in `default` is always there, unless a file of that id replaces it.
    #[test]
    fn a_default_file_replaces_the_built_in_scheme() {
        let set = SchemeSet::from_schemes(BuiltinOptions::default(), Vec::new());
        assert_eq!(set.get("").unwrap().version, BUILTIN_VERSION);
        let file = Scheme {
            version: "0123456789ab".into(),
            ..Scheme::default()
        };
        let set = SchemeSet::from_schemes(BuiltinOptions::default(), vec![file]);
        assert_eq!(set.get("default").unwrap().version, "0123456789ab");
        assert_eq!(set.iter().count(), 1);
        assert!(set.get("other").is_none());
    }
}
