//! Expressions: `or` < `and` < `not` < comparisons and `is null` < `+ -` < `* / %` <
//! unary `-` < literals, attributes, calls and parentheses (Siddhi's precedence).

use super::ast::*;
use super::lexer::Tok;
use super::parser::{PResult, Parser};

impl Parser<'_> {
    pub(super) fn expr(&mut self) -> PResult<Expr> {
        self.nested(|p| p.or_expr())
    }

    fn or_expr(&mut self) -> PResult<Expr> {
        let mut left = self.and_expr()?;
        while self.is_kw("or") {
            let pos = self.bump().pos;
            let right = self.and_expr()?;
            left = Expr::Binary { op: BinOp::Or, left: Box::new(left), right: Box::new(right), pos };
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let mut left = self.not_expr()?;
        while self.is_kw("and") {
            let pos = self.bump().pos;
            let right = self.not_expr()?;
            left = Expr::Binary { op: BinOp::And, left: Box::new(left), right: Box::new(right), pos };
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.is_kw("not") {
            let pos = self.bump().pos;
            return Ok(Expr::Not(Box::new(self.nested(|p| p.not_expr())?), pos));
        }
        self.cmp_expr()
    }

    fn cmp_expr(&mut self) -> PResult<Expr> {
        let left = self.add_expr()?;
        if self.is_kw("is") && self.is_kw_at(1, "null") {
            let pos = self.bump().pos;
            self.bump();
            return Ok(Expr::IsNull(Box::new(left), pos));
        }
        let op = match self.peek().tok {
            Tok::Sym("==") => BinOp::Eq,
            Tok::Sym("!=") => BinOp::Ne,
            Tok::Sym("<") => BinOp::Lt,
            Tok::Sym("<=") => BinOp::Le,
            Tok::Sym(">") => BinOp::Gt,
            Tok::Sym(">=") => BinOp::Ge,
            Tok::Sym("=") => {
                let pos = self.pos();
                return Err(self.error_at(pos, "`=` is not a comparison; write `==`"));
            }
            _ => return Ok(left),
        };
        let pos = self.bump().pos;
        let right = self.add_expr()?;
        Ok(Expr::Binary { op, left: Box::new(left), right: Box::new(right), pos })
    }

    fn add_expr(&mut self) -> PResult<Expr> {
        let mut left = self.mul_expr()?;
        loop {
            let op = match self.peek().tok {
                Tok::Sym("+") => BinOp::Add,
                Tok::Sym("-") => BinOp::Sub,
                _ => return Ok(left),
            };
            let pos = self.bump().pos;
            let right = self.mul_expr()?;
            left = Expr::Binary { op, left: Box::new(left), right: Box::new(right), pos };
        }
    }

    fn mul_expr(&mut self) -> PResult<Expr> {
        let mut left = self.unary_expr()?;
        loop {
            let op = match self.peek().tok {
                Tok::Sym("*") => BinOp::Mul,
                Tok::Sym("/") => BinOp::Div,
                Tok::Sym("%") => BinOp::Mod,
                _ => return Ok(left),
            };
            let pos = self.bump().pos;
            let right = self.unary_expr()?;
            left = Expr::Binary { op, left: Box::new(left), right: Box::new(right), pos };
        }
    }

    fn unary_expr(&mut self) -> PResult<Expr> {
        if self.is_sym("-") {
            let pos = self.bump().pos;
            let inner = self.nested(|p| p.unary_expr())?;
            // Fold `-5` into a literal so that `-9223372036854775808L`-like bounds work.
            return Ok(match inner {
                Expr::Lit(Literal::Int(v), _) => Expr::Lit(Literal::Int(-v), pos),
                Expr::Lit(Literal::Long(v), _) => Expr::Lit(Literal::Long(-v), pos),
                Expr::Lit(Literal::Float(v), _) => Expr::Lit(Literal::Float(-v), pos),
                Expr::Lit(Literal::Double(v), _) => Expr::Lit(Literal::Double(-v), pos),
                other => Expr::Neg(Box::new(other), pos),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        let pos = t.pos;
        match t.tok {
            Tok::Int { value, long } => {
                self.bump();
                Ok(Expr::Lit(if long { Literal::Long(value) } else { Literal::Int(value as i32) }, pos))
            }
            Tok::Num { value, float } => {
                self.bump();
                Ok(Expr::Lit(if float { Literal::Float(value as f32) } else { Literal::Double(value) }, pos))
            }
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Lit(Literal::Str(s), pos))
            }
            Tok::Sym("(") => {
                self.bump();
                let e = self.expr()?;
                self.expect_sym(")", "to close the parenthesis")?;
                Ok(e)
            }
            Tok::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                if matches!(lower.as_str(), "true" | "false") && !matches!(self.peek_at(1), Tok::Sym("(")) {
                    self.bump();
                    return Ok(Expr::Lit(Literal::Bool(lower == "true"), pos));
                }
                if lower == "null" {
                    self.bump();
                    return Ok(Expr::Lit(Literal::Null, pos));
                }
                self.bump();
                let mut name = word;
                if self.is_sym(":")
                    && matches!(self.peek_at(1), Tok::Ident(_))
                    && matches!(self.peek_at(2), Tok::Sym("("))
                {
                    self.bump();
                    let rest = self.name("a function name")?;
                    name = format!("{name}:{}", rest.text);
                }
                if self.eat_sym("(") {
                    let mut args = Vec::new();
                    if !self.eat_sym(")") {
                        loop {
                            if self.is_sym("*") {
                                // `count(*)`: same as `count()`.
                                self.bump();
                            } else {
                                self.bounded(args.len(), "arguments")?;
                                args.push(self.expr()?);
                            }
                            if self.eat_sym(")") {
                                break;
                            }
                            self.expect_sym(",", "or `)` in the argument list")?;
                        }
                    }
                    return Ok(Expr::Call { name, args, pos });
                }
                if self.eat_sym(".") {
                    let attr = self.name("an attribute name after `.`")?;
                    return Ok(Expr::Attr { qualifier: Some(name), name: attr.text, pos });
                }
                Ok(Expr::Attr { qualifier: None, name, pos })
            }
            _ => Err(self.error_here("expected a value, an attribute or `(`")),
        }
    }
}
