//! The read-only gate: parses the SQL text and lets through exactly one
//! query (`SELECT`, `WITH … SELECT`, `VALUES`), `EXPLAIN [ANALYZE]` of one,
//! or `DESCRIBE spans`. Everything else — DDL, DML, `COPY`, `SET`,
//! `SELECT … INTO` — is refused before planning, with the statement named.
//!
//! This is the first of two locks: the planned query is checked again with
//! DataFusion's `SQLOptions` (no DDL, DML or statements) in `lib.rs`.
//!
//! It also bounds the query's size: nesting by the parser's recursion limit,
//! and chains (`a OR b OR …`, `1 + 1 + …`, `UNION ALL …`) by a cap on
//! operators, counted on the tokens before anything is parsed. DataFusion's
//! planning time grows faster than linearly with such chains (3 000 `OR`s
//! take 20 s in a debug build), and the time limit stops planning only
//! between planner rules, not inside one, so the cap is what keeps one
//! request from burning a core.
//!
//! The optimized plan is checked by [`PlanGuard`]. Joins: at most
//! [`MAX_JOINS`], and a join without an equality condition (a cross join,
//! or one on `<`, `OR`, …) runs as a nested loop that pairs every row with
//! every row and copies both sides into each pair, outside the memory pool;
//! it is refused when its inputs could pair more than
//! [`MAX_UNKEYED_JOIN_ROWS`] rows. Constants: at most
//! [`MAX_CONSTANT_BYTES`] each, since a constant in a projection is copied
//! into every row of every batch (8 192 rows), outside the memory pool;
//! that includes what the simplifier folded (`repeat('x', 100000)`).

use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::ast::{SetExpr, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::{Keyword, ALL_KEYWORDS};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use std::sync::Arc;

use datafusion::common::tree_node::TreeNode;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, FetchType, LogicalPlan};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::SqlError;

/// How deeply the parser may nest expressions and subqueries. sqlparser's
/// default; it keeps a hostile query from exhausting the stack while parsing.
const PARSER_RECURSION_LIMIT: usize = 50;

/// Most operators (binary operators, `AND`/`OR`, set operations, joins,
/// casts, subscripts) one query may hold.
pub const MAX_OPERATORS: usize = 500;

/// Most joins one query may plan to.
pub const MAX_JOINS: usize = 8;

/// Most row pairs a join without an equality condition may consider.
pub const MAX_UNKEYED_JOIN_ROWS: u64 = 1_000_000;

/// Largest constant a planned query may hold.
pub const MAX_CONSTANT_BYTES: usize = 8 << 10;

/// What the plan check refused: a join or a constant too big.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanRefused {
    /// More than [`MAX_JOINS`] joins.
    #[error("the query joins {joins} times, at most {MAX_JOINS}")]
    TooMany {
        /// Joins in the optimized plan.
        joins: usize,
    },
    /// A join without an equality condition over too many rows.
    #[error("a join without an equality condition (a cross join) of up to {left} × {right} rows would pair {pairs} rows, at most {MAX_UNKEYED_JOIN_ROWS}; join on equal columns (e.g. a.trace_id = b.trace_id) or narrow both sides first")]
    Unkeyed {
        /// Most rows of the left input.
        left: u64,
        /// Most rows of the right input.
        right: u64,
        /// Their product.
        pairs: u64,
    },
    /// A constant over [`MAX_CONSTANT_BYTES`].
    #[error("the query holds a constant of {bytes} bytes (after folding constant expressions), at most {MAX_CONSTANT_BYTES}: a constant is copied into every row")]
    BigConstant {
        /// Its size.
        bytes: usize,
    },
}

/// Refuses plans with too many joins, a big join without an equality
/// condition, or a big constant. It runs last among the optimizer's rules, when filters have
/// become join keys where they can (`FROM a, b WHERE a.x = b.x` is keyed).
#[derive(Debug)]
pub struct PlanGuard {
    /// Rows of the `spans` table: what a scan of it can return at most.
    pub table_rows: u64,
}

impl PlanGuard {
    /// Checks `plan`; see [`PlanGuard`].
    pub fn check(&self, plan: &LogicalPlan) -> Result<(), PlanRefused> {
        let mut joins = 0;
        let mut refused = None;
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::Join(join) = node {
                joins += 1;
                if join.on.is_empty() {
                    let left = self.max_rows(&join.left);
                    let right = self.max_rows(&join.right);
                    let pairs = left.saturating_mul(right);
                    if pairs > MAX_UNKEYED_JOIN_ROWS {
                        refused = Some(PlanRefused::Unkeyed { left, right, pairs });
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
            }
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let Expr::Literal(value, _) = e {
                        let bytes = value.size();
                        if bytes > MAX_CONSTANT_BYTES {
                            refused = Some(PlanRefused::BigConstant { bytes });
                            return Ok(TreeNodeRecursion::Stop);
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
        if let Some(refused) = refused {
            return Err(refused);
        }
        if joins > MAX_JOINS {
            return Err(PlanRefused::TooMany { joins });
        }
        Ok(())
    }

    /// An upper bound on the rows `plan` returns.
    fn max_rows(&self, plan: &LogicalPlan) -> u64 {
        let input = |p: &Arc<LogicalPlan>| self.max_rows(p);
        match plan {
            LogicalPlan::TableScan(scan) => scan
                .fetch
                .map_or(self.table_rows, |f| (f as u64).min(self.table_rows)),
            LogicalPlan::Values(values) => values.values.len() as u64,
            LogicalPlan::EmptyRelation(empty) => u64::from(empty.produce_one_row),
            LogicalPlan::Limit(limit) => {
                let rows = input(&limit.input);
                match limit.get_fetch_type() {
                    Ok(FetchType::Literal(Some(fetch))) => rows.min(fetch as u64),
                    _ => rows,
                }
            }
            LogicalPlan::Aggregate(agg) if agg.group_expr.is_empty() => 1,
            LogicalPlan::Join(join) => input(&join.left).saturating_mul(input(&join.right)),
            LogicalPlan::Union(union) => union
                .inputs
                .iter()
                .fold(0u64, |sum, i| sum.saturating_add(input(i))),
            // Unnest and recursive queries can grow without a bound known here.
            LogicalPlan::Unnest(_) | LogicalPlan::RecursiveQuery(_) => u64::MAX,
            other => other
                .inputs()
                .into_iter()
                .map(|i| self.max_rows(i))
                .max()
                .unwrap_or(self.table_rows),
        }
    }
}

impl OptimizerRule for PlanGuard {
    fn name(&self) -> &str {
        "plan_guard"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        self.check(&plan)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Transformed::no(plan))
    }
}

/// Parses `sql` and returns its one statement if it only reads.
pub fn read_only_statement(sql: &str) -> Result<Statement, SqlError> {
    let operators = operator_count(sql)?;
    if operators > MAX_OPERATORS {
        return Err(SqlError::TooComplex {
            operators,
            limit: MAX_OPERATORS,
        });
    }
    let mut parser = DFParserBuilder::new(sql)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .map_err(|e| SqlError::Syntax(crate::df_message(&e)))?;
    let mut statements = parser
        .parse_statements()
        .map_err(|e| SqlError::Syntax(crate::df_message(&e)))?;
    let statement = match (statements.pop_front(), statements.len()) {
        (None, _) => return Err(SqlError::Empty),
        (Some(s), 0) => s,
        (Some(_), more) => return Err(SqlError::MultipleStatements(more + 1)),
    };
    check(&statement)?;
    Ok(statement)
}

/// Tokens that can chain into a deep expression or plan.
fn operator_count(sql: &str) -> Result<usize, SqlError> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| SqlError::Syntax(e.to_string()))?;
    Ok(tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(
                w.keyword,
                Keyword::AND
                    | Keyword::OR
                    | Keyword::UNION
                    | Keyword::INTERSECT
                    | Keyword::EXCEPT
                    | Keyword::JOIN
            ),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::DuckIntDiv
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::DoubleColon
            | Token::LBracket => true,
            _ => false,
        })
        .count())
}

fn check(statement: &Statement) -> Result<(), SqlError> {
    match statement {
        Statement::Statement(s) => check_sql(s, statement),
        Statement::Explain(explain) => match explain.statement.as_ref() {
            Statement::Statement(s) if matches!(s.as_ref(), SqlStatement::Query(_)) => {
                check_sql(s, statement)
            }
            inner => Err(SqlError::NotAQuery(format!(
                "EXPLAIN {}",
                statement_kind(&inner.to_string())
            ))),
        },
        other => Err(SqlError::NotAQuery(statement_kind(&other.to_string()))),
    }
}

fn check_sql(s: &SqlStatement, whole: &Statement) -> Result<(), SqlError> {
    match s {
        SqlStatement::Query(query) => match query.body.as_ref() {
            SetExpr::Select(select) if select.into.is_some() => {
                Err(SqlError::NotAQuery("SELECT INTO".to_string()))
            }
            _ => Ok(()),
        },
        SqlStatement::ExplainTable { .. } => Ok(()),
        _ => Err(SqlError::NotAQuery(statement_kind(&whole.to_string()))),
    }
}

/// The leading keywords of a statement as the parser prints it, enough to
/// name it: `CREATE TABLE`, `INSERT INTO`, `DELETE FROM`, `SET`, `COPY`.
fn statement_kind(text: &str) -> String {
    const NOUNS: &[&str] = &[
        "TABLE", "VIEW", "INTO", "FROM", "INDEX", "SCHEMA", "DATABASE", "FUNCTION", "TABLES",
        "COLUMNS",
    ];
    let mut words = Vec::new();
    for word in text.split_whitespace().take(4) {
        let is_keyword = word.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            && ALL_KEYWORDS.contains(&word);
        if !is_keyword {
            break;
        }
        words.push(word);
        if NOUNS.contains(&word) {
            break;
        }
    }
    if words.is_empty() {
        "a statement that is not a query".to_string()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> String {
        match read_only_statement(sql) {
            Err(SqlError::NotAQuery(kind)) => kind,
            other => panic!("{sql}: want NotAQuery, got {other:?}"),
        }
    }

    #[test]
    fn queries_pass() {
        for sql in [
            "SELECT 1",
            "select name from spans where status = 'error'",
            "WITH e AS (SELECT * FROM spans) SELECT count(*) FROM e",
            "SELECT 1 UNION ALL SELECT 2",
            "VALUES (1), (2)",
            "EXPLAIN SELECT * FROM spans",
            "EXPLAIN ANALYZE SELECT * FROM spans",
            "DESCRIBE spans",
            "SELECT 1;",
        ] {
            assert!(read_only_statement(sql).is_ok(), "{sql}");
        }
    }

    #[test]
    fn everything_else_is_named_and_refused() {
        assert_eq!(refused("CREATE TABLE t (a INT)"), "CREATE TABLE");
        assert_eq!(refused("create table t as select 1"), "CREATE TABLE");
        assert_eq!(
            refused("CREATE OR REPLACE VIEW v AS SELECT 1"),
            "CREATE OR REPLACE VIEW"
        );
        assert_eq!(
            refused("CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'"),
            "CREATE EXTERNAL TABLE"
        );
        assert_eq!(refused("INSERT INTO spans VALUES (1)"), "INSERT INTO");
        assert_eq!(refused("DELETE FROM spans"), "DELETE FROM");
        assert_eq!(refused("UPDATE spans SET name = 'x'"), "UPDATE");
        assert_eq!(refused("DROP TABLE spans"), "DROP TABLE");
        assert_eq!(refused("COPY spans TO '/tmp/x.csv'"), "COPY");
        assert_eq!(refused("SET datafusion.execution.batch_size = 1"), "SET");
        assert_eq!(refused("SELECT * INTO t FROM spans"), "SELECT INTO");
        assert_eq!(refused("EXPLAIN DELETE FROM spans"), "EXPLAIN DELETE FROM");
        assert!(matches!(
            read_only_statement("SELECT 1; DROP TABLE spans"),
            Err(SqlError::MultipleStatements(2))
        ));
        assert!(matches!(read_only_statement("  ;  "), Err(SqlError::Empty)));
    }

    #[test]
    fn long_operator_chains_are_refused_before_parsing() {
        let chain = |n: usize| {
            format!(
                "SELECT count(*) FROM spans WHERE {}",
                vec!["name = 'x'"; n].join(" OR ")
            )
        };
        // n comparisons, n - 1 ORs and the `*` of count(*).
        assert!(read_only_statement(&chain(250)).is_ok());
        let err = read_only_statement(&chain(251)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the query is too complex: 502 operators, at most 500; \
             shorten long AND/OR chains, e.g. with IN (...)"
        );
        // A long IN list is flat and fine.
        let ids = vec!["'0123456789abcdef0123456789abcdef'"; 5000].join(", ");
        assert!(
            read_only_statement(&format!("SELECT * FROM spans WHERE trace_id IN ({ids})")).is_ok()
        );
        let nested = format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100));
        assert!(matches!(
            read_only_statement(&nested),
            Err(SqlError::Syntax(_))
        ));
    }
}
