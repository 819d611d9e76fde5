//! A recursive-descent parser for KQL, with precise error positions.

use super::KqlError;
use super::ast::*;
use super::lexer::{Tok, Token, lex};
use super::value::{Type, Value, parse_datetime, parse_timespan};

/// Parse a whole query into statements.
///
/// # Errors
/// A syntax error with the line and position of the offending token.
pub fn parse(src: &str) -> Result<Vec<Statement>, KqlError> {
    let tokens = lex(src)?;
    let mut p = Parser { src, tokens, pos: 0, depth: 0 };
    let statements = p.statements(false)?;
    if !p.at_eof() {
        return Err(p.error_here("expected ';' or the end of the query"));
    }
    if statements.is_empty() {
        return Err(KqlError::syntax(src, 0, "the query is empty"));
    }
    Ok(statements)
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// Nesting depth of expressions, bounded so a hostile query cannot exhaust the stack.
    depth: usize,
}

/// Deepest nesting of expressions accepted.
const MAX_DEPTH: usize = 100;

/// Tabular operators, as they follow `|`.
const OPERATORS: &[&str] = &[
    "where",
    "filter",
    "project",
    "project-away",
    "project-keep",
    "project-rename",
    "project-reorder",
    "extend",
    "summarize",
    "count",
    "take",
    "limit",
    "top",
    "sort",
    "order",
    "distinct",
    "join",
    "union",
    "mv-expand",
    "make-series",
    "parse",
    "render",
    "serialize",
    "getschema",
    "as",
];

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].tok
    }

    fn at_eof(&self) -> bool {
        matches!(self.peek(), Tok::Eof)
    }

    fn start(&self) -> usize {
        self.tokens[self.pos].start
    }

    fn prev_end(&self) -> usize {
        if self.pos == 0 { 0 } else { self.tokens[self.pos - 1].end }
    }

    fn span_from(&self, start: usize) -> Span {
        Span { start, end: self.prev_end().max(start) }
    }

    fn advance(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error_here(&self, what: &str) -> KqlError {
        KqlError::syntax(self.src, self.start(), what)
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.is_sym(s) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), KqlError> {
        if self.eat_sym(s) { Ok(()) } else { Err(self.error_here(&format!("expected '{s}'"))) }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x.eq_ignore_ascii_case(w))
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), KqlError> {
        if self.eat_word(w) { Ok(()) } else { Err(self.error_here(&format!("expected '{w}'"))) }
    }

    /// `['name with spaces']`: a quoted name, when the next three tokens form one.
    fn bracket_name(&self) -> Option<String> {
        match (self.peek(), self.peek_at(1), self.peek_at(2)) {
            (Tok::Sym("["), Tok::Str(name), Tok::Sym("]")) => Some(name.clone()),
            _ => None,
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, KqlError> {
        if let Some(name) = self.bracket_name() {
            self.pos += 3;
            return Ok(name);
        }
        match self.peek().clone() {
            Tok::Ident(name) => {
                self.advance();
                Ok(name)
            }
            _ => Err(self.error_here(&format!("expected {what}"))),
        }
    }

    /// An operator name after `|`, joining `project-away` and friends.
    fn operator_name(&mut self) -> Result<(String, usize), KqlError> {
        let start = self.start();
        let mut name = self.ident("a tabular operator after '|'")?.to_ascii_lowercase();
        while self.is_sym("-") && self.tokens[self.pos].start == self.prev_end() {
            if let Tok::Ident(next) = self.peek_at(1).clone()
                && self.tokens[self.pos + 1].start == self.tokens[self.pos].end
            {
                self.advance();
                self.advance();
                name = format!("{name}-{}", next.to_ascii_lowercase());
                continue;
            }
            break;
        }
        Ok((name, start))
    }

    // ---- statements ----

    fn statements(&mut self, in_body: bool) -> Result<Vec<Statement>, KqlError> {
        let mut out = Vec::new();
        loop {
            while self.eat_sym(";") {}
            if self.at_eof() || (in_body && self.is_sym("}")) {
                break;
            }
            if self.is_word("let") {
                out.push(self.let_statement()?);
            } else {
                out.push(self.tabular_or_scalar()?);
            }
            if !self.eat_sym(";") {
                break;
            }
        }
        Ok(out)
    }

    fn let_statement(&mut self) -> Result<Statement, KqlError> {
        self.expect_word("let")?;
        let name = self.ident("a name after 'let'")?;
        self.expect_sym("=")?;
        // A function: `(params) { body }`.
        if self.is_sym("(") && self.looks_like_params() {
            self.advance();
            let mut params = Vec::new();
            while !self.is_sym(")") {
                let pname = self.ident("a parameter name")?;
                self.expect_sym(":")?;
                let ty = if self.eat_sym("(") {
                    // Tabular parameter: `(*)` or `(a:long, …)`.
                    let mut depth = 1;
                    while depth > 0 {
                        match self.advance().tok {
                            Tok::Sym("(") => depth += 1,
                            Tok::Sym(")") => depth -= 1,
                            Tok::Eof => return Err(self.error_here("unclosed parameter schema")),
                            _ => {}
                        }
                    }
                    None
                } else {
                    let tname = self.ident("a parameter type")?;
                    Some(Type::parse(&tname).ok_or_else(|| {
                        KqlError::syntax(self.src, self.tokens[self.pos - 1].start, &format!("unknown type '{tname}'"))
                    })?)
                };
                // Default values are accepted and ignored: `x:long = 5`.
                if self.eat_sym("=") {
                    self.expr()?;
                }
                params.push((pname, ty));
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
            self.expect_sym("{")?;
            let body = self.statements(true)?;
            self.expect_sym("}")?;
            return Ok(Statement::Let { name, value: LetValue::Function { params, body } });
        }
        let value = match self.tabular_or_scalar()? {
            Statement::Tabular(p) => LetValue::Tabular(p),
            Statement::Scalar(e) => LetValue::Scalar(e),
            Statement::Let { .. } => return Err(self.error_here("unexpected 'let'")),
        };
        Ok(Statement::Let { name, value })
    }

    /// After `let f = (`: is this a parameter list (`()` or `(x:type`)?
    fn looks_like_params(&self) -> bool {
        matches!((self.peek_at(1), self.peek_at(2)), (Tok::Sym(")"), Tok::Sym("{")) | (Tok::Ident(_), Tok::Sym(":")))
    }

    /// A statement that is either tabular (has a source keyword, or pipes) or scalar.
    fn tabular_or_scalar(&mut self) -> Result<Statement, KqlError> {
        if let Tok::Ident(w) = self.peek() {
            let w = w.to_ascii_lowercase();
            if matches!(w.as_str(), "datatable" | "range" | "print" | "union") && !matches!(self.peek_at(1), Tok::Sym("=")) {
                return Ok(Statement::Tabular(self.pipeline()?));
            }
        }
        if self.is_sym("(") {
            // `(T | …)` or `(1 + 2)`: try tabular first.
            let save = self.pos;
            if let Ok(p) = self.pipeline()
                && (!matches!(p.source, Source::Nested(_))
                    || !p.ops.is_empty()
                    || self.is_sym(";")
                    || self.at_eof()
                    || self.is_sym("}"))
                && let Source::Nested(_) = p.source
            {
                return Ok(Statement::Tabular(p));
            }
            self.pos = save;
        }
        let start = self.start();
        let e = self.expr()?;
        if self.is_sym("|") {
            let source = match e {
                Expr::Name { name, span } => Source::Name(name, span),
                Expr::Call { name, args, span } => Source::Call(name, args, span),
                Expr::Sub { pipeline, .. } => Source::Nested(pipeline),
                other => {
                    return Err(KqlError::syntax(self.src, start, &format!("a {} cannot be piped", describe(&other))));
                }
            };
            let ops = self.ops()?;
            return Ok(Statement::Tabular(Pipeline { source, ops }));
        }
        Ok(match e {
            Expr::Sub { pipeline, .. } => Statement::Tabular(*pipeline),
            // A bare name or call may be tabular; the evaluator decides.
            other => Statement::Scalar(other),
        })
    }

    // ---- tabular ----

    fn pipeline(&mut self) -> Result<Pipeline, KqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth = 0;
            return Err(self.error_here(&format!("the query nests expressions more than {MAX_DEPTH} deep")));
        }
        let result = (|| {
            let source = self.source()?;
            let ops = self.ops()?;
            Ok(Pipeline { source, ops })
        })();
        self.depth = self.depth.saturating_sub(1);
        result
    }

    fn ops(&mut self) -> Result<Vec<(Op, Span)>, KqlError> {
        let mut ops = Vec::new();
        while self.eat_sym("|") {
            let start = self.start();
            let op = self.operator()?;
            ops.push((op, self.span_from(start)));
        }
        Ok(ops)
    }

    fn source(&mut self) -> Result<Source, KqlError> {
        let start = self.start();
        if self.eat_sym("(") {
            let inner = self.pipeline()?;
            self.expect_sym(")")?;
            return Ok(Source::Nested(Box::new(inner)));
        }
        let name = self.ident("a table name")?;
        match name.to_ascii_lowercase().as_str() {
            "datatable" if self.is_sym("(") => {
                self.expect_sym("(")?;
                let mut columns = Vec::new();
                while !self.is_sym(")") {
                    let cname = self.ident("a column name")?;
                    self.expect_sym(":")?;
                    let tpos = self.start();
                    let tname = self.ident("a column type")?;
                    let ty = Type::parse(&tname)
                        .ok_or_else(|| KqlError::syntax(self.src, tpos, &format!("unknown type '{tname}'")))?;
                    columns.push((cname, ty));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.expect_sym(")")?;
                self.expect_sym("[")?;
                let mut values = Vec::new();
                while !self.is_sym("]") {
                    values.push(self.expr()?);
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.expect_sym("]")?;
                if columns.is_empty() || values.len() % columns.len() != 0 {
                    return Err(KqlError::syntax(
                        self.src,
                        start,
                        &format!("datatable has {} values, not a multiple of its {} columns", values.len(), columns.len()),
                    ));
                }
                Ok(Source::Datatable { columns, values, span: self.span_from(start) })
            }
            "range" if matches!(self.peek(), Tok::Ident(_)) => {
                let column = self.ident("a column name")?;
                self.expect_word("from")?;
                let from = self.expr()?;
                self.expect_word("to")?;
                let to = self.expr()?;
                self.expect_word("step")?;
                let step = self.expr()?;
                Ok(Source::Range { column, from, to, step })
            }
            "print" => Ok(Source::Print(self.named_list(&[])?)),
            "union" => {
                let (tables, inner) = self.union_args()?;
                Ok(Source::Union { tables, inner })
            }
            _ => {
                if self.is_sym("(") {
                    self.advance();
                    let args = self.args()?;
                    return Ok(Source::Call(name, args, self.span_from(start)));
                }
                Ok(Source::Name(name, self.span_from(start)))
            }
        }
    }

    fn union_args(&mut self) -> Result<(Vec<Pipeline>, bool), KqlError> {
        let mut inner = false;
        while let Tok::Ident(w) = self.peek().clone() {
            if matches!(self.peek_at(1), Tok::Sym("="))
                && matches!(w.to_ascii_lowercase().as_str(), "kind" | "withsource" | "isfuzzy")
            {
                self.advance();
                self.advance();
                let v = self.ident("a value")?;
                if w.eq_ignore_ascii_case("kind") {
                    inner = v.eq_ignore_ascii_case("inner");
                }
            } else {
                break;
            }
        }
        let mut tables = Vec::new();
        loop {
            tables.push(self.pipeline_no_pipe()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok((tables, inner))
    }

    /// A source without trailing pipes (inside `union a, b` a pipe belongs to the union).
    fn pipeline_no_pipe(&mut self) -> Result<Pipeline, KqlError> {
        Ok(Pipeline { source: self.source()?, ops: Vec::new() })
    }

    fn named_list(&mut self, stop: &[&str]) -> Result<Vec<NamedExpr>, KqlError> {
        let mut out = Vec::new();
        if self.at_eof() || self.is_sym("|") || self.is_sym(")") || self.is_sym(";") || stop.iter().any(|w| self.is_word(w)) {
            return Ok(out);
        }
        loop {
            out.push(self.named_expr()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(out)
    }

    fn named_expr(&mut self) -> Result<NamedExpr, KqlError> {
        // `(a, b) = expr`
        if self.is_sym("(") {
            let save = self.pos;
            self.advance();
            let mut names = Vec::new();
            while let Tok::Ident(n) = self.peek().clone() {
                self.advance();
                names.push(n);
                if !self.eat_sym(",") {
                    break;
                }
            }
            if !names.is_empty() && self.eat_sym(")") && self.eat_sym("=") {
                return Ok(NamedExpr { names, expr: self.expr()? });
            }
            self.pos = save;
        }
        if let (Tok::Ident(name), Tok::Sym("=")) = (self.peek().clone(), self.peek_at(1).clone()) {
            self.advance();
            self.advance();
            return Ok(NamedExpr { names: vec![name], expr: self.expr()? });
        }
        if let (Some(name), Tok::Sym("=")) = (self.bracket_name(), self.peek_at(3).clone()) {
            self.pos += 4;
            return Ok(NamedExpr { names: vec![name], expr: self.expr()? });
        }
        Ok(NamedExpr { names: Vec::new(), expr: self.expr()? })
    }

    fn name_list(&mut self) -> Result<Vec<String>, KqlError> {
        let mut out = Vec::new();
        loop {
            let mut name = self.ident("a column name")?;
            // Wildcards: `Col*`, `*Name`.
            while self.is_sym("*") && self.tokens[self.pos].start == self.prev_end() {
                self.advance();
                name.push('*');
                if let Tok::Ident(more) = self.peek().clone()
                    && self.tokens[self.pos].start == self.prev_end()
                {
                    self.advance();
                    name.push_str(&more);
                }
            }
            out.push(name);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(out)
    }

    fn sort_keys(&mut self) -> Result<Vec<SortKey>, KqlError> {
        let mut keys = Vec::new();
        loop {
            let expr = self.expr()?;
            keys.push(self.sort_suffix(expr));
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(keys)
    }

    fn sort_suffix(&mut self, expr: Expr) -> SortKey {
        let mut desc = true;
        if self.eat_word("asc") {
            desc = false;
        } else if self.eat_word("desc") {
            desc = true;
        }
        let mut nulls_first = None;
        if self.is_word("nulls") {
            self.advance();
            if self.eat_word("first") {
                nulls_first = Some(true);
            } else if self.eat_word("last") {
                nulls_first = Some(false);
            }
        }
        SortKey { expr, desc, nulls_first }
    }

    fn operator(&mut self) -> Result<Op, KqlError> {
        let (name, start) = self.operator_name()?;
        Ok(match name.as_str() {
            "where" | "filter" => Op::Where(self.expr()?),
            "project" => Op::Project(self.named_list(&[])?),
            "extend" => Op::Extend(self.named_list(&[])?),
            "project-away" => Op::ProjectAway(self.name_list()?),
            "project-keep" => Op::ProjectKeep(self.name_list()?),
            "project-reorder" => {
                let names = self.name_list()?;
                // `asc`/`desc` ordering options are not supported; names are taken in order.
                Op::ProjectReorder(names)
            }
            "project-rename" => {
                let mut pairs = Vec::new();
                loop {
                    let new = self.ident("a new column name")?;
                    self.expect_sym("=")?;
                    let old = self.ident("an existing column name")?;
                    pairs.push((new, old));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                Op::ProjectRename(pairs)
            }
            "summarize" => {
                self.skip_hints();
                let aggs = self.named_list(&["by"])?;
                let by = if self.eat_word("by") { self.named_list(&[])? } else { Vec::new() };
                if aggs.is_empty() && by.is_empty() {
                    return Err(KqlError::syntax(self.src, start, "summarize needs an aggregation or a 'by' clause"));
                }
                Op::Summarize { aggs, by }
            }
            "count" => Op::Count,
            "take" | "limit" => Op::Take(self.expr()?),
            "top" => {
                let n = self.expr()?;
                self.expect_word("by")?;
                let expr = self.expr()?;
                Op::Top { n, key: self.sort_suffix(expr) }
            }
            "sort" | "order" => {
                self.expect_word("by")?;
                Op::Sort(self.sort_keys()?)
            }
            "distinct" => {
                if self.is_sym("*") {
                    let s = self.start();
                    self.advance();
                    Op::Distinct(vec![NamedExpr { names: vec![], expr: Expr::Star { span: self.span_from(s) } }])
                } else {
                    Op::Distinct(self.named_list(&[])?)
                }
            }
            "join" => self.join()?,
            "union" => {
                let (tables, inner) = self.union_args()?;
                Op::Union { tables, inner }
            }
            "mv-expand" => {
                self.skip_hints();
                let mut columns = Vec::new();
                loop {
                    let ne = self.named_expr()?;
                    let ty = if self.eat_word("to") {
                        self.expect_word("typeof")?;
                        self.expect_sym("(")?;
                        let tpos = self.start();
                        let tname = self.ident("a type")?;
                        self.expect_sym(")")?;
                        Some(
                            Type::parse(&tname)
                                .ok_or_else(|| KqlError::syntax(self.src, tpos, &format!("unknown type '{tname}'")))?,
                        )
                    } else {
                        None
                    };
                    columns.push((ne.names.into_iter().next(), ne.expr, ty));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                let limit = if self.eat_word("limit") {
                    match self.advance().tok {
                        Tok::Int(n) if n >= 0 => Some(n as usize),
                        _ => {
                            return Err(KqlError::syntax(self.src, self.tokens[self.pos - 1].start, "expected a row limit"));
                        }
                    }
                } else {
                    None
                };
                Op::MvExpand { columns, limit }
            }
            "make-series" => self.make_series()?,
            "parse" => self.parse_op()?,
            "render" => {
                let visualization = self.ident("a visualization (timechart, barchart, …)")?;
                let mut properties = Vec::new();
                if self.eat_word("with") {
                    self.expect_sym("(")?;
                    while !self.is_sym(")") {
                        let key = self.ident("a property")?;
                        self.expect_sym("=")?;
                        let s = self.start();
                        self.expr()?;
                        properties.push((key, self.src[s..self.prev_end()].to_string()));
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                }
                Op::Render { visualization, properties }
            }
            "serialize" => Op::Serialize(self.named_list(&[])?),
            "getschema" => Op::Getschema,
            other => {
                let hint = OPERATORS
                    .iter()
                    .find(|known| strsim_close(other, known))
                    .map(|k| format!("; did you mean '{k}'?"))
                    .unwrap_or_default();
                return Err(KqlError::syntax(self.src, start, &format!("unknown tabular operator '{other}'{hint}")));
            }
        })
    }

    /// `hint.strategy=shuffle` and the like: accepted and ignored.
    fn skip_hints(&mut self) {
        while let Tok::Ident(w) = self.peek().clone() {
            if w.to_ascii_lowercase().starts_with("hint") && matches!(self.peek_at(1), Tok::Sym(".")) {
                self.advance();
                self.advance();
                self.advance();
                if self.eat_sym("=") {
                    self.advance();
                }
            } else {
                break;
            }
        }
    }

    fn join(&mut self) -> Result<Op, KqlError> {
        let mut kind = JoinKind::InnerUnique;
        loop {
            self.skip_hints();
            if self.is_word("kind") && matches!(self.peek_at(1), Tok::Sym("=")) {
                self.advance();
                self.advance();
                let pos = self.start();
                let k = self.ident("a join kind")?;
                kind = match k.to_ascii_lowercase().as_str() {
                    "innerunique" => JoinKind::InnerUnique,
                    "inner" => JoinKind::Inner,
                    "leftouter" => JoinKind::LeftOuter,
                    "rightouter" => JoinKind::RightOuter,
                    "fullouter" => JoinKind::FullOuter,
                    "leftanti" | "anti" | "leftantisemi" => JoinKind::LeftAnti,
                    "rightanti" | "rightantisemi" => JoinKind::RightAnti,
                    "leftsemi" => JoinKind::LeftSemi,
                    "rightsemi" => JoinKind::RightSemi,
                    other => {
                        return Err(KqlError::syntax(self.src, pos, &format!("unknown join kind '{other}'")));
                    }
                };
            } else {
                break;
            }
        }
        let right = if self.eat_sym("(") {
            let p = self.pipeline()?;
            self.expect_sym(")")?;
            p
        } else {
            self.pipeline_no_pipe()?
        };
        self.expect_word("on")?;
        let mut on = Vec::new();
        loop {
            let pos = self.start();
            let e = self.expr()?;
            match e {
                Expr::Name { name, .. } => on.push((name.clone(), name)),
                Expr::Bin { op: BinOp::Eq, l, r, .. } => {
                    let side = |e: &Expr| match e {
                        Expr::Member { e, name, .. } => match &**e {
                            Expr::Name { name: side, .. } if side == "$left" || side == "$right" => {
                                Some((side.clone(), name.clone()))
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    match (side(&l), side(&r)) {
                        (Some((a, x)), Some((b, y))) if a == "$left" && b == "$right" => on.push((x, y)),
                        (Some((a, x)), Some((b, y))) if a == "$right" && b == "$left" => on.push((y, x)),
                        _ => {
                            return Err(KqlError::syntax(self.src, pos, "join conditions are 'Column' or '$left.A == $right.B'"));
                        }
                    }
                }
                _ => {
                    return Err(KqlError::syntax(self.src, pos, "join conditions are 'Column' or '$left.A == $right.B'"));
                }
            }
            if !self.eat_sym(",") && !self.eat_word("and") {
                break;
            }
        }
        Ok(Op::Join { kind, right: Box::new(right), on })
    }

    fn make_series(&mut self) -> Result<Op, KqlError> {
        let mut aggs = Vec::new();
        loop {
            let agg = self.named_expr()?;
            let default = if self.is_word("default") && matches!(self.peek_at(1), Tok::Sym("=")) {
                self.advance();
                self.advance();
                Some(self.expr()?)
            } else {
                None
            };
            aggs.push(SeriesAgg { agg, default });
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_word("on")?;
        // Not `expr()`: `on t in range(...)` must not parse as an `in` test.
        let on = self.additive()?;
        let mut from = None;
        let mut to = None;
        if self.eat_word("in") {
            self.expect_word("range")?;
            self.expect_sym("(")?;
            from = Some(self.expr()?);
            self.expect_sym(",")?;
            to = Some(self.expr()?);
            self.expect_sym(",")?;
            let step = self.expr()?;
            self.expect_sym(")")?;
            let by = if self.eat_word("by") { self.named_list(&[])? } else { Vec::new() };
            return Ok(Op::MakeSeries { aggs, on, from, to, step, by });
        }
        if self.eat_word("from") {
            from = Some(self.expr()?);
        }
        if self.eat_word("to") {
            to = Some(self.expr()?);
        }
        self.expect_word("step")?;
        let step = self.expr()?;
        let by = if self.eat_word("by") { self.named_list(&[])? } else { Vec::new() };
        Ok(Op::MakeSeries { aggs, on, from, to, step, by })
    }

    fn parse_op(&mut self) -> Result<Op, KqlError> {
        // Options such as kind=regex are not supported; the simple kind is.
        let expr = self.expr()?;
        self.expect_word("with")?;
        let mut pattern = Vec::new();
        loop {
            match self.peek().clone() {
                Tok::Str(s) => {
                    self.advance();
                    pattern.push(ParsePart::Text(s));
                }
                Tok::Sym("*") => {
                    self.advance();
                    pattern.push(ParsePart::Any);
                }
                Tok::Ident(name) => {
                    self.advance();
                    let ty = if self.eat_sym(":") {
                        let pos = self.start();
                        let t = self.ident("a type")?;
                        Type::parse(&t).ok_or_else(|| KqlError::syntax(self.src, pos, &format!("unknown type '{t}'")))?
                    } else {
                        Type::String
                    };
                    pattern.push(ParsePart::Column(name, ty));
                }
                _ => break,
            }
        }
        if pattern.is_empty() {
            return Err(self.error_here("expected a parse pattern"));
        }
        Ok(Op::Parse { expr, pattern })
    }

    // ---- expressions ----

    fn args(&mut self) -> Result<Vec<Expr>, KqlError> {
        let mut args = Vec::new();
        while !self.is_sym(")") {
            let start = self.start();
            let arg = self.expr()?;
            // A tabular argument: `toscalar(T | summarize …)`.
            if self.is_sym("|") {
                let source = match arg {
                    Expr::Name { name, span } => Source::Name(name, span),
                    Expr::Call { name, args, span } => Source::Call(name, args, span),
                    _ => return Err(self.error_here("only a table can be piped")),
                };
                let ops = self.ops()?;
                args.push(Expr::Sub { pipeline: Box::new(Pipeline { source, ops }), span: self.span_from(start) });
                if !self.eat_sym(",") {
                    break;
                }
                continue;
            }
            args.push(arg);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        Ok(args)
    }

    /// An expression (lowest precedence: `or`).
    pub fn expr(&mut self) -> Result<Expr, KqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth = 0;
            return Err(self.error_here(&format!("the query nests expressions more than {MAX_DEPTH} deep")));
        }
        let result = self.expr_inner();
        self.depth = self.depth.saturating_sub(1);
        result
    }

    fn expr_inner(&mut self) -> Result<Expr, KqlError> {
        let start = self.start();
        let mut l = self.and_expr()?;
        while self.eat_word("or") {
            let r = self.and_expr()?;
            l = Expr::Bin { op: BinOp::Or, l: Box::new(l), r: Box::new(r), span: self.span_from(start) };
        }
        Ok(l)
    }

    fn and_expr(&mut self) -> Result<Expr, KqlError> {
        let start = self.start();
        let mut l = self.comparison()?;
        while self.eat_word("and") {
            let r = self.comparison()?;
            l = Expr::Bin { op: BinOp::And, l: Box::new(l), r: Box::new(r), span: self.span_from(start) };
        }
        Ok(l)
    }

    fn comparison(&mut self) -> Result<Expr, KqlError> {
        let start = self.start();
        let l = self.additive()?;
        let bin = |op| Some(op);
        let op = match self.peek().clone() {
            Tok::Sym("==") => bin(BinOp::Eq),
            Tok::Sym("!=") | Tok::Sym("<>") => bin(BinOp::Ne),
            Tok::Sym("<") => bin(BinOp::Lt),
            Tok::Sym("<=") => bin(BinOp::Le),
            Tok::Sym(">") => bin(BinOp::Gt),
            Tok::Sym(">=") => bin(BinOp::Ge),
            Tok::Sym("=~") => bin(BinOp::EqCi),
            Tok::Sym("!~") => bin(BinOp::NeCi),
            Tok::Sym(s) if s.starts_with('!') && s.len() > 1 => {
                let word = &s[1..];
                return self.word_operator(l, word, true, start);
            }
            Tok::Ident(w) => {
                let w = w.to_ascii_lowercase();
                if is_word_operator(&w) {
                    return self.word_operator(l, &w, false, start);
                }
                None
            }
            _ => None,
        };
        let Some(op) = op else { return Ok(l) };
        self.advance();
        let r = self.additive()?;
        Ok(Expr::Bin { op, l: Box::new(l), r: Box::new(r), span: self.span_from(start) })
    }

    fn word_operator(&mut self, l: Expr, word: &str, negated: bool, start: usize) -> Result<Expr, KqlError> {
        self.advance();
        let str_op = match word {
            "has" => Some(StrOp::Has),
            "has_cs" => Some(StrOp::HasCs),
            "hasprefix" => Some(StrOp::HasPrefix),
            "hassuffix" => Some(StrOp::HasSuffix),
            "contains" => Some(StrOp::Contains),
            "contains_cs" => Some(StrOp::ContainsCs),
            "startswith" => Some(StrOp::StartsWith),
            "startswith_cs" => Some(StrOp::StartsWithCs),
            "endswith" => Some(StrOp::EndsWith),
            "endswith_cs" => Some(StrOp::EndsWithCs),
            "matches" => {
                self.expect_word("regex")?;
                Some(StrOp::MatchesRegex)
            }
            _ => None,
        };
        if let Some(op) = str_op {
            let r = self.additive()?;
            return Ok(Expr::Bin { op: BinOp::Str(op, negated), l: Box::new(l), r: Box::new(r), span: self.span_from(start) });
        }
        match word {
            "in" | "in~" | "has_any" | "has_all" => {
                let mut ci = word == "in~";
                if word == "in" && self.is_sym("~") {
                    // `in~` lexes as `in` then `~`? '~' is not a symbol; handled via `=~` only.
                    ci = true;
                }
                self.expect_sym("(")?;
                let any_of = match word {
                    "has_any" => Some(StrOp::Has),
                    "has_all" => Some(StrOp::HasCs),
                    _ => None,
                };
                // A tabular subquery: `in (T | project x)`.
                let save = self.pos;
                if let Tok::Ident(_) = self.peek() {
                    if let Ok(p) = self.pipeline()
                        && !p.ops.is_empty()
                        && self.is_sym(")")
                    {
                        self.advance();
                        return Ok(Expr::In {
                            e: Box::new(l),
                            list: vec![],
                            sub: Some(Box::new(p)),
                            negated,
                            ci,
                            any_of,
                            span: self.span_from(start),
                        });
                    }
                    self.pos = save;
                }
                let list = self.args()?;
                Ok(Expr::In { e: Box::new(l), list, sub: None, negated, ci, any_of, span: self.span_from(start) })
            }
            "between" => {
                self.expect_sym("(")?;
                let lo = self.additive()?;
                self.expect_sym("..")?;
                let hi = self.additive()?;
                self.expect_sym(")")?;
                Ok(Expr::Between { e: Box::new(l), lo: Box::new(lo), hi: Box::new(hi), negated, span: self.span_from(start) })
            }
            other => Err(KqlError::syntax(self.src, start, &format!("unknown operator '{other}'"))),
        }
    }

    fn additive(&mut self) -> Result<Expr, KqlError> {
        let start = self.start();
        let mut l = self.multiplicative()?;
        loop {
            let op = if self.is_sym("+") {
                BinOp::Add
            } else if self.is_sym("-") {
                BinOp::Sub
            } else {
                break;
            };
            self.advance();
            let r = self.multiplicative()?;
            l = Expr::Bin { op, l: Box::new(l), r: Box::new(r), span: self.span_from(start) };
        }
        Ok(l)
    }

    fn multiplicative(&mut self) -> Result<Expr, KqlError> {
        let start = self.start();
        let mut l = self.unary()?;
        loop {
            let op = if self.is_sym("*") {
                BinOp::Mul
            } else if self.is_sym("/") {
                BinOp::Div
            } else if self.is_sym("%") {
                BinOp::Mod
            } else {
                break;
            };
            self.advance();
            let r = self.unary()?;
            l = Expr::Bin { op, l: Box::new(l), r: Box::new(r), span: self.span_from(start) };
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, KqlError> {
        let start = self.start();
        if self.eat_sym("-") {
            let e = self.unary()?;
            return Ok(match e {
                Expr::Lit { value: Value::Long(v), ty, .. } => {
                    Expr::Lit { value: Value::Long(-v), ty, span: self.span_from(start) }
                }
                Expr::Lit { value: Value::Real(v), ty, .. } => {
                    Expr::Lit { value: Value::Real(-v), ty, span: self.span_from(start) }
                }
                Expr::Lit { value: Value::TimeSpan(v), ty, .. } => {
                    Expr::Lit { value: Value::TimeSpan(-v), ty, span: self.span_from(start) }
                }
                other => Expr::Neg { e: Box::new(other), span: self.span_from(start) },
            });
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, KqlError> {
        let start = self.start();
        let mut e = self.primary()?;
        loop {
            if self.is_sym(".") && matches!(self.peek_at(1), Tok::Ident(_)) {
                self.advance();
                let name = self.ident("a property name")?;
                e = Expr::Member { e: Box::new(e), name, span: self.span_from(start) };
            } else if self.is_sym("[") {
                self.advance();
                let index = self.expr()?;
                self.expect_sym("]")?;
                e = Expr::Index { e: Box::new(e), index: Box::new(index), span: self.span_from(start) };
            } else {
                break;
            }
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, KqlError> {
        let start = self.start();
        let tok = self.peek().clone();
        let lit = |value: Value, p: &Parser| Expr::Lit { value, ty: None, span: p.span_from(start) };
        match tok {
            Tok::Int(v) => {
                self.advance();
                Ok(lit(Value::Long(v), self))
            }
            Tok::Real(v) => {
                self.advance();
                Ok(lit(Value::Real(v), self))
            }
            Tok::TimeSpan(v) => {
                self.advance();
                Ok(lit(Value::TimeSpan(v), self))
            }
            Tok::Str(s) => {
                self.advance();
                // Adjacent string literals concatenate.
                let mut s = s;
                while let Tok::Str(more) = self.peek().clone() {
                    self.advance();
                    s.push_str(&more);
                }
                Ok(lit(Value::String(s.into()), self))
            }
            Tok::Sym("*") => {
                self.advance();
                Ok(Expr::Star { span: self.span_from(start) })
            }
            Tok::Sym("(") => {
                // A parenthesised expression, or a tabular subquery.
                let save = self.pos;
                self.advance();
                if let Tok::Ident(_) = self.peek() {
                    if let Ok(p) = self.pipeline()
                        && !p.ops.is_empty()
                        && self.eat_sym(")")
                    {
                        return Ok(Expr::Sub { pipeline: Box::new(p), span: self.span_from(start) });
                    }
                    self.pos = save + 1;
                }
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Sym("[") if self.bracket_name().is_some() => {
                let name = self.ident("a name")?;
                Ok(Expr::Name { name, span: self.span_from(start) })
            }
            Tok::Sym("[") => {
                // A bracketed list is a dynamic array literal inside expressions.
                let end = self.matching_close(self.pos)?;
                let text = &self.src[self.tokens[self.pos].start..self.tokens[end].end];
                let json = parse_dynamic(text).map_err(|e| KqlError::syntax(self.src, start, &e))?;
                self.pos = end + 1;
                Ok(lit(Value::Dynamic(json.into()), self))
            }
            Tok::Ident(name) => {
                self.advance();
                let lower = name.to_ascii_lowercase();
                match lower.as_str() {
                    "true" => return Ok(lit(Value::Bool(true), self)),
                    "false" => return Ok(lit(Value::Bool(false), self)),
                    "null" => return Ok(lit(Value::Null, self)),
                    _ => {}
                }
                if self.is_sym("(") {
                    if let Some(e) = self.typed_literal(&lower, start)? {
                        return Ok(e);
                    }
                    self.advance();
                    let args = self.args()?;
                    return Ok(Expr::Call { name: lower_function(&name), args, span: self.span_from(start) });
                }
                Ok(Expr::Name { name, span: self.span_from(start) })
            }
            Tok::Sym("$") => Err(self.error_here("'$' must be followed by 'left' or 'right'")),
            Tok::Eof => Err(self.error_here("unexpected end of query")),
            Tok::Sym(s) => Err(self.error_here(&format!("unexpected '{s}'"))),
        }
    }

    /// Index of the token that closes the bracket at `open`.
    fn matching_close(&self, open: usize) -> Result<usize, KqlError> {
        let mut depth = 0;
        for (i, t) in self.tokens.iter().enumerate().skip(open) {
            match t.tok {
                Tok::Sym("(" | "[" | "{") => depth += 1,
                Tok::Sym(")" | "]" | "}") => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                Tok::Eof => break,
                _ => {}
            }
        }
        Err(KqlError::syntax(self.src, self.tokens[open].start, "unclosed bracket"))
    }

    /// `datetime(…)`, `timespan(…)`, `dynamic(…)`, `guid(…)`, `int(null)`, `real(nan)`, …
    fn typed_literal(&mut self, lower: &str, start: usize) -> Result<Option<Expr>, KqlError> {
        let Some(ty) = Type::parse(lower) else {
            return Ok(None);
        };
        let close = self.matching_close(self.pos)?;
        let inner_start = self.tokens[self.pos].end;
        let inner_end = self.tokens[close].start;
        let raw = self.src[inner_start..inner_end].trim();
        let bad = |what: &str| KqlError::syntax(self.src, inner_start, &format!("invalid {} literal: {what}", ty.name()));
        let value = if raw.eq_ignore_ascii_case("null") {
            Value::Null
        } else {
            match ty {
                Type::DateTime => Value::DateTime(parse_datetime(raw).ok_or_else(|| bad(raw))?),
                Type::TimeSpan => Value::TimeSpan(parse_timespan(raw).ok_or_else(|| bad(raw))?),
                Type::Dynamic => Value::Dynamic(parse_dynamic(raw).map_err(|e| bad(&e))?.into()),
                Type::Guid => Value::Guid(raw.to_ascii_lowercase().into()),
                Type::Int | Type::Long | Type::Real | Type::Decimal | Type::Bool if !looks_literal(raw) => {
                    return Ok(None);
                }
                Type::Bool => Value::Bool(match raw.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(raw)),
                }),
                // `int(…)`, `long(…)`, `real(…)`, `double(…)`, `bool(…)` with something other
                // than a literal inside are calls (a user function may be named `double`).
                Type::Int => Value::Int(raw.parse().map_err(|_| bad(raw))?),
                Type::Long => Value::Long(raw.parse().map_err(|_| bad(raw))?),
                Type::Real | Type::Decimal => {
                    let f = match raw.to_ascii_lowercase().as_str() {
                        "nan" => f64::NAN,
                        "+inf" | "inf" => f64::INFINITY,
                        "-inf" => f64::NEG_INFINITY,
                        _ => raw.parse().map_err(|_| bad(raw))?,
                    };
                    if ty == Type::Real { Value::Real(f) } else { Value::Decimal(f) }
                }
                // `string(...)` is not a literal form; let it be a call (tostring-like).
                Type::String => return Ok(None),
            }
        };
        self.pos = close + 1;
        Ok(Some(Expr::Lit { value, ty: Some(ty), span: self.span_from(start) }))
    }
}

fn looks_literal(raw: &str) -> bool {
    let r = raw.trim().to_ascii_lowercase();
    matches!(r.as_str(), "true" | "false" | "nan" | "inf" | "+inf" | "-inf") || r.parse::<f64>().is_ok()
}

fn is_word_operator(w: &str) -> bool {
    matches!(
        w,
        "has"
            | "has_cs"
            | "hasprefix"
            | "hassuffix"
            | "contains"
            | "contains_cs"
            | "startswith"
            | "startswith_cs"
            | "endswith"
            | "endswith_cs"
            | "matches"
            | "in"
            | "in~"
            | "has_any"
            | "has_all"
            | "between"
    )
}

/// Function names are case-sensitive in KQL but we accept any case for built-ins.
fn lower_function(name: &str) -> String {
    name.to_string()
}

fn describe(e: &Expr) -> &'static str {
    match e {
        Expr::Lit { .. } => "literal",
        Expr::Bin { .. } => "binary expression",
        _ => "scalar expression",
    }
}

/// Two names within an edit distance of 2 (for "did you mean").
fn strsim_close(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

/// Parse a `dynamic(...)` body: JSON, plus KQL's extras (single-quoted strings, nested
/// `datetime(...)`/`timespan(...)` values as strings).
pub fn parse_dynamic(text: &str) -> Result<serde_json::Value, String> {
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    // Convert single quotes to double quotes outside double-quoted strings.
    let mut out = String::with_capacity(text.len());
    let mut in_double = false;
    let mut in_single = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_double || in_single => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '"' if !in_single => {
                in_double = !in_double;
                out.push(c);
            }
            '\'' if !in_double => {
                in_single = !in_single;
                out.push('"');
            }
            '"' if in_single => out.push_str("\\\""),
            _ => out.push(c),
        }
    }
    serde_json::from_str(&out).map_err(|e| e.to_string())
}
