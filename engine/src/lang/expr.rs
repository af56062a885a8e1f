//! Typed expressions: compiled once against a schema, evaluated per event or per row.
//!
//! The same compiler serves the app (latest-value columns such as `price * quantity`,
//! input filters) and retrieval queries (`on`, `select`, `having`). Evaluation works on a
//! borrowed [`Scalar`] so that the per-event path neither allocates nor copies strings.
//! Types follow Siddhi: int < long < float < double, arithmetic in the wider type, integer
//! division truncates, comparisons with null are false.

use crate::error::Diagnostics;
use crate::lang::syntax::ast::{BinOp, Expr, Literal, Pos};
use crate::lang::types::{AttrType, Value};

/// A borrowed value. Integers of both widths are `Int`; the expression's static type
/// says which width applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'a [u8]),
}

impl<'a> Scalar<'a> {
    pub fn from_value(v: &'a Value) -> Scalar<'a> {
        match v {
            Value::Null => Scalar::Null,
            Value::Int(i) => Scalar::Int(*i as i64),
            Value::Long(i) => Scalar::Int(*i),
            Value::Float(f) => Scalar::Float(*f as f64),
            Value::Double(f) => Scalar::Float(*f),
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Str(s) => Scalar::Str(s.as_bytes()),
        }
    }

    /// The owned value of static type `ty`.
    pub fn to_value(self, ty: AttrType) -> Value {
        match (self, ty) {
            (Scalar::Null, _) => Value::Null,
            (Scalar::Int(i), AttrType::Int) => Value::Int(i as i32),
            (Scalar::Int(i), AttrType::Long) => Value::Long(i),
            (Scalar::Int(i), AttrType::Float) => Value::Float(i as f32),
            (Scalar::Int(i), AttrType::Double) => Value::Double(i as f64),
            (Scalar::Float(f), AttrType::Float) => Value::Float(f as f32),
            (Scalar::Float(f), AttrType::Double) => Value::Double(f),
            (Scalar::Float(f), AttrType::Long) => Value::Long(f as i64),
            (Scalar::Float(f), AttrType::Int) => Value::Int(f as i32),
            (Scalar::Bool(b), _) => Value::Bool(b),
            (Scalar::Str(s), _) => Value::Str(String::from_utf8_lossy(s).into_owned()),
            (Scalar::Int(i), _) => Value::Long(i),
            (Scalar::Float(f), _) => Value::Double(f),
        }
    }

    fn as_f64(self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(i as f64),
            Scalar::Float(f) => Some(f),
            _ => None,
        }
    }

    fn truthy(self) -> bool {
        matches!(self, Scalar::Bool(true))
    }
}

/// Access to the values of one row (an event, or a merged aggregation row).
pub trait Row {
    fn get(&self, index: usize) -> Scalar<'_>;
}

impl Row for [Value] {
    fn get(&self, index: usize) -> Scalar<'_> {
        self.get(index).map(Scalar::from_value).unwrap_or(Scalar::Null)
    }
}

impl Row for Vec<Value> {
    fn get(&self, index: usize) -> Scalar<'_> {
        self.as_slice().get(index).map(Scalar::from_value).unwrap_or(Scalar::Null)
    }
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Compiled {
    /// Column `index` of the row.
    Column(usize),
    Const(Value),
    Arith {
        op: BinOp,
        ty: AttrType,
        left: Box<Compiled>,
        right: Box<Compiled>,
    },
    Compare {
        op: BinOp,
        left: Box<Compiled>,
        right: Box<Compiled>,
    },
    And(Box<Compiled>, Box<Compiled>),
    Or(Box<Compiled>, Box<Compiled>),
    Not(Box<Compiled>),
    Neg(Box<Compiled>, AttrType),
    IsNull(Box<Compiled>),
}

/// Why a name in an expression names no attribute of its scope (the message names the
/// scope and what it has); it is shown at the name's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved(pub String);

/// What names and calls mean where an expression is compiled.
pub trait Scope {
    /// Resolves an attribute to (column, type), or says why it cannot.
    fn attribute(&mut self, qualifier: Option<&str>, name: &str) -> Result<(usize, AttrType), Unresolved>;
    /// Resolves a function call to (column, type). The default knows no functions.
    fn call(&mut self, _name: &str, _args: &[Expr], _pos: Pos, _diags: &mut Diagnostics) -> Option<(usize, AttrType)> {
        None
    }
    /// The message for a call `call` did not take.
    fn unknown_function(&self, name: &str) -> String {
        format!("unknown function `{name}`")
    }
}

/// Compiles `expr`; errors go to `diags` with their positions. Returns the expression and
/// its static type (`None` for a literal null).
pub fn compile(expr: &Expr, scope: &mut dyn Scope, diags: &mut Diagnostics) -> Option<(Compiled, Option<AttrType>)> {
    match expr {
        Expr::Attr { qualifier, name, pos } => match scope.attribute(qualifier.as_deref(), name) {
            Ok((i, t)) => Some((Compiled::Column(i), Some(t))),
            Err(Unresolved(m)) => {
                diags.push(pos.line, pos.col, m);
                None
            }
        },
        Expr::Lit(lit, _) => {
            let v = literal(lit);
            let t = v.attr_type();
            Some((Compiled::Const(v), t))
        }
        Expr::Call { name, args, pos } => {
            let before = diags.len();
            match scope.call(name, args, *pos, diags) {
                Some((i, t)) => Some((Compiled::Column(i), Some(t))),
                None => {
                    if diags.len() == before {
                        let m = scope.unknown_function(name);
                        diags.push(pos.line, pos.col, m);
                    }
                    None
                }
            }
        }
        Expr::Binary { op, left, right, pos } => {
            let l = compile(left, scope, diags);
            let r = compile(right, scope, diags);
            binary(*op, l?, r?, *pos, diags)
        }
        Expr::Not(inner, pos) => {
            let (c, t) = compile(inner, scope, diags)?;
            if let Some(t) = t.filter(|t| *t != AttrType::Bool) {
                diags.push(pos.line, pos.col, format!("`not` needs a true/false condition, not {t}"));
                return None;
            }
            Some((Compiled::Not(Box::new(c)), Some(AttrType::Bool)))
        }
        Expr::Neg(inner, pos) => {
            let (c, t) = compile(inner, scope, diags)?;
            match t {
                Some(t) if t.is_numeric() => Some((Compiled::Neg(Box::new(c), t), Some(t))),
                _ => {
                    diags.push(pos.line, pos.col, "`-` needs a number");
                    None
                }
            }
        }
        Expr::IsNull(inner, _) => {
            let (c, _) = compile(inner, scope, diags)?;
            Some((Compiled::IsNull(Box::new(c)), Some(AttrType::Bool)))
        }
    }
}

/// The value of a literal.
fn literal(lit: &Literal) -> Value {
    match lit {
        Literal::Int(i) => Value::Int(*i),
        Literal::Long(i) => Value::Long(*i),
        Literal::Float(f) => Value::Float(*f),
        Literal::Double(f) => Value::Double(*f),
        Literal::Str(s) => Value::Str(s.clone()),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
    }
}

/// `left op right`, type-checked (Siddhi's promotion for arithmetic; comparable types for
/// comparisons; conditions for `and`/`or`); a type error goes to `diags` at `pos`.
fn binary(
    op: BinOp,
    (lc, lt): (Compiled, Option<AttrType>),
    (rc, rt): (Compiled, Option<AttrType>),
    pos: Pos,
    diags: &mut Diagnostics,
) -> Option<(Compiled, Option<AttrType>)> {
    let mut fail = |m: String| {
        diags.push(pos.line, pos.col, m);
        None
    };
    match op {
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
            let ty = match (lt, rt) {
                (Some(a), Some(b)) => match AttrType::promote(a, b) {
                    Some(t) => t,
                    None => {
                        return fail(format!("`{}` needs numbers, not {a} and {b}", op.symbol()));
                    }
                },
                (Some(a), None) | (None, Some(a)) if a.is_numeric() => a,
                _ => return fail(format!("`{}` needs numbers", op.symbol())),
            };
            Some((Compiled::Arith { op, ty, left: Box::new(lc), right: Box::new(rc) }, Some(ty)))
        }
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            if let (Some(a), Some(b)) = (lt, rt) {
                let comparable = (a.is_numeric() && b.is_numeric())
                    || (a == b && (a == AttrType::String || matches!(op, BinOp::Eq | BinOp::Ne)));
                if !comparable {
                    return fail(format!("cannot compare {a} with {b} using `{}`", op.symbol()));
                }
            }
            Some((Compiled::Compare { op, left: Box::new(lc), right: Box::new(rc) }, Some(AttrType::Bool)))
        }
        BinOp::And | BinOp::Or => {
            for t in [lt, rt].into_iter().flatten() {
                if t != AttrType::Bool {
                    return fail(format!("`{}` needs true/false conditions, not {t}", op.symbol()));
                }
            }
            let c = if op == BinOp::And {
                Compiled::And(Box::new(lc), Box::new(rc))
            } else {
                Compiled::Or(Box::new(lc), Box::new(rc))
            };
            Some((c, Some(AttrType::Bool)))
        }
    }
}

impl Compiled {
    /// Evaluates against `row`. Never allocates; string results borrow from the row or
    /// from the expression's constants.
    pub fn eval<'a, R: Row + ?Sized>(&'a self, row: &'a R) -> Scalar<'a> {
        match self {
            Compiled::Column(i) => row.get(*i),
            Compiled::Const(v) => Scalar::from_value(v),
            Compiled::Arith { op, ty, left, right } => arith(*op, *ty, left.eval(row), right.eval(row)),
            Compiled::Compare { op, left, right } => compare(*op, left.eval(row), right.eval(row)),
            Compiled::And(l, r) => Scalar::Bool(l.eval(row).truthy() && r.eval(row).truthy()),
            Compiled::Or(l, r) => Scalar::Bool(l.eval(row).truthy() || r.eval(row).truthy()),
            Compiled::Not(e) => match e.eval(row) {
                Scalar::Bool(b) => Scalar::Bool(!b),
                _ => Scalar::Bool(false),
            },
            Compiled::Neg(e, ty) => match e.eval(row) {
                Scalar::Int(i) if *ty == AttrType::Int => Scalar::Int((i as i32).wrapping_neg() as i64),
                Scalar::Int(i) => Scalar::Int(i.wrapping_neg()),
                Scalar::Float(f) => Scalar::Float(-f),
                _ => Scalar::Null,
            },
            Compiled::IsNull(e) => Scalar::Bool(matches!(e.eval(row), Scalar::Null)),
        }
    }

    /// True when the condition holds (null and non-booleans are false).
    pub fn holds<R: Row + ?Sized>(&self, row: &R) -> bool {
        self.eval(row).truthy()
    }
}

/// `x op y` in one floating-point width; `None` for an operator that is not arithmetic.
fn float_op<F>(op: BinOp, x: F, y: F) -> Option<F>
where
    F: std::ops::Add<Output = F>
        + std::ops::Sub<Output = F>
        + std::ops::Mul<Output = F>
        + std::ops::Div<Output = F>
        + std::ops::Rem<Output = F>,
{
    Some(match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Mod => x % y,
        _ => return None,
    })
}

fn arith<'a>(op: BinOp, ty: AttrType, a: Scalar<'a>, b: Scalar<'a>) -> Scalar<'a> {
    match ty {
        AttrType::Int | AttrType::Long => {
            let (Scalar::Int(x), Scalar::Int(y)) = (a, b) else {
                return Scalar::Null;
            };
            let r = match op {
                BinOp::Add => x.wrapping_add(y),
                BinOp::Sub => x.wrapping_sub(y),
                BinOp::Mul => x.wrapping_mul(y),
                BinOp::Div if y == 0 => return Scalar::Null,
                BinOp::Div => x.wrapping_div(y),
                BinOp::Mod if y == 0 => return Scalar::Null,
                BinOp::Mod => x.wrapping_rem(y),
                _ => return Scalar::Null,
            };
            // Java int arithmetic wraps at 32 bits.
            Scalar::Int(if ty == AttrType::Int { r as i32 as i64 } else { r })
        }
        _ => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Scalar::Null;
            };
            // Java float arithmetic rounds every result to 32 bits.
            let r = match ty {
                AttrType::Float => float_op(op, x as f32, y as f32).map(f64::from),
                _ => float_op(op, x, y),
            };
            r.map_or(Scalar::Null, Scalar::Float)
        }
    }
}

fn compare<'a>(op: BinOp, a: Scalar<'a>, b: Scalar<'a>) -> Scalar<'a> {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Scalar::Null, _) | (_, Scalar::Null) => None,
        (Scalar::Int(x), Scalar::Int(y)) => Some(x.cmp(&y)),
        (Scalar::Str(x), Scalar::Str(y)) => Some(x.cmp(y)),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(&y)),
        (x, y) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    let Some(ord) = ord else {
        return Scalar::Bool(false);
    };
    Scalar::Bool(match op {
        BinOp::Eq => ord == Ordering::Equal,
        BinOp::Ne => ord != Ordering::Equal,
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Le => ord != Ordering::Greater,
        BinOp::Gt => ord == Ordering::Greater,
        BinOp::Ge => ord != Ordering::Less,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::syntax::parse_query;

    struct Cols(Vec<(&'static str, AttrType)>);
    impl Scope for Cols {
        fn attribute(&mut self, _q: Option<&str>, name: &str) -> Result<(usize, AttrType), Unresolved> {
            self.0
                .iter()
                .position(|(n, _)| *n == name)
                .map(|i| (i, self.0[i].1))
                .ok_or_else(|| Unresolved(format!("no attribute `{name}`")))
        }
    }

    fn compile_on(text: &str) -> Result<(Compiled, Option<AttrType>), Diagnostics> {
        let mut d = Diagnostics::default();
        let q = parse_query(&format!("from A on {text}"), &mut d).expect("parses");
        let mut scope = Cols(vec![
            ("price", AttrType::Float),
            ("quantity", AttrType::Int),
            ("volume", AttrType::Long),
            ("symbol", AttrType::String),
        ]);
        compile(q.on.as_ref().unwrap(), &mut scope, &mut d).ok_or(d)
    }

    fn row() -> Vec<Value> {
        vec![Value::Float(70.0), Value::Int(10), Value::Long(200), Value::Str("WSO2".into())]
    }

    #[test]
    fn arithmetic_follows_siddhi_types() {
        let (c, t) = compile_on("price * quantity").unwrap();
        assert_eq!(t, Some(AttrType::Float));
        assert_eq!(c.eval(&row()).to_value(AttrType::Float), Value::Float(700.0));
        let (c, t) = compile_on("volume / 3").unwrap();
        assert_eq!(t, Some(AttrType::Long));
        assert_eq!(c.eval(&row()), Scalar::Int(66));
        let (c, t) = compile_on("quantity * 2147483647").unwrap();
        assert_eq!(t, Some(AttrType::Int));
        assert_eq!(c.eval(&row()), Scalar::Int((10i32).wrapping_mul(i32::MAX) as i64));
        let (c, _) = compile_on("quantity / 0").unwrap();
        assert_eq!(c.eval(&row()), Scalar::Null);
    }

    #[test]
    fn conditions() {
        let r = row();
        assert!(compile_on("symbol == 'WSO2' and volume > 100").unwrap().0.holds(&r));
        assert!(!compile_on("symbol != \"WSO2\" or quantity >= 11").unwrap().0.holds(&r));
        assert!(compile_on("not (price < 1.5)").unwrap().0.holds(&r));
        let nulls = vec![Value::Null, Value::Null, Value::Null, Value::Null];
        assert!(!compile_on("price > 1").unwrap().0.holds(&nulls));
        assert!(!compile_on("price <= 1").unwrap().0.holds(&nulls));
        assert!(compile_on("price is null").unwrap().0.holds(&nulls));
    }

    #[test]
    fn type_errors_have_positions() {
        let d = compile_on("symbol + 1").unwrap_err();
        assert_eq!(d.0[0].column, 18);
        assert!(d.0[0].message.contains("numbers"));
        let d = compile_on("nope > 1 and symbol > 2").unwrap_err();
        assert_eq!(d.len(), 2, "{d}");
        let d = compile_on("median(price) > 1").unwrap_err();
        assert!(d.0[0].message.contains("unknown function `median`"));
    }
}
