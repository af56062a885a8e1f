//! The syntax tree of apps and retrieval queries, as written (names unresolved).

pub use super::lexer::Pos;

/// `@name(key='value', 'value', @nested(...))`
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub name: String,
    pub pos: Pos,
    pub elements: Vec<AnnotationElement>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AnnotationElement {
    Pair { key: Option<String>, value: String, pos: Pos },
    Nested(Annotation),
}

impl Annotation {
    /// The value of `key` (case-insensitive), if given.
    pub fn get(&self, key: &str) -> Option<(&str, Pos)> {
        self.elements.iter().find_map(|e| match e {
            AnnotationElement::Pair { key: Some(k), value, pos } if k.eq_ignore_ascii_case(key) => {
                Some((value.as_str(), *pos))
            }
            _ => None,
        })
    }

    pub fn nested(&self, name: &str) -> Option<&Annotation> {
        self.elements.iter().find_map(|e| match e {
            AnnotationElement::Nested(a) if a.name.eq_ignore_ascii_case(name) => Some(a),
            _ => None,
        })
    }

    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub text: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct App {
    /// `@app:name(...)` and other app-level annotations.
    pub annotations: Vec<Annotation>,
    pub streams: Vec<StreamDef>,
    pub aggregations: Vec<AggregationDef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamDef {
    pub annotations: Vec<Annotation>,
    pub name: Name,
    pub attributes: Vec<(Name, Name)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregationDef {
    pub annotations: Vec<Annotation>,
    pub name: Name,
    pub from: Name,
    /// `from S[condition]`
    pub filter: Option<Expr>,
    pub select: Vec<SelectItem>,
    pub group_by: Vec<Name>,
    /// `aggregate by ATTR`; `None` is arrival time.
    pub by: Option<Name>,
    pub every: Every,
    pub every_pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Every {
    /// `every sec ... year`
    Range(Name, Name),
    /// `every sec, min, day`
    List(Vec<Name>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    pub expr: Expr,
    pub alias: Option<Name>,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Str(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `name` or `qualifier.name`
    Attr {
        qualifier: Option<String>,
        name: String,
        pos: Pos,
    },
    Lit(Literal, Pos),
    /// `f(args)`; `namespace:f(args)` keeps the namespace for the error message.
    Call {
        name: String,
        args: Vec<Expr>,
        pos: Pos,
    },
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
        pos: Pos,
    },
    Not(Box<Expr>, Pos),
    Neg(Box<Expr>, Pos),
    IsNull(Box<Expr>, Pos),
}

impl Expr {
    pub fn pos(&self) -> Pos {
        match self {
            Expr::Attr { pos, .. }
            | Expr::Lit(_, pos)
            | Expr::Call { pos, .. }
            | Expr::Binary { pos, .. }
            | Expr::Not(_, pos)
            | Expr::Neg(_, pos)
            | Expr::IsNull(_, pos) => *pos,
        }
    }
}

/// A retrieval (on-demand) query on an aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub from: Name,
    pub alias: Option<Name>,
    pub on: Option<Expr>,
    pub within: Option<Within>,
    pub per: Option<(Expr, Pos)>,
    /// `None`: no select clause or `select *`.
    pub select: Option<Vec<SelectItem>>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub order_by: Vec<OrderItem>,
    pub limit: Option<(Expr, Pos)>,
    pub offset: Option<(Expr, Pos)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Within {
    /// `within START, END`
    Range(Expr, Expr, Pos),
    /// `within "2017-06-** **:**:**"`
    Pattern(Expr, Pos),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub expr: Expr,
    pub descending: bool,
}
