//! Scalar expressions: compiled against a schema (names resolved, types inferred, regexes
//! built once), then evaluated row by row.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::ast::{BinOp, Expr, StrOp};
use super::functions;
use super::table::Table;
use super::value::{Type, Value, to_display};
use super::{Catalog, KqlError, Options};

/// What a name is bound to by `let`.
#[derive(Debug, Clone)]
pub enum Binding {
    /// A scalar value.
    Scalar(Value, Option<Type>),
    /// A table.
    Tabular(Arc<Table>),
    /// A user function.
    Function(Arc<FunctionDef>),
}

/// A user function: parameters (name, type; `None` = tabular) and body.
pub type FunctionDef = (Vec<(String, Option<Type>)>, Vec<super::ast::Statement>);

/// Names bound by `let`, innermost last.
pub type Env = HashMap<String, Binding>;

/// Everything a compilation needs to resolve names.
pub struct Scope<'a> {
    /// The query text, for error positions.
    pub src: &'a str,
    /// Columns of the input (name, type).
    pub schema: Vec<(String, Type)>,
    /// `let` bindings.
    pub env: &'a Env,
    /// Function parameters bound to argument expressions.
    pub locals: HashMap<String, Compiled>,
    /// Tables.
    pub catalog: &'a dyn Catalog,
    /// Options (`now()`).
    pub options: &'a Options,
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum CExpr {
    Const(Value),
    Col(usize),
    Call(functions::Func, Vec<CExpr>),
    Bin(BinOp, Box<CExpr>, Box<CExpr>),
    Neg(Box<CExpr>),
    In {
        e: Box<CExpr>,
        set: Vec<CExpr>,
        negated: bool,
        ci: bool,
        any_of: Option<StrOp>,
    },
    Between {
        e: Box<CExpr>,
        lo: Box<CExpr>,
        hi: Box<CExpr>,
        negated: bool,
    },
    Member(Box<CExpr>, String),
    Index(Box<CExpr>, Box<CExpr>),
    Regex {
        e: Box<CExpr>,
        re: Arc<regex::Regex>,
        negated: bool,
    },
    /// `e in ("a", "b")` with constant strings: compared without building values.
    InStr {
        e: Box<CExpr>,
        set: Vec<Arc<str>>,
        negated: bool,
    },
}

/// A compiled expression and its static type (when it can be known).
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The expression.
    pub expr: CExpr,
    /// Its type.
    pub ty: Option<Type>,
}

impl Scope<'_> {
    fn err(&self, e: &Expr, message: &str) -> KqlError {
        KqlError::semantic(self.src, e.span().start, message)
    }

    /// Compile an expression.
    ///
    /// # Errors
    /// Unknown names and functions, wrong argument counts, aggregates outside `summarize`.
    pub fn compile(&self, e: &Expr) -> Result<Compiled, KqlError> {
        Ok(match e {
            Expr::Lit { value, ty, .. } => Compiled { ty: ty.or(value.ty()), expr: CExpr::Const(value.clone()) },
            Expr::Name { name, .. } => {
                if let Some(local) = self.locals.get(name) {
                    return Ok(local.clone());
                }
                if let Some(i) = self.schema.iter().position(|(n, _)| n == name) {
                    return Ok(Compiled { expr: CExpr::Col(i), ty: Some(self.schema[i].1) });
                }
                match self.env.get(name) {
                    Some(Binding::Scalar(v, ty)) => Compiled { expr: CExpr::Const(v.clone()), ty: ty.or(v.ty()) },
                    Some(Binding::Tabular(_)) => {
                        return Err(self.err(e, &format!("'{name}' is a table; it cannot be used as a scalar")));
                    }
                    Some(Binding::Function(_)) => {
                        return Err(self.err(e, &format!("'{name}' is a function; call it with '{name}()'")));
                    }
                    None => {
                        let hint = self
                            .schema
                            .iter()
                            .find(|(n, _)| n.eq_ignore_ascii_case(name))
                            .map(|(n, _)| format!("; did you mean '{n}'?"))
                            .unwrap_or_default();
                        return Err(self.err(e, &format!("Failed to resolve scalar expression named '{name}'{hint}")));
                    }
                }
            }
            Expr::Call { name, args, .. } => return self.compile_call(e, name, args),
            Expr::Bin { op, l, r, .. } => {
                let l = self.compile(l)?;
                if let (BinOp::Str(StrOp::MatchesRegex, negated), Expr::Lit { value: Value::String(p), .. }) = (op, &**r) {
                    let re = regex::Regex::new(p).map_err(|err| self.err(r, &format!("invalid regular expression: {err}")))?;
                    return Ok(Compiled {
                        expr: CExpr::Regex { e: Box::new(l.expr), re: Arc::new(re), negated: *negated },
                        ty: Some(Type::Bool),
                    });
                }
                let r = self.compile(r)?;
                let ty = binary_type(*op, l.ty, r.ty);
                Compiled { expr: CExpr::Bin(*op, Box::new(l.expr), Box::new(r.expr)), ty }
            }
            Expr::Neg { e, .. } => {
                let c = self.compile(e)?;
                Compiled { ty: c.ty, expr: CExpr::Neg(Box::new(c.expr)) }
            }
            Expr::In { e, list, sub, negated, ci, any_of, .. } => {
                let c = self.compile(e)?;
                let mut set = Vec::new();
                if let Some(sub) = sub {
                    let table = super::ops::run_pipeline(self.src, sub, self.env, self.catalog, self.options)?;
                    if let Some(col) = table.columns.first() {
                        set.extend(col.values.iter().cloned().map(CExpr::Const));
                    }
                }
                for item in list {
                    // A tabular name or a dynamic array literal expands into its values.
                    if let Expr::Name { name, .. } = item
                        && let Some(Binding::Tabular(t)) = self.env.get(name)
                    {
                        if let Some(col) = t.columns.first() {
                            set.extend(col.values.iter().cloned().map(CExpr::Const));
                        }
                        continue;
                    }
                    let item = self.compile(item)?;
                    match item.expr {
                        CExpr::Const(Value::Dynamic(j)) if j.is_array() => {
                            set.extend(j.as_array().into_iter().flatten().map(|v| CExpr::Const(from_json(v))));
                        }
                        other => set.push(other),
                    }
                }
                let strings: Option<Vec<Arc<str>>> = set
                    .iter()
                    .map(|item| if let CExpr::Const(Value::String(x)) = item { Some(x.clone()) } else { None })
                    .collect();
                match strings {
                    Some(strings) if !*ci && any_of.is_none() && !set.is_empty() => Compiled {
                        expr: CExpr::InStr { e: Box::new(c.expr), set: strings, negated: *negated },
                        ty: Some(Type::Bool),
                    },
                    _ => Compiled {
                        expr: CExpr::In { e: Box::new(c.expr), set, negated: *negated, ci: *ci, any_of: *any_of },
                        ty: Some(Type::Bool),
                    },
                }
            }
            Expr::Between { e, lo, hi, negated, .. } => Compiled {
                expr: CExpr::Between {
                    e: Box::new(self.compile(e)?.expr),
                    lo: Box::new(self.compile(lo)?.expr),
                    hi: Box::new(self.compile(hi)?.expr),
                    negated: *negated,
                },
                ty: Some(Type::Bool),
            },
            Expr::Member { e: inner, name, .. } => {
                // `$left.x` outside a join is meaningless.
                let c = self.compile(inner)?;
                Compiled { expr: CExpr::Member(Box::new(c.expr), name.clone()), ty: Some(Type::Dynamic) }
            }
            Expr::Index { e: inner, index, .. } => {
                let c = self.compile(inner)?;
                let i = self.compile(index)?;
                Compiled { expr: CExpr::Index(Box::new(c.expr), Box::new(i.expr)), ty: Some(Type::Dynamic) }
            }
            Expr::Star { .. } => return Err(self.err(e, "'*' is not allowed here")),
            Expr::Sub { pipeline, .. } => {
                let table = super::ops::run_pipeline(self.src, pipeline, self.env, self.catalog, self.options)?;
                let (v, ty) = first_cell(&table);
                Compiled { expr: CExpr::Const(v), ty }
            }
        })
    }

    fn compile_call(&self, e: &Expr, name: &str, args: &[Expr]) -> Result<Compiled, KqlError> {
        // User-defined functions are inlined: parameters bound to the argument expressions.
        if let Some(Binding::Function(def)) = self.env.get(name) {
            let (params, body) = &**def;
            if args.len() > params.len() {
                return Err(self.err(e, &format!("function '{name}' takes {} arguments, {} given", params.len(), args.len())));
            }
            let mut locals = self.locals.clone();
            for ((pname, _), arg) in params.iter().zip(args) {
                locals.insert(pname.clone(), self.compile(arg)?);
            }
            let mut env = self.env.clone();
            let mut last = None;
            for statement in body {
                match statement {
                    super::ast::Statement::Let { name, value } => {
                        let scope = Scope {
                            src: self.src,
                            schema: self.schema.clone(),
                            env: &env,
                            locals: locals.clone(),
                            catalog: self.catalog,
                            options: self.options,
                        };
                        if let super::ast::LetValue::Scalar(x) = value {
                            let c = scope.compile(x)?;
                            locals.insert(name.clone(), c);
                        } else {
                            super::ops::bind_let(self.src, &mut env, name, value, self.catalog, self.options)?;
                        }
                    }
                    super::ast::Statement::Scalar(x) => last = Some(x),
                    super::ast::Statement::Tabular(_) => {
                        return Err(self.err(e, &format!("function '{name}' is tabular; use it as a table")));
                    }
                }
            }
            let body = last.ok_or_else(|| self.err(e, &format!("function '{name}' has no result expression")))?;
            let scope = Scope {
                src: self.src,
                schema: self.schema.clone(),
                env: &env,
                locals,
                catalog: self.catalog,
                options: self.options,
            };
            return scope.compile(body);
        }
        let lower = name.to_ascii_lowercase();
        if lower == "typeof" {
            // `typeof(long)`: a type as an argument (extract's 4th), carried as its name.
            let [Expr::Name { name: t, .. }] = args else {
                return Err(self.err(e, "typeof() takes a type name"));
            };
            let ty = Type::parse(t).ok_or_else(|| self.err(e, &format!("unknown type '{t}'")))?;
            return Ok(Compiled { expr: CExpr::Const(Value::str(ty.name())), ty: Some(Type::String) });
        }
        if lower == "ingestion_time" {
            let index = self.schema.iter().position(|(n, _)| n == crate::logs::INGESTION_COLUMN);
            return Ok(Compiled { expr: index.map_or(CExpr::Const(Value::Null), CExpr::Col), ty: Some(Type::DateTime) });
        }
        if lower == "toscalar" {
            let [arg] = args else {
                return Err(self.err(e, "toscalar() takes one argument"));
            };
            return self.compile(arg);
        }
        if functions::is_aggregate(&lower) {
            return Err(self.err(e, &format!("aggregation function '{name}' is only allowed in summarize, make-series or as an argument of a tabular aggregation")));
        }
        let Some(func) = functions::lookup(&lower) else {
            return Err(self.err(e, &format!("Failed to resolve function '{name}'")));
        };
        let (min, max) = functions::arity(func);
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.err(e, &format!("function '{name}' expects {expected} arguments, {} given", args.len())));
        }
        let compiled: Vec<Compiled> = args.iter().map(|a| self.compile(a)).collect::<Result<_, _>>()?;
        let types: Vec<Option<Type>> = compiled.iter().map(|c| c.ty).collect();
        let mut ty = functions::return_type(func, &types);
        if func == functions::Func::ExtractRegex
            && args.len() == 4
            && let Expr::Call { args: targs, .. } = &args[3]
            && let [Expr::Name { name: t, .. }] = targs.as_slice()
        {
            ty = Type::parse(t).or(ty);
        }
        let mut exprs: Vec<CExpr> = compiled.into_iter().map(|c| c.expr).collect();
        // Fold calls whose arguments are all constants (now(), ago(1h), datetime math).
        if exprs.iter().all(|a| matches!(a, CExpr::Const(_))) {
            let values: Vec<Value> =
                exprs.iter().map(|a| if let CExpr::Const(v) = a { v.clone() } else { Value::Null }).collect();
            let v = functions::call(func, &values, self.options.now);
            return Ok(Compiled { expr: CExpr::Const(v), ty });
        }
        if func == functions::Func::ExtractRegex || func == functions::Func::ReplaceRegex {
            // Validate a constant pattern now, so the error has a position.
            if let Some(CExpr::Const(Value::String(p))) = exprs.first() {
                regex::Regex::new(p).map_err(|err| self.err(&args[0], &format!("invalid regular expression: {err}")))?;
            }
        }
        exprs.shrink_to_fit();
        Ok(Compiled { expr: CExpr::Call(func, exprs), ty })
    }
}

/// The first cell of a table and its column type (`toscalar`).
pub fn first_cell(table: &Table) -> (Value, Option<Type>) {
    match table.columns.first() {
        Some(c) => (c.values.first().cloned().unwrap_or(Value::Null), Some(c.ty)),
        None => (Value::Null, None),
    }
}

fn binary_type(op: BinOp, l: Option<Type>, r: Option<Type>) -> Option<Type> {
    use Type::*;
    match op {
        BinOp::Eq
        | BinOp::Ne
        | BinOp::Lt
        | BinOp::Le
        | BinOp::Gt
        | BinOp::Ge
        | BinOp::EqCi
        | BinOp::NeCi
        | BinOp::And
        | BinOp::Or
        | BinOp::Str(..) => Some(Bool),
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => match (l?, r?) {
            (DateTime, DateTime) if op == BinOp::Sub => Some(TimeSpan),
            (DateTime, TimeSpan) | (TimeSpan, DateTime) => Some(DateTime),
            (TimeSpan, TimeSpan) if op == BinOp::Div => Some(Real),
            (TimeSpan, _) | (_, TimeSpan) => Some(TimeSpan),
            (Real, _) | (_, Real) => Some(Real),
            (Decimal, _) | (_, Decimal) => Some(Decimal),
            (Long, _) | (_, Long) => Some(Long),
            (Int, Int) => Some(Int),
            (Dynamic, _) | (_, Dynamic) => Some(Dynamic),
            _ => None,
        },
    }
}

/// A JSON value as a KQL value (numbers keep their integer-ness).
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Long(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s.as_str().into()),
        other => Value::Dynamic(Arc::new(other.clone())),
    }
}

/// A KQL value as JSON (for dynamic results).
pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => (*i).into(),
        Value::Long(i) => (*i).into(),
        Value::Real(f) | Value::Decimal(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        Value::Dynamic(j) => (**j).clone(),
        other => serde_json::Value::String(to_display(other)),
    }
}

/// Evaluate a compiled expression on one row.
pub fn eval(c: &CExpr, table: &Table, row: usize, now: i64) -> Value {
    eval_ref(c, table, row, now).into_owned()
}

/// Evaluate without copying what can be borrowed (column cells and constants): the hot path
/// of `where` and `summarize`.
pub fn eval_ref<'a>(c: &'a CExpr, table: &'a Table, row: usize, now: i64) -> Cow<'a, Value> {
    match c {
        CExpr::Const(v) => Cow::Borrowed(v),
        CExpr::Col(i) => Cow::Borrowed(&table.columns[*i].values[row]),
        CExpr::Call(f, args) => {
            // `bin(x, step)` is by far the most common call; skip the argument vector.
            if let (functions::Func::Bin, [x, step]) = (f, args.as_slice()) {
                return Cow::Owned(functions::bin(&eval_ref(x, table, row, now), &eval_ref(step, table, row, now)));
            }
            let values: Vec<Value> = args.iter().map(|a| eval(a, table, row, now)).collect();
            Cow::Owned(functions::call(*f, &values, now))
        }
        CExpr::Bin(op, l, r) => {
            let lv = eval_ref(l, table, row, now);
            // Short-circuit the logical operators (three-valued).
            match op {
                BinOp::And if *lv == Value::Bool(false) => return Cow::Owned(Value::Bool(false)),
                BinOp::Or if *lv == Value::Bool(true) => return Cow::Owned(Value::Bool(true)),
                _ => {}
            }
            let rv = eval_ref(r, table, row, now);
            Cow::Owned(binary(*op, &lv, &rv))
        }
        CExpr::Neg(e) => Cow::Owned(match &*eval_ref(e, table, row, now) {
            Value::Int(i) => Value::Int(-i),
            Value::Long(i) => Value::Long(-i),
            Value::Real(f) => Value::Real(-f),
            Value::Decimal(f) => Value::Decimal(-f),
            Value::TimeSpan(t) => Value::TimeSpan(-t),
            _ => Value::Null,
        }),
        CExpr::In { e, set, negated, ci, any_of } => {
            let v = eval_ref(e, table, row, now);
            if v.is_null() && any_of.is_none() {
                return Cow::Owned(Value::Bool(*negated));
            }
            if any_of == &Some(StrOp::HasCs) {
                // has_all
                let all = set.iter().all(|item| str_op(StrOp::Has, &v, &eval_ref(item, table, row, now)));
                return Cow::Owned(Value::Bool(all != *negated));
            }
            let found = set.iter().any(|item| {
                let item = eval_ref(item, table, row, now);
                match any_of {
                    Some(_) => str_op(StrOp::Has, &v, &item),
                    None if *ci => match (v.as_text(), item.as_text()) {
                        (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
                        _ => false,
                    },
                    None => values_equal(&v, &item),
                }
            });
            Cow::Owned(Value::Bool(found != *negated))
        }
        CExpr::Between { e, lo, hi, negated } => {
            let v = eval_ref(e, table, row, now);
            let lo = eval_ref(lo, table, row, now);
            let mut hi = eval_ref(hi, table, row, now);
            if let (Value::DateTime(l), Value::TimeSpan(t)) = (&*lo, &*hi) {
                hi = Cow::Owned(Value::DateTime(l + t));
            }
            if v.is_null() || lo.is_null() || hi.is_null() {
                return Cow::Owned(Value::Null);
            }
            let inside = compare(&v, &lo).is_some_and(|o| o.is_ge()) && compare(&v, &hi).is_some_and(|o| o.is_le());
            Cow::Owned(Value::Bool(inside != *negated))
        }
        CExpr::Member(e, name) => Cow::Owned(match &*eval_ref(e, table, row, now) {
            Value::Dynamic(j) => j.get(name).map_or(Value::Null, |v| Value::Dynamic(Arc::new(v.clone()))),
            _ => Value::Null,
        }),
        CExpr::Index(e, i) => {
            let base = eval_ref(e, table, row, now);
            let index = eval_ref(i, table, row, now);
            Cow::Owned(match (&*base, &*index) {
                (Value::Dynamic(j), Value::String(k)) => j.get(&**k).map_or(Value::Null, |v| Value::Dynamic(Arc::new(v.clone()))),
                (Value::Dynamic(j), idx) => match (j.as_array(), idx.as_i64()) {
                    (Some(a), Some(i)) => {
                        let i = if i < 0 { a.len() as i64 + i } else { i };
                        a.get(i as usize).map_or(Value::Null, |v| Value::Dynamic(Arc::new(v.clone())))
                    }
                    _ => Value::Null,
                },
                _ => Value::Null,
            })
        }
        CExpr::InStr { e, set, negated } => Cow::Owned(match &*eval_ref(e, table, row, now) {
            Value::String(s) => Value::Bool(set.iter().any(|x| **x == **s) != *negated),
            v if v.is_null() => Value::Bool(*negated),
            other => Value::Bool(set.iter().any(|x| values_equal(other, &Value::String(x.clone()))) != *negated),
        }),
        CExpr::Regex { e, re, negated } => Cow::Owned(match eval_ref(e, table, row, now).as_text() {
            Some(s) => Value::Bool(re.is_match(&s) != *negated),
            None => Value::Null,
        }),
    }
}

/// Unwrap a dynamic scalar into a plain value (numbers, strings, bools).
pub fn undyn(v: &Value) -> Value {
    match v {
        Value::Dynamic(j) => match &**j {
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => v.clone(),
            other => from_json(other),
        },
        other => other.clone(),
    }
}

/// Equality as `==` has it (numbers across types, strings exactly).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare(a, b) == Some(std::cmp::Ordering::Equal)
}

/// Ordering of two non-null values of comparable types.
pub fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if matches!(a, Value::Dynamic(_)) || matches!(b, Value::Dynamic(_)) {
        return compare_plain(&undyn(a), &undyn(b));
    }
    compare_plain(a, b)
}

fn compare_plain(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (&a, &b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::String(x), Value::String(y))
        | (Value::Guid(x), Value::Guid(y))
        | (Value::String(x), Value::Guid(y))
        | (Value::Guid(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::DateTime(x), Value::DateTime(y)) | (Value::TimeSpan(x), Value::TimeSpan(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Long(x), Value::Long(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Long(y)) => Some(i64::from(*x).cmp(y)),
        (Value::Long(x), Value::Int(y)) => Some(x.cmp(&i64::from(*y))),
        (Value::Dynamic(x), Value::Dynamic(y)) => (x == y).then_some(std::cmp::Ordering::Equal),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    }
}

/// A binary operator on two values.
pub fn binary(op: BinOp, l: &Value, r: &Value) -> Value {
    use std::cmp::Ordering::*;
    match op {
        BinOp::And | BinOp::Or => {
            let as_bool = |v: &Value| match undyn(v) {
                Value::Bool(b) => Some(b),
                _ => None,
            };
            match (as_bool(l), as_bool(r), op) {
                (Some(a), Some(b), BinOp::And) => Value::Bool(a && b),
                (Some(a), Some(b), _) => Value::Bool(a || b),
                (Some(false), None, BinOp::And) | (None, Some(false), BinOp::And) => Value::Bool(false),
                (Some(true), None, BinOp::Or) | (None, Some(true), BinOp::Or) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let Some(o) = compare(l, r) else {
                // Values of different kinds are unequal; nulls compare to nothing.
                if l.is_null() || r.is_null() {
                    return Value::Null;
                }
                return match op {
                    BinOp::Eq => Value::Bool(false),
                    BinOp::Ne => Value::Bool(true),
                    _ => Value::Null,
                };
            };
            Value::Bool(match op {
                BinOp::Eq => o == Equal,
                BinOp::Ne => o != Equal,
                BinOp::Lt => o == Less,
                BinOp::Le => o != Greater,
                BinOp::Gt => o == Greater,
                _ => o != Less,
            })
        }
        BinOp::EqCi | BinOp::NeCi => match (l.as_text(), r.as_text()) {
            (Some(a), Some(b)) => Value::Bool((a.to_lowercase() == b.to_lowercase()) == (op == BinOp::EqCi)),
            _ => Value::Null,
        },
        BinOp::Str(s, negated) => {
            if l.is_null() {
                // A null string is the empty string for string operators.
                return Value::Bool(str_op(s, &Value::str(""), r) != negated);
            }
            Value::Bool(str_op(s, l, r) != negated)
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => arithmetic(op, &undyn(l), &undyn(r)),
    }
}

fn arithmetic(op: BinOp, l: &Value, r: &Value) -> Value {
    use Value::*;
    match (l, r) {
        (Null, _) | (_, Null) => Null,
        (DateTime(a), DateTime(b)) if op == BinOp::Sub => TimeSpan(a - b),
        (DateTime(a), TimeSpan(b)) => match op {
            BinOp::Add => DateTime(a + b),
            BinOp::Sub => DateTime(a - b),
            _ => Null,
        },
        (TimeSpan(a), DateTime(b)) if op == BinOp::Add => DateTime(a + b),
        (TimeSpan(a), TimeSpan(b)) => match op {
            BinOp::Add => TimeSpan(a + b),
            BinOp::Sub => TimeSpan(a - b),
            BinOp::Div if *b != 0 => Real(*a as f64 / *b as f64),
            BinOp::Mod if *b != 0 => TimeSpan(a % b),
            _ => Null,
        },
        (TimeSpan(a), n) | (n, TimeSpan(a)) if n.as_f64().is_some() => {
            let x = n.as_f64().unwrap_or(0.0);
            match op {
                BinOp::Mul => TimeSpan((*a as f64 * x).round() as i64),
                BinOp::Div if matches!(l, TimeSpan(_)) && x != 0.0 => TimeSpan((*a as f64 / x).round() as i64),
                _ => Null,
            }
        }
        (Int(a), Int(b)) => int_op(op, i64::from(*a), i64::from(*b)).map_or(Null, |v| Int(v as i32)),
        (Int(_) | Long(_), Int(_) | Long(_)) => int_op(op, l.as_i64().unwrap_or(0), r.as_i64().unwrap_or(0)).map_or(Null, Long),
        _ => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) => {
                let v = match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    _ => a % b,
                };
                if matches!(l, Decimal(_)) || matches!(r, Decimal(_)) { Decimal(v) } else { Real(v) }
            }
            _ => Null,
        },
    }
}

fn int_op(op: BinOp, a: i64, b: i64) -> Option<i64> {
    match op {
        BinOp::Add => Some(a.wrapping_add(b)),
        BinOp::Sub => Some(a.wrapping_sub(b)),
        BinOp::Mul => Some(a.wrapping_mul(b)),
        BinOp::Div => (b != 0).then(|| a.wrapping_div(b)),
        _ => (b != 0).then(|| a.wrapping_rem(b)),
    }
}

fn is_term_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// `has`-family term search: `needle` must start (and, for `has`, end) on term boundaries.
fn find_term(hay: &str, needle: &str, need_start: bool, need_end: bool) -> bool {
    if needle.is_empty() {
        return true;
    }
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle) {
        let at = from + i;
        let end = at + needle.len();
        let start_ok =
            !need_start || hay[..at].chars().next_back().is_none_or(|c| !is_term_char(c)) || !needle.starts_with(is_term_char);
        let end_ok = !need_end || hay[end..].chars().next().is_none_or(|c| !is_term_char(c)) || !needle.ends_with(is_term_char);
        if start_ok && end_ok {
            return true;
        }
        from = at + hay[at..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// A string predicate.
pub fn str_op(op: StrOp, l: &Value, r: &Value) -> bool {
    let (Some(hay), Some(needle)) = (l.as_text(), r.as_text()) else {
        return false;
    };
    let ci = |s: &str| s.to_lowercase();
    match op {
        StrOp::Has => find_term(&ci(&hay), &ci(&needle), true, true),
        StrOp::HasCs => find_term(&hay, &needle, true, true),
        StrOp::HasPrefix => find_term(&ci(&hay), &ci(&needle), true, false),
        StrOp::HasSuffix => find_term(&ci(&hay), &ci(&needle), false, true),
        StrOp::Contains => ci(&hay).contains(&ci(&needle)),
        StrOp::ContainsCs => hay.contains(&*needle),
        StrOp::StartsWith => ci(&hay).starts_with(&ci(&needle)),
        StrOp::StartsWithCs => hay.starts_with(&*needle),
        StrOp::EndsWith => ci(&hay).ends_with(&ci(&needle)),
        StrOp::EndsWithCs => hay.ends_with(&*needle),
        StrOp::MatchesRegex => regex::Regex::new(&needle).is_ok_and(|re| re.is_match(&hay)),
    }
}

/// Whether a row passes a `where` predicate (is `true`), with fast paths for the usual shapes
/// — a string column compared with or `in` constants, joined by `and`/`or` — and the general
/// evaluator for the rest. Exact: a row is kept only when the predicate is `true`, which
/// distributes over `and`/`or` under KQL's three-valued logic.
pub fn row_is_true(c: &CExpr, table: &Table, row: usize, now: i64) -> bool {
    match c {
        CExpr::InStr { e, set, negated } => {
            if let CExpr::Col(i) = &**e
                && let Value::String(s) = &table.columns[*i].values[row]
            {
                return set.iter().any(|x| **x == **s) != *negated;
            }
        }
        CExpr::Bin(BinOp::And, l, r) => return row_is_true(l, table, row, now) && row_is_true(r, table, row, now),
        CExpr::Bin(BinOp::Or, l, r) => return row_is_true(l, table, row, now) || row_is_true(r, table, row, now),
        CExpr::Bin(BinOp::Eq, l, r) => {
            if let (CExpr::Col(i), CExpr::Const(Value::String(k))) | (CExpr::Const(Value::String(k)), CExpr::Col(i)) =
                (&**l, &**r)
                && let Value::String(s) = &table.columns[*i].values[row]
            {
                return **s == **k;
            }
        }
        _ => {}
    }
    matches!(*eval_ref(c, table, row, now), Value::Bool(true))
}
