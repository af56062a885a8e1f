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
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    macro_rules! advance {
        ($n:expr) => {
            for _ in 0..$n {
                if chars[i] == '\n' {
                    line += 1;
                    col = 1;
                } else {
                    col += 1;
                }
                i += 1;
            }
        };
    }
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        if c.is_whitespace() {
            advance!(1);
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                advance!(1);
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            advance!(2);
            loop {
                if i >= chars.len() {
                    diags.push(pos.line, pos.col, "this comment is never closed with `*/`");
                    break;
                }
                if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    advance!(2);
                    break;
                }
                advance!(1);
            }
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                advance!(1);
            }
            out.push(Token { tok: Tok::Ident(chars[start..i].iter().collect()), pos });
            continue;
        }
        if c == '`' {
            // A quoted identifier, as Siddhi allows for names that are keywords.
            advance!(1);
            let start = i;
            while i < chars.len() && chars[i] != '`' && chars[i] != '\n' {
                advance!(1);
            }
            let name: String = chars[start..i].iter().collect();
            if i < chars.len() && chars[i] == '`' {
                advance!(1);
            } else {
                diags.push(pos.line, pos.col, "this quoted name is never closed with a backtick");
            }
            out.push(Token { tok: Tok::Ident(name), pos });
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                advance!(1);
            }
            let mut is_decimal = false;
            // `1...2` is not a decimal: leave the `...` alone.
            if i < chars.len()
                && chars[i] == '.'
                && chars.get(i + 1) != Some(&'.')
                && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
            {
                is_decimal = true;
                advance!(1);
                while i < chars.len() && chars[i].is_ascii_digit() {
                    advance!(1);
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    is_decimal = true;
                    advance!(j - i);
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        advance!(1);
                    }
                }
            }
            let digits: String = chars[start..i].iter().collect();
            let suffix = chars.get(i).copied().filter(|s| s.is_ascii_alphabetic());
            let tok = match suffix.map(|s| s.to_ascii_lowercase()) {
                Some('l') if !is_decimal => {
                    advance!(1);
                    match digits.parse::<i64>() {
                        Ok(value) => Tok::Int { value, long: true },
                        Err(_) => {
                            diags.push(pos.line, pos.col, format!("`{digits}L` does not fit a long"));
                            Tok::Int { value: 0, long: true }
                        }
                    }
                }
                Some('f') => {
                    advance!(1);
                    Tok::Num { value: digits.parse().unwrap_or(0.0), float: true }
                }
                Some('d') => {
                    advance!(1);
                    Tok::Num { value: digits.parse().unwrap_or(0.0), float: false }
                }
                _ if is_decimal => Tok::Num { value: digits.parse().unwrap_or(0.0), float: false },
                _ => match digits.parse::<i64>() {
                    Ok(value) => Tok::Int { value, long: i32::try_from(value).is_err() },
                    Err(_) => {
                        diags.push(pos.line, pos.col, format!("`{digits}` does not fit a long"));
                        Tok::Int { value: 0, long: true }
                    }
                },
            };
            if chars.get(i).is_some_and(|s| s.is_alphanumeric() || *s == '_') {
                diags.push(line, col, format!("unexpected `{}` right after a number", chars[i]));
            }
            out.push(Token { tok, pos });
            continue;
        }
        if c == '\'' || c == '"' {
            advance!(1);
            let mut s = String::new();
            let mut closed = false;
            while i < chars.len() {
                let d = chars[i];
                if d == c {
                    advance!(1);
                    closed = true;
                    break;
                }
                if d == '\\' && i + 1 < chars.len() {
                    let e = chars[i + 1];
                    s.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                    advance!(2);
                    continue;
                }
                s.push(d);
                advance!(1);
            }
            if !closed {
                diags.push(pos.line, pos.col, format!("this string is never closed with {c}"));
            }
            out.push(Token { tok: Tok::Str(s), pos });
            continue;
        }
        if let Some(sym) = SYMBOLS.iter().find(|s| {
            let n = s.len();
            i + n <= chars.len() && chars[i..i + n].iter().copied().eq(s.chars())
        }) {
            advance!(sym.len());
            out.push(Token { tok: Tok::Sym(sym), pos });
            continue;
        }
        diags.push(pos.line, pos.col, format!("unexpected character `{c}`"));
        advance!(1);
    }
    out.push(Token { tok: Tok::Eof, pos: Pos { line, col } });
    out
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
