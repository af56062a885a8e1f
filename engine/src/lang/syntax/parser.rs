//! A recursive-descent parser for apps and retrieval queries.
//!
//! Errors do not stop the parse: the parser records the problem with its position, skips
//! to the next `;` and goes on, so that `tally check` reports every error at once.

use super::ast::*;
use super::lexer::{Tok, Token, tokenize};
use crate::error::Diagnostics;

/// The error has been recorded in the diagnostics; the caller only unwinds.
pub(super) struct Reported;
pub(super) type PResult<T> = Result<T, Reported>;

pub(super) struct Parser<'d> {
    toks: Vec<Token>,
    i: usize,
    diags: &'d mut Diagnostics,
    /// How deep the parser is in nested expressions and annotations (see [`MAX_NESTING`]).
    depth: usize,
}

/// How deep expressions (parentheses, arguments, `not` and unary `-`) and annotations may
/// nest. The parser recurses once per level, so without a bound a hostile text of a few
/// hundred kilobytes of `(` overflows the stack and kills the node (a hostile input tried while
/// fuzzing, docs/fuzzing.md). No real app comes near it; serde_json stops at the same depth.
pub const MAX_NESTING: usize = 128;

/// How many attributes a stream and how many items a `select` may have. Each becomes a
/// column of an aggregation table (PostgreSQL stops at 1,600 columns), and checking an app
/// compares names pairwise: an app of a million columns took 24 minutes to check before
/// this bound (docs/fuzzing.md), and is now refused at once.
pub const MAX_ATTRIBUTES: usize = 1000;

const UNSUPPORTED_QUERY: &str = "queries (`from ... insert into ...`, windows, patterns, \
sequences, joins) are not supported: Tally runs `define stream` and `define aggregation` only. \
In an active-active cluster such a query would see only the events of its own node (the SI \
docs warn of this); run it on a single node instead";

/// Parses an app. Every syntax error is added to `diags`; what could be parsed is returned.
pub fn parse_app(text: &str, diags: &mut Diagnostics) -> App {
    let toks = tokenize(text, diags);
    let mut p = Parser { toks, i: 0, diags, depth: 0 };
    let mut app = App::default();
    loop {
        while p.eat_sym(";") {}
        if p.at_eof() {
            break;
        }
        if p.parse_app_item(&mut app).is_err() {
            p.recover();
        }
    }
    app
}

/// Parses a retrieval query.
pub fn parse_query(text: &str, diags: &mut Diagnostics) -> Option<Query> {
    let toks = tokenize(text, diags);
    let mut p = Parser { toks, i: 0, diags, depth: 0 };
    let q = p.parse_query().ok()?;
    while p.eat_sym(";") {}
    if !p.at_eof() {
        p.error_here("expected the end of the query");
        return None;
    }
    Some(q)
}

impl<'d> Parser<'d> {
    // ------------------------------------------------------------------ token helpers

    pub(super) fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    pub(super) fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].tok
    }

    pub(super) fn pos(&self) -> Pos {
        self.peek().pos
    }

    pub(super) fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    pub(super) fn at_eof(&self) -> bool {
        matches!(self.peek().tok, Tok::Eof)
    }

    pub(super) fn is_kw(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }

    pub(super) fn is_kw_at(&self, n: usize, word: &str) -> bool {
        matches!(self.peek_at(n), Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }

    pub(super) fn eat_kw(&mut self, word: &str) -> bool {
        if self.is_kw(word) {
            self.bump();
            true
        } else {
            false
        }
    }

    pub(super) fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek().tok, Tok::Sym(t) if t == s)
    }

    pub(super) fn eat_sym(&mut self, s: &str) -> bool {
        if self.is_sym(s) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Runs `f` one level deeper, or reports that the text nests too deep.
    pub(super) fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_NESTING {
            let pos = self.pos();
            return Err(self.error_at(pos, format!("nested more than {MAX_NESTING} deep; simplify the expression")));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// Refuses a list (attributes, select items, group-by, order-by, durations) that is
    /// already [`MAX_ATTRIBUTES`] long before one more is added.
    pub(super) fn bounded(&mut self, len: usize, what: &str) -> PResult<()> {
        if len < MAX_ATTRIBUTES {
            return Ok(());
        }
        let pos = self.pos();
        Err(self.error_at(pos, format!("more than {MAX_ATTRIBUTES} {what}; no table could hold them")))
    }

    pub(super) fn error_at(&mut self, pos: Pos, msg: impl Into<String>) -> Reported {
        self.diags.push(pos.line, pos.col, msg);
        Reported
    }

    pub(super) fn error_here(&mut self, expected: &str) -> Reported {
        let t = self.peek().clone();
        self.error_at(t.pos, format!("{expected}, found {}", t.tok.describe()))
    }

    pub(super) fn expect_kw(&mut self, word: &str, context: &str) -> PResult<()> {
        if self.eat_kw(word) { Ok(()) } else { Err(self.error_here(&format!("expected `{word}` {context}"))) }
    }

    pub(super) fn expect_sym(&mut self, s: &str, context: &str) -> PResult<()> {
        if self.eat_sym(s) { Ok(()) } else { Err(self.error_here(&format!("expected `{s}` {context}"))) }
    }

    pub(super) fn name(&mut self, what: &str) -> PResult<Name> {
        match self.peek().tok.clone() {
            Tok::Ident(text) => {
                let pos = self.bump().pos;
                Ok(Name { text, pos })
            }
            _ => Err(self.error_here(&format!("expected {what}"))),
        }
    }

    /// Skips to just after the next `;` at bracket depth 0 (or to the end).
    fn recover(&mut self) {
        let mut depth = 0i32;
        while !self.at_eof() {
            match self.bump().tok {
                Tok::Sym("(") | Tok::Sym("[") => depth += 1,
                Tok::Sym(")") | Tok::Sym("]") => depth -= 1,
                Tok::Sym(";") if depth <= 0 => return,
                _ => {}
            }
        }
    }

    // -------------------------------------------------------------------- app items

    fn parse_app_item(&mut self, app: &mut App) -> PResult<()> {
        let mut annotations = Vec::new();
        while self.is_sym("@") {
            let a = self.annotation()?;
            if a.name.to_ascii_lowercase().starts_with("app:") {
                app.annotations.push(a);
            } else {
                annotations.push(a);
            }
        }
        if self.at_eof() || self.is_sym(";") {
            if let Some(a) = annotations.first() {
                let pos = a.pos;
                return Err(self.error_at(pos, format!("the annotation @{} belongs to no definition", a.name)));
            }
            return Ok(());
        }
        let start = self.pos();
        if self.eat_kw("define") {
            if self.eat_kw("stream") {
                let s = self.stream_def(annotations)?;
                app.streams.push(s);
            } else if self.eat_kw("aggregation") {
                let a = self.aggregation_def(annotations)?;
                app.aggregations.push(a);
            } else if let Some(kind) = ["table", "window", "trigger", "function"].into_iter().find(|k| self.is_kw(k)) {
                return Err(self.error_at(
                    start,
                    format!(
                        "`define {kind}` is not supported: Tally runs `define stream` and \
                         `define aggregation` only"
                    ),
                ));
            } else {
                return Err(self.error_here("expected `stream` or `aggregation` after `define`"));
            }
        } else if self.is_kw("from") {
            return Err(self.error_at(start, UNSUPPORTED_QUERY));
        } else if self.is_kw("partition") {
            let err = self.error_at(
                start,
                "`partition with` blocks are not supported: Tally runs `define stream` and `define aggregation` only",
            );
            // Skip the whole `partition ... begin ... end;`.
            while !self.at_eof() && !self.is_kw("end") {
                self.bump();
            }
            self.eat_kw("end");
            return Err(err);
        } else {
            return Err(self.error_here("expected `define stream` or `define aggregation`"));
        }
        if !self.at_eof() && !self.eat_sym(";") {
            return Err(self.error_here("expected `;` after the definition"));
        }
        Ok(())
    }

    fn annotation(&mut self) -> PResult<Annotation> {
        let pos = self.pos();
        self.expect_sym("@", "to start an annotation")?;
        let mut name = self.name("an annotation name after `@`")?.text;
        while self.is_sym(":") || self.is_sym(".") {
            let sep = if self.eat_sym(":") {
                ":"
            } else {
                self.bump();
                "."
            };
            let part = self.name("the rest of the annotation name")?;
            name.push_str(sep);
            name.push_str(&part.text);
        }
        let mut elements = Vec::new();
        if self.eat_sym("(") && !self.eat_sym(")") {
            loop {
                if self.is_sym("@") {
                    elements.push(AnnotationElement::Nested(self.nested(|p| p.annotation())?));
                } else {
                    let epos = self.pos();
                    let key = if let Tok::Ident(_) = self.peek().tok {
                        let mut key = self.name("a key")?.text;
                        while self.eat_sym(".") {
                            key.push('.');
                            key.push_str(&self.name("the rest of the key")?.text);
                        }
                        self.expect_sym("=", &format!("after the key `{key}`"))?;
                        Some(key)
                    } else {
                        None
                    };
                    let value = match self.peek().tok.clone() {
                        Tok::Str(s) => {
                            self.bump();
                            s
                        }
                        Tok::Int { value, .. } => {
                            self.bump();
                            value.to_string()
                        }
                        Tok::Ident(s) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
                            self.bump();
                            s.to_ascii_lowercase()
                        }
                        _ => {
                            return Err(self.error_here("expected a quoted value in the annotation"));
                        }
                    };
                    elements.push(AnnotationElement::Pair { key, value, pos: epos });
                }
                if self.eat_sym(")") {
                    break;
                }
                self.expect_sym(",", "or `)` in the annotation")?;
            }
        }
        Ok(Annotation { name, pos, elements })
    }

    fn stream_def(&mut self, annotations: Vec<Annotation>) -> PResult<StreamDef> {
        let name = self.name("a stream name")?;
        self.expect_sym("(", "to open the attribute list")?;
        let mut attributes = Vec::new();
        loop {
            let attr = self.name("an attribute name")?;
            let ty = self.name("an attribute type (int, long, float, double, string or bool)")?;
            self.bounded(attributes.len(), "attributes in a stream")?;
            attributes.push((attr, ty));
            if self.eat_sym(")") {
                break;
            }
            self.expect_sym(",", "or `)` in the attribute list")?;
        }
        Ok(StreamDef { annotations, name, attributes })
    }

    fn aggregation_def(&mut self, annotations: Vec<Annotation>) -> PResult<AggregationDef> {
        let name = self.name("an aggregation name")?;
        self.expect_kw("from", "after the aggregation name")?;
        let from = self.name("the input stream name")?;
        if self.is_sym("#") {
            let pos = self.pos();
            return Err(self.error_at(
                pos,
                "a window or stream function on the aggregation input is not supported: an \
                 incremental aggregation takes every event of its stream",
            ));
        }
        let filter = if self.eat_sym("[") {
            let e = self.expr()?;
            self.expect_sym("]", "to close the filter")?;
            Some(e)
        } else {
            None
        };
        self.expect_kw("select", "after the input stream")?;
        let select = self.select_items()?;
        let mut group_by = Vec::new();
        if self.eat_kw("group") {
            self.expect_kw("by", "after `group`")?;
            loop {
                self.bounded(group_by.len(), "group-by attributes")?;
                group_by.push(self.name("a group-by attribute")?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if self.is_kw("having") || self.is_kw("order") || self.is_kw("limit") {
            let pos = self.pos();
            return Err(self.error_at(
                pos,
                "an aggregation definition takes no `having`, `order by` or `limit`; put them in the retrieval query",
            ));
        }
        self.expect_kw("aggregate", "(an aggregation ends with `aggregate [by ATTR] every ...`)")?;
        let by =
            if self.eat_kw("by") { Some(self.name("the time stamp attribute after `aggregate by`")?) } else { None };
        let every_pos = self.pos();
        self.expect_kw("every", "after `aggregate`")?;
        let first = self.name("a duration (sec, min, hour, day, month or year)")?;
        let every = if self.eat_sym("...") {
            Every::Range(first, self.name("a duration after `...`")?)
        } else {
            let mut list = vec![first];
            while self.eat_sym(",") {
                self.bounded(list.len(), "durations")?;
                list.push(self.name("a duration after `,`")?);
            }
            Every::List(list)
        };
        Ok(AggregationDef { annotations, name, from, filter, select, group_by, by, every, every_pos })
    }

    fn select_items(&mut self) -> PResult<Vec<SelectItem>> {
        let mut items = Vec::new();
        loop {
            let pos = self.pos();
            let expr = self.expr()?;
            let alias = if self.eat_kw("as") { Some(self.name("a name after `as`")?) } else { None };
            self.bounded(items.len(), "items in a `select`")?;
            items.push(SelectItem { expr, alias, pos });
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(items)
    }

    // ------------------------------------------------------------------------ query

    fn parse_query(&mut self) -> PResult<Query> {
        self.expect_kw("from", "to start the query")?;
        let from = self.name("an aggregation name after `from`")?;
        let alias = if self.eat_kw("as") { Some(self.name("an alias after `as`")?) } else { None };
        let mut q = Query {
            from,
            alias,
            on: None,
            within: None,
            per: None,
            select: None,
            group_by: Vec::new(),
            having: None,
            order_by: Vec::new(),
            limit: None,
            offset: None,
        };
        // Siddhi writes `on ... within ... per ...`; any order is taken, each once.
        loop {
            let pos = self.pos();
            if self.eat_kw("on") {
                if q.on.is_some() {
                    return Err(self.error_at(pos, "`on` is given twice"));
                }
                q.on = Some(self.expr()?);
            } else if self.eat_kw("within") {
                if q.within.is_some() {
                    return Err(self.error_at(pos, "`within` is given twice"));
                }
                let first = self.expr()?;
                q.within = Some(if self.eat_sym(",") {
                    Within::Range(first, self.expr()?, pos)
                } else {
                    Within::Pattern(first, pos)
                });
            } else if self.eat_kw("per") {
                if q.per.is_some() {
                    return Err(self.error_at(pos, "`per` is given twice"));
                }
                let e = self.expr()?;
                q.per = Some((e, pos));
            } else {
                break;
            }
        }
        if self.eat_kw("select") {
            if self.eat_sym("*") {
                q.select = None;
            } else {
                q.select = Some(self.select_items()?);
            }
        }
        if self.eat_kw("group") {
            self.expect_kw("by", "after `group`")?;
            loop {
                self.bounded(q.group_by.len(), "group-by expressions")?;
                q.group_by.push(self.expr()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if self.eat_kw("having") {
            q.having = Some(self.expr()?);
        }
        if self.eat_kw("order") {
            self.expect_kw("by", "after `order`")?;
            loop {
                let expr = self.expr()?;
                let descending = if self.eat_kw("desc") {
                    true
                } else {
                    self.eat_kw("asc");
                    false
                };
                self.bounded(q.order_by.len(), "order-by expressions")?;
                q.order_by.push(OrderItem { expr, descending });
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if self.is_kw("limit") {
            let pos = self.bump().pos;
            q.limit = Some((self.expr()?, pos));
        }
        if self.is_kw("offset") {
            let pos = self.bump().pos;
            q.offset = Some((self.expr()?, pos));
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_ok(text: &str) -> App {
        let mut d = Diagnostics::default();
        let app = parse_app(text, &mut d);
        assert!(d.is_empty(), "{d}");
        app
    }

    fn app_errors(text: &str) -> Diagnostics {
        let mut d = Diagnostics::default();
        parse_app(text, &mut d);
        d
    }

    #[test]
    fn seed_app() {
        let app = app_ok(
            "@App:name('Trades')\n\
             define stream TradeStream (symbol string, price double, quantity long, timestamp long);\n\
             @store(type='rdbms', jdbc.url='jdbc:sqlite:x.db')\n\
             @PartitionById\n\
             @purge(enable='true', interval='15 min', @retentionPeriod(sec='120 sec', min='24 hours'))\n\
             define aggregation TradeAggregation\n\
             from TradeStream\n\
             select symbol, avg(price) as avgPrice, sum(quantity) as total\n\
             group by symbol\n\
             aggregate by timestamp every sec ... year;",
        );
        assert_eq!(app.annotations[0].name, "App:name");
        assert_eq!(app.streams[0].attributes.len(), 4);
        let agg = &app.aggregations[0];
        assert_eq!(agg.annotations.len(), 3);
        assert_eq!(agg.annotations[0].get("jdbc.url").unwrap().0, "jdbc:sqlite:x.db");
        let purge = &agg.annotations[2];
        assert_eq!(purge.nested("retentionPeriod").unwrap().get("min").unwrap().0, "24 hours");
        assert_eq!(agg.select.len(), 3);
        assert_eq!(agg.group_by[0].text, "symbol");
        assert_eq!(agg.by.as_ref().unwrap().text, "timestamp");
        assert!(matches!(&agg.every, Every::Range(a, b) if a.text == "sec" && b.text == "year"));
    }

    #[test]
    fn lists_filters_and_expressions() {
        let app = app_ok(
            "define stream S (a int, b float); define aggregation A from S[a > 2 and not b is null] \
             select (a * b) as ab, count() as n aggregate every sec, min, day",
        );
        let agg = &app.aggregations[0];
        assert!(agg.filter.is_some());
        assert!(matches!(&agg.every, Every::List(l) if l.len() == 3));
        assert!(matches!(agg.select[0].expr, Expr::Binary { op: BinOp::Mul, .. }));
    }

    #[test]
    fn errors_name_line_column_and_continue() {
        let d = app_errors(
            "define stream S (a int);\n\
             define aggregation A from S#window.time(1 sec) select a aggregate every sec;\n\
             from S select a insert into T;\n\
             define table T (a int);\n\
             define aggregation B from S select count() as n aggregate every;",
        );
        assert_eq!(d.len(), 4, "{d}");
        assert_eq!((d.0[0].line, d.0[0].column), (2, 28));
        assert!(d.0[0].message.contains("window"));
        assert_eq!(d.0[1].line, 3);
        assert!(d.0[1].message.contains("node"), "{}", d.0[1].message);
        assert!(d.0[2].message.contains("define table"));
        assert!(d.0[3].message.contains("expected a duration"), "{}", d.0[3].message);
    }

    #[test]
    fn queries() {
        let mut d = Diagnostics::default();
        let q = parse_query(
            "from stockAggregation as s on symbol==\"IBM\" within \"2017-06-** **:**:**\" per \"seconds\" \
             select symbol, sum(count) as count group by symbol having count > 1 order by count desc, symbol limit 5 offset 1;",
            &mut d,
        )
        .unwrap();
        assert!(d.is_empty(), "{d}");
        assert_eq!(q.alias.unwrap().text, "s");
        assert!(matches!(q.within, Some(Within::Pattern(..))));
        assert_eq!(q.select.unwrap().len(), 2);
        assert!(q.order_by[0].descending && !q.order_by[1].descending);
        assert!(q.limit.is_some() && q.offset.is_some());

        let q = parse_query("from A within 0L, 1543664151000L per 'minutes' select *", &mut d).unwrap();
        assert!(matches!(q.within, Some(Within::Range(..))));
        assert!(q.select.is_none());

        let mut d = Diagnostics::default();
        assert!(parse_query("from A within 1, 2 per 'sec' select a b", &mut d).is_none());
        assert_eq!((d.0[0].line, d.0[0].column), (1, 39));
    }
}
