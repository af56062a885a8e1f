//! Tokens of the app and query language, each with its line and column.

use crate::error::Diagnostics;

/// A position in the source text (1-based line and column, columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name or a keyword: keywords are matched case-insensitively by the parser,
    /// because most of them (`count`, `from`, ...) are also fine attribute names.
    Ident(String),
    Str(String),
    /// An integer literal; `long` when it had an `L` suffix or does not fit an `int`.
    Int {
        value: i64,
        long: bool,
    },
    /// A decimal literal; `float` when it had an `F` suffix.
    Num {
        value: f64,
        float: bool,
    },
    /// Punctuation: `( ) [ ] , ; . ... @ = == != < <= > >= + - * / % # :`.
    Sym(&'static str),
    Eof,
}

impl Tok {
    /// How the token is shown in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("the string '{s}'"),
            Tok::Int { value, .. } => format!("the number {value}"),
            Tok::Num { value, .. } => format!("the number {value}"),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::Eof => "the end of the text".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

const SYMBOLS: [&str; 23] = [
    "...", "==", "!=", "<=", ">=", "(", ")", "[", "]", ",", ";", ".", "@", "=", "<", ">", "+", "-", "*", "/", "%", "#",
    ":",
];

/// Splits `text` into tokens. Lexical errors go to `diags`; the bad character is skipped so
/// that parsing can go on and report more.
pub fn tokenize(text: &str, diags: &mut Diagnostics) -> Vec<Token> {
    let mut lx = Lexer { chars: text.chars().collect(), i: 0, line: 1, col: 1, diags };
    let mut out = Vec::new();
    while let Some(c) = lx.peek(0) {
        let pos = Pos { line: lx.line, col: lx.col };
        let tok = if c.is_whitespace() {
            lx.advance(1);
            continue;
        } else if (c == '-' && lx.peek(1) == Some('-')) || (c == '/' && lx.peek(1) == Some('*')) {
            lx.comment(pos);
            continue;
        } else if c.is_alphabetic() || c == '_' {
            lx.ident()
        } else if c == '`' {
            lx.quoted_ident(pos)
        } else if c.is_ascii_digit() || (c == '.' && lx.peek(1).is_some_and(|d| d.is_ascii_digit())) {
            lx.number(pos)
        } else if c == '\'' || c == '"' {
            lx.string(pos, c)
        } else if let Some(sym) = lx.symbol() {
            Tok::Sym(sym)
        } else {
            lx.diags.push(pos.line, pos.col, format!("unexpected character `{c}`"));
            lx.advance(1);
            continue;
        };
        out.push(Token { tok, pos });
    }
    out.push(Token { tok: Tok::Eof, pos: Pos { line: lx.line, col: lx.col } });
    out
}

/// The lexer's place in the text: characters (so columns count characters), the index,
/// and the line and column of that index.
struct Lexer<'d> {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
    diags: &'d mut Diagnostics,
}

impl Lexer<'_> {
    /// The character `ahead` places on, if any.
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    /// Moves on `n` characters, keeping the line and column.
    fn advance(&mut self, n: usize) {
        for _ in 0..n {
            if self.chars[self.i] == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
            self.i += 1;
        }
    }

    /// Moves on while `keep` holds for the current character.
    fn advance_while(&mut self, keep: impl Fn(char) -> bool) {
        while self.peek(0).is_some_and(&keep) {
            self.advance(1);
        }
    }

    /// The text from `start` to here.
    fn text_from(&self, start: usize) -> String {
        self.chars[start..self.i].iter().collect()
    }

    /// A `-- line` or `/* block */` comment.
    fn comment(&mut self, pos: Pos) {
        if self.peek(0) == Some('-') {
            self.advance_while(|c| c != '\n');
            return;
        }
        self.advance(2);
        loop {
            match (self.peek(0), self.peek(1)) {
                (None, _) => {
                    self.diags.push(pos.line, pos.col, "this comment is never closed with `*/`");
                    return;
                }
                (Some('*'), Some('/')) => {
                    self.advance(2);
                    return;
                }
                _ => self.advance(1),
            }
        }
    }

    fn ident(&mut self) -> Tok {
        let start = self.i;
        self.advance_while(|c| c.is_alphanumeric() || c == '_');
        Tok::Ident(self.text_from(start))
    }

    /// A quoted identifier, as Siddhi allows for names that are keywords.
    fn quoted_ident(&mut self, pos: Pos) -> Tok {
        self.advance(1);
        let start = self.i;
        self.advance_while(|c| c != '`' && c != '\n');
        let name = self.text_from(start);
        if self.peek(0) == Some('`') {
            self.advance(1);
        } else {
            self.diags.push(pos.line, pos.col, "this quoted name is never closed with a backtick");
        }
        Tok::Ident(name)
    }

    /// An integer (`int`, or `long` with `L` or when it does not fit an int) or a decimal
    /// (`double`, or `float` with `F`), with an optional fraction and exponent.
    fn number(&mut self, pos: Pos) -> Tok {
        let start = self.i;
        self.advance_while(|c| c.is_ascii_digit());
        let mut is_decimal = false;
        // `1...2` is not a decimal: leave the `...` alone.
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|d| d.is_ascii_digit()) {
            is_decimal = true;
            self.advance(1);
            self.advance_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek(1), Some('+' | '-')));
            if self.peek(1 + sign).is_some_and(|d| d.is_ascii_digit()) {
                is_decimal = true;
                self.advance(1 + sign);
                self.advance_while(|c| c.is_ascii_digit());
            }
        }
        let digits = self.text_from(start);
        let suffix = self.peek(0).filter(|s| s.is_ascii_alphabetic());
        let tok = match suffix.map(|s| s.to_ascii_lowercase()) {
            Some('l') if !is_decimal => {
                self.advance(1);
                match digits.parse::<i64>() {
                    Ok(value) => Tok::Int { value, long: true },
                    Err(_) => {
                        self.diags.push(pos.line, pos.col, format!("`{digits}L` does not fit a long"));
                        Tok::Int { value: 0, long: true }
                    }
                }
            }
            Some('f') => {
                self.advance(1);
                Tok::Num { value: digits.parse().unwrap_or(0.0), float: true }
            }
            Some('d') => {
                self.advance(1);
                Tok::Num { value: digits.parse().unwrap_or(0.0), float: false }
            }
            _ if is_decimal => Tok::Num { value: digits.parse().unwrap_or(0.0), float: false },
            _ => match digits.parse::<i64>() {
                Ok(value) => Tok::Int { value, long: i32::try_from(value).is_err() },
                Err(_) => {
                    self.diags.push(pos.line, pos.col, format!("`{digits}` does not fit a long"));
                    Tok::Int { value: 0, long: true }
                }
            },
        };
        if let Some(c) = self.peek(0).filter(|s| s.is_alphanumeric() || *s == '_') {
            self.diags.push(self.line, self.col, format!("unexpected `{c}` right after a number"));
        }
        tok
    }

    /// A string in `quote`s, with `\n`, `\t` and `\` before any other character.
    fn string(&mut self, pos: Pos, quote: char) -> Tok {
        self.advance(1);
        let mut s = String::new();
        loop {
            match (self.peek(0), self.peek(1)) {
                (None, _) => {
                    self.diags.push(pos.line, pos.col, format!("this string is never closed with {quote}"));
                    break;
                }
                (Some(d), _) if d == quote => {
                    self.advance(1);
                    break;
                }
                (Some('\\'), Some(e)) => {
                    s.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                    self.advance(2);
                }
                (Some(d), _) => {
                    s.push(d);
                    self.advance(1);
                }
            }
        }
        Tok::Str(s)
    }

    /// The longest symbol of [`SYMBOLS`] starting here (they are listed longest first).
    fn symbol(&mut self) -> Option<&'static str> {
        let rest = &self.chars[self.i..];
        let sym = *SYMBOLS
            .iter()
            .find(|s| s.chars().count() <= rest.len() && rest.iter().copied().take(s.len()).eq(s.chars()))?;
        self.advance(sym.chars().count());
        Some(sym)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        let mut d = Diagnostics::default();
        let t = tokenize(text, &mut d);
        assert!(d.is_empty(), "{d}");
        t.into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn ranges_numbers_and_comments() {
        assert_eq!(
            toks("every sec...year -- trailing\n/* block */ 12L 3.5 2f 7"),
            vec![
                Tok::Ident("every".into()),
                Tok::Ident("sec".into()),
                Tok::Sym("..."),
                Tok::Ident("year".into()),
                Tok::Int { value: 12, long: true },
                Tok::Num { value: 3.5, float: false },
                Tok::Num { value: 2.0, float: true },
                Tok::Int { value: 7, long: false },
                Tok::Eof,
            ]
        );
        assert_eq!(toks("1496200000000")[0], Tok::Int { value: 1_496_200_000_000, long: true });
    }

    #[test]
    fn strings_and_operators() {
        assert_eq!(
            toks("symbol==\"IBM\" and x != 'a\\'b'"),
            vec![
                Tok::Ident("symbol".into()),
                Tok::Sym("=="),
                Tok::Str("IBM".into()),
                Tok::Ident("and".into()),
                Tok::Ident("x".into()),
                Tok::Sym("!="),
                Tok::Str("a'b".into()),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn positions_and_errors() {
        let mut d = Diagnostics::default();
        let t = tokenize("a\n  $b 'open", &mut d);
        assert_eq!(t[1].pos, Pos { line: 2, col: 4 });
        assert_eq!(d.len(), 2);
        assert_eq!((d.0[0].line, d.0[0].column), (2, 3));
        assert!(d.0[1].message.contains("never closed"));
    }
}
