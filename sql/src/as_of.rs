//! `FROM events AS OF TIMESTAMP '…'`: the events table as it was at that time.
//!
//! Time travel is over ingestion time: the table as of `T` holds the events the
//! store had accepted at `T` (`ingested_at <= T`), so a query as of a past moment
//! returns what it would have returned then. The clause is rewritten before
//! planning into a reference to a per-query table scoped that way.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

use crate::QueryError;

/// Names of the per-query tables that stand for `events AS OF …`.
pub const AS_OF_TABLE_PREFIX: &str = "__events_as_of_";

/// The query with every `events AS OF TIMESTAMP '…'` replaced, and the cut-off of
/// each replacement table (`AS_OF_TABLE_PREFIX` + index), in microseconds.
pub fn rewrite(sql: &str) -> Result<(String, Vec<i64>), QueryError> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|i| !matches!(tokens[*i], Token::Whitespace(_)))
        .collect();
    let word = |i: usize, keyword: Keyword| matches!(&tokens[i], Token::Word(Word { keyword: k, .. }) if *k == keyword);
    let mut cutoffs = Vec::new();
    let mut out = String::with_capacity(sql.len());
    let mut skip_to = 0;
    for (n, &i) in significant.iter().enumerate() {
        if i < skip_to {
            continue;
        }
        let clause = significant.get(n..n + 5).filter(|w| {
            word(w[1], Keyword::AS) && word(w[2], Keyword::OF) && word(w[3], Keyword::TIMESTAMP)
        });
        let Some(clause) = clause else {
            continue;
        };
        let Token::Word(table) = &tokens[i] else {
            continue;
        };
        let Token::SingleQuotedString(at) = &tokens[clause[4]] else {
            return Err(QueryError::Syntax(
                "AS OF TIMESTAMP takes a quoted time, e.g. AS OF TIMESTAMP '2026-01-01 12:00:00'"
                    .into(),
            ));
        };
        if !table.value.eq_ignore_ascii_case("events") {
            return Err(QueryError::Plan(format!(
                "AS OF applies to the events table, not {}",
                table.value
            )));
        }
        let nanos = arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(at)
            .map_err(|e| QueryError::Syntax(format!("AS OF TIMESTAMP '{at}': {e}")))?;
        for token in &tokens[skip_to..i] {
            out.push_str(&token.to_string());
        }
        out.push_str(&format!("{AS_OF_TABLE_PREFIX}{}", cutoffs.len()));
        cutoffs.push(nanos.div_euclid(1000));
        // Keep the name `events` for column references unless an alias follows.
        let aliased = significant.get(n + 5).is_some_and(|j| match &tokens[*j] {
            Token::Word(w) => w.keyword == Keyword::AS || w.keyword == Keyword::NoKeyword,
            _ => false,
        });
        if !aliased {
            out.push_str(" AS events");
        }
        skip_to = clause[4] + 1;
    }
    for token in &tokens[skip_to..] {
        out.push_str(&token.to_string());
    }
    Ok((out, cutoffs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_clauses_become_scoped_tables() {
        let (sql, cutoffs) = rewrite(
            "SELECT count(*) FROM events AS OF TIMESTAMP '2026-01-02T00:00:00Z' WHERE event_type = 'a'",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            sql,
            "SELECT count(*) FROM __events_as_of_0 AS events WHERE event_type = 'a'"
        );
        assert_eq!(cutoffs, vec![1_767_312_000_000_000]);
        let (sql, _) = rewrite("SELECT e.entity_id FROM events AS OF TIMESTAMP '2026-01-02' e")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sql, "SELECT e.entity_id FROM __events_as_of_0 e");
        let (sql, cutoffs) =
            rewrite("SELECT 'AS OF TIMESTAMP' FROM events").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (sql.as_str(), cutoffs.len()),
            ("SELECT 'AS OF TIMESTAMP' FROM events", 0)
        );
        assert!(matches!(
            rewrite("SELECT * FROM streams AS OF TIMESTAMP '2026-01-01'"),
            Err(QueryError::Plan(_))
        ));
        assert!(matches!(
            rewrite("SELECT * FROM events AS OF TIMESTAMP 'yesterday-ish'"),
            Err(QueryError::Syntax(_))
        ));
    }
}
