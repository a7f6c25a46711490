//! The operator-list pipeline format: a pipeline written as a list of operators over
//! chosen event types, as `POST /api/v1/pipelines` also accepts it, compiled into the
//! EventQL query of an ordinary pipeline.
//!
//! ```json
//! {"name": "user_analytics",
//!  "source_event_types": ["user.created", "user.updated"],
//!  "operators": [
//!    {"type": "filter", "field": "country", "value": "US", "op": "eq"},
//!    {"type": "reduce", "field": "id", "function": "count", "group_by": "country"}],
//!  "enabled": true}
//! ```
//!
//! becomes
//!
//! ```sql
//! SELECT payload->>'country' AS "country", COUNT(payload->>'id') AS "count"
//! FROM events
//! WHERE event_type IN ('user.created', 'user.updated') AND payload->>'country' = 'US'
//! GROUP BY payload->>'country'
//! ```
//!
//! Fields are payload fields (`a.b` for nested ones), or the columns `entity_id`,
//! `event_type`, `event_id`, `timestamp`. Operators, in order:
//!
//! - `filter` `{field, op, value}`: `op` is `eq` (default), `ne`, `gt`, `gte`, `lt`,
//!   `lte` or `contains` (text).
//! - `map` `{field, transform, value?}`: `transform` is `uppercase`, `lowercase`,
//!   `trim`, `multiply` or `add` (these two with a number `value`); later operators
//!   see the mapped field, and without `reduce` it is a column of the results.
//! - `window` `{window_type, size?, slide?, gap?}`: `tumbling` (`size`), `sliding`
//!   (`size`, `slide`) or `session` (`gap`, per entity), durations such as `"10s"`;
//!   it must be followed by `reduce`.
//! - `reduce` `{field, function, group_by?}`: `count`, `sum`, `avg`, `min` or `max`
//!   of the field, per value of `group_by`; the last operator. Without a window its
//!   results are running totals per group, kept up to date.
//!
//! - `enrich` `{table, on?, key?, fields}`: a lookup join. Each event gets the
//!   `fields` (columns) of the row of `table` (a pipeline's or projection's results)
//!   whose `key` column (default `entity_id`) equals the event's field `on` (default
//!   `entity_id`), compared as text; null when there is none (a `LEFT JOIN`). Later
//!   operators see the fields by their names, and without `reduce` they are columns
//!   of the results. The table is read as it is when each input batch is processed.
//! - `dedupe` `{field, within}` and `throttle` `{field?, limit, per}`: the source
//!   operators ([`crate::dedupe`], [`crate::throttle`]), set as pipeline options
//!   ([`OperatorPipeline::pipeline_options`]); they act on the source events, so they
//!   come before the other operators.
//! - `branch` `{branches: [{name, field?, op?, value?}, …]}`: routes the result rows
//!   to a table per branch, `<pipeline>_<name>` ([`crate::branch`]): each row to the
//!   first branch whose condition on a result column holds (a branch without `field`
//!   takes every row left). It acts on the results, so it is the last operator.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::ddl::duration_micros;
use crate::error::{Error, Result};

/// A pipeline in the operator-list format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorPipeline {
    /// Its name.
    pub name: String,
    /// The event types it reads; all when empty.
    #[serde(default)]
    pub source_event_types: Vec<String>,
    /// Its operators, in order.
    #[serde(default)]
    pub operators: Vec<Value>,
    /// Whether it runs.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Pipeline options, as in `CREATE PIPELINE … WITH (…)`.
    #[serde(default)]
    pub options: Options,
}

/// Pipeline options as a JSON object of strings, in the order written (branches are
/// tried in order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options(pub Vec<(String, String)>);

impl Options {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Set `key` to `value`; whether it was set before (then it keeps its place).
    pub fn set(&mut self, key: String, value: String) -> bool {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => {
                entry.1 = value;
                true
            }
            None => {
                self.0.push((key, value));
                false
            }
        }
    }
}

impl<'de> Deserialize<'de> for Options {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Options;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of option names and their values as strings")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Options, A::Error> {
                let mut options = Options::default();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    if options.set(key.clone(), value) {
                        return Err(serde::de::Error::custom(format!(
                            "the option {key} is given twice"
                        )));
                    }
                }
                Ok(options)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn enabled() -> bool {
    true
}

/// The columns of `events` a field may name instead of a payload field.
const COLUMNS: [&str; 4] = ["entity_id", "event_type", "event_id", "timestamp"];

/// Where the grouping comes from.
enum Window {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

impl OperatorPipeline {
    /// The pipeline's EventQL query.
    pub fn to_sql(&self) -> Result<String> {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut mapped: Vec<String> = Vec::new();
        let mut conditions: Vec<String> = Vec::new();
        if !self.source_event_types.is_empty() {
            let types: Vec<String> = self.source_event_types.iter().map(|t| quote(t)).collect();
            conditions.push(format!("event_type IN ({})", types.join(", ")));
        }
        let mut window: Option<Window> = None;
        let mut reduce: Option<(String, String, Option<String>)> = None;
        let mut joins = String::new();
        let leading = self.operators.iter().take_while(|o| is_source(o)).count();
        let routing = self.operators.len()
            - self
                .operators
                .iter()
                .rev()
                .take_while(|o| is_branch(o))
                .count();
        // With a join, the events' columns are named through their table's alias.
        let q = if self.operators.iter().any(|o| kind_of(o) == Some("enrich")) {
            "e."
        } else {
            ""
        };
        if let (false, Some(types)) = (q.is_empty(), conditions.first_mut()) {
            *types = format!("{q}{types}");
        }
        for (index, operator) in self.operators.iter().enumerate() {
            let at = |message: String| Error::Invalid(format!("operators[{index}]: {message}"));
            if is_branch(operator) {
                // A pipeline option ([`OperatorPipeline::pipeline_options`]), not SQL.
                if index < routing {
                    return Err(at(
                        "branch routes the results: make it the last operator".into()
                    ));
                }
                continue;
            }
            if is_source(operator) {
                // Pipeline options ([`OperatorPipeline::options`]), not SQL.
                if index >= leading {
                    return Err(at(
                        "dedupe and throttle act on the source events: put them before the \
                         other operators"
                            .into(),
                    ));
                }
                continue;
            }
            if reduce.is_some() {
                return Err(at("reduce must be the last operator".into()));
            }
            let kind = operator
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| at("an operator needs a \"type\"".into()))?;
            let text = |key: &str| -> Result<String> {
                operator
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| at(format!("{kind} needs \"{key}\" (a string)")))
            };
            let known = |keys: &[&str]| -> Result<()> {
                if let Some(object) = operator.as_object() {
                    for key in object.keys() {
                        if key != "type" && !keys.contains(&key.as_str()) {
                            return Err(at(format!(
                                "{kind} takes no \"{key}\" (it takes {})",
                                keys.join(", ")
                            )));
                        }
                    }
                }
                Ok(())
            };
            match kind {
                "filter" => {
                    known(&["field", "op", "value"])?;
                    let field = text("field")?;
                    let expr = field_expr(&fields, &field, q).map_err(at)?;
                    let op = operator.get("op").and_then(Value::as_str).unwrap_or("eq");
                    let value = operator
                        .get("value")
                        .ok_or_else(|| at("filter needs \"value\"".into()))?;
                    conditions.push(condition(&expr, op, value).map_err(at)?);
                }
                "map" => {
                    known(&["field", "transform", "value"])?;
                    let field = text("field")?;
                    let expr = field_expr(&fields, &field, q).map_err(at)?;
                    let transform = text("transform")?;
                    let number = || -> Result<String> {
                        match operator.get("value") {
                            Some(Value::Number(n)) => Ok(n.to_string()),
                            _ => Err(at(format!("map {transform} needs a number \"value\""))),
                        }
                    };
                    let new = match transform.as_str() {
                        "uppercase" => format!("upper({expr})"),
                        "lowercase" => format!("lower({expr})"),
                        "trim" => format!("trim({expr})"),
                        "multiply" => format!("({expr}) * {}", number()?),
                        "add" => format!("({expr}) + {}", number()?),
                        other => {
                            return Err(at(format!(
                                "map transforms are uppercase, lowercase, trim, multiply and \
                                 add, not {other:?}"
                            )));
                        }
                    };
                    if !mapped.contains(&field) {
                        mapped.push(field.clone());
                    }
                    fields.insert(field, new);
                }
                "window" => {
                    known(&["window_type", "size", "slide", "gap"])?;
                    if window.is_some() {
                        return Err(at("a pipeline has one window".into()));
                    }
                    let duration = |key: &str| -> Result<i64> {
                        let value = text(key)?;
                        let micros = duration_micros(key, &value)?;
                        if micros <= 0 || micros % 1_000 != 0 {
                            return Err(at(format!(
                                "{key} is a positive whole number of milliseconds"
                            )));
                        }
                        Ok(micros)
                    };
                    window = Some(match text("window_type")?.as_str() {
                        "tumbling" => Window::Tumbling {
                            size: duration("size")?,
                        },
                        "sliding" => Window::Sliding {
                            size: duration("size")?,
                            slide: duration("slide")?,
                        },
                        "session" => Window::Session {
                            gap: duration("gap")?,
                        },
                        other => {
                            return Err(at(format!(
                                "window_type is tumbling, sliding or session, not {other:?}"
                            )));
                        }
                    });
                }
                "reduce" => {
                    known(&["field", "function", "group_by"])?;
                    let field = text("field")?;
                    let function = text("function")?;
                    if !["count", "sum", "avg", "min", "max"].contains(&function.as_str()) {
                        return Err(at(format!(
                            "reduce functions are count, sum, avg, min and max, not {function:?}"
                        )));
                    }
                    let group_by = match operator.get("group_by") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(g)) => Some(g.clone()),
                        Some(_) => return Err(at("group_by is a field name".into())),
                    };
                    reduce = Some((field, function, group_by));
                }
                "enrich" => {
                    known(&["table", "on", "key", "fields"])?;
                    let table = text("table")?;
                    let optional = |key: &str| match operator.get(key) {
                        None | Some(Value::Null) => Ok("entity_id".to_string()),
                        Some(Value::String(s)) => Ok(s.clone()),
                        Some(_) => Err(at(format!("enrich's \"{key}\" is a field name"))),
                    };
                    let on = field_expr(&fields, &optional("on")?, q).map_err(at)?;
                    let key = optional("key")?;
                    let added: Vec<String> = match operator.get("fields") {
                        Some(Value::Array(list)) if !list.is_empty() => list
                            .iter()
                            .map(|f| f.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                            .ok_or_else(|| at("enrich's fields are column names".into()))?,
                        _ => {
                            return Err(at(
                                "enrich needs \"fields\": the table's columns to add".into()
                            ));
                        }
                    };
                    let alias = format!("enrich_{index}");
                    joins.push_str(&format!(
                        " LEFT JOIN {} AS {alias} ON CAST({on} AS VARCHAR) = \
                         CAST({alias}.{} AS VARCHAR)",
                        identifier(&table),
                        identifier(&key)
                    ));
                    for field in added {
                        fields.insert(field.clone(), format!("{alias}.{}", identifier(&field)));
                        if !mapped.contains(&field) {
                            mapped.push(field);
                        }
                    }
                }
                other => {
                    return Err(at(format!(
                        "unknown operator type {other:?} (filter, map, enrich, window, reduce, \
                         dedupe, throttle, branch)"
                    )));
                }
            }
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let Some((field, function, group_by)) = reduce else {
            if window.is_some() {
                return Err(Error::Invalid(
                    "a window must be followed by a reduce".into(),
                ));
            }
            let mut columns: Vec<String> = [
                "event_id",
                "entity_id",
                "event_type",
                "timestamp",
                "payload",
            ]
            .iter()
            .map(|c| format!("{q}{c}"))
            .collect();
            for field in &mapped {
                columns.push(format!("{} AS {}", fields[field], identifier(field)));
            }
            let alias = if q.is_empty() { "" } else { " AS e" };
            return Ok(format!(
                "SELECT {} FROM events{alias}{joins}{filter}",
                columns.join(", ")
            ));
        };
        let value = field_expr(&fields, &field, q).map_err(Error::Invalid)?;
        let aggregate = format!(
            "{}({value}) AS {}",
            function.to_uppercase(),
            identifier(&function)
        );
        let group = match &group_by {
            Some(g) => Some((
                field_expr(&fields, g, q).map_err(Error::Invalid)?,
                identifier(g),
            )),
            None => None,
        };
        let source = match &window {
            None => "events".to_string(),
            Some(Window::Tumbling { size }) => {
                format!("TUMBLE(events, timestamp, {})", interval(*size))
            }
            Some(Window::Sliding { size, slide }) => format!(
                "HOP(events, timestamp, {}, {})",
                interval(*slide),
                interval(*size)
            ),
            Some(Window::Session { gap }) => {
                if group_by.as_deref().is_some_and(|g| g != "entity_id") {
                    return Err(Error::Invalid(
                        "a session window groups by entity_id (its sessions are per entity)".into(),
                    ));
                }
                format!("SESSION(events, timestamp, {}, entity_id)", interval(*gap))
            }
        };
        let source = if q.is_empty() {
            source
        } else {
            format!("{source} AS e")
        };
        let mut select: Vec<String> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        if window.is_some() {
            for bound in ["window_start", "window_end"] {
                select.push(format!("{q}{bound}"));
                keys.push(format!("{q}{bound}"));
            }
        }
        if matches!(window, Some(Window::Session { .. })) {
            select.push(format!("{q}entity_id"));
            keys.push(format!("{q}entity_id"));
        } else if let Some((expr, name)) = &group {
            select.push(format!("{expr} AS {name}"));
            keys.push(expr.clone());
        }
        select.push(aggregate);
        let grouping = if keys.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", keys.join(", "))
        };
        if keys.is_empty() {
            return Err(Error::Invalid(
                "a reduce without a window needs a group_by".into(),
            ));
        }
        Ok(format!(
            "SELECT {} FROM {source}{joins}{filter}{grouping}",
            select.join(", ")
        ))
    }
}

fn kind_of(operator: &Value) -> Option<&str> {
    operator.get("type").and_then(Value::as_str)
}

/// Whether `operator` is a source operator (`dedupe`, `throttle`).
fn is_source(operator: &Value) -> bool {
    matches!(kind_of(operator), Some("dedupe" | "throttle"))
}

/// Whether `operator` routes the results (`branch`).
fn is_branch(operator: &Value) -> bool {
    kind_of(operator) == Some("branch")
}

impl OperatorPipeline {
    /// The pipeline's options: `options`, and those of its leading `dedupe`
    /// (`{field, within}`) and `throttle` (`{field?, limit, per}`) operators.
    pub fn pipeline_options(&self) -> Result<Options> {
        let mut options = self.options.clone();
        for (index, operator) in self.operators.iter().enumerate() {
            let at = |message: String| Error::Invalid(format!("operators[{index}]: {message}"));
            let text = |key: &str| {
                operator
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let needs = |key: &str, what: &str| at(format!("{key} needs {what}"));
            match operator.get("type").and_then(Value::as_str) {
                Some("dedupe") => {
                    let field = text("field").ok_or_else(|| needs("dedupe", "\"field\""))?;
                    let within =
                        text("within").ok_or_else(|| needs("dedupe", "\"within\" (\"10m\")"))?;
                    options.set("dedupe_on".into(), field);
                    options.set("dedupe_within".into(), within);
                }
                Some("throttle") => {
                    let limit = operator
                        .get("limit")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| needs("throttle", "a whole number \"limit\""))?;
                    let per = text("per").ok_or_else(|| needs("throttle", "\"per\" (\"1s\")"))?;
                    if let Some(field) = text("field") {
                        options.set("throttle_on".into(), field);
                    }
                    options.set("throttle".into(), format!("{limit}/{per}"));
                }
                Some("branch") => {
                    let Some(Value::Array(branches)) = operator.get("branches") else {
                        return Err(needs(
                            "branch",
                            "\"branches\": [{name, field, op, value}, …]",
                        ));
                    };
                    for (i, branch) in branches.iter().enumerate() {
                        let at = |message: String| {
                            Error::Invalid(format!("operators[{index}].branches[{i}]: {message}"))
                        };
                        let name = branch
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| at("a branch needs a \"name\"".into()))?;
                        let when = match branch.get("field") {
                            None => "true".to_string(),
                            Some(Value::String(field)) => {
                                let op = branch.get("op").and_then(Value::as_str).unwrap_or("eq");
                                let value = branch.get("value").unwrap_or(&Value::Null);
                                condition(&identifier(field), op, value).map_err(at)?
                            }
                            Some(_) => return Err(at("a branch's field is a column name".into())),
                        };
                        let key = format!("branch_{name}");
                        if options.set(key, when) {
                            return Err(at(format!("the branch {name} is given twice")));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// The SQL of `field`: its mapped expression, a column, or a payload path; the
/// events' columns named through `q` (their table's alias and a dot, or nothing).
fn field_expr(
    mapped: &BTreeMap<String, String>,
    field: &str,
    q: &str,
) -> std::result::Result<String, String> {
    if let Some(expr) = mapped.get(field) {
        return Ok(expr.clone());
    }
    if COLUMNS.contains(&field) {
        return Ok(format!("{q}{field}"));
    }
    let parts: Vec<&str> = field.split('.').collect();
    if field.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(format!("{field:?} is not a field name"));
    }
    let mut expr = format!("{q}payload");
    for (i, part) in parts.iter().enumerate() {
        let arrow = if i + 1 == parts.len() { "->>" } else { "->" };
        expr.push_str(&format!("{arrow}{}", quote(part)));
    }
    Ok(format!("({expr})"))
}

/// `expr op value` in SQL.
fn condition(expr: &str, op: &str, value: &Value) -> std::result::Result<String, String> {
    let literal = match value {
        Value::String(s) => quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => quote(if *b { "true" } else { "false" }),
        Value::Null => {
            return match op {
                "eq" => Ok(format!("{expr} IS NULL")),
                "ne" => Ok(format!("{expr} IS NOT NULL")),
                _ => Err(format!("{op} cannot compare with null")),
            };
        }
        _ => return Err("a filter's value is a string, number, boolean or null".into()),
    };
    let sql_op = match op {
        "eq" => "=",
        "ne" => "<>",
        "gt" => ">",
        "gte" => ">=",
        "lt" => "<",
        "lte" => "<=",
        "contains" => {
            let Value::String(s) = value else {
                return Err("contains takes a string value".into());
            };
            return Ok(format!("strpos({expr}, {}) > 0", quote(s)));
        }
        other => {
            return Err(format!(
                "filter ops are eq, ne, gt, gte, lt, lte and contains, not {other:?}"
            ));
        }
    };
    Ok(format!("{expr} {sql_op} {literal}"))
}

/// A SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A SQL identifier, quoted.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn interval(micros: i64) -> String {
    format!("INTERVAL '{} milliseconds'", micros / 1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(json: &str) -> OperatorPipeline {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_seed_example_compiles_to_a_grouped_count() {
        let p = pipeline(
            r#"{"name": "user_analytics",
                "source_event_types": ["user.created", "user.updated"],
                "operators": [
                  {"type": "filter", "field": "country", "value": "US", "op": "eq"},
                  {"type": "reduce", "field": "id", "function": "count", "group_by": "country"}],
                "enabled": true}"#,
        );
        assert_eq!(
            p.to_sql().ok(),
            Some(
                "SELECT (payload->>'country') AS \"country\", COUNT((payload->>'id')) AS \
                 \"count\" FROM events WHERE event_type IN ('user.created', 'user.updated') \
                 AND (payload->>'country') = 'US' GROUP BY (payload->>'country')"
                    .to_string()
            )
        );
    }

    #[test]
    fn dedupe_and_throttle_become_options_and_come_first() {
        let p = pipeline(
            r#"{"name": "p", "operators": [
                  {"type": "dedupe", "field": "order_id", "within": "10m"},
                  {"type": "throttle", "limit": 100, "per": "1s"},
                  {"type": "filter", "field": "country", "value": "US"}]}"#,
        );
        assert_eq!(
            p.to_sql().ok().as_deref(),
            Some(
                "SELECT event_id, entity_id, event_type, timestamp, payload FROM events \
                 WHERE (payload->>'country') = 'US'"
            )
        );
        let options = p.pipeline_options().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            options.get("dedupe_on").map(String::as_str),
            Some("order_id")
        );
        assert_eq!(
            options.get("dedupe_within").map(String::as_str),
            Some("10m")
        );
        assert_eq!(options.get("throttle").map(String::as_str), Some("100/1s"));
        let late = pipeline(
            r#"{"name": "p", "operators": [
                  {"type": "filter", "field": "country", "value": "US"},
                  {"type": "dedupe", "field": "order_id", "within": "10m"}]}"#,
        );
        let error = late
            .to_sql()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("before the other operators"), "{error}");
        let partial =
            pipeline(r#"{"name": "p", "operators": [{"type": "throttle", "per": "1s"}]}"#);
        let error = partial
            .pipeline_options()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("limit"), "{error}");
    }

    #[test]
    fn enrich_joins_a_table_and_branch_routes_the_results() {
        let p = pipeline(
            r#"{"name": "p", "operators": [
                  {"type": "enrich", "table": "customers", "on": "customer_id", "fields": ["tier"]},
                  {"type": "filter", "field": "tier", "value": "gold"},
                  {"type": "window", "window_type": "tumbling", "size": "1m"},
                  {"type": "reduce", "field": "amount", "function": "sum", "group_by": "tier"},
                  {"type": "branch", "branches": [
                     {"name": "big", "field": "sum", "op": "gt", "value": 100},
                     {"name": "rest"}]}]}"#,
        );
        assert_eq!(
            p.to_sql().ok().as_deref(),
            Some(
                "SELECT e.window_start, e.window_end, enrich_0.\"tier\" AS \"tier\", \
                 SUM((e.payload->>'amount')) AS \"sum\" \
                 FROM TUMBLE(events, timestamp, INTERVAL '60000 milliseconds') AS e \
                 LEFT JOIN \"customers\" AS enrich_0 \
                 ON CAST((e.payload->>'customer_id') AS VARCHAR) = CAST(enrich_0.\"entity_id\" AS VARCHAR) \
                 WHERE enrich_0.\"tier\" = 'gold' \
                 GROUP BY e.window_start, e.window_end, enrich_0.\"tier\""
            )
        );
        let options = p.pipeline_options().unwrap_or_else(|e| panic!("{e}"));
        // In the order written: the first branch that takes a row gets it.
        assert_eq!(
            options.0,
            vec![
                ("branch_big".to_string(), "\"sum\" > 100".to_string()),
                ("branch_rest".to_string(), "true".to_string()),
            ]
        );
    }

    #[test]
    fn maps_windows_and_errors() {
        let p = pipeline(
            r#"{"name": "p", "operators": [
                  {"type": "map", "field": "customer.tier", "transform": "uppercase"},
                  {"type": "window", "window_type": "sliding", "size": "10s", "slide": "2s"},
                  {"type": "reduce", "field": "amount", "function": "sum", "group_by": "customer.tier"}]}"#,
        );
        let sql = p.to_sql().unwrap_or_else(|e| panic!("{e}"));
        assert!(sql.contains("HOP(events, timestamp, INTERVAL '2000 milliseconds', INTERVAL '10000 milliseconds')"), "{sql}");
        assert!(
            sql.contains("upper((payload->'customer'->>'tier')) AS \"customer.tier\""),
            "{sql}"
        );
        for (json, says) in [
            (r#"[{"type": "enrich", "table": "t"}]"#, "needs \"fields\""),
            (
                r#"[{"type": "enrich", "table": "t", "fields": ["a"], "on": 3}]"#,
                "is a field name",
            ),
            (
                r#"[{"type": "branch", "branches": []}, {"type": "filter", "field": "x", "value": 1}]"#,
                "make it the last operator",
            ),
            (r#"[{"type": "nope"}]"#, "unknown operator"),
            (r#"[{"field": "x"}]"#, "needs a \"type\""),
            (
                r#"[{"type": "filter", "field": "x", "value": 1, "op": "like"}]"#,
                "filter ops",
            ),
            (
                r#"[{"type": "filter", "field": "x", "value": 1, "extra": 2}]"#,
                "takes no \"extra\"",
            ),
            (
                r#"[{"type": "reduce", "field": "x", "function": "median", "group_by": "y"}]"#,
                "median",
            ),
            (
                r#"[{"type": "reduce", "field": "x", "function": "count", "group_by": "y"}, {"type": "filter", "field": "x", "value": 1}]"#,
                "last operator",
            ),
            (
                r#"[{"type": "window", "window_type": "tumbling", "size": "1s"}]"#,
                "followed by a reduce",
            ),
            (
                r#"[{"type": "window", "window_type": "tumbling", "size": "0s"}, {"type": "reduce", "field": "x", "function": "count", "group_by": "y"}]"#,
                "positive",
            ),
            (
                r#"[{"type": "reduce", "field": "x", "function": "count"}]"#,
                "needs a group_by",
            ),
            (
                r#"[{"type": "map", "field": "x", "transform": "multiply"}]"#,
                "number",
            ),
        ] {
            let p = pipeline(&format!(r#"{{"name": "p", "operators": {json}}}"#));
            match p.to_sql() {
                Err(e) => assert!(e.to_string().contains(says), "{json}: {e}"),
                Ok(sql) => panic!("{json}: accepted as {sql}"),
            }
        }
    }
}
