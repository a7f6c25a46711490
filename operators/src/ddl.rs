//! The pipeline statements of EventQL, recognised before a query is planned:
//!
//! ```sql
//! CREATE PIPELINE name [WITH (allowed_lateness = '5s', late_data = 'drop' | 'table',
//!                             max_future_skew = '1m', checkpoint_interval = '1s',
//!                             dedupe_on = 'order_id', dedupe_within = '10m',
//!                             throttle_on = 'entity_id', throttle = '100/1s',
//!                             branch_<name> = '<condition>', …)] AS SELECT …
//! DROP PIPELINE [IF EXISTS] name
//! SHOW PIPELINES
//!
//! CREATE PROJECTION name [AS SELECT …]   -- without AS: a built-in projection
//! DROP PROJECTION [IF EXISTS] name
//! SHOW PROJECTIONS
//!
//! ALTER PIPELINE | PROJECTION name ENABLE | DISABLE
//! ```

use crate::branch::BranchSpec;
use crate::error::{Error, Result};
use crate::pipeline::{LateData, PipelineOptions};
use crate::projection;
use crate::registry::Kind;

/// A pipeline statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `CREATE PIPELINE` or `CREATE PROJECTION`.
    Create {
        /// A pipeline or a projection.
        kind: Kind,
        /// The pipeline's name.
        name: String,
        /// Its options.
        options: PipelineOptions,
        /// Its query (the text after `AS`).
        sql: String,
    },
    /// `DROP PIPELINE` or `DROP PROJECTION`.
    Drop {
        /// A pipeline or a projection.
        kind: Kind,
        /// The pipeline's name.
        name: String,
        /// Whether a missing pipeline is fine.
        if_exists: bool,
    },
    /// `SHOW PIPELINES` or `SHOW PROJECTIONS`.
    Show(Kind),
    /// `ALTER PIPELINE name ENABLE | DISABLE` (or `PROJECTION`).
    Alter {
        /// A pipeline or a projection.
        kind: Kind,
        /// Its name.
        name: String,
        /// Whether it runs from now on.
        enabled: bool,
    },
}

/// The pipeline statement `sql` is, if it is one; an error if it starts like one but
/// is malformed.
pub fn parse(sql: &str) -> Result<Option<Statement>> {
    let mut cursor = Cursor { text: sql, at: 0 };
    let first = cursor.word().to_ascii_uppercase();
    let second = cursor.word().to_ascii_uppercase();
    let statement = match (first.as_str(), second.as_str()) {
        ("CREATE", "PIPELINE") => cursor.create(Kind::Pipeline)?,
        ("CREATE", "PROJECTION") => cursor.create(Kind::Projection)?,
        ("DROP", "PIPELINE") => cursor.drop(Kind::Pipeline)?,
        ("DROP", "PROJECTION") => cursor.drop(Kind::Projection)?,
        ("SHOW", "PIPELINES") => Statement::Show(Kind::Pipeline),
        ("SHOW", "PROJECTIONS") => Statement::Show(Kind::Projection),
        ("ALTER", "PIPELINE") => cursor.alter(Kind::Pipeline)?,
        ("ALTER", "PROJECTION") => cursor.alter(Kind::Projection)?,
        _ => return Ok(None),
    };
    cursor.skip_space();
    if !matches!(statement, Statement::Create { .. })
        && !cursor.rest().trim_end_matches(';').trim().is_empty()
    {
        return Err(invalid(format!(
            "unexpected text: {}",
            cursor.rest().trim()
        )));
    }
    Ok(Some(statement))
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    /// The next identifier-like word (letters, digits, `_`), or "" if none.
    fn word(&mut self) -> &'a str {
        self.skip_space();
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    fn expect(&mut self, symbol: char) -> Result<()> {
        self.skip_space();
        if self.rest().starts_with(symbol) {
            self.at += symbol.len_utf8();
            Ok(())
        } else {
            Err(invalid(format!(
                "expected {symbol:?} at: {}",
                self.rest().trim()
            )))
        }
    }

    fn name(&mut self, kind: Kind) -> Result<String> {
        let name = self.word();
        if name.is_empty() {
            return Err(invalid(format!("expected the {kind}'s name")));
        }
        Ok(name.to_string())
    }

    /// A single-quoted string ('' for a quote).
    fn string(&mut self) -> Result<String> {
        self.expect('\'')?;
        let mut out = String::new();
        loop {
            let rest = self.rest();
            let Some(end) = rest.find('\'') else {
                return Err(invalid("unterminated string".into()));
            };
            out.push_str(&rest[..end]);
            self.at += end + 1;
            if self.rest().starts_with('\'') {
                out.push('\'');
                self.at += 1;
            } else {
                return Ok(out);
            }
        }
    }

    fn create(&mut self, kind: Kind) -> Result<Statement> {
        let name = self.name(kind)?;
        let mut options = PipelineOptions::default();
        let mut keyword = self.word().to_ascii_uppercase();
        if keyword == "WITH" {
            self.expect('(')?;
            loop {
                let key = self.word().to_ascii_lowercase();
                self.expect('=')?;
                let value = self.string()?;
                set_option(&mut options, &key, &value)?;
                self.skip_space();
                if self.rest().starts_with(',') {
                    self.at += 1;
                    continue;
                }
                self.expect(')')?;
                break;
            }
            keyword = self.word().to_ascii_uppercase();
        }
        let at_end =
            keyword.is_empty() && self.rest().trim().trim_end_matches(';').trim().is_empty();
        if kind == Kind::Projection && at_end {
            let Some(sql) = projection::built_in(&name) else {
                let names: Vec<&str> = projection::BUILT_IN.iter().map(|(n, _)| *n).collect();
                return Err(invalid(format!(
                    "{name} is not a built-in projection ({}); define it with AS SELECT …",
                    names.join(", ")
                )));
            };
            return Ok(Statement::Create {
                kind,
                name,
                options,
                sql: sql.to_string(),
            });
        }
        if keyword != "AS" {
            return Err(invalid(format!("expected AS and the {kind}'s query")));
        }
        let sql = self.rest().trim().trim_end_matches(';').trim().to_string();
        if sql.is_empty() {
            return Err(invalid(format!("expected the {kind}'s query after AS")));
        }
        Ok(Statement::Create {
            kind,
            name,
            options,
            sql,
        })
    }

    fn alter(&mut self, kind: Kind) -> Result<Statement> {
        let name = self.name(kind)?;
        let enabled = match self.word().to_ascii_uppercase().as_str() {
            "ENABLE" => true,
            "DISABLE" => false,
            _ => {
                return Err(invalid(format!(
                    "expected ENABLE or DISABLE after the {kind}'s name"
                )));
            }
        };
        Ok(Statement::Alter {
            kind,
            name,
            enabled,
        })
    }

    fn drop(&mut self, kind: Kind) -> Result<Statement> {
        let saved = self.at;
        let if_exists = if self.word().eq_ignore_ascii_case("IF") {
            if !self.word().eq_ignore_ascii_case("EXISTS") {
                return Err(invalid("expected IF EXISTS".into()));
            }
            true
        } else {
            self.at = saved;
            false
        };
        Ok(Statement::Drop {
            kind,
            name: self.name(kind)?,
            if_exists,
        })
    }
}

/// Set the option `key` (as named in `WITH (…)`) from its text.
pub fn set_option(options: &mut PipelineOptions, key: &str, value: &str) -> Result<()> {
    match key {
        "allowed_lateness" => options.allowed_lateness_micros = duration_micros(key, value)?,
        "max_future_skew" => options.max_future_skew_micros = duration_micros(key, value)?,
        "checkpoint_interval" => {
            options.checkpoint_interval_micros = duration_micros(key, value)?;
        }
        "dedupe_on" => options.dedupe.get_or_insert_default().on = value.trim().to_string(),
        "dedupe_within" => {
            options.dedupe.get_or_insert_default().within_micros = duration_micros(key, value)?;
        }
        "throttle_on" => options.throttle.get_or_insert_default().on = value.trim().to_string(),
        "throttle" => {
            let (limit, per) = value.split_once('/').ok_or_else(|| {
                invalid(format!(
                    "throttle is a limit per interval such as '100/1s', not {value:?}"
                ))
            })?;
            let limit: u64 = limit.trim().parse().map_err(|_| {
                invalid(format!("throttle's limit is a whole number, not {limit:?}"))
            })?;
            let throttle = options.throttle.get_or_insert_default();
            throttle.limit = limit;
            throttle.per_micros = duration_micros(key, per)?;
        }
        branch if branch.starts_with("branch_") => {
            let name = &branch["branch_".len()..];
            let identifier = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !identifier {
                return Err(invalid(format!(
                    "a branch's name is a lowercase identifier, as in branch_us, not {key:?}"
                )));
            }
            if options.branches.iter().any(|b| b.name == name) {
                return Err(invalid(format!("the branch {name} is given twice")));
            }
            if value.trim().is_empty() {
                return Err(invalid(format!(
                    "{key} needs a condition over the results, such as 'country = ''US''' \
                     or 'true'"
                )));
            }
            options.branches.push(BranchSpec {
                name: name.to_string(),
                when: value.trim().to_string(),
            });
        }
        "late_data" => {
            options.late_data = match value {
                "drop" => LateData::Drop,
                "table" => LateData::Keep,
                other => {
                    return Err(invalid(format!(
                        "late_data is 'drop' or 'table', not {other:?}"
                    )));
                }
            }
        }
        other => {
            return Err(invalid(format!(
                "unknown option {other:?} (allowed_lateness, max_future_skew, late_data, \
                 checkpoint_interval, dedupe_on, dedupe_within, throttle_on, throttle, \
                 branch_<name>)"
            )));
        }
    }
    Ok(())
}

/// `'500ms'`, `'5s'`, `'2m'`, `'1h'`, `'1d'` in microseconds.
pub fn duration_micros(key: &str, value: &str) -> Result<i64> {
    let value = value.trim();
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let unit_micros: i64 = match unit.trim() {
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if unit_micros > 0 => n
            .checked_mul(unit_micros)
            .ok_or_else(|| invalid(format!("{key} is too long"))),
        _ => Err(invalid(format!(
            "{key} is a duration like '500ms', '5s', '2m', '1h' or '1d', not {value:?}"
        ))),
    }
}

fn invalid(reason: String) -> Error {
    Error::Invalid(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_pipeline_statements() {
        let parsed = parse(
            "create pipeline hourly WITH (allowed_lateness = '5s', late_data = 'table', \
             max_future_skew='2m', checkpoint_interval = '250ms') AS SELECT 1;",
        );
        let expected = Statement::Create {
            kind: Kind::Pipeline,
            name: "hourly".into(),
            options: PipelineOptions {
                allowed_lateness_micros: 5_000_000,
                max_future_skew_micros: 120_000_000,
                late_data: LateData::Keep,
                checkpoint_interval_micros: 250_000,
                ..PipelineOptions::default()
            },
            sql: "SELECT 1".into(),
        };
        assert_eq!(parsed.ok().flatten(), Some(expected));
        let plain = parse("CREATE PIPELINE p AS SELECT * FROM events")
            .ok()
            .flatten();
        assert!(
            matches!(plain, Some(Statement::Create { options, .. }) if options == PipelineOptions::default())
        );
        assert_eq!(
            parse("DROP PIPELINE IF EXISTS p").ok().flatten(),
            Some(Statement::Drop {
                kind: Kind::Pipeline,
                name: "p".into(),
                if_exists: true
            })
        );
        assert_eq!(
            parse("drop pipeline p;").ok().flatten(),
            Some(Statement::Drop {
                kind: Kind::Pipeline,
                name: "p".into(),
                if_exists: false
            })
        );
        assert_eq!(
            parse("SHOW PIPELINES").ok().flatten(),
            Some(Statement::Show(Kind::Pipeline))
        );
        assert_eq!(
            parse("ALTER PROJECTION totals disable;").ok().flatten(),
            Some(Statement::Alter {
                kind: Kind::Projection,
                name: "totals".into(),
                enabled: false
            })
        );
        assert_eq!(
            parse("show projections").ok().flatten(),
            Some(Statement::Show(Kind::Projection))
        );
        let built_in = parse("CREATE PROJECTION event_counter;").ok().flatten();
        assert!(
            matches!(&built_in, Some(Statement::Create { kind: Kind::Projection, sql, .. }) if sql.contains("GROUP BY event_type")),
            "{built_in:?}"
        );
        assert_eq!(
            parse("DROP PROJECTION IF EXISTS totals").ok().flatten(),
            Some(Statement::Drop {
                kind: Kind::Projection,
                name: "totals".into(),
                if_exists: true
            })
        );
        assert_eq!(parse("SELECT * FROM events").ok().flatten(), None);
        assert_eq!(parse("CREATE TABLE t (a int)").ok().flatten(), None);
    }

    #[test]
    fn malformed_pipeline_statements_say_what_is_wrong() {
        for (sql, says) in [
            ("CREATE PIPELINE", "name"),
            ("CREATE PIPELINE p SELECT 1", "AS"),
            ("CREATE PIPELINE p AS", "query"),
            (
                "CREATE PIPELINE p WITH (allowed_lateness = 5) AS SELECT 1",
                "'\\''",
            ),
            (
                "CREATE PIPELINE p WITH (allowed_lateness = '5 parsecs') AS SELECT 1",
                "duration",
            ),
            (
                "CREATE PIPELINE p WITH (late_data = 'keep') AS SELECT 1",
                "'drop' or 'table'",
            ),
            (
                "CREATE PIPELINE p WITH (speed = '1s') AS SELECT 1",
                "unknown option",
            ),
            (
                "CREATE PIPELINE p WITH (allowed_lateness = '1s' AS SELECT 1",
                "')'",
            ),
            ("DROP PIPELINE p extra", "unexpected"),
            ("DROP PIPELINE IF p", "IF EXISTS"),
            ("CREATE PROJECTION totals", "not a built-in projection"),
            ("ALTER PIPELINE p PAUSE", "ENABLE or DISABLE"),
            ("ALTER PIPELINE p ENABLE now", "unexpected"),
            ("CREATE PROJECTION", "projection's name"),
        ] {
            match parse(sql) {
                Err(e) => assert!(e.to_string().contains(says), "{sql}: {e}"),
                Ok(other) => panic!("{sql}: accepted as {other:?}"),
            }
        }
    }
}
