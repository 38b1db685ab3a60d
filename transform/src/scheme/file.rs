//! Scheme files (SCHEMES.md, "A scheme file"): TOML read into a [`Scheme`], every
//! expression compiled and every name resolved, or refused with errors that give the file,
//! line and column. Reading files and directories is in [`super::dir`].

use super::dir::version_of;
use super::expr::{self, CompileError};
use super::fields::{LineField, TradeField};
use super::suggest::{did_you_mean, with_suggestion};
use super::{
    BuiltinOptions, DEFAULT_CONNECTOR, FieldPath, Lookup, Miss, Rule, RuleSource, Scheme,
    SchemeTest, Source, TestInput,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// One thing wrong with a scheme file, and where.
mod source;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeError {
    pub file: std::path::PathBuf,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SchemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for SchemeError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheme {
    id: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    source: Option<Spanned<String>>,
    connector: Option<Spanned<String>>,
    skip: Option<Spanned<String>>,
    #[serde(default)]
    trade: BTreeMap<Spanned<String>, Spanned<RawRule>>,
    #[serde(default)]
    line: BTreeMap<Spanned<String>, Spanned<RawRule>>,
    #[serde(default)]
    tables: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    #[serde(default)]
    tests: Vec<Spanned<RawTest>>,
    // `source = "kuaidi100"` only.
    salt_env: Option<Spanned<String>>,
    states: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    trade_status: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    value: Option<Spanned<toml::Value>>,
    from: Option<Spanned<toml::Value>>,
    expr: Option<Spanned<String>>,
    table: Option<Spanned<String>>,
    miss: Option<Spanned<String>>,
    miss_value: Option<Spanned<toml::Value>>,
}

/// A `[[tests]]` block: checked here for its shape and expressions; run by
/// `wdtpipe scheme test`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Option<String>,
    input: Option<String>,
    body: Option<String>,
    expect: Option<String>,
    expect_error: Option<String>,
    #[serde(default)]
    assert: Vec<Spanned<String>>,
}

/// Reads a scheme from a file's bytes.
pub fn parse(
    path: &Path,
    bytes: &[u8],
    options: &BuiltinOptions,
    connectors: &[String],
) -> Result<Scheme, Vec<SchemeError>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        vec![SchemeError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("not UTF-8: {e}"),
        }]
    })?;
    let mut reader = Reader {
        path,
        text,
        errors: Vec::new(),
    };
    let raw: RawScheme = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            reader.error(span, with_suggestion(error.message().trim()));
            return Err(reader.errors);
        }
    };
    let scheme = reader.scheme(raw, options, connectors, version_of(bytes));
    if reader.errors.is_empty() {
        Ok(scheme)
    } else {
        // In the file's order (tables are read by key).
        reader.errors.sort_by_key(|e| (e.line, e.column));
        Err(reader.errors)
    }
}

struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<SchemeError>,
}

/// Where a rule is, which decides its paths and its expression's variables.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Trade,
    Line,
}

impl Reader<'_> {
    /// Line and column (1-based, in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit_once('\n')
            .map_or(before, |(_, last)| last)
            .chars()
            .count()
            + 1;
        (line, column)
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = self.position(span.start);
        self.errors.push(SchemeError {
            file: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    /// An expression error, placed inside the string that holds the expression.
    fn expr_error(&mut self, span: Range<usize>, error: CompileError, what: &str) {
        let raw = &self.text[span.clone()];
        let quote = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            3
        } else {
            1
        };
        let start = span.start + quote;
        let inner: usize = self.text[start.min(self.text.len())..]
            .chars()
            .take(error.offset)
            .map(char::len_utf8)
            .sum();
        self.error(
            start + inner..span.end,
            format!("{what} does not compile: {}", error.message),
        );
    }

    fn compile(
        &mut self,
        expr: &Spanned<String>,
        allowed: &[&str],
        what: &str,
    ) -> Option<expr::Expr> {
        match expr::compile(expr.get_ref(), allowed) {
            Ok(compiled) => Some(compiled),
            Err(error) => {
                self.expr_error(expr.span(), error, what);
                None
            }
        }
    }

    fn scheme(
        &mut self,
        raw: RawScheme,
        options: &BuiltinOptions,
        connectors: &[String],
        version: String,
    ) -> Scheme {
        let id = match &raw.id {
            Some(id) => {
                if !valid_id(id.get_ref()) {
                    self.error(
                        id.span(),
                        format!(
                            "id {:?} must be 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit",
                            id.get_ref()
                        ),
                    );
                }
                id.get_ref().clone()
            }
            None => {
                self.error(0..0, "missing id: every scheme file needs `id = \"…\"`");
                String::new()
            }
        };
        let source = match raw
            .source
            .as_ref()
            .map(|s| (s.get_ref().as_str(), s.span()))
        {
            None | Some(("callback", _)) => Source::Callback,
            Some(("kuaidi100", _)) => Source::Kuaidi100,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("source {other:?} is not one this version takes: \"callback\" or \"kuaidi100\""),
                );
                Source::Callback
            }
        };
        let kuaidi100 = self.source_keys(&raw, source);
        let connector = match &raw.connector {
            Some(name) => {
                if !connectors.iter().any(|c| c == name.get_ref()) {
                    self.error(
                        name.span(),
                        format!(
                            "connector {:?} does not exist (known: {})",
                            name.get_ref(),
                            connectors.join(", ")
                        ),
                    );
                }
                name.get_ref().clone()
            }
            None => DEFAULT_CONNECTOR.to_owned(),
        };
        let skip = raw
            .skip
            .as_ref()
            .and_then(|skip| self.compile(skip, &["record"], "skip"));
        let tables = self.tables(&raw.tables);
        let mut trade_rules = Vec::new();
        for (name, rule) in &raw.trade {
            let Some(field) = TradeField::from_name(name.get_ref()) else {
                self.error(
                    name.span(),
                    format!(
                        "[trade] {:?} is not a field of a trade_push trade{}",
                        name.get_ref(),
                        did_you_mean(name.get_ref(), TradeField::ALL.iter().map(|f| f.name()))
                    ),
                );
                continue;
            };
            if let Some(rule) = self.rule(rule, Place::Trade, &tables) {
                trade_rules.push((field, rule));
            }
        }
        let mut line_rules = Vec::new();
        for (name, rule) in &raw.line {
            let Some(field) = LineField::from_name(name.get_ref()) else {
                self.error(
                    name.span(),
                    format!(
                        "[line] {:?} is not a field of a trade_push order line{}",
                        name.get_ref(),
                        did_you_mean(name.get_ref(), LineField::ALL.iter().map(|f| f.name()))
                    ),
                );
                continue;
            };
            if let Some(rule) = self.rule(rule, Place::Line, &tables) {
                line_rules.push((field, rule));
            }
        }
        let mut tests = Vec::with_capacity(raw.tests.len());
        for (n, test) in raw.tests.iter().enumerate() {
            if let Some(test) = self.test(n + 1, test) {
                tests.push(test);
            }
        }
        // What the expressions read of `record` and `line`, so evaluation builds only that.
        let (mut record_needs, mut line_needs): (expr::Needed, expr::Needed) =
            (Some(Default::default()), Some(Default::default()));
        let rule_expr = |rule: &Rule| match &rule.source {
            RuleSource::Expr(expr) => Some(expr.clone()),
            _ => None,
        };
        let exprs: Vec<expr::Expr> = skip
            .iter()
            .cloned()
            .chain(trade_rules.iter().filter_map(|(_, r)| rule_expr(r)))
            .chain(line_rules.iter().filter_map(|(_, r)| rule_expr(r)))
            .collect();
        for expr in &exprs {
            expr::add_needed(&mut record_needs, expr, "record");
            expr::add_needed(&mut line_needs, expr, "line");
        }
        Scheme {
            id,
            version,
            description: raw.description,
            source,
            kuaidi100,
            connector,
            builtin: options.clone(),
            skip,
            trade_rules,
            line_rules,
            path: Some(self.path.to_owned()),
            record_needs,
            line_needs,
            tests,
        }
    }

    /// A `[[tests]]` block: an input, and at least one check (a test that checks nothing
    /// would always pass).
    fn test(&mut self, n: usize, test: &Spanned<RawTest>) -> Option<SchemeTest> {
        let span = test.span();
        let raw = test.get_ref();
        let name = raw.name.clone().unwrap_or_else(|| format!("test {n}"));
        let here = self.path.parent().unwrap_or(Path::new("."));
        let input = match (&raw.input, &raw.body) {
            (Some(file), None) => TestInput::File(here.join(file)),
            (None, Some(body)) => TestInput::Body(body.clone()),
            (None, None) => {
                self.error(span, format!("{name}: give input (a file) or body"));
                return None;
            }
            (Some(_), Some(_)) => {
                self.error(span, format!("{name}: give input or body, not both"));
                return None;
            }
        };
        if raw.expect.is_none() && raw.expect_error.is_none() && raw.assert.is_empty() {
            self.error(
                span,
                format!("{name}: checks nothing; give expect, expect_error or assert"),
            );
            return None;
        }
        if raw.expect.is_some() && raw.expect_error.is_some() {
            self.error(
                span,
                format!("{name}: expect and expect_error contradict each other; give one"),
            );
            return None;
        }
        let mut asserts = Vec::with_capacity(raw.assert.len());
        for assert in &raw.assert {
            asserts.push(self.compile(assert, &["trades", "error"], "assert")?);
        }
        let (line, _) = self.position(span.start);
        Some(SchemeTest {
            name,
            line,
            input,
            expect: raw.expect.as_ref().map(|file| here.join(file)),
            expect_error: raw.expect_error.clone(),
            asserts,
        })
    }

    fn tables(
        &mut self,
        raw: &BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<toml::Value>>>,
    ) -> HashMap<String, Arc<HashMap<String, String>>> {
        let mut tables = HashMap::new();
        for (name, entries) in raw {
            let mut table = HashMap::with_capacity(entries.len());
            for (key, value) in entries {
                if let Some(text) = self.literal(value, "a table entry") {
                    table.insert(key.get_ref().clone(), text);
                }
            }
            tables.insert(name.get_ref().clone(), Arc::new(table));
        }
        tables
    }

    /// A literal of a rule or table: a string or an integer (kept as its decimal text).
    fn literal(&mut self, value: &Spanned<toml::Value>, what: &str) -> Option<String> {
        match value.get_ref() {
            toml::Value::String(text) => Some(text.clone()),
            toml::Value::Integer(n) => Some(n.to_string()),
            other => {
                self.error(
                    value.span(),
                    format!(
                        "{what} must be a string or an integer, not {}",
                        other.type_str()
                    ),
                );
                None
            }
        }
    }

    fn rule(
        &mut self,
        rule: &Spanned<RawRule>,
        place: Place,
        tables: &HashMap<String, Arc<HashMap<String, String>>>,
    ) -> Option<Rule> {
        let span = rule.span();
        let raw = rule.get_ref();
        let sources = [raw.value.is_some(), raw.from.is_some(), raw.expr.is_some()]
            .iter()
            .filter(|s| **s)
            .count();
        if sources != 1 {
            self.error(
                span,
                if sources == 0 {
                    "the rule has no source: give one of value, from or expr"
                } else {
                    "the rule has more than one source: give only one of value, from or expr"
                },
            );
            return None;
        }
        let source = if let Some(value) = &raw.value {
            RuleSource::Value(self.literal(value, "value")?)
        } else if let Some(from) = &raw.from {
            RuleSource::From(self.paths(from, place)?)
        } else {
            let expr = raw.expr.as_ref()?;
            let allowed: &[&str] = match place {
                Place::Trade => &["record", "default"],
                Place::Line => &["record", "line", "default"],
            };
            RuleSource::Expr(self.compile(expr, allowed, "expr")?)
        };
        let lookup = match &raw.table {
            None => {
                if let Some(miss) = &raw.miss {
                    self.error(miss.span(), "miss needs a table");
                    return None;
                }
                if let Some(miss) = &raw.miss_value {
                    self.error(miss.span(), "miss_value needs a table");
                    return None;
                }
                None
            }
            Some(name) => {
                let Some(entries) = tables.get(name.get_ref()) else {
                    let mut known: Vec<&String> = tables.keys().collect();
                    known.sort();
                    self.error(
                        name.span(),
                        format!(
                            "table {:?} does not exist (tables: {})",
                            name.get_ref(),
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known
                                    .iter()
                                    .map(|k| k.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    );
                    return None;
                };
                let miss = match (&raw.miss, &raw.miss_value) {
                    (Some(miss), Some(_)) => {
                        self.error(miss.span(), "give miss or miss_value, not both");
                        return None;
                    }
                    (None, Some(value)) => Miss::Value(self.literal(value, "miss_value")?),
                    (None, None) => Miss::Reject,
                    (Some(miss), None) => match miss.get_ref().as_str() {
                        "reject" => Miss::Reject,
                        "keep" => Miss::Keep,
                        "default" => Miss::Default,
                        other => {
                            self.error(
                                miss.span(),
                                format!(
                                    "miss {other:?} is not one of \"reject\", \"keep\", \"default\" (or give miss_value)"
                                ),
                            );
                            return None;
                        }
                    },
                };
                Some(Lookup {
                    table: name.get_ref().clone(),
                    entries: Arc::clone(entries),
                    miss,
                })
            }
        };
        Some(Rule { source, lookup })
    }

    fn paths(&mut self, from: &Spanned<toml::Value>, place: Place) -> Option<Vec<FieldPath>> {
        let texts: Vec<&str> = match from.get_ref() {
            toml::Value::String(text) => vec![text.as_str()],
            toml::Value::Array(items) if !items.is_empty() => {
                let texts: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
                let Some(texts) = texts else {
                    self.error(
                        from.span(),
                        "from must be a path or a list of paths (strings)",
                    );
                    return None;
                };
                texts
            }
            toml::Value::Array(_) => {
                self.error(from.span(), "from = [] names no path");
                return None;
            }
            other => {
                self.error(
                    from.span(),
                    format!(
                        "from must be a path or a list of paths, not {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        let mut paths = Vec::with_capacity(texts.len());
        for text in texts {
            let (header, rest) = match text.strip_prefix("record.") {
                Some(rest) => (true, rest),
                None => (place == Place::Trade, text),
            };
            let steps: Vec<String> = rest.split('.').map(str::to_owned).collect();
            if steps.iter().any(String::is_empty) {
                self.error(from.span(), format!("path {text:?} has an empty step"));
                return None;
            }
            paths.push(FieldPath {
                text: text.to_owned(),
                header,
                steps,
            });
        }
        Some(paths)
    }
}

/// `[a-z0-9][a-z0-9_-]{0,62}`.
fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && id.len() <= 63
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

#[cfg(test)]
mod tests;
