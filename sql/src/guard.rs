//! Read-only EventQL: what a statement may do, checked on the syntax tree before
//! anything is planned.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    ObjectName, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use crate::QueryError;

/// Parse `sql` and accept it only if it is one read-only query (or `EXPLAIN` of one)
/// over AllSource's tables.
pub fn check(sql: &str) -> Result<(), QueryError> {
    let statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    if statements.len() != 1 {
        return Err(QueryError::Syntax(format!(
            "expected one statement, found {}",
            statements.len()
        )));
    }
    let statement = match &statements[0] {
        DfStatement::Statement(s) => s.as_ref(),
        DfStatement::Explain(explain) => match explain.statement.as_ref() {
            DfStatement::Statement(s) => s.as_ref(),
            other => return Err(rejected(&other.to_string())),
        },
        DfStatement::CopyTo(_) => return Err(QueryError::ReadOnly("COPY".into())),
        DfStatement::CreateExternalTable(_) => {
            return Err(QueryError::ReadOnly("CREATE EXTERNAL TABLE".into()));
        }
        DfStatement::Reset(_) => return Err(QueryError::ReadOnly("RESET".into())),
    };
    let query = match statement {
        Statement::Query(query) => query,
        Statement::Explain { statement, .. } => match statement.as_ref() {
            Statement::Query(query) => query,
            other => return Err(rejected(&other.to_string())),
        },
        other => return Err(rejected(&other.to_string())),
    };
    if let SetExpr::Select(select) = query.body.as_ref()
        && select.into.is_some()
    {
        return Err(QueryError::ReadOnly("SELECT INTO".into()));
    }
    let mut relations = Relations;
    if let ControlFlow::Break(err) = statement.visit(&mut relations) {
        return Err(err);
    }
    Ok(())
}

fn rejected(statement: &str) -> QueryError {
    let verb: String = statement
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    QueryError::ReadOnly(verb.to_uppercase())
}

/// Rejects table functions other than the window functions, and relations that name
/// a file or a URL.
struct Relations;

impl Visitor for Relations {
    type Break = QueryError;

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<QueryError> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } if !is_window_function(name) => {
                ControlFlow::Break(QueryError::ReadOnly(format!("the table function {name}")))
            }
            TableFactor::Function { name, .. } => {
                ControlFlow::Break(QueryError::ReadOnly(format!("the table function {name}")))
            }
            TableFactor::TableFunction { expr, .. } => {
                ControlFlow::Break(QueryError::ReadOnly(format!("the table function {expr}")))
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<QueryError> {
        if is_window_function(relation) {
            return ControlFlow::Continue(());
        }
        let name = relation.to_string().to_ascii_lowercase();
        let file_like = name.contains('/')
            || name.contains("://")
            || [".parquet", ".csv", ".json", ".avro", ".arrow"]
                .iter()
                .any(|ext| name.contains(ext));
        if file_like {
            ControlFlow::Break(QueryError::ReadOnly(format!(
                "reading the file or URL {relation}"
            )))
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn is_window_function(name: &ObjectName) -> bool {
    let name = name.to_string();
    crate::windows::NAMES
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}
