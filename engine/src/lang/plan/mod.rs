//! The checked app: every name resolved, every type known, ready to run.
//!
//! Checking turns the syntax tree into plain data with dense indices (attribute `i` of
//! stream `s`, cell `c` of aggregation `a`) so that the per-event path never looks up a
//! string. All errors are collected, each with its line and column.

mod annotation;
mod select;

use crate::config::NodeConfig;
use crate::error::{Diagnostic, Diagnostics, Error, Result};
use crate::lang::expr::{Compiled, Scope, Unresolved, compile};
use crate::lang::syntax::ast::{self, Every};
use crate::lang::syntax::parse_app;
use crate::lang::types::AttrType;
use crate::time::bucket::Zone;
use crate::time::granularity::Granularity;
use std::collections::HashSet;

mod source;

pub use annotation::{Purge, StoreSpec};
pub use source::{DEFAULT_SOURCE_PORT, JsonMapping, ReceiverUrl, SourcePlan, receiver_url};

#[derive(Debug, Clone)]
pub struct AppPlan {
    /// `@App:name` (any letter case); else the app file's name ([`load`]), else `SiddhiApp`.
    pub name: String,
    /// Whether the name came from `@App:name`.
    pub named: bool,
    pub streams: Vec<StreamPlan>,
    /// The streams' `@source(type='http')` annotations: where the node takes their events.
    pub sources: Vec<SourcePlan>,
    pub aggregations: Vec<AggPlan>,
    /// Things that are accepted but worth telling (ignored annotations, unused streams).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub ty: AttrType,
}

#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub name: String,
    pub attributes: Vec<Attribute>,
    /// The attributes' types, in order: what a batch of this stream is encoded and
    /// checked against (the router, the workers and the connections all need them).
    pub types: Vec<AttrType>,
    /// How JSON events of this stream map onto its attributes over HTTP: its first http
    /// source's `@map`, else SI's defaults.
    pub mapping: JsonMapping,
    /// The aggregations this stream feeds.
    pub aggregations: Vec<usize>,
    /// Attributes that every one of those aggregations groups by. Events are routed to
    /// workers by these, so each group of each aggregation lives in one worker; empty means
    /// batches are spread round robin and the workers' partials are merged at flush.
    pub route_key: Vec<usize>,
}

impl StreamPlan {
    pub fn attribute(&self, name: &str) -> Option<usize> {
        self.attributes.iter().position(|a| a.name == name)
    }
}

/// Where an event's time stamp comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// `aggregate by ATTR` with a `long` attribute: epoch milliseconds.
    Millis(usize),
    /// `aggregate by ATTR` with a `string` attribute: `yyyy-MM-dd HH:mm:ss[ ±HH:mm]`.
    Text(usize),
    /// No `aggregate by`: the time the node received the event.
    Arrival,
}

/// The kinds of stored partial aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// `count()`: every event.
    Count,
    /// Events where the attribute is not null (avg's divisor; also tells a null sum).
    NonNull,
    Sum,
    Min,
    Max,
    /// The distinct non-null values (distinctCount).
    Set,
}

/// One partial aggregate of an aggregation. Cells are shared by name: `avg(price)` and
/// `sum(price)` use the same `Sum` cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub kind: CellKind,
    /// The stream attribute it aggregates (`None` for `count()`).
    pub attr: Option<usize>,
    /// That attribute's type.
    pub input: Option<AttrType>,
    /// The stored column, `None` for a cell kept only in memory.
    pub column: Option<String>,
}

impl Cell {
    /// The type of the cell's value.
    pub fn value_type(&self) -> AttrType {
        match self.kind {
            CellKind::Count | CellKind::NonNull => AttrType::Long,
            CellKind::Sum => match self.input {
                Some(t) if t.is_integer() => AttrType::Long,
                _ => AttrType::Double,
            },
            CellKind::Min | CellKind::Max => self.input.unwrap_or(AttrType::Double),
            CellKind::Set => AttrType::String,
        }
    }

    /// Whether numeric values of the cell are integers (exact) rather than doubles.
    pub fn is_integer(&self) -> bool {
        self.value_type().is_integer() || matches!(self.kind, CellKind::Count | CellKind::NonNull)
    }
}

/// A select item that is neither a group-by attribute nor an aggregator: the value from the
/// event with the greatest time stamp in the bucket.
#[derive(Debug, Clone)]
pub struct LatestColumn {
    pub name: String,
    pub expr: Compiled,
    pub ty: AttrType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Sum { sum: usize, nonnull: usize },
    Count { count: usize },
    Avg { sum: usize, nonnull: usize },
    Min { cell: usize },
    Max { cell: usize },
    DistinctCount { set: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    /// The `index`-th group-by attribute.
    Key(usize),
    /// The `index`-th latest-value column.
    Latest(usize),
    Agg(AggFunc),
}

/// One output attribute of the aggregation (after `AGG_TIMESTAMP`), in select order.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub kind: OutputKind,
    pub ty: AttrType,
}

#[derive(Debug, Clone)]
pub struct AggPlan {
    pub name: String,
    pub stream: usize,
    pub time: TimeSource,
    /// Ascending, without repeats; the first is the finest.
    pub durations: Vec<Granularity>,
    /// Stream attribute indices of the group-by attributes.
    pub group_by: Vec<usize>,
    pub filter: Option<Compiled>,
    pub cells: Vec<Cell>,
    pub latest: Vec<LatestColumn>,
    pub outputs: Vec<Output>,
    pub partitioned: bool,
    /// This node's shard id, when partitioned.
    pub shard_id: Option<String>,
    /// `@store`, resolved; `None` means the node's default store.
    pub store: Option<StoreSpec>,
    pub purge: Purge,
    pub zone: Zone,
    /// The aggregation's store keys rows on the group-by columns as SI's MySQL tables do
    /// (NOT NULL, `VARCHAR(254)`): set by the node once it knows the store
    /// (`Node::start`), and the events are checked against it when they arrive
    /// (`ingest::check`), so a flush never meets a row the store cannot take.
    pub mysql_columns: bool,
}

impl AggPlan {
    pub fn finest(&self) -> Granularity {
        self.durations[0]
    }

    pub fn has_duration(&self, d: Granularity) -> bool {
        self.durations.contains(&d)
    }

    pub fn table_name(&self, d: Granularity) -> String {
        format!("{}_{}", self.name, d.table_suffix())
    }
}

impl AppPlan {
    pub fn stream(&self, name: &str) -> Option<usize> {
        self.streams.iter().position(|s| s.name == name)
    }

    pub fn aggregation(&self, name: &str) -> Option<usize> {
        self.aggregations.iter().position(|a| a.name == name)
    }
}

/// Parses and checks an app for the node `config`. `source_name` names the app in messages.
pub fn check(text: &str, source_name: &str, config: &NodeConfig) -> Result<AppPlan> {
    let mut diags = Diagnostics::default();
    let app = parse_app(text, &mut diags);
    let mut warnings = Diagnostics::default();
    let plan = Checker { config, diags: &mut diags, warnings: &mut warnings }.app(&app);
    if !diags.is_empty() {
        diags.0.sort_by_key(|d| (d.line, d.column));
        return Err(Error::App { source_name: source_name.to_string(), diags });
    }
    let mut plan = plan;
    plan.warnings = warnings.0;
    Ok(plan)
}

/// Reads an app file and checks it. An app without `@App:name` is named after its file;
/// SI requires the two to be equal, so a difference is a warning.
pub fn load(path: &std::path::Path, config: &NodeConfig) -> Result<AppPlan> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read the app {}", path.display()), e))?;
    let mut plan = check(&text, &path.display().to_string(), config)?;
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        if !plan.named {
            plan.name = stem.to_string();
        } else if plan.name != stem {
            plan.warnings.push(Diagnostic {
                line: 1,
                column: 1,
                message: format!(
                    "the app is named `{}` but its file is `{stem}`: WSO2 SI refuses that; Tally goes by @App:name",
                    plan.name
                ),
            });
        }
    }
    Ok(plan)
}

struct Checker<'a> {
    config: &'a NodeConfig,
    diags: &'a mut Diagnostics,
    warnings: &'a mut Diagnostics,
}

impl Checker<'_> {
    fn err(&mut self, pos: ast::Pos, msg: impl Into<String>) {
        self.diags.push(pos.line, pos.col, msg);
    }

    fn app(&mut self, app: &ast::App) -> AppPlan {
        let declared =
            app.annotations.iter().find(|a| a.is("app:name")).and_then(|a| a.elements.first()).and_then(|e| match e {
                ast::AnnotationElement::Pair { value, .. } => Some(value.clone()),
                _ => None,
            });
        let named = declared.is_some();
        let name = declared.unwrap_or_else(|| "SiddhiApp".to_string());
        let mut streams: Vec<StreamPlan> = Vec::new();
        let mut sources: Vec<SourcePlan> = Vec::new();
        for s in &app.streams {
            if streams.iter().any(|p| p.name == s.name.text) {
                self.err(s.name.pos, format!("the stream `{}` is defined twice", s.name.text));
                continue;
            }
            let (stream_sources, mapping) = source::check(s, streams.len(), self.diags, self.warnings);
            sources.extend(stream_sources);
            let mut attributes: Vec<Attribute> = Vec::new();
            for (n, t) in &s.attributes {
                if attributes.iter().any(|a| a.name == n.text) {
                    self.err(n.pos, format!("the attribute `{}` appears twice in stream `{}`", n.text, s.name.text));
                }
                match AttrType::parse(&t.text) {
                    Some(ty) => attributes.push(Attribute { name: n.text.clone(), ty }),
                    None => self
                        .err(t.pos, format!("unknown type `{}`: use int, long, float, double, string or bool", t.text)),
                }
            }
            streams.push(StreamPlan {
                name: s.name.text.clone(),
                types: attributes.iter().map(|a| a.ty).collect(),
                mapping,
                attributes,
                aggregations: Vec::new(),
                route_key: Vec::new(),
            });
        }
        let mut aggregations: Vec<AggPlan> = Vec::new();
        for a in &app.aggregations {
            if aggregations.iter().any(|p| p.name == a.name.text) {
                self.err(a.name.pos, format!("the aggregation `{}` is defined twice", a.name.text));
                continue;
            }
            if let Some(plan) = self.aggregation(a, &streams) {
                aggregations.push(plan);
            }
        }
        if app.aggregations.is_empty() && self.diags.is_empty() {
            self.err(
                ast::Pos { line: 1, col: 1 },
                "the app defines no aggregation (`define aggregation ... aggregate every ...`)",
            );
        }
        for (i, agg) in aggregations.iter().enumerate() {
            streams[agg.stream].aggregations.push(i);
        }
        for (si, s) in streams.iter_mut().enumerate() {
            if s.aggregations.is_empty() {
                let pos = app.streams.iter().find(|d| d.name.text == s.name).map(|d| d.name.pos).unwrap_or_default();
                self.warnings.push(
                    pos.line,
                    pos.col,
                    format!("no aggregation reads stream `{}`; its events are accepted and dropped", s.name),
                );
                continue;
            }
            let mut key: Vec<usize> = aggregations[s.aggregations[0]].group_by.clone();
            for &ai in &s.aggregations[1..] {
                key.retain(|k| aggregations[ai].group_by.contains(k));
            }
            debug_assert!(s.aggregations.iter().all(|&ai| aggregations[ai].stream == si));
            s.route_key = key;
        }
        AppPlan { name, named, streams, sources, aggregations, warnings: Vec::new() }
    }

    fn aggregation(&mut self, a: &ast::AggregationDef, streams: &[StreamPlan]) -> Option<AggPlan> {
        let Some(stream) = streams.iter().position(|s| s.name == a.from.text) else {
            let known: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
            self.err(
                a.from.pos,
                format!(
                    "aggregation `{}` reads `{}`, which is not a defined stream{}",
                    a.name.text,
                    a.from.text,
                    if known.is_empty() { String::new() } else { format!(" (defined: {})", known.join(", ")) }
                ),
            );
            return None;
        };
        let s = &streams[stream];
        let errors_before = self.diags.len();

        let durations = self.durations(a);
        let time = match &a.by {
            None => TimeSource::Arrival,
            Some(n) => match s.attribute(&n.text) {
                Some(i) => match s.attributes[i].ty {
                    AttrType::Long => TimeSource::Millis(i),
                    AttrType::String => TimeSource::Text(i),
                    other => {
                        self.err(n.pos, format!("`aggregate by {}`: the time stamp must be a long (epoch ms) or a string `yyyy-MM-dd HH:mm:ss`, not {other}", n.text));
                        TimeSource::Arrival
                    }
                },
                None => {
                    self.err(n.pos, format!("`aggregate by {}`: stream `{}` has no such attribute", n.text, s.name));
                    TimeSource::Arrival
                }
            },
        };
        let mut group_by = Vec::new();
        for g in &a.group_by {
            match s.attribute(&g.text) {
                Some(i) if group_by.contains(&i) => self.err(g.pos, format!("`{}` appears twice in group by", g.text)),
                Some(i) => group_by.push(i),
                None => self.err(g.pos, format!("group by `{}`: stream `{}` has no such attribute", g.text, s.name)),
            }
        }
        let filter = a.filter.as_ref().and_then(|f| {
            let mut scope = StreamScope { stream: s };
            let (c, t) = compile(f, &mut scope, self.diags)?;
            if t.is_some_and(|t| t != AttrType::Bool) {
                self.err(f.pos(), "the filter on the aggregation input must be a true/false condition");
            }
            Some(c)
        });
        let selected = select::check(a, s, &group_by, self.diags);
        let ann = annotation::check(a, self.config, &durations, self.diags, self.warnings);
        if self.diags.len() > errors_before || durations.is_empty() {
            return None;
        }
        let (cells, latest, outputs) = selected?;
        Some(AggPlan {
            name: a.name.text.clone(),
            stream,
            time,
            durations,
            group_by,
            filter,
            cells,
            latest,
            outputs,
            partitioned: ann.partitioned,
            shard_id: ann.shard_id,
            store: ann.store,
            purge: ann.purge,
            zone: self.config.agg_time_zone.clone(),
            mysql_columns: false,
        })
    }

    fn durations(&mut self, a: &ast::AggregationDef) -> Vec<Granularity> {
        let parse = |n: &ast::Name, diags: &mut Diagnostics| {
            let d = Granularity::parse(&n.text);
            if d.is_none() {
                diags.push(
                    n.pos.line,
                    n.pos.col,
                    format!("`{}` is not an aggregation duration: use sec, min, hour, day, month or year", n.text),
                );
            }
            d
        };
        match &a.every {
            Every::Range(from, to) => {
                let (f, t) = (parse(from, self.diags), parse(to, self.diags));
                match (f, t) {
                    (Some(f), Some(t)) if f > t => {
                        self.err(
                            from.pos,
                            format!(
                                "`every {} ... {}` runs backwards: the range starts after it ends",
                                from.text, to.text
                            ),
                        );
                        Vec::new()
                    }
                    (Some(f), Some(t)) => Granularity::ALL.into_iter().filter(|d| *d >= f && *d <= t).collect(),
                    _ => Vec::new(),
                }
            }
            Every::List(list) => {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for n in list {
                    if let Some(d) = parse(n, self.diags) {
                        if !seen.insert(d) {
                            self.err(n.pos, format!("the duration `{}` is listed twice", n.text));
                        }
                        out.push(d);
                    }
                }
                out.sort();
                out.dedup();
                out
            }
        }
    }
}

/// Names in app expressions are the input stream's attributes.
pub(crate) struct StreamScope<'a> {
    pub stream: &'a StreamPlan,
}

impl Scope for StreamScope<'_> {
    fn attribute(&mut self, qualifier: Option<&str>, name: &str) -> Result<(usize, AttrType), Unresolved> {
        if let Some(q) = qualifier
            && q != self.stream.name
        {
            return Err(Unresolved(format!(
                "`{q}.{name}`: only attributes of the input stream `{}` can be used here",
                self.stream.name
            )));
        }
        self.stream
            .attribute(name)
            .map(|i| (i, self.stream.attributes[i].ty))
            .ok_or_else(|| Unresolved(format!("stream `{}` has no attribute `{name}`", self.stream.name)))
    }
}

#[cfg(test)]
mod tests;
