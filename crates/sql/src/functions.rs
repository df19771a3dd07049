//! Which SQL functions a query may call, and the size caps on those that
//! can build a big value out of a small query.
//!
//! DataFusion's memory pool counts what operators reserve (sorts, hash
//! tables), not what a scalar or table function builds: `repeat('x', 1e9)`
//! allocates a gigabyte outside the pool, and does so while *planning*,
//! because the simplifier folds constant calls. So the functions whose output
//! can outgrow their input by a factor the query chooses are either removed
//! ([`REMOVED`]: the series and list generators, the `range` and
//! `generate_series` table functions) or wrapped in [`Capped`], which
//! computes from the arguments how many bytes the call would build and
//! refuses before building them. The `||` operator is rewritten into the
//! capped [`ConcatOperator`], since a chain of `||` over capped values
//! multiplies them too.
//!
//! This module does not bound functions whose output is at most a small
//! multiple of their input (`upper`, `to_hex`, `overlay`, …): their input is
//! the table or the output of a capped call.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::concat_elements::concat_elements_utf8;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, ExprSchemable, LogicalPlan, Operator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

/// Largest value (one row's result) a capped function may build.
pub const MAX_VALUE_BYTES: u64 = 16 << 20;

/// Most bytes one call of a capped function may build over one batch of rows.
pub const MAX_CALL_BYTES: u64 = 64 << 20;

/// Functions removed from the session: they exist to generate values (a
/// series, a repeated list) and have no use over spans that a bounded query
/// lacks. Scalar functions first, with their aliases; the table functions
/// `range` and `generate_series` are removed too.
pub const REMOVED: &[&str] = &["range", "generate_series", "array_repeat", "array_resize"];

/// Table functions removed from the session.
const REMOVED_TABLE_FUNCTIONS: &[&str] = &["range", "generate_series"];

/// A capped function refused to build its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildRefused {
    /// One row's value would be over [`MAX_VALUE_BYTES`].
    #[error("{function} would build {bytes} bytes, over the {} value cap", crate::fmt_bytes(MAX_VALUE_BYTES as usize))]
    Value {
        /// The SQL function (`repeat`, `||`, …).
        function: String,
        /// The size of the largest value it would build.
        bytes: u64,
    },
    /// One call would build more than [`MAX_CALL_BYTES`] over its rows.
    #[error("{function} would build {bytes} bytes over {rows} rows in one call, over the {} cap for one call", crate::fmt_bytes(MAX_CALL_BYTES as usize))]
    Call {
        /// The SQL function.
        function: String,
        /// What the call would build in all.
        bytes: u64,
        /// Rows in the call.
        rows: usize,
    },
}

/// Removes [`REMOVED`] and caps the functions that build values from a
/// count or by repetition.
pub fn restrict(ctx: &SessionContext) {
    for name in REMOVED {
        ctx.deregister_udf(name);
    }
    for name in REMOVED_TABLE_FUNCTIONS {
        ctx.deregister_udtf(name);
    }
    let registered = ctx.state().scalar_functions().clone();
    for (name, growth) in CAPPED {
        if let Some(udf) = registered.get(*name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Capped {
                inner: Arc::clone(udf.inner()).into(),
                growth: *growth,
            }));
        }
    }
}

/// The capped functions, by how their output grows.
const CAPPED: &[(&str, Growth)] = &[
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::RegexpReplace),
    ("concat", Growth::Concat),
    ("concat_ws", Growth::ConcatWs),
];

/// How many bytes a call builds per row, from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(s, n)`: `len(s) × n`.
    Repeat,
    /// `lpad(s, n [, fill])`: `len(s) + n × widest char of fill`.
    Pad,
    /// `replace(s, from, to)`: every occurrence of `from` (every char
    /// boundary when empty) becomes `to`.
    Replace,
    /// `regexp_replace(s, re, to [, flags])`: a pattern may match at every
    /// boundary, and `to` may name groups (`$1`, `\1`) that copy `s`.
    RegexpReplace,
    /// `concat(a, b, …)`: the sum.
    Concat,
    /// `concat_ws(sep, a, b, …)`: the sum plus a separator between each.
    ConcatWs,
}

/// An argument read per row: its text length, its integer value.
struct Arg<'a> {
    value: &'a ColumnarValue,
    ints: Option<ArrayRef>,
}

impl<'a> Arg<'a> {
    fn new(value: &'a ColumnarValue) -> Arg<'a> {
        Arg { value, ints: None }
    }

    /// Bytes of the value at `row` as text; null is empty. A value that is
    /// not text (a number in `concat`) is counted as its longest rendering.
    fn len(&self, row: usize) -> u64 {
        match self.value {
            ColumnarValue::Scalar(s) => scalar_len(s),
            ColumnarValue::Array(a) => array_len(a.as_ref(), row),
        }
    }

    /// The text at `row`, when the argument is a constant (for flags, fill
    /// characters and replacement templates).
    fn constant_text(&self) -> Option<&str> {
        match self.value {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)),
            ) => Some(s),
            _ => None,
        }
    }

    /// The integer at `row`; null and non-numbers are 0.
    fn int(&mut self, row: usize) -> Result<i64> {
        match self.value {
            ColumnarValue::Scalar(s) => Ok(match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) => n,
                _ => 0,
            }),
            ColumnarValue::Array(a) => {
                if self.ints.is_none() {
                    self.ints = Some(cast(a, &DataType::Int64)?);
                }
                let ints = self.ints.as_ref().map(|a| a.as_primitive::<Int64Type>());
                Ok(match ints {
                    Some(ints) if row < ints.len() && ints.is_valid(row) => ints.value(row),
                    _ => 0,
                })
            }
        }
    }
}

fn scalar_len(s: &ScalarValue) -> u64 {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            v.as_ref().map_or(0, |v| v.len() as u64)
        }
        ScalarValue::Binary(v)
        | ScalarValue::LargeBinary(v)
        | ScalarValue::BinaryView(v)
        | ScalarValue::FixedSizeBinary(_, v) => v.as_ref().map_or(0, |v| v.len() as u64),
        s if s.is_null() => 0,
        // Numbers, dates and the like print in well under this.
        _ => 64,
    }
}

fn array_len(a: &dyn Array, row: usize) -> u64 {
    if row >= a.len() || a.is_null(row) {
        return 0;
    }
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(row).len() as u64,
        DataType::LargeUtf8 => a.as_string::<i64>().value(row).len() as u64,
        DataType::Utf8View => a.as_string_view().value(row).len() as u64,
        DataType::Binary => a.as_binary::<i32>().value(row).len() as u64,
        DataType::LargeBinary => a.as_binary::<i64>().value(row).len() as u64,
        DataType::BinaryView => a.as_binary_view().value(row).len() as u64,
        _ => 64,
    }
}

/// The widest UTF-8 character of a fill text, 4 when it is not a constant.
fn widest_char(fill: Option<&Arg>) -> u64 {
    match fill {
        None => 1,
        Some(arg) => arg.constant_text().map_or(4, |s| {
            s.chars().map(|c| c.len_utf8() as u64).max().unwrap_or(0)
        }),
    }
}

impl Growth {
    /// Checks that a call with `args` over `rows` rows stays under the caps.
    fn check(
        self,
        function: &str,
        args: &[ColumnarValue],
        rows: usize,
    ) -> Result<(), BuildRefused> {
        match self.sizes(args, rows) {
            Ok((total, largest)) => {
                if largest > MAX_VALUE_BYTES {
                    Err(BuildRefused::Value {
                        function: function.to_string(),
                        bytes: largest,
                    })
                } else if total > MAX_CALL_BYTES {
                    Err(BuildRefused::Call {
                        function: function.to_string(),
                        bytes: total,
                        rows,
                    })
                } else {
                    Ok(())
                }
            }
            // The function itself reports arguments it cannot read.
            Err(_) => Ok(()),
        }
    }

    /// The bytes the call builds in all and for its largest row.
    fn sizes(self, args: &[ColumnarValue], rows: usize) -> Result<(u64, u64)> {
        let all_constant = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_constant { 1 } else { rows };
        let mut args: Vec<Arg> = args.iter().map(Arg::new).collect();
        let (mut total, mut largest) = (0u64, 0u64);
        for row in 0..rows {
            let bytes = self.row_bytes(&mut args, row)?;
            total = total.saturating_add(bytes);
            largest = largest.max(bytes);
        }
        Ok((total, largest))
    }

    fn row_bytes(self, args: &mut [Arg], row: usize) -> Result<u64> {
        let len = |args: &[Arg], i: usize| args.get(i).map_or(0, |a| a.len(row));
        Ok(match self {
            Growth::Repeat => {
                let count = match args.get_mut(1) {
                    Some(n) => n.int(row)?.max(0) as u64,
                    None => 0,
                };
                len(args, 0).saturating_mul(count)
            }
            Growth::Pad => {
                let count = match args.get_mut(1) {
                    Some(n) => n.int(row)?.max(0) as u64,
                    None => 0,
                };
                len(args, 0).saturating_add(count.saturating_mul(widest_char(args.get(2))))
            }
            Growth::Replace => {
                let (s, from, to) = (len(args, 0), len(args, 1), len(args, 2));
                if to <= from && from > 0 {
                    s
                } else {
                    let matches = s / from.max(1) + 1;
                    s.saturating_add(matches.saturating_mul(to))
                }
            }
            Growth::RegexpReplace => {
                let (s, to) = (len(args, 0), len(args, 2));
                // A group reference takes at least two characters.
                let groups = args
                    .get(2)
                    .and_then(Arg::constant_text)
                    .map_or(to / 2, |t| t.matches(['$', '\\']).count() as u64);
                let one = to.saturating_add(groups.saturating_mul(s));
                let global = args
                    .get(3)
                    .is_some_and(|f| f.constant_text().is_none_or(|f| f.contains('g')));
                let matches = if global { s + 1 } else { 1 };
                s.saturating_add(matches.saturating_mul(one))
            }
            Growth::Concat => (0..args.len()).fold(0u64, |sum, i| sum.saturating_add(len(args, i))),
            Growth::ConcatWs => {
                let sep = len(args, 0);
                let separators = args.len().saturating_sub(2) as u64;
                (1..args.len())
                    .fold(0u64, |sum, i| sum.saturating_add(len(args, i)))
                    .saturating_add(sep.saturating_mul(separators))
            }
        })
    }
}

/// A registered function with a check of what it would build before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Capped {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    growth: Growth,
}

fn refused(e: BuildRefused) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.growth
            .check(self.name(), &args.args, args.number_rows)
            .map_err(refused)?;
        self.inner.invoke_with_args(args)
    }

    fn with_updated_config(&self, _config: &ConfigOptions) -> Option<ScalarUDF> {
        None
    }

    // `simplify` is not passed on: the inner function's rewrites name the
    // unwrapped function (concat's merges literals into a new `concat(…)`),
    // which would take the call out of its cap.

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// `a || b` over text, with the caps of `concat` but the null of `||`: null
/// when either side is null.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ConcatOperator {
    signature: Signature,
}

impl ConcatOperator {
    fn new() -> ConcatOperator {
        ConcatOperator {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        "||"
    }

    /// Named as the operator it replaces, so column names do not change.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        let names = args
            .iter()
            .map(|a| a.schema_name().to_string())
            .collect::<Vec<_>>();
        Ok(names.join(" || "))
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Growth::Concat
            .check("||", &args.args, args.number_rows)
            .map_err(refused)?;
        match args.args.as_slice() {
            [ColumnarValue::Scalar(l), ColumnarValue::Scalar(r)] => {
                let text = |s: &ScalarValue| match s {
                    ScalarValue::Utf8(v) => Ok(v.clone()),
                    other => Err(DataFusionError::Internal(format!(
                        "|| takes text, got {}",
                        other.data_type()
                    ))),
                };
                let joined = match (text(l)?, text(r)?) {
                    (Some(l), Some(r)) => Some(l + &r),
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(joined)))
            }
            [l, r] => {
                let l = l.to_array(args.number_rows)?;
                let r = r.to_array(args.number_rows)?;
                let joined = concat_elements_utf8(l.as_string::<i32>(), r.as_string::<i32>())?;
                Ok(ColumnarValue::Array(Arc::new(joined)))
            }
            other => Err(DataFusionError::Internal(format!(
                "|| takes two arguments, got {}",
                other.len()
            ))),
        }
    }
}

/// Rewrites `a || b` over `Utf8` into [`ConcatOperator`] so that it is capped
/// like `concat`, before the simplifier folds constant chains. Runs after
/// type coercion; other `||` (lists, large or view strings) stay as they are.
#[derive(Debug)]
pub struct CapConcatOperator {
    udf: Arc<ScalarUDF>,
}

impl Default for CapConcatOperator {
    fn default() -> Self {
        CapConcatOperator {
            udf: Arc::new(ScalarUDF::new_from_impl(ConcatOperator::new())),
        }
    }
}

impl AnalyzerRule for CapConcatOperator {
    fn name(&self) -> &str {
        "cap_concat_operator"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let schema = merged_input_schema(&node);
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let saved = names.save(&expr);
                let rewritten = expr.transform_up(|e| match e {
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::StringConcat,
                        right,
                    }) if is_utf8(&left, &schema) && is_utf8(&right, &schema) => {
                        Ok(Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(Arc::clone(&self.udf), vec![*left, *right]),
                        )))
                    }
                    other => Ok(Transformed::no(other)),
                })?;
                Ok(rewritten.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }
}

/// The schema the expressions of `node` are evaluated against: its inputs'.
fn merged_input_schema(node: &LogicalPlan) -> DFSchema {
    let mut schema = DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    schema
}

fn is_utf8(expr: &Expr, schema: &DFSchema) -> bool {
    matches!(expr.get_type(schema), Ok(DataType::Utf8))
}
