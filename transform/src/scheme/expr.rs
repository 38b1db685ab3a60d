//! CEL expressions in schemes (`expr` rules, `skip`, test `assert`s): compiled once when a
//! scheme is loaded, with the variables each place offers checked then; evaluated per
//! record against values built from the record.

use super::fields::FieldValue;
use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, LazyLock};
use wdtpipe_common::record::{DETAILS_KEY, Fields, KUAIDI100_KEY};
use wdtpipe_proto::v1::{Kuaidi100Data, StockoutDetail, StockoutRecord};

/// The standard CEL environment, built once.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled expression and its text.
#[derive(Clone)]
pub struct Expr {
    pub text: String,
    program: Arc<Program>,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&self.text).finish()
    }
}

/// Why an expression does not compile: what, and where in the expression (0-based
/// character offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

/// Compiles `text`; it may use only the variables in `allowed` (besides those its own
/// comprehensions bind, such as `x` in `list.map(x, …)`).
pub fn compile(text: &str, allowed: &[&str]) -> Result<Expr, CompileError> {
    let program = ENV.compile(text).map_err(|errors| {
        let first = errors.errors.first();
        let (line, column) = first.map_or((1, 1), |e| e.pos);
        CompileError {
            offset: offset_of(text, line, column),
            message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
        }
    })?;
    let mut undeclared = None;
    let mut scope: Vec<String> = Vec::new();
    walk(program.expression(), &mut scope, allowed, &mut undeclared);
    if let Some((name, id)) = undeclared {
        let offset = program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        let places = if allowed.is_empty() {
            "none".to_owned()
        } else {
            allowed.join(", ")
        };
        return Err(CompileError {
            offset,
            message: format!("undeclared variable '{name}' (this place has: {places})"),
        });
    }
    Ok(Expr {
        text: text.to_owned(),
        program: Arc::new(program),
    })
}

/// The character offset of a 1-based (line, column) position.
fn offset_of(text: &str, line: isize, column: isize) -> usize {
    let mut offset = 0;
    for (n, content) in text.split('\n').enumerate() {
        if n + 1 == line.max(1) as usize {
            return offset + (column.max(1) as usize - 1).min(content.chars().count());
        }
        offset += content.chars().count() + 1;
    }
    offset
}

/// Finds the first identifier that is neither allowed nor bound by an enclosing
/// comprehension.
fn walk(
    expr: &IdedExpr,
    scope: &mut Vec<String>,
    allowed: &[&str],
    undeclared: &mut Option<(String, u64)>,
) {
    if undeclared.is_some() {
        return;
    }
    match &expr.expr {
        Ast::Ident(name) => {
            if !name.starts_with('@')
                && !allowed.contains(&name.as_str())
                && !scope.iter().any(|s| s == name)
            {
                *undeclared = Some((name.clone(), expr.id));
            }
        }
        Ast::Call(call) => {
            if let Some(target) = &call.target {
                walk(target, scope, allowed, undeclared);
            }
            for arg in &call.args {
                walk(arg, scope, allowed, undeclared);
            }
        }
        Ast::Comprehension(c) => {
            walk(&c.iter_range, scope, allowed, undeclared);
            walk(&c.accu_init, scope, allowed, undeclared);
            let bound = 2 + usize::from(c.iter_var2.is_some());
            scope.push(c.iter_var.clone());
            scope.push(c.accu_var.clone());
            if let Some(var) = &c.iter_var2 {
                scope.push(var.clone());
            }
            walk(&c.loop_cond, scope, allowed, undeclared);
            walk(&c.loop_step, scope, allowed, undeclared);
            walk(&c.result, scope, allowed, undeclared);
            scope.truncate(scope.len() - bound);
        }
        Ast::List(list) => {
            for element in &list.elements {
                walk(element, scope, allowed, undeclared);
            }
        }
        Ast::Map(map) => {
            for entry in &map.entries {
                match &entry.expr {
                    EntryExpr::StructField(field) => walk(&field.value, scope, allowed, undeclared),
                    EntryExpr::MapEntry(entry) => {
                        walk(&entry.key, scope, allowed, undeclared);
                        walk(&entry.value, scope, allowed, undeclared);
                    }
                }
            }
        }
        Ast::Select(select) => walk(&select.operand, scope, allowed, undeclared),
        Ast::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    walk(&field.value, scope, allowed, undeclared);
                }
            }
        }
        Ast::Literal(_) | Ast::Unspecified => {}
    }
}

/// What expressions read of a variable: the fields they select (`record.x`,
/// `has(record.x)`), or `None` when one uses the variable whole (passes it on, iterates it,
/// indexes it), so every field must be there.
pub type Needed = Option<BTreeSet<String>>;

/// Adds what `expr` reads of `var` to `needed`.
pub fn add_needed(needed: &mut Needed, expr: &Expr, var: &str) {
    if let Some(fields) = needed
        && !selects_only(expr.program.expression(), var, fields)
    {
        *needed = None;
    }
}

/// Collects the fields of `var` that `expr` selects; false when it uses `var` otherwise.
fn selects_only(expr: &IdedExpr, var: &str, fields: &mut BTreeSet<String>) -> bool {
    fn all<'e>(
        exprs: impl IntoIterator<Item = &'e IdedExpr>,
        var: &str,
        fields: &mut BTreeSet<String>,
    ) -> bool {
        exprs.into_iter().all(|e| selects_only(e, var, fields))
    }
    match &expr.expr {
        Ast::Select(select) => match &select.operand.expr {
            Ast::Ident(name) if name == var => {
                fields.insert(select.field.clone());
                true
            }
            _ => selects_only(&select.operand, var, fields),
        },
        Ast::Ident(name) => name != var,
        Ast::Call(call) => all(
            call.target.iter().map(|t| &**t).chain(&call.args),
            var,
            fields,
        ),
        Ast::Comprehension(c) => all(
            [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ],
            var,
            fields,
        ),
        Ast::List(list) => all(&list.elements, var, fields),
        Ast::Map(map) => map.entries.iter().all(|entry| match &entry.expr {
            EntryExpr::StructField(field) => selects_only(&field.value, var, fields),
            EntryExpr::MapEntry(entry) => {
                selects_only(&entry.key, var, fields) && selects_only(&entry.value, var, fields)
            }
        }),
        Ast::Struct(s) => s.entries.iter().all(|entry| match &entry.expr {
            EntryExpr::StructField(field) => selects_only(&field.value, var, fields),
            EntryExpr::MapEntry(entry) => {
                selects_only(&entry.key, var, fields) && selects_only(&entry.value, var, fields)
            }
        }),
        Ast::Literal(_) | Ast::Unspecified => true,
    }
}

impl Expr {
    /// Evaluates with these variables.
    pub fn eval(&self, variables: &[(&str, &Value)]) -> Result<Value, String> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        for (name, value) in variables {
            context.add_variable_from_value(*name, (*value).clone());
        }
        self.program.execute(&context).map_err(|e| e.to_string())
    }
}

/// A rule's result as text: a string as it is, an integer as its decimal text, null as
/// empty. Anything else is an error of the record.
pub fn result_text(value: Value) -> Result<String, String> {
    match value {
        Value::String(text) => Ok(Arc::unwrap_or_clone(text)),
        Value::Int(n) => Ok(n.to_string()),
        Value::UInt(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        other => Err(format!(
            "the expression gave {}, not a string, an integer or null",
            type_name(&other)
        )),
    }
}

/// A `skip` or `assert` result: a bool, or an error of the record.
pub fn result_bool(value: Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(b),
        other => Err(format!(
            "the expression gave {}, not a bool",
            type_name(&other)
        )),
    }
}

fn type_name(value: &Value) -> String {
    match value {
        Value::Float(f) => format!("a double ({f})"),
        Value::Bool(b) => format!("a bool ({b})"),
        Value::List(_) => "a list".to_owned(),
        Value::Map(_) => "a map".to_owned(),
        Value::Bytes(_) => "bytes".to_owned(),
        other => format!("a {}", other.type_of()),
    }
}

/// A JSON value as CEL sees it (numbers as integers when they are, else doubles).
pub fn json_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_value).collect()))
        }
        serde_json::Value::Object(object) => map(object
            .iter()
            .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_value(v)))
            .collect()),
    }
}

/// A field's built-in value as the expression's `default`.
pub fn default_value(value: &FieldValue) -> Value {
    match value {
        FieldValue::Text(text) => Value::String(Arc::new(text.clone())),
        FieldValue::Int(n) => Value::Int(*n),
        FieldValue::Null => Value::Null,
    }
}

fn text(value: &str) -> Value {
    Value::String(Arc::new(value.to_owned()))
}

fn map(entries: HashMap<Key, Value>) -> Value {
    Value::Map(Map {
        map: Arc::new(entries),
    })
}

/// The sent fields of a message as a map of texts (extra keys included, as their text);
/// only `needed` ones when the expressions select fields by name.
fn fields_map<T: Fields>(message: &T, needed: Option<&BTreeSet<String>>) -> HashMap<Key, Value> {
    let field = |key: &str| {
        (
            Key::String(Arc::new(key.to_owned())),
            text(message.field(key).unwrap_or_default()),
        )
    };
    if let Some(needed) = needed {
        let mut entries = HashMap::with_capacity(needed.len());
        for key in needed {
            if let Some(index) = T::index_of(key) {
                if message.sent_at(index) {
                    let (k, v) = field(key);
                    entries.insert(k, v);
                }
            } else if let Some(value) = message.extra().get(key) {
                entries.insert(Key::String(Arc::new(key.clone())), text(value));
            }
        }
        return entries;
    }
    let mut entries = HashMap::with_capacity(T::KEYS.len() / 2);
    for (index, key) in T::KEYS.iter().enumerate() {
        if message.sent_at(index) {
            let (k, v) = field(key);
            entries.insert(k, v);
        }
    }
    for (key, value) in message.extra() {
        entries.insert(Key::String(Arc::new(key.clone())), text(value));
    }
    entries
}

/// A line as CEL's `line` (and an item of `record.details_list`); only `needed` fields
/// when given.
pub fn line_value(line: &StockoutDetail, needed: Option<&BTreeSet<String>>) -> Value {
    map(fields_map(line, needed))
}

fn kuaidi100_value(data: Option<&Kuaidi100Data>) -> Value {
    match data {
        Some(data) => map(fields_map(data, None)),
        None => map(HashMap::new()),
    }
}

/// The record as CEL's `record`: every sent field as its read text, `details_list` as a
/// list of line maps, `kuaidi100Data` as a map (empty when not sent). With `needed`, only
/// those fields: what the scheme's expressions select, so a record of 150 fields costs
/// the few an expression reads.
pub fn record_value(record: &StockoutRecord, needed: Option<&BTreeSet<String>>) -> Value {
    let mut entries = fields_map(record, needed);
    let wants = |key: &str| needed.is_none_or(|n| n.contains(key));
    if wants(DETAILS_KEY) {
        let lines = record
            .details_list
            .iter()
            .map(|l| line_value(l, None))
            .collect();
        entries.insert(
            Key::String(Arc::new(DETAILS_KEY.to_owned())),
            Value::List(Arc::new(lines)),
        );
    }
    if wants(KUAIDI100_KEY) {
        entries.insert(
            Key::String(Arc::new(KUAIDI100_KEY.to_owned())),
            kuaidi100_value(record.kuaidi100_data.as_ref()),
        );
    }
    map(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_checks_variables() {
        assert!(compile("record.paid + 'x'", &["record"]).is_ok());
        assert!(compile("record.details_list.map(d, d.num)", &["record"]).is_ok());
        assert!(compile("[1, 2].exists(x, x == 2)", &[]).is_ok());
        let error = compile("record.a + line.b", &["record", "default"]).unwrap_err();
        assert_eq!(error.offset, 11);
        assert!(
            error.message.contains("undeclared variable 'line'"),
            "{error}"
        );
        let error = compile("record.a +", &["record"]).unwrap_err();
        assert!(error.offset >= 9, "{error:?}");
    }

    #[test]
    fn needed_fields() {
        let needed = |text: &str| {
            let mut needed: Needed = Some(BTreeSet::new());
            add_needed(&mut needed, &compile(text, &["record"]).unwrap(), "record");
            needed.map(|n| n.into_iter().collect::<Vec<_>>())
        };
        assert_eq!(
            needed("has(record.a) && record.b.c == 'x' && size(record.details_list) > 1"),
            Some(vec!["a".into(), "b".into(), "details_list".into()])
        );
        assert_eq!(needed("size(record) > 3"), None);
        assert_eq!(needed("record['a'] == 'x'"), None);
        assert_eq!(needed("1 + 2 == 3"), Some(vec![]));
        assert_eq!(
            needed("[record.a].exists(x, x == record.b)"),
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn record_values() {
        let mut record = StockoutRecord {
            paid: "12.5".into(),
            ..StockoutRecord::default()
        };
        use wdtpipe_common::record::Fields as _;
        record.set_text("nick_name", "");
        record.extra.insert("custom".into(), "x".into());
        let value = record_value(&record, None);
        let expr = compile(
            "[record.paid, record.nick_name, record.custom, string(has(record.customer_name)), string(size(record.kuaidi100Data))]",
            &["record"],
        )
        .unwrap();
        let got = expr.eval(&[("record", &value)]).unwrap();
        let Value::List(items) = got else { panic!() };
        let texts: Vec<String> = items
            .iter()
            .map(|v| result_text(v.clone()).unwrap())
            .collect();
        assert_eq!(texts, ["12.5", "", "x", "false", "0"]);
        assert!(
            result_text(Value::Float(1.5))
                .unwrap_err()
                .contains("a double")
        );
        assert_eq!(result_text(Value::UInt(7)).unwrap(), "7");
        assert_eq!(result_text(Value::Null).unwrap(), "");
    }
}
