//! Tokens of KQL, with byte offsets for precise error positions.

use super::KqlError;

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name (`StormEvents`, `where`, `project`); `['quoted name']` too.
    Ident(String),
    /// An integer literal.
    Int(i64),
    /// A real literal.
    Real(f64),
    /// A timespan literal (`5m`, `1.5h`), in ticks.
    TimeSpan(i64),
    /// A string literal, unescaped.
    Str(String),
    /// Punctuation and operators: `|`, `,`, `(`, `==`, `=~`, `!has`, …
    Sym(&'static str),
    /// End of input.
    Eof,
}

/// A token and where it is in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Kind.
    pub tok: Tok,
    /// Byte offset of its first character.
    pub start: usize,
    /// Byte offset just past it.
    pub end: usize,
}

const SYMBOLS: &[&str] = &[
    "==", "!=", "<>", "<=", ">=", "=~", "!~", "=>", "..", "|", ",", "(", ")", "[", "]", "{", "}", "=", "<", ">", "+", "-", "*",
    "/", "%", ".", ":", ";", "!", "$", "@",
];

/// Split a query into tokens.
///
/// # Errors
/// An unterminated string or an unexpected character, with its position.
pub fn lex(src: &str) -> Result<Vec<Token>, KqlError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        // Strings: "..", '..', @"..", h"..", and verbatim forms.
        let (verbatim, quote_at) = match c {
            b'@' if matches!(bytes.get(i + 1), Some(b'"' | b'\'')) => (true, i + 1),
            b'h' | b'H' if matches!(bytes.get(i + 1), Some(b'"' | b'\'')) => (false, i + 1),
            b'h' | b'H' if bytes.get(i + 1) == Some(&b'@') && matches!(bytes.get(i + 2), Some(b'"' | b'\'')) => (true, i + 2),
            b'"' | b'\'' => (false, i),
            _ => (false, usize::MAX),
        };
        if quote_at != usize::MAX {
            let (text, next) = lex_string(src, quote_at, verbatim)?;
            out.push(Token { tok: Tok::Str(text), start, end: next });
            i = next;
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) && !prev_is_value(&out)) {
            let (tok, next) = lex_number(src, i)?;
            out.push(Token { tok, start, end: next });
            i = next;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' && bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphabetic()) {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            // `in~` is one operator.
            if &src[i..j] == "in" && bytes.get(j) == Some(&b'~') {
                j += 1;
            }
            let word = &src[i..j];
            out.push(Token { tok: Tok::Ident(word.to_string()), start, end: j });
            i = j;
            // The bodies of datetime(…), timespan(…) and guid(…) are not tokens: keep them raw.
            let raw_literal = matches!(
                word.to_ascii_lowercase().as_str(),
                "datetime" | "date" | "timespan" | "time" | "guid" | "uuid" | "uniqueid"
            );
            if raw_literal && bytes.get(i) == Some(&b'(') {
                let Some(close) = src[i..].find(')').map(|k| i + k) else {
                    return Err(KqlError::syntax(src, i, "unclosed '('"));
                };
                out.push(Token { tok: Tok::Sym("("), start: i, end: i + 1 });
                out.push(Token { tok: Tok::Str(src[i + 1..close].to_string()), start: i + 1, end: close });
                out.push(Token { tok: Tok::Sym(")"), start: close, end: close + 1 });
                i = close + 1;
            }
            continue;
        }
        if c == b'!' {
            // !has, !contains, !in, !startswith, !between, … are single operators.
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            if j > i + 1 {
                let word = &src[i + 1..j];
                let mut end = j;
                let mut op = format!("!{}", word.to_ascii_lowercase());
                if bytes.get(j) == Some(&b'~') {
                    op.push('~');
                    end += 1;
                }
                if let Some(sym) = NEGATED.iter().find(|s| **s == op) {
                    out.push(Token { tok: Tok::Sym(sym), start, end });
                    i = end;
                    continue;
                }
            }
        }
        let Some(sym) = SYMBOLS.iter().find(|s| src[i..].starts_with(**s)) else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(KqlError::syntax(src, i, &format!("unexpected character '{ch}'")));
        };
        out.push(Token { tok: Tok::Sym(sym), start, end: i + sym.len() });
        i += sym.len();
    }
    out.push(Token { tok: Tok::Eof, start: src.len(), end: src.len() });
    Ok(out)
}

const NEGATED: &[&str] = &[
    "!has",
    "!has_cs",
    "!contains",
    "!contains_cs",
    "!startswith",
    "!startswith_cs",
    "!endswith",
    "!endswith_cs",
    "!in",
    "!in~",
    "!between",
    "!hasprefix",
    "!hassuffix",
    "!has_any",
    "!has_all",
];

fn prev_is_value(out: &[Token]) -> bool {
    matches!(out.last().map(|t| &t.tok), Some(Tok::Ident(_) | Tok::Int(_) | Tok::Real(_) | Tok::Sym(")" | "]")))
}

fn lex_string(src: &str, quote_at: usize, verbatim: bool) -> Result<(String, usize), KqlError> {
    let bytes = src.as_bytes();
    let quote = bytes[quote_at];
    let mut out = String::new();
    let mut i = quote_at + 1;
    loop {
        let Some(&c) = bytes.get(i) else {
            return Err(KqlError::syntax(src, quote_at, "unterminated string literal"));
        };
        if c == quote {
            if verbatim && bytes.get(i + 1) == Some(&quote) {
                out.push(quote as char);
                i += 2;
                continue;
            }
            return Ok((out, i + 1));
        }
        if c == b'\\' && !verbatim {
            let Some(&e) = bytes.get(i + 1) else {
                return Err(KqlError::syntax(src, quote_at, "unterminated string literal"));
            };
            match e {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'\\' => out.push('\\'),
                b'"' => out.push('"'),
                b'\'' => out.push('\''),
                b'0' => out.push('\0'),
                b'u' => {
                    let hex = src.get(i + 2..i + 6).ok_or_else(|| KqlError::syntax(src, i, "bad \\u escape"))?;
                    let code = u32::from_str_radix(hex, 16).map_err(|_| KqlError::syntax(src, i, "bad \\u escape"))?;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    i += 6;
                    continue;
                }
                _ => {
                    return Err(KqlError::syntax(src, i, &format!("unknown escape '\\{}'", e as char)));
                }
            }
            i += 2;
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
}

fn lex_number(src: &str, start: usize) -> Result<(Tok, usize), KqlError> {
    let bytes = src.as_bytes();
    let mut i = start;
    if src[i..].starts_with("0x") || src[i..].starts_with("0X") {
        let mut j = i + 2;
        while j < bytes.len() && bytes[j].is_ascii_hexdigit() {
            j += 1;
        }
        let v = i64::from_str_radix(&src[i + 2..j], 16).map_err(|_| KqlError::syntax(src, start, "bad hexadecimal literal"))?;
        return Ok((Tok::Int(v), j));
    }
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let mut real = false;
    if i < bytes.len() && bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        real = true;
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        let mut j = i + 1;
        if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_digit() {
            real = true;
            i = j;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let number = &src[start..i];
    // A unit glued to the number makes a timespan: 5m, 1.5h, 100ms, 3tick.
    let mut j = i;
    while j < bytes.len() && bytes[j].is_ascii_alphabetic() {
        j += 1;
    }
    if j > i {
        let literal = &src[start..j];
        return match super::value::parse_timespan_unit(literal) {
            Some(ticks) => Ok((Tok::TimeSpan(ticks), j)),
            None => Err(KqlError::syntax(src, start, &format!("'{literal}' is not a number or a timespan"))),
        };
    }
    if real {
        let v: f64 = number.parse().map_err(|_| KqlError::syntax(src, start, "bad real literal"))?;
        Ok((Tok::Real(v), i))
    } else {
        match number.parse::<i64>() {
            Ok(v) => Ok((Tok::Int(v), i)),
            Err(_) => Ok((Tok::Real(number.parse().map_err(|_| KqlError::syntax(src, start, "bad number"))?), i)),
        }
    }
}
