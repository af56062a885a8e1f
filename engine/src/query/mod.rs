//! Retrieval queries: `from AGG within … per … [select …] [group by …] [having …]
//! [order by …] [limit N] [offset N]`.
//!
//! Compiled against the checked app (identifiers come only from it), run as one SQL scan of
//! the `per` table with bound parameters, merged across shards in memory (sums added,
//! min/max combined, latest values by time stamp), then `on`, select, group by, having,
//! order by, limit and offset.

mod exec;
pub mod format;
mod within;

pub use exec::{QueryResult, run};

use crate::error::{Diagnostics, Error, Result};
use crate::lang::expr::{Compiled, Scope, Unresolved, compile};
use crate::lang::plan::{AggPlan, AppPlan};
use crate::lang::syntax::ast::{BinOp, Expr, Literal, Pos, Query};
use crate::lang::syntax::parse_query;
use crate::lang::types::{AttrType, Value};
use crate::time::granularity::Granularity;

/// A query-level aggregate function over the rows of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAgg {
    Sum,
    Count,
    Avg,
    Min,
    Max,
    DistinctCount,
}

#[derive(Debug, Clone)]
pub struct AggregateCall {
    pub func: RowAgg,
    /// `None` for `count()`.
    pub arg: Option<Compiled>,
    pub ty: AttrType,
}

/// A checked retrieval query.
#[derive(Debug, Clone)]
pub struct CompiledQuery {
    pub aggregation: usize,
    pub duration: Granularity,
    pub range: (i64, i64),
    /// Columns of a merged row: AGG_TIMESTAMP, the aggregation's outputs, then group-by
    /// attributes that are not outputs.
    pub base: Vec<(String, AttrType)>,
    /// The group-by attributes (their index in the group key) that close `base`.
    pub hidden_keys: Vec<usize>,
    pub on: Option<Compiled>,
    /// (table column, value) pairs of `on` that the store can filter on.
    pub pushdown: Vec<(String, Value)>,
    /// Output columns: name, expression over `base ++ aggregates`, type.
    pub select: Vec<(String, Compiled, Option<AttrType>)>,
    pub grouped: bool,
    pub group_by: Vec<Compiled>,
    pub aggregates: Vec<AggregateCall>,
    /// Over `outputs ++ base ++ aggregates`.
    pub having: Option<Compiled>,
    pub order_by: Vec<(Compiled, bool)>,
    pub limit: Option<usize>,
    pub offset: usize,
}

/// Parses and checks a query against the app.
pub fn compile_query(plan: &AppPlan, text: &str) -> Result<CompiledQuery> {
    let mut diags = Diagnostics::default();
    let Some(q) = parse_query(text, &mut diags) else {
        return Err(Error::Query(diags));
    };
    match check(plan, &q, &mut diags) {
        Some(c) if diags.is_empty() => Ok(c),
        _ => Err(Error::Query(diags)),
    }
}

fn check(plan: &AppPlan, q: &Query, diags: &mut Diagnostics) -> Option<CompiledQuery> {
    let Some(ai) = plan.aggregation(&q.from.text) else {
        let known: Vec<&str> = plan.aggregations.iter().map(|a| a.name.as_str()).collect();
        diags.push(
            q.from.pos.line,
            q.from.pos.col,
            format!("unknown aggregation `{}` (the app defines: {})", q.from.text, known.join(", ")),
        );
        return None;
    };
    let agg = &plan.aggregations[ai];
    let (range, duration) = window(q, agg, diags);
    let (base, hidden_keys) = base_columns(plan, agg);
    let alias = q.alias.as_ref().map(|a| a.text.as_str());
    let mut base_scope =
        BaseScope { base: &base, alias, agg: &agg.name, aggregates: Vec::new(), allow_aggregates: false };
    let on = q.on.as_ref().and_then(|e| {
        let (c, t) = compile(e, &mut base_scope, diags)?;
        if t.is_some_and(|t| t != AttrType::Bool) {
            diags.push(e.pos().line, e.pos().col, "`on` needs a true/false condition");
        }
        Some(c)
    });
    let pushdown = q.on.as_ref().map(|e| pushdown(e, agg, plan, alias)).unwrap_or_default();

    base_scope.allow_aggregates = true;
    let select = select_list(q, &base, agg, &mut base_scope, diags);
    let mut group_by = Vec::new();
    base_scope.allow_aggregates = false;
    for g in &q.group_by {
        if let Some((c, _)) = compile(g, &mut base_scope, diags) {
            group_by.push(c);
        }
    }
    // having and order by see the outputs first, then the merged row, then aggregates.
    let mut out_scope = OutputScope { outputs: &select, inner: base_scope };
    out_scope.inner.allow_aggregates = true;
    let having = q.having.as_ref().and_then(|e| compile(e, &mut out_scope, diags).map(|(c, _)| c));
    let order_by = q
        .order_by
        .iter()
        .filter_map(|o| compile(&o.expr, &mut out_scope, diags).map(|(c, _)| (c, o.descending)))
        .collect();
    let aggregates = out_scope.inner.aggregates;
    let grouped = !group_by.is_empty() || !aggregates.is_empty();
    let limit = q.limit.as_ref().and_then(|(e, p)| count(e, *p, "limit", diags));
    let offset = q.offset.as_ref().and_then(|(e, p)| count(e, *p, "offset", diags)).unwrap_or(0);
    Some(CompiledQuery {
        aggregation: ai,
        duration: duration?,
        range: range?,
        base,
        hidden_keys,
        on,
        pushdown,
        select,
        grouped,
        group_by,
        aggregates,
        having,
        order_by,
        limit,
        offset,
    })
}

/// The query's `within` range and `per` duration; `None` for one that is missing or wrong
/// (reported).
fn window(q: &Query, agg: &AggPlan, diags: &mut Diagnostics) -> (Option<within::Range>, Option<Granularity>) {
    let range = match &q.within {
        Some(w) => within::range(w, diags),
        None => {
            diags.push(
                q.from.pos.line,
                q.from.pos.col,
                "a query on an aggregation needs `within START, END` (or a pattern) and `per \"duration\"`",
            );
            None
        }
    };
    let duration = match &q.per {
        Some((e, _)) => within::per(e, agg, diags),
        None => {
            if q.within.is_some() {
                diags.push(
                    q.from.pos.line,
                    q.from.pos.col,
                    "a query on an aggregation needs `per \"duration\"`, e.g. per \"hours\"",
                );
            }
            None
        }
    };
    (range, duration)
}

/// The select list: every output of the aggregation when there is none; otherwise each
/// item compiled over the merged row (aggregates allowed), with its output name.
fn select_list(
    q: &Query,
    base: &[(String, AttrType)],
    agg: &AggPlan,
    scope: &mut BaseScope<'_>,
    diags: &mut Diagnostics,
) -> Vec<(String, Compiled, Option<AttrType>)> {
    let mut select = Vec::new();
    match &q.select {
        None => {
            for (i, (name, ty)) in base.iter().enumerate().take(1 + agg.outputs.len()) {
                select.push((name.clone(), Compiled::Column(i), Some(*ty)));
            }
        }
        Some(items) => {
            for item in items {
                let name = match (&item.alias, &item.expr) {
                    (Some(a), _) => a.text.clone(),
                    (None, Expr::Attr { name, .. }) => name.clone(),
                    (None, e) => {
                        diags.push(e.pos().line, e.pos().col, "give this select item a name with `as`");
                        continue;
                    }
                };
                if select.iter().any(|(n, _, _)| *n == name) {
                    diags.push(item.pos.line, item.pos.col, format!("the output name `{name}` is used twice"));
                    continue;
                }
                if let Some((c, t)) = compile(&item.expr, scope, diags) {
                    select.push((name, c, t));
                }
            }
        }
    }
    select
}

/// AGG_TIMESTAMP, the aggregation's outputs, then the group-by attributes not among them
/// (so `on` and `group by` can name them), with their group-key indices.
fn base_columns(plan: &AppPlan, agg: &AggPlan) -> (Vec<(String, AttrType)>, Vec<usize>) {
    let mut base = vec![("AGG_TIMESTAMP".to_string(), AttrType::Long)];
    base.extend(agg.outputs.iter().map(|o| (o.name.clone(), o.ty)));
    let stream = &plan.streams[agg.stream];
    let mut hidden = Vec::new();
    for (k, &g) in agg.group_by.iter().enumerate() {
        let a = &stream.attributes[g];
        if !base.iter().any(|(n, _)| *n == a.name) {
            base.push((a.name.clone(), a.ty));
            hidden.push(k);
        }
    }
    (base, hidden)
}

fn count(e: &Expr, pos: Pos, what: &str, diags: &mut Diagnostics) -> Option<usize> {
    match e {
        Expr::Lit(Literal::Int(v), _) if *v >= 0 => Some(*v as usize),
        Expr::Lit(Literal::Long(v), _) if *v >= 0 => Some(*v as usize),
        _ => {
            diags.push(pos.line, pos.col, format!("`{what}` takes a whole number of rows"));
            None
        }
    }
}

/// `key == literal` conjuncts of `on` on group-by attributes, for the store to filter on.
fn pushdown(e: &Expr, agg: &AggPlan, plan: &AppPlan, alias: Option<&str>) -> Vec<(String, Value)> {
    let stream = &plan.streams[agg.stream];
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        let Expr::Binary { op, left, right, .. } = e else {
            continue;
        };
        match op {
            BinOp::And => {
                stack.push(left);
                stack.push(right);
            }
            BinOp::Eq => {
                let (attr, lit) = match (&**left, &**right) {
                    (Expr::Attr { qualifier, name, .. }, Expr::Lit(l, _))
                    | (Expr::Lit(l, _), Expr::Attr { qualifier, name, .. }) => {
                        if qualifier.as_deref().is_some_and(|q| Some(q) != alias && q != agg.name) {
                            continue;
                        }
                        (name, l)
                    }
                    _ => continue,
                };
                let Some(&g) = agg.group_by.iter().find(|&&g| stream.attributes[g].name == *attr) else {
                    continue;
                };
                let ty = stream.attributes[g].ty;
                let v = match (ty, lit) {
                    (AttrType::String, Literal::Str(s)) => Value::Str(s.clone()),
                    (AttrType::Int | AttrType::Long, Literal::Int(i)) => Value::Long(*i as i64),
                    (AttrType::Int | AttrType::Long, Literal::Long(i)) => Value::Long(*i),
                    _ => continue,
                };
                out.push((attr.clone(), v));
            }
            _ => {}
        }
    }
    out
}

/// Names resolve to the merged row's columns; aggregate calls become extra columns.
struct BaseScope<'a> {
    base: &'a [(String, AttrType)],
    alias: Option<&'a str>,
    agg: &'a str,
    aggregates: Vec<AggregateCall>,
    allow_aggregates: bool,
}

impl Scope for BaseScope<'_> {
    fn attribute(&mut self, qualifier: Option<&str>, name: &str) -> std::result::Result<(usize, AttrType), Unresolved> {
        if let Some(q) = qualifier
            && Some(q) != self.alias
            && q != self.agg
        {
            return Err(Unresolved(format!("`{q}.{name}`: `{q}` is not the queried aggregation or its alias")));
        }
        self.base.iter().position(|(n, _)| n == name).map(|i| (i, self.base[i].1)).ok_or_else(|| {
            let names: Vec<&str> = self.base.iter().map(|(n, _)| n.as_str()).collect();
            Unresolved(format!(
                "`{name}` is not an attribute of aggregation `{}` (it has {})",
                self.agg,
                names.join(", ")
            ))
        })
    }

    fn call(&mut self, name: &str, args: &[Expr], pos: Pos, diags: &mut Diagnostics) -> Option<(usize, AttrType)> {
        let func = match name.to_ascii_lowercase().as_str() {
            "sum" => RowAgg::Sum,
            "count" => RowAgg::Count,
            "avg" => RowAgg::Avg,
            "min" => RowAgg::Min,
            "max" => RowAgg::Max,
            "distinctcount" => RowAgg::DistinctCount,
            _ => return None,
        };
        if !self.allow_aggregates {
            diags.push(pos.line, pos.col, format!("`{name}` cannot be used here"));
            return None;
        }
        let arg = match (func, args) {
            (RowAgg::Count, []) => None,
            (_, [a]) => {
                let allow = std::mem::replace(&mut self.allow_aggregates, false);
                let compiled = compile(a, self, diags);
                self.allow_aggregates = allow;
                Some(compiled?)
            }
            _ => {
                diags.push(pos.line, pos.col, format!("`{name}` takes one argument"));
                return None;
            }
        };
        let input = arg.as_ref().and_then(|(_, t)| *t);
        let ty = match func {
            RowAgg::Count | RowAgg::DistinctCount => AttrType::Long,
            RowAgg::Avg => AttrType::Double,
            RowAgg::Sum => match input {
                Some(t) if t.is_integer() => AttrType::Long,
                Some(t) if t.is_numeric() => AttrType::Double,
                _ => {
                    diags.push(pos.line, pos.col, format!("`{name}` needs a number"));
                    return None;
                }
            },
            RowAgg::Min | RowAgg::Max => match input {
                Some(t) if t.is_numeric() => t,
                _ => {
                    diags.push(pos.line, pos.col, format!("`{name}` needs a number"));
                    return None;
                }
            },
        };
        if func == RowAgg::Avg && !input.is_some_and(AttrType::is_numeric) {
            diags.push(pos.line, pos.col, format!("`{name}` needs a number"));
            return None;
        }
        self.aggregates.push(AggregateCall { func, arg: arg.map(|(c, _)| c), ty });
        Some((self.base.len() + self.aggregates.len() - 1, ty))
    }

    fn unknown_function(&self, name: &str) -> String {
        format!("unknown function `{name}`: a query can use sum, count, avg, min, max and distinctCount")
    }
}

/// For having and order by: output names first, then the merged row (shifted past the
/// outputs).
struct OutputScope<'a> {
    outputs: &'a [(String, Compiled, Option<AttrType>)],
    inner: BaseScope<'a>,
}

impl Scope for OutputScope<'_> {
    fn attribute(&mut self, qualifier: Option<&str>, name: &str) -> std::result::Result<(usize, AttrType), Unresolved> {
        if qualifier.is_none()
            && let Some(i) = self.outputs.iter().position(|(n, _, _)| n == name)
        {
            return Ok((i, self.outputs[i].2.unwrap_or(AttrType::String)));
        }
        self.inner.attribute(qualifier, name).map(|(i, t)| (i + self.outputs.len(), t))
    }

    fn call(&mut self, name: &str, args: &[Expr], pos: Pos, diags: &mut Diagnostics) -> Option<(usize, AttrType)> {
        // Arguments of an aggregate refer to the merged row, not to outputs.
        self.inner.call(name, args, pos, diags).map(|(i, t)| (i + self.outputs.len(), t))
    }

    fn unknown_function(&self, name: &str) -> String {
        self.inner.unknown_function(name)
    }
}

/// Compiles and runs one retrieval query against the store of the queried aggregation
/// (`store`: the `--store` option, which overrides `@store` and the node file).
pub fn run_on_store(
    plan: &AppPlan,
    cfg: &crate::config::NodeConfig,
    store: Option<&str>,
    text: &str,
) -> Result<QueryResult> {
    let q = compile_query(plan, text)?;
    let agg = &plan.aggregations[q.aggregation];
    let address = crate::store::address::resolve(agg, store, &cfg.settings.store)?;
    if let crate::store::StoreAddress::Sqlite { path } = &address
        && !path.exists()
    {
        return Err(Error::Schema(format!(
            "the store {} does not exist: ingest into it first, or give the right --store",
            address.redacted()
        )));
    }
    let mut s = crate::store::open(&address)?;
    run(plan, &q, s.as_mut())
}

#[cfg(test)]
mod tests;
