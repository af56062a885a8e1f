//! The select list of an aggregation: aggregators, group-by attributes, latest values.

use super::{AggFunc, Cell, CellKind, LatestColumn, Output, OutputKind, StreamPlan, StreamScope};
use crate::error::Diagnostics;
use crate::lang::expr::{Scope, Unresolved, compile};
use crate::lang::syntax::ast::{self, Expr, Pos};
use crate::lang::types::AttrType;

const AGGREGATORS: [&str; 6] = ["sum", "count", "avg", "min", "max", "distinctcount"];

type Checked = (Vec<Cell>, Vec<LatestColumn>, Vec<Output>);

/// Checks the select list; `None` when it has errors (already reported).
pub(super) fn check(
    a: &ast::AggregationDef,
    s: &StreamPlan,
    group_by: &[usize],
    diags: &mut Diagnostics,
) -> Option<Checked> {
    let before = diags.len();
    let mut cells: Vec<Cell> = Vec::new();
    let mut latest: Vec<LatestColumn> = Vec::new();
    let mut outputs: Vec<Output> = Vec::new();
    let mut cell = |kind: CellKind, attr: Option<usize>, cells: &mut Vec<Cell>| -> usize {
        if let Some(i) = cells.iter().position(|c| c.kind == kind && c.attr == attr) {
            return i;
        }
        let name = attr.map(|i| s.attributes[i].name.as_str());
        let column = match (kind, name) {
            (CellKind::Count, _) => Some("AGG_COUNT".to_string()),
            (CellKind::Sum, Some(n)) => Some(format!("AGG_SUM_{n}")),
            (CellKind::Min, Some(n)) => Some(format!("AGG_MIN_{n}")),
            (CellKind::Max, Some(n)) => Some(format!("AGG_MAX_{n}")),
            (CellKind::Set, Some(n)) => Some(format!("AGG_SET_{n}")),
            // Stored only for avg (set below); otherwise it lives in memory.
            _ => None,
        };
        cells.push(Cell { kind, attr, input: attr.map(|i| s.attributes[i].ty), column });
        cells.len() - 1
    };

    for item in &a.select {
        let (name, name_pos) = match (&item.alias, &item.expr) {
            (Some(alias), _) => (alias.text.clone(), alias.pos),
            (None, Expr::Attr { name, pos, .. }) => (name.clone(), *pos),
            (None, e) => {
                let pos = e.pos();
                diags.push(
                    pos.line,
                    pos.col,
                    "give this select item a name with `as`, e.g. `sum(price) as totalPrice`",
                );
                continue;
            }
        };
        if name.eq_ignore_ascii_case("AGG_TIMESTAMP")
            || name.eq_ignore_ascii_case("SHARD_ID")
            || name.eq_ignore_ascii_case("AGG_LAST_EVENT_TIMESTAMP")
            || name.to_ascii_uppercase().starts_with("AGG_")
        {
            diags.push(
                name_pos.line,
                name_pos.col,
                format!("`{name}` is a name Tally uses for its own columns; choose another"),
            );
            continue;
        }
        if outputs.iter().any(|o| o.name.eq_ignore_ascii_case(&name)) {
            diags.push(name_pos.line, name_pos.col, format!("the output name `{name}` is used twice"));
            continue;
        }
        let output = match &item.expr {
            Expr::Attr { qualifier, name: attr, pos } => {
                let mut scope = StreamScope { stream: s };
                match scope.attribute(qualifier.as_deref(), attr) {
                    Err(Unresolved(m)) => {
                        diags.push(pos.line, pos.col, m);
                        continue;
                    }
                    Ok((i, ty)) => match group_by.iter().position(|g| *g == i) {
                        Some(k) => Output { name, kind: OutputKind::Key(k), ty },
                        None => {
                            latest.push(LatestColumn {
                                name: name.clone(),
                                expr: crate::lang::expr::Compiled::Column(i),
                                ty,
                            });
                            Output { name, kind: OutputKind::Latest(latest.len() - 1), ty }
                        }
                    },
                }
            }
            Expr::Call { name: f, args, pos } if AGGREGATORS.contains(&f.to_ascii_lowercase().as_str()) => {
                let Some((func, ty)) = aggregator(f, args, *pos, s, diags, &mut cells, &mut cell) else {
                    continue;
                };
                Output { name, kind: OutputKind::Agg(func), ty }
            }
            e => {
                let mut scope = NoAggregatorScope { inner: StreamScope { stream: s } };
                let Some((c, ty)) = compile(e, &mut scope, diags) else {
                    continue;
                };
                let Some(ty) = ty else {
                    let pos = e.pos();
                    diags.push(pos.line, pos.col, "a select item cannot be a bare null");
                    continue;
                };
                latest.push(LatestColumn { name: name.clone(), expr: c, ty });
                Output { name, kind: OutputKind::Latest(latest.len() - 1), ty }
            }
        };
        outputs.push(output);
    }
    // avg's divisor is stored; a bare non-null count is not.
    let avg_attrs: Vec<usize> = outputs
        .iter()
        .filter_map(|o| match o.kind {
            OutputKind::Agg(AggFunc::Avg { nonnull, .. }) => Some(nonnull),
            _ => None,
        })
        .collect();
    for i in avg_attrs {
        let attr = cells[i].attr.map(|a| s.attributes[a].name.clone()).unwrap_or_default();
        cells[i].column = Some(format!("AGG_COUNT_{attr}"));
    }
    (diags.len() == before).then_some((cells, latest, outputs))
}

fn aggregator(
    f: &str,
    args: &[Expr],
    pos: Pos,
    s: &StreamPlan,
    diags: &mut Diagnostics,
    cells: &mut Vec<Cell>,
    cell: &mut impl FnMut(CellKind, Option<usize>, &mut Vec<Cell>) -> usize,
) -> Option<(AggFunc, AttrType)> {
    let lower = f.to_ascii_lowercase();
    if lower == "count" {
        if !args.is_empty() {
            diags.push(pos.line, pos.col, "`count()` takes no argument: it counts every event");
            return None;
        }
        return Some((AggFunc::Count { count: cell(CellKind::Count, None, cells) }, AttrType::Long));
    }
    let [arg] = args else {
        diags.push(pos.line, pos.col, format!("`{f}` takes exactly one attribute, e.g. `{f}(price)`"));
        return None;
    };
    let Expr::Attr { qualifier, name, pos: apos } = arg else {
        let p = arg.pos();
        diags.push(p.line, p.col, format!("`{f}` takes one attribute of the input stream, not an expression"));
        return None;
    };
    let mut scope = StreamScope { stream: s };
    let (i, ty) = match scope.attribute(qualifier.as_deref(), name) {
        Ok(v) => v,
        Err(Unresolved(m)) => {
            diags.push(apos.line, apos.col, m);
            return None;
        }
    };
    if lower != "distinctcount" && !ty.is_numeric() {
        diags.push(apos.line, apos.col, format!("`{f}({name})` needs a numeric attribute, but `{name}` is {ty}"));
        return None;
    }
    Some(match lower.as_str() {
        "sum" => {
            let sum = cell(CellKind::Sum, Some(i), cells);
            let nonnull = cell(CellKind::NonNull, Some(i), cells);
            (AggFunc::Sum { sum, nonnull }, if ty.is_integer() { AttrType::Long } else { AttrType::Double })
        }
        "avg" => {
            let sum = cell(CellKind::Sum, Some(i), cells);
            let nonnull = cell(CellKind::NonNull, Some(i), cells);
            (AggFunc::Avg { sum, nonnull }, AttrType::Double)
        }
        "min" => {
            cell(CellKind::NonNull, Some(i), cells);
            (AggFunc::Min { cell: cell(CellKind::Min, Some(i), cells) }, ty)
        }
        "max" => {
            cell(CellKind::NonNull, Some(i), cells);
            (AggFunc::Max { cell: cell(CellKind::Max, Some(i), cells) }, ty)
        }
        _ => (AggFunc::DistinctCount { set: cell(CellKind::Set, Some(i), cells) }, AttrType::Long),
    })
}

/// Latest-value expressions are over one event; an aggregator inside one has no meaning.
struct NoAggregatorScope<'a> {
    inner: StreamScope<'a>,
}

impl Scope for NoAggregatorScope<'_> {
    fn attribute(&mut self, qualifier: Option<&str>, name: &str) -> Result<(usize, AttrType), Unresolved> {
        self.inner.attribute(qualifier, name)
    }
    fn unknown_function(&self, name: &str) -> String {
        if AGGREGATORS.contains(&name.to_ascii_lowercase().as_str()) {
            format!("`{name}` must be a whole select item (`{name}(x) as name`), not part of an expression")
        } else {
            format!("unknown function `{name}`: an aggregation can use sum, count, avg, min, max and distinctCount")
        }
    }
}
