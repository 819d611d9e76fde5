//! The syntax tree of a KQL query.

use super::value::{Type, Value};

/// Where a node is in the source (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// Just past the last byte.
    pub end: usize,
}

/// Binary operators.
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
    EqCi,
    NeCi,
    And,
    Or,
    /// A string operator (`has`, `!contains_cs`, `startswith`, `matches regex`, …).
    Str(StrOp, bool),
}

/// String predicates; the bool in [`BinOp::Str`] says negated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrOp {
    Has,
    HasCs,
    HasPrefix,
    HasSuffix,
    Contains,
    ContainsCs,
    StartsWith,
    StartsWithCs,
    EndsWith,
    EndsWithCs,
    MatchesRegex,
}

/// A scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal; `ty` is set for typed nulls such as `int(null)`.
    Lit { value: Value, ty: Option<Type>, span: Span },
    /// A column, or a scalar `let`.
    Name { name: String, span: Span },
    /// A function call (scalar, aggregate, or user-defined).
    Call { name: String, args: Vec<Expr>, span: Span },
    /// `l op r`.
    Bin { op: BinOp, l: Box<Expr>, r: Box<Expr>, span: Span },
    /// `-e`.
    Neg { e: Box<Expr>, span: Span },
    /// `e in (a, b)`, `e !in~ (…)`, `e has_any (…)`; `list` may hold one tabular subquery.
    In { e: Box<Expr>, list: Vec<Expr>, sub: Option<Box<Pipeline>>, negated: bool, ci: bool, any_of: Option<StrOp>, span: Span },
    /// `e between (lo .. hi)`.
    Between { e: Box<Expr>, lo: Box<Expr>, hi: Box<Expr>, negated: bool, span: Span },
    /// `e.name` on a dynamic value.
    Member { e: Box<Expr>, name: String, span: Span },
    /// `e[i]` on a dynamic value.
    Index { e: Box<Expr>, index: Box<Expr>, span: Span },
    /// `*` (in `arg_max(x, *)`, `distinct *`).
    Star { span: Span },
    /// A tabular subquery used as a scalar (`toscalar(T | …)`).
    Sub { pipeline: Box<Pipeline>, span: Span },
}

impl Expr {
    /// Where the expression is.
    pub fn span(&self) -> Span {
        match self {
            Expr::Lit { span, .. }
            | Expr::Name { span, .. }
            | Expr::Call { span, .. }
            | Expr::Bin { span, .. }
            | Expr::Neg { span, .. }
            | Expr::In { span, .. }
            | Expr::Between { span, .. }
            | Expr::Member { span, .. }
            | Expr::Index { span, .. }
            | Expr::Star { span }
            | Expr::Sub { span, .. } => *span,
        }
    }
}

/// `name = expr`, or `expr` whose name is derived.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedExpr {
    /// The given names (`(a, b) = …` gives two).
    pub names: Vec<String>,
    /// The expression.
    pub expr: Expr,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// What to sort by.
    pub expr: Expr,
    /// Descending (the default in KQL).
    pub desc: bool,
    /// Where nulls go; `None` = the default for the direction.
    pub nulls_first: Option<bool>,
}

/// Join kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    InnerUnique,
    Inner,
    LeftOuter,
    RightOuter,
    FullOuter,
    LeftAnti,
    RightAnti,
    LeftSemi,
    RightSemi,
}

/// One piece of a `parse` pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsePart {
    /// Literal text to match.
    Text(String),
    /// A column to extract, with its type.
    Column(String, Type),
    /// `*`: skip anything.
    Any,
}

/// One aggregation of `make-series`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesAgg {
    /// The named aggregation.
    pub agg: NamedExpr,
    /// `default=` value for empty bins.
    pub default: Option<Expr>,
}

/// A tabular operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Where(Expr),
    Project(Vec<NamedExpr>),
    ProjectAway(Vec<String>),
    ProjectKeep(Vec<String>),
    ProjectRename(Vec<(String, String)>),
    ProjectReorder(Vec<String>),
    Extend(Vec<NamedExpr>),
    Summarize { aggs: Vec<NamedExpr>, by: Vec<NamedExpr> },
    Count,
    Take(Expr),
    Top { n: Expr, key: SortKey },
    Sort(Vec<SortKey>),
    Distinct(Vec<NamedExpr>),
    Join { kind: JoinKind, right: Box<Pipeline>, on: Vec<(String, String)> },
    Union { tables: Vec<Pipeline>, inner: bool },
    MvExpand { columns: Vec<(Option<String>, Expr, Option<Type>)>, limit: Option<usize> },
    MakeSeries { aggs: Vec<SeriesAgg>, on: Expr, from: Option<Expr>, to: Option<Expr>, step: Expr, by: Vec<NamedExpr> },
    Parse { expr: Expr, pattern: Vec<ParsePart> },
    Render { visualization: String, properties: Vec<(String, String)> },
    Serialize(Vec<NamedExpr>),
    Getschema,
}

/// Where rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A table or a tabular `let`.
    Name(String, Span),
    /// A tabular function call.
    Call(String, Vec<Expr>, Span),
    /// `datatable(a:long, …) [values…]`.
    Datatable { columns: Vec<(String, Type)>, values: Vec<Expr>, span: Span },
    /// `range x from a to b step s`.
    Range { column: String, from: Expr, to: Expr, step: Expr },
    /// `print a = 1, …`.
    Print(Vec<NamedExpr>),
    /// `union T1, T2`.
    Union { tables: Vec<Pipeline>, inner: bool },
    /// `( … )`.
    Nested(Box<Pipeline>),
}

/// A source and the operators applied to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Rows in.
    pub source: Source,
    /// Operators, in order, with the span of each.
    pub ops: Vec<(Op, Span)>,
}

/// What a `let` binds.
#[derive(Debug, Clone, PartialEq)]
pub enum LetValue {
    /// A scalar.
    Scalar(Expr),
    /// A tabular expression.
    Tabular(Pipeline),
    /// A function: parameters (name, type; `None` type = tabular) and a body.
    Function { params: Vec<(String, Option<Type>)>, body: Vec<Statement> },
}

/// A statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `let name = …`.
    Let { name: String, value: LetValue },
    /// A tabular expression (the query's result).
    Tabular(Pipeline),
    /// A scalar expression (only as the last statement of a function body).
    Scalar(Expr),
}
