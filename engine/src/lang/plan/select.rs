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
    let mut select = Select { s, group_by, cells: Vec::new(), latest: Vec::new(), outputs: Vec::new() };
    for item in &a.select {
        let Some(name) = select.output_name(item, diags) else { continue };
        if let Some(output) = select.output(item, name, diags) {
            select.outputs.push(output);
        }
    }
    select.store_avg_divisors();
    (diags.len() == before).then_some((select.cells, select.latest, select.outputs))
}

/// The select list being checked: the cells, latest-value columns and outputs so far.
struct Select<'a> {
    s: &'a StreamPlan,
    group_by: &'a [usize],
    cells: Vec<Cell>,
    latest: Vec<LatestColumn>,
    outputs: Vec<Output>,
}

impl Select<'_> {
    /// The index of the cell of `kind` over `attr`, added when new (two aggregators over
    /// one attribute share their cells: `sum(x)` and `avg(x)` keep one sum).
    fn cell(&mut self, kind: CellKind, attr: Option<usize>) -> usize {
        if let Some(i) = self.cells.iter().position(|c| c.kind == kind && c.attr == attr) {
            return i;
        }
        let name = attr.map(|i| self.s.attributes[i].name.as_str());
        let column = match (kind, name) {
            (CellKind::Count, _) => Some("AGG_COUNT".to_string()),
            (CellKind::Sum, Some(n)) => Some(format!("AGG_SUM_{n}")),
            (CellKind::Min, Some(n)) => Some(format!("AGG_MIN_{n}")),
            (CellKind::Max, Some(n)) => Some(format!("AGG_MAX_{n}")),
            (CellKind::Set, Some(n)) => Some(format!("AGG_SET_{n}")),
            // Stored only for avg (see `store_avg_divisors`); otherwise it lives in memory.
            _ => None,
        };
        self.cells.push(Cell { kind, attr, input: attr.map(|i| self.s.attributes[i].ty), column });
        self.cells.len() - 1
    }

    /// The output name of a select item: its alias, or the attribute it names. Refuses
    /// names Tally's own columns use and names used twice.
    fn output_name(&self, item: &ast::SelectItem, diags: &mut Diagnostics) -> Option<String> {
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
                return None;
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
            return None;
        }
        if self.outputs.iter().any(|o| o.name.eq_ignore_ascii_case(&name)) {
            diags.push(name_pos.line, name_pos.col, format!("the output name `{name}` is used twice"));
            return None;
        }
        Some(name)
    }

    /// What a select item outputs: a group-by attribute, an aggregator, or a latest value
    /// (an attribute that is not grouped by, or an expression over one event).
    fn output(&mut self, item: &ast::SelectItem, name: String, diags: &mut Diagnostics) -> Option<Output> {
        let s = self.s;
        Some(match &item.expr {
            Expr::Attr { qualifier, name: attr, pos } => {
                let (i, ty) = match (StreamScope { stream: s }).attribute(qualifier.as_deref(), attr) {
                    Ok(v) => v,
                    Err(Unresolved(m)) => {
                        diags.push(pos.line, pos.col, m);
                        return None;
                    }
                };
                match self.group_by.iter().position(|g| *g == i) {
                    Some(k) => Output { name, kind: OutputKind::Key(k), ty },
                    None => {
                        let expr = crate::lang::expr::Compiled::Column(i);
                        self.latest.push(LatestColumn { name: name.clone(), expr, ty });
                        Output { name, kind: OutputKind::Latest(self.latest.len() - 1), ty }
                    }
                }
            }
            Expr::Call { name: f, args, pos } if AGGREGATORS.contains(&f.to_ascii_lowercase().as_str()) => {
                let (func, ty) = self.aggregator(f, args, *pos, diags)?;
                Output { name, kind: OutputKind::Agg(func), ty }
            }
            e => {
                let mut scope = NoAggregatorScope { inner: StreamScope { stream: s } };
                let (c, ty) = compile(e, &mut scope, diags)?;
                let Some(ty) = ty else {
                    let pos = e.pos();
                    diags.push(pos.line, pos.col, "a select item cannot be a bare null");
                    return None;
                };
                self.latest.push(LatestColumn { name: name.clone(), expr: c, ty });
                Output { name, kind: OutputKind::Latest(self.latest.len() - 1), ty }
            }
        })
    }

    /// avg's divisor (the non-null count) is stored; a bare non-null count is not.
    fn store_avg_divisors(&mut self) {
        for o in &self.outputs {
            if let OutputKind::Agg(AggFunc::Avg { nonnull, .. }) = o.kind {
                let attr = self.cells[nonnull].attr.map(|a| self.s.attributes[a].name.clone()).unwrap_or_default();
                self.cells[nonnull].column = Some(format!("AGG_COUNT_{attr}"));
            }
        }
    }

    /// An aggregator call (`sum(x)`, `count()`, …) and its output type.
    fn aggregator(&mut self, f: &str, args: &[Expr], pos: Pos, diags: &mut Diagnostics) -> Option<(AggFunc, AttrType)> {
        let s = self.s;
        let lower = f.to_ascii_lowercase();
        if lower == "count" {
            if !args.is_empty() {
                diags.push(pos.line, pos.col, "`count()` takes no argument: it counts every event");
                return None;
            }
            return Some((AggFunc::Count { count: self.cell(CellKind::Count, None) }, AttrType::Long));
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
                let sum = self.cell(CellKind::Sum, Some(i));
                let nonnull = self.cell(CellKind::NonNull, Some(i));
                (AggFunc::Sum { sum, nonnull }, if ty.is_integer() { AttrType::Long } else { AttrType::Double })
            }
            "avg" => {
                let sum = self.cell(CellKind::Sum, Some(i));
                let nonnull = self.cell(CellKind::NonNull, Some(i));
                (AggFunc::Avg { sum, nonnull }, AttrType::Double)
            }
            "min" => {
                self.cell(CellKind::NonNull, Some(i));
                (AggFunc::Min { cell: self.cell(CellKind::Min, Some(i)) }, ty)
            }
            "max" => {
                self.cell(CellKind::NonNull, Some(i));
                (AggFunc::Max { cell: self.cell(CellKind::Max, Some(i)) }, ty)
            }
            _ => (AggFunc::DistinctCount { set: self.cell(CellKind::Set, Some(i)) }, AttrType::Long),
        })
    }
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
