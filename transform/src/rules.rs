//! A scheme's rules applied to a record's built-in drafts (SCHEMES.md, "Rules").
//!
//! A rule's text comes from its source (`value`, the first non-empty `from` path, or an
//! `expr`), then from its table when it has one; it is written into its field by the
//! field's writing rules ([`crate::scheme::fields`]). Anything that fails makes the record
//! invalid, naming the field and `scheme rule: …`; no partial value is ever written.

use crate::builtin::Draft;
use crate::scheme::expr::{
    Expr, default_value, line_value, record_value, result_bool, result_text,
};
use crate::scheme::fields::FieldValue;
use crate::scheme::{FieldPath, Miss, Rule, RuleSource, Scheme};
use serde_json::Value as Json;
use std::cell::{OnceCell, RefCell};
use wdtpipe_common::record::{DETAILS_KEY, Fields, KUAIDI100_KEY};
use wdtpipe_common::rejection::rejection;
use wdtpipe_proto::v1::{Kuaidi100Data, RecordRejection, StockoutDetail, StockoutRecord};

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("position", &self.position)
            .field("scheme", &self.scheme.id)
            .finish_non_exhaustive()
    }
}

/// Evaluates rules for one record; CEL's `record` is built once, when first needed, with
/// the fields the scheme's expressions read.
pub struct Evaluator<'a> {
    record: &'a StockoutRecord,
    position: u32,
    scheme: &'a Scheme,
    cel_record: OnceCell<::cel::Value>,
    /// When previewing: what each rule did (see [`Trace`]).
    trace: Option<RefCell<Vec<Trace>>>,
    /// The last rule's source text and table outcome, for the trace.
    last: RefCell<String>,
}

/// What produced one field of one trade, for `wdtpipe scheme preview`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The trade's index among the record's trades.
    pub trade: usize,
    /// The line's index in the trade's `order_list`, for a line field.
    pub line: Option<usize>,
    pub field: &'static str,
    /// The rule as written, and what it read (`from` path's text, the key a table looked
    /// up and whether it had it).
    pub rule: String,
}

/// What a rule reads: the header (a `[trade]` rule) or a line and the header.
#[derive(Clone, Copy)]
enum Place<'p> {
    Trade,
    Line(&'p StockoutDetail, &'p OnceCell<::cel::Value>),
}

impl<'a> Evaluator<'a> {
    pub fn new(record: &'a StockoutRecord, position: u32, scheme: &'a Scheme) -> Self {
        Self {
            record,
            position,
            scheme,
            cel_record: OnceCell::new(),
            trace: None,
            last: RefCell::new(String::new()),
        }
    }

    /// Records what each rule does, for a preview.
    pub fn traced(mut self) -> Self {
        self.trace = Some(RefCell::new(Vec::new()));
        self
    }

    /// What the rules did so far.
    pub fn into_trace(self) -> Vec<Trace> {
        self.trace.map(RefCell::into_inner).unwrap_or_default()
    }

    fn note(&self, trade: usize, line: Option<usize>, field: &'static str, rule: &Rule) {
        if let Some(trace) = &self.trace {
            let rule = format!("{}: {}", rule.describe(), self.last.borrow());
            trace.borrow_mut().push(Trace {
                trade,
                line,
                field,
                rule,
            });
        }
    }

    fn cel_record(&self) -> &::cel::Value {
        self.cel_record
            .get_or_init(|| record_value(self.record, self.scheme.record_needs.as_ref()))
    }

    /// The scheme's `skip` expression for this record.
    pub fn skip(&self, skip: &Expr) -> Result<bool, RecordRejection> {
        let fail = |why: String| {
            rejection(
                self.position,
                &self.record.tid,
                "skip",
                format!("scheme rule: {why}"),
            )
        };
        let value = skip
            .eval(&[("record", self.cel_record())])
            .map_err(|e| fail(format!("expression failed: {e}")))?;
        result_bool(value).map_err(fail)
    }

    /// Applies the scheme's trade rules, then the built-in line status, then its line
    /// rules, to one draft.
    pub fn apply(&self, index: usize, draft: &mut Draft) -> Result<(), RecordRejection> {
        let scheme = self.scheme;
        for (field, rule) in &scheme.trade_rules {
            let default = if rule.reads_default() {
                field.get(&draft.trade)
            } else {
                FieldValue::Null
            };
            let written = self
                .text(rule, Place::Trade, &default)
                .and_then(|text| field.write(&mut draft.trade, &text));
            if let Err(why) = written {
                return Err(draft.rule_failed(self.position, field.name(), &why));
            }
            draft.mark(*field);
            self.note(index, None, field.name(), rule);
        }
        draft.follow_trade_status();
        if scheme.line_rules.is_empty() {
            return Ok(());
        }
        for i in 0..draft.trade.order_list.len() {
            let n = draft.lines[i].n;
            let Some(detail) = self.record.details_list.get(n - 1) else {
                continue;
            };
            let line = OnceCell::new();
            for (field, rule) in &scheme.line_rules {
                let default = if rule.reads_default() {
                    field.get(&draft.trade.order_list[i])
                } else {
                    FieldValue::Null
                };
                let written = self
                    .text(rule, Place::Line(detail, &line), &default)
                    .and_then(|text| field.write(&mut draft.trade.order_list[i], &text));
                if let Err(why) = written {
                    return Err(draft.rule_failed(
                        self.position,
                        format!("details_list[{n}].{field}"),
                        &why,
                    ));
                }
                draft.lines[i].mark(*field);
                self.note(index, Some(i), field.name(), rule);
            }
        }
        Ok(())
    }

    /// The rule's text: its source, then its table.
    fn text(&self, rule: &Rule, place: Place<'_>, default: &FieldValue) -> Result<String, String> {
        let text = match &rule.source {
            RuleSource::Value(value) => value.clone(),
            RuleSource::From(paths) => {
                let mut found = String::new();
                for path in paths {
                    found = self.read(path, place)?;
                    if !found.is_empty() {
                        break;
                    }
                }
                found
            }
            RuleSource::Expr(expr) => {
                let default = default_value(default);
                let value = match place {
                    Place::Trade => {
                        expr.eval(&[("record", self.cel_record()), ("default", &default)])
                    }
                    Place::Line(detail, line) => expr.eval(&[
                        ("record", self.cel_record()),
                        (
                            "line",
                            line.get_or_init(|| {
                                line_value(detail, self.scheme.line_needs.as_ref())
                            }),
                        ),
                        ("default", &default),
                    ]),
                }
                .map_err(|e| format!("expression failed: {e}"))?;
                result_text(value)?
            }
        };
        if self.trace.is_some() {
            *self.last.borrow_mut() = format!("gave {text:?}");
        }
        let Some(lookup) = &rule.lookup else {
            return Ok(text);
        };
        if let Some(found) = lookup.entries.get(&text) {
            if self.trace.is_some() {
                *self.last.borrow_mut() =
                    format!("looked up {text:?} in table {}: {found:?}", lookup.table);
            }
            return Ok(found.clone());
        }
        if self.trace.is_some() {
            let miss = match &lookup.miss {
                Miss::Reject => "rejected".to_owned(),
                Miss::Keep => "kept the text".to_owned(),
                Miss::Default => "took the built-in value".to_owned(),
                Miss::Value(value) => format!("took miss_value {value:?}"),
            };
            *self.last.borrow_mut() = format!(
                "looked up {text:?} in table {}: no entry, {miss}",
                lookup.table
            );
        }
        match &lookup.miss {
            Miss::Reject => Err(format!("table {} has no entry for {text:?}", lookup.table)),
            Miss::Keep => Ok(text),
            Miss::Default => Ok(default.text()),
            Miss::Value(value) => Ok(value.clone()),
        }
    }

    /// A `from` path's text: empty where a step is missing, null, empty or a scalar; an
    /// error where a step is an array or the path ends at an object or array.
    fn read(&self, path: &FieldPath, place: Place<'_>) -> Result<String, String> {
        let mut steps = path.steps.iter();
        let first = steps.next().map(String::as_str).unwrap_or_default();
        let mut node = match place {
            Place::Line(detail, _) if !path.header => message_step(detail, first),
            _ => match first {
                DETAILS_KEY => {
                    return Err(format!("from {}: {DETAILS_KEY} is an array", path.text));
                }
                KUAIDI100_KEY => Node::Kuaidi(self.record.kuaidi100_data.as_ref()),
                key => message_step(self.record, key),
            },
        };
        for step in steps {
            node = match node {
                Node::Missing => return Ok(String::new()),
                Node::Kuaidi(None) => return Ok(String::new()),
                Node::Kuaidi(Some(data)) => message_step(data, step),
                Node::Text(text) => match structured(&text) {
                    Some(Json::Object(object)) => Node::Json(object.get(step).cloned()),
                    Some(_) => return Err(format!("from {}: a step into an array", path.text)),
                    None => return Ok(String::new()),
                },
                Node::Json(Some(Json::Object(object))) => Node::Json(object.get(step).cloned()),
                Node::Json(Some(Json::Array(_))) => {
                    return Err(format!("from {}: a step into an array", path.text));
                }
                Node::Json(_) => return Ok(String::new()),
            };
        }
        let ends_at = |what: &str| Err(format!("from {}: ends at {what}", path.text));
        match node {
            Node::Missing | Node::Kuaidi(None) | Node::Json(None) => Ok(String::new()),
            Node::Kuaidi(Some(_)) => ends_at("an object"),
            Node::Text(text) => match structured(&text) {
                Some(Json::Object(_)) => ends_at("an object"),
                Some(_) => ends_at("an array"),
                None => Ok(text),
            },
            Node::Json(Some(value)) => match value {
                Json::Object(_) => ends_at("an object"),
                Json::Array(_) => ends_at("an array"),
                Json::Null => Ok(String::new()),
                Json::Bool(b) => Ok(if b { "1" } else { "0" }.to_owned()),
                Json::Number(n) => Ok(n.to_string()),
                Json::String(s) => Ok(s.trim().to_owned()),
            },
        }
    }
}

/// Where a `from` path stands after a step.
enum Node<'a> {
    /// Not sent.
    Missing,
    /// The tracking data, `None` when not sent.
    Kuaidi(Option<&'a Kuaidi100Data>),
    /// A text as read (possibly holding a JSON object or array).
    Text(String),
    /// A value inside a JSON object.
    Json(Option<Json>),
}

/// A field (or unknown key) of a message.
fn message_step<'a, T: Fields>(message: &T, key: &str) -> Node<'a> {
    match message.field(key) {
        Some(text) => Node::Text(text.to_owned()),
        None => match message.extra().get(key) {
            Some(text) => Node::Text(text.clone()),
            None => Node::Missing,
        },
    }
}

/// The JSON object or array a text holds, if it holds one.
fn structured(text: &str) -> Option<Json> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<Json>(text)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
}
