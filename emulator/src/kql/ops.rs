//! Statements and tabular operators.

use std::collections::HashMap;
use std::sync::Arc;

use super::aggregate::{Acc, AggKind, Grouper, KeyPart};
use super::ast::*;
use super::eval::{Binding, CExpr, Compiled, Env, Scope, compare, eval, from_json, to_json};
use super::functions::convert_to;
use super::table::{Column, Table, Visualization};
use super::value::{TICKS_PER_DAY, Type, Value, format_datetime_iso};
use super::{Catalog, KqlError, Options};

/// Run the statements of a query; the last tabular statement is the result.
///
/// # Errors
/// Semantic and limit errors.
pub fn execute(src: &str, statements: &[Statement], catalog: &dyn Catalog, options: &Options) -> Result<Table, KqlError> {
    let mut env = Env::new();
    let mut result = None;
    for statement in statements {
        check_deadline(options)?;
        match statement {
            Statement::Let { name, value } => bind_let(src, &mut env, name, value, catalog, options)?,
            Statement::Tabular(p) => result = Some(run_pipeline(src, p, &env, catalog, options)?),
            Statement::Scalar(e) => result = Some(scalar_as_table(src, e, &env, catalog, options)?),
        }
    }
    result.ok_or_else(|| KqlError::semantic(src, 0, "the query has no tabular expression to return (only 'let' statements)"))
}

fn check_deadline(options: &Options) -> Result<(), KqlError> {
    if options.deadline.is_some_and(|d| std::time::Instant::now() > d) {
        return Err(KqlError::limit("the query ran past its time limit"));
    }
    Ok(())
}

/// A statement that parsed as a scalar but names a table (`T`, `f()`).
fn scalar_as_table(src: &str, e: &Expr, env: &Env, catalog: &dyn Catalog, options: &Options) -> Result<Table, KqlError> {
    let source = match e {
        Expr::Name { name, span } => Source::Name(name.clone(), *span),
        Expr::Call { name, args, span } => Source::Call(name.clone(), args.clone(), *span),
        other => {
            return Err(KqlError::semantic(
                src,
                other.span().start,
                "a query must end with a tabular expression (a table, or 'print' for scalars)",
            ));
        }
    };
    run_pipeline(src, &Pipeline { source, ops: Vec::new() }, env, catalog, options)
}

/// Bind a `let`.
///
/// # Errors
/// Errors of the bound expression.
pub fn bind_let(
    src: &str,
    env: &mut Env,
    name: &str,
    value: &LetValue,
    catalog: &dyn Catalog,
    options: &Options,
) -> Result<(), KqlError> {
    let binding = match value {
        LetValue::Function { params, body } => Binding::Function(Arc::new((params.clone(), body.clone()))),
        LetValue::Tabular(p) => Binding::Tabular(Arc::new(run_pipeline(src, p, env, catalog, options)?)),
        LetValue::Scalar(e) => {
            let is_table = match e {
                Expr::Name { name, .. } => {
                    matches!(env.get(name), Some(Binding::Tabular(_)))
                        || (catalog.table(name).is_some() && !env.contains_key(name))
                }
                Expr::Call { name, .. } => {
                    matches!(env.get(name), Some(Binding::Function(def)) if def.1.iter().any(|s| matches!(s, Statement::Tabular(_))))
                }
                _ => false,
            };
            if is_table {
                Binding::Tabular(Arc::new(scalar_as_table(src, e, env, catalog, options)?))
            } else {
                let scope = scope(src, &Table::default(), env, catalog, options);
                let c = scope.compile(e)?;
                let v = eval(&c.expr, &Table { rows: 1, ..Table::default() }, 0, options.now);
                Binding::Scalar(v, c.ty)
            }
        }
    };
    env.insert(name.to_string(), binding);
    Ok(())
}

fn scope<'a>(src: &'a str, table: &Table, env: &'a Env, catalog: &'a dyn Catalog, options: &'a Options) -> Scope<'a> {
    Scope {
        src,
        schema: table.columns.iter().map(|c| (c.name.clone(), c.ty)).collect(),
        env,
        locals: HashMap::new(),
        catalog,
        options,
    }
}

/// Run a source and its operators.
///
/// # Errors
/// Semantic and limit errors.
pub fn run_pipeline(src: &str, p: &Pipeline, env: &Env, catalog: &dyn Catalog, options: &Options) -> Result<Table, KqlError> {
    let mut table = source(src, &p.source, env, catalog, options)?;
    let mut i = 0;
    while i < p.ops.len() {
        check_deadline(options)?;
        // `where` then `summarize`: aggregate the kept rows in place instead of copying them.
        if let (Op::Where(predicate), Some((Op::Summarize { aggs, by }, _))) = (&p.ops[i].0, p.ops.get(i + 1)) {
            let c = scope(src, &table, env, catalog, options).compile(predicate)?;
            let keep = parallel_rows(table.rows, |r| super::eval::row_is_true(&c.expr, &table, r, options.now));
            table = summarize(src, &table, aggs, by, env, catalog, options, Some(&keep))?;
            i += 2;
            continue;
        }
        let (op, span) = &p.ops[i];
        table = apply(src, op, *span, table, env, catalog, options)?;
        i += 1;
    }
    Ok(table)
}

fn source(src: &str, s: &Source, env: &Env, catalog: &dyn Catalog, options: &Options) -> Result<Table, KqlError> {
    match s {
        Source::Name(name, span) => match env.get(name) {
            Some(Binding::Tabular(t)) => Ok((**t).clone()),
            Some(Binding::Scalar(..)) => Err(KqlError::semantic(src, span.start, &format!("'{name}' is a scalar, not a table"))),
            Some(Binding::Function(_)) => call_tabular(src, name, &[], *span, env, catalog, options),
            None => catalog.table(name).map(|t| (*t).clone()).ok_or_else(|| {
                KqlError::semantic(src, span.start, &format!("Failed to resolve table or column expression named '{name}'"))
            }),
        },
        Source::Call(name, args, span) => call_tabular(src, name, args, *span, env, catalog, options),
        Source::Datatable { columns, values, span } => {
            let sc = scope(src, &Table::default(), env, catalog, options);
            let one = Table { rows: 1, ..Table::default() };
            let mut cols: Vec<Column> =
                columns.iter().map(|(n, t)| Column { name: n.clone(), ty: *t, values: Arc::new(Vec::new()) }).collect();
            for (i, e) in values.iter().enumerate() {
                let c = sc.compile(e)?;
                let v = eval(&c.expr, &one, 0, options.now);
                let col = &mut cols[i % columns.len()];
                let converted = convert_to(&v, col.ty);
                if !v.is_null() && converted.is_null() {
                    return Err(KqlError::semantic(
                        src,
                        e.span().start,
                        &format!("datatable: value does not fit column '{}' of type {}", col.name, col.ty.name()),
                    ));
                }
                Arc::make_mut(&mut col.values).push(converted);
            }
            let _ = span;
            Ok(Table::new(cols))
        }
        Source::Range { column, from, to, step } => {
            let sc = scope(src, &Table::default(), env, catalog, options);
            let one = Table { rows: 1, ..Table::default() };
            let value = |e: &Expr| -> Result<(Value, Option<Type>), KqlError> {
                let c = sc.compile(e)?;
                Ok((eval(&c.expr, &one, 0, options.now), c.ty))
            };
            let (from_v, ty) = value(from)?;
            let (to_v, _) = value(to)?;
            let (step_v, _) = value(step)?;
            let mut values = Vec::new();
            let limit = 100_000_000usize;
            match (&from_v, &to_v, &step_v) {
                (Value::DateTime(a), Value::DateTime(b), Value::TimeSpan(s))
                | (Value::TimeSpan(a), Value::TimeSpan(b), Value::TimeSpan(s))
                    if *s != 0 =>
                {
                    let mut x = *a;
                    while (*s > 0 && x <= *b) || (*s < 0 && x >= *b) {
                        values.push(if matches!(from_v, Value::DateTime(_)) { Value::DateTime(x) } else { Value::TimeSpan(x) });
                        x += s;
                        if values.len() > limit {
                            return Err(KqlError::limit("range produces too many rows"));
                        }
                    }
                }
                _ => match (from_v.as_i64(), to_v.as_i64(), step_v.as_i64()) {
                    (Some(a), Some(b), Some(s)) if s != 0 => {
                        let mut x = a;
                        while (s > 0 && x <= b) || (s < 0 && x >= b) {
                            values.push(Value::Long(x));
                            x += s;
                            if values.len() > limit {
                                return Err(KqlError::limit("range produces too many rows"));
                            }
                        }
                    }
                    _ => match (from_v.as_f64(), to_v.as_f64(), step_v.as_f64()) {
                        (Some(a), Some(b), Some(s)) if s != 0.0 => {
                            let mut i = 0.0;
                            loop {
                                let x = a + i * s;
                                if (s > 0.0 && x > b + 1e-12) || (s < 0.0 && x < b - 1e-12) {
                                    break;
                                }
                                values.push(Value::Real(x));
                                i += 1.0;
                            }
                        }
                        _ => {
                            return Err(KqlError::semantic(
                                src,
                                from.span().start,
                                "range needs numbers, datetimes or timespans and a non-zero step",
                            ));
                        }
                    },
                },
            }
            let ty = values.first().and_then(Value::ty).or(ty).unwrap_or(Type::Long);
            Ok(Table::new(vec![Column::new(column.clone(), ty, values)]))
        }
        Source::Print(items) => {
            let base = Table { rows: 1, ..Table::default() };
            let mut out = Table { rows: 1, ..Table::default() };
            let sc = scope(src, &base, env, catalog, options);
            for (i, item) in items.iter().enumerate() {
                let c = sc.compile(&item.expr)?;
                let v = eval(&c.expr, &base, 0, options.now);
                let name = item.names.first().cloned().unwrap_or_else(|| format!("print_{i}"));
                let ty = v.ty().or(c.ty).unwrap_or(Type::String);
                out.columns.push(Column::new(name, ty, vec![v]));
            }
            Ok(out)
        }
        Source::Union { tables, inner } => {
            let parts: Vec<Table> =
                tables.iter().map(|t| run_pipeline(src, t, env, catalog, options)).collect::<Result<_, _>>()?;
            Ok(union(parts, *inner))
        }
        Source::Nested(p) => run_pipeline(src, p, env, catalog, options),
    }
}

fn call_tabular(
    src: &str,
    name: &str,
    args: &[Expr],
    span: Span,
    env: &Env,
    catalog: &dyn Catalog,
    options: &Options,
) -> Result<Table, KqlError> {
    let Some(Binding::Function(def)) = env.get(name) else {
        return Err(KqlError::semantic(src, span.start, &format!("Failed to resolve tabular function '{name}'")));
    };
    let (params, body) = &**def;
    if args.len() > params.len() {
        return Err(KqlError::semantic(
            src,
            span.start,
            &format!("function '{name}' takes {} arguments, {} given", params.len(), args.len()),
        ));
    }
    let mut inner = env.clone();
    for ((pname, ty), arg) in params.iter().zip(args) {
        if ty.is_none() {
            let t = match arg {
                Expr::Name { name: tname, .. } => {
                    scalar_as_table(src, &Expr::Name { name: tname.clone(), span: arg.span() }, env, catalog, options)?
                }
                Expr::Sub { pipeline, .. } => run_pipeline(src, pipeline, env, catalog, options)?,
                other => {
                    return Err(KqlError::semantic(src, other.span().start, "a tabular parameter needs a table"));
                }
            };
            inner.insert(pname.clone(), Binding::Tabular(Arc::new(t)));
        } else {
            let sc = scope(src, &Table::default(), env, catalog, options);
            let c = sc.compile(arg)?;
            let v = eval(&c.expr, &Table { rows: 1, ..Table::default() }, 0, options.now);
            inner.insert(pname.clone(), Binding::Scalar(v, *ty));
        }
    }
    execute_body(src, body, inner, catalog, options)
        .map_err(|e| if e.line == 0 { KqlError::semantic(src, span.start, &e.message) } else { e })
}

fn execute_body(
    src: &str,
    body: &[Statement],
    mut env: Env,
    catalog: &dyn Catalog,
    options: &Options,
) -> Result<Table, KqlError> {
    let mut result = None;
    for statement in body {
        match statement {
            Statement::Let { name, value } => bind_let(src, &mut env, name, value, catalog, options)?,
            Statement::Tabular(p) => result = Some(run_pipeline(src, p, &env, catalog, options)?),
            Statement::Scalar(e) => result = Some(scalar_as_table(src, e, &env, catalog, options)?),
        }
    }
    result.ok_or_else(|| KqlError::semantic(src, 0, "the function body has no tabular result"))
}

/// The name KQL gives an unnamed expression.
fn derived_name(e: &Expr, counter: &mut usize) -> String {
    match e {
        Expr::Name { name, .. } => name.clone(),
        Expr::Call { name, args, .. }
            if matches!(
                name.to_ascii_lowercase().as_str(),
                "bin" | "floor" | "bin_at" | "startofday" | "startofhour" | "startofweek" | "startofmonth"
            ) =>
        {
            match args.first() {
                Some(Expr::Name { name, .. }) => name.clone(),
                _ => next_column(counter),
            }
        }
        Expr::Member { e, name, .. } => match &**e {
            Expr::Name { name: base, .. } => format!("{base}_{name}"),
            _ => next_column(counter),
        },
        Expr::Index { e, index, .. } => match (&**e, &**index) {
            (Expr::Name { name: base, .. }, Expr::Lit { value: Value::String(k), .. }) => format!("{base}_{k}"),
            _ => next_column(counter),
        },
        _ => next_column(counter),
    }
}

fn next_column(counter: &mut usize) -> String {
    *counter += 1;
    format!("Column{counter}")
}

/// Evaluate a compiled expression over every row, and settle its column type.
fn column_of(c: &Compiled, table: &Table, name: String, options: &Options) -> Column {
    let values: Vec<Value> = (0..table.rows).map(|r| eval(&c.expr, table, r, options.now)).collect();
    settle(name, c.ty, values)
}

/// One type for a column: the values' own when they agree (numbers widen to real).
pub fn settle(name: String, hint: Option<Type>, mut values: Vec<Value>) -> Column {
    let mut seen: Option<Type> = None;
    let mut mixed = false;
    for t in values.iter().filter_map(Value::ty) {
        match seen {
            None => seen = Some(t),
            Some(s) if s == t => {}
            Some(_) => {
                mixed = true;
                break;
            }
        }
    }
    let ty = if mixed {
        let all_numeric = values.iter().filter_map(Value::ty).all(Type::is_numeric);
        let target = if all_numeric {
            if values.iter().any(|v| matches!(v, Value::Real(_) | Value::Decimal(_))) { Type::Real } else { Type::Long }
        } else {
            Type::Dynamic
        };
        for v in &mut values {
            *v = convert_to(v, target);
        }
        target
    } else {
        match (seen, hint) {
            (Some(Type::Int), Some(Type::Long)) => Type::Long,
            (Some(t), _) => t,
            (None, Some(h)) => h,
            (None, None) => Type::String,
        }
    };
    Column::new(name, ty, values)
}

fn matches_pattern(name: &str, pattern: &str) -> bool {
    if !pattern.contains('*') {
        return name == pattern;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(at) = rest.find(part) {
            rest = &rest[at + part.len()..];
        } else {
            return false;
        }
    }
    true
}

#[allow(clippy::too_many_arguments)]
fn apply(
    src: &str,
    op: &Op,
    span: Span,
    mut table: Table,
    env: &Env,
    catalog: &dyn Catalog,
    options: &Options,
) -> Result<Table, KqlError> {
    let at = |message: &str| KqlError::semantic(src, span.start, message);
    match op {
        Op::Where(e) => {
            let c = scope(src, &table, env, catalog, options).compile(e)?;
            if let CExpr::Const(v) = &c.expr {
                return Ok(if *v == Value::Bool(true) { table } else { table.take_rows(&[]) });
            }
            let keep = parallel_rows(table.rows, |r| super::eval::row_is_true(&c.expr, &table, r, options.now));
            Ok(table.take_rows(&keep))
        }
        Op::Project(items) => {
            let sc = scope(src, &table, env, catalog, options);
            let mut counter = 0;
            let mut out = Table { rows: table.rows, visualization: table.visualization.clone(), ..Table::default() };
            for item in items {
                let name = item.names.first().cloned().unwrap_or_else(|| derived_name(&item.expr, &mut counter));
                if out.index_of(&name).is_some() {
                    return Err(KqlError::semantic(
                        src,
                        item.expr.span().start,
                        &format!("project: the column '{name}' is named twice"),
                    ));
                }
                if let (Expr::Name { name: src_name, .. }, true) = (&item.expr, item.names.len() <= 1)
                    && let Some(i) = table.index_of(src_name)
                {
                    let mut col = table.columns[i].clone();
                    col.name = name;
                    out.columns.push(col);
                    continue;
                }
                let c = sc.compile(&item.expr)?;
                out.columns.push(column_of(&c, &table, name, options));
            }
            Ok(out)
        }
        Op::Extend(items) | Op::Serialize(items) => {
            let mut counter = 0;
            for item in items {
                let c = scope(src, &table, env, catalog, options).compile(&item.expr)?;
                let name = item.names.first().cloned().unwrap_or_else(|| derived_name(&item.expr, &mut counter));
                let name = if matches!(item.expr, Expr::Name { .. }) && item.names.is_empty() {
                    next_column(&mut counter)
                } else {
                    name
                };
                let col = column_of(&c, &table, name.clone(), options);
                match table.index_of(&name) {
                    Some(i) => table.columns[i] = col,
                    None => table.columns.push(col),
                }
            }
            Ok(table)
        }
        Op::ProjectAway(patterns) | Op::ProjectKeep(patterns) => {
            for p in patterns {
                if !p.contains('*') && table.index_of(p).is_none() {
                    return Err(at(&format!("Failed to resolve column '{p}'")));
                }
            }
            let keep = matches!(op, Op::ProjectKeep(_));
            table.columns.retain(|c| patterns.iter().any(|p| matches_pattern(&c.name, p)) == keep);
            Ok(table)
        }
        Op::ProjectRename(pairs) => {
            for (new, old) in pairs {
                let i = table.index_of(old).ok_or_else(|| at(&format!("Failed to resolve column '{old}'")))?;
                table.columns[i].name = new.clone();
            }
            Ok(table)
        }
        Op::ProjectReorder(patterns) => {
            let mut first = Vec::new();
            for p in patterns {
                let mut matched = false;
                for c in &table.columns {
                    if matches_pattern(&c.name, p) && !first.iter().any(|f: &Column| f.name == c.name) {
                        first.push(c.clone());
                        matched = true;
                    }
                }
                if !matched && !p.contains('*') {
                    return Err(at(&format!("Failed to resolve column '{p}'")));
                }
            }
            let rest: Vec<Column> = table.columns.iter().filter(|c| !first.iter().any(|f| f.name == c.name)).cloned().collect();
            first.extend(rest);
            table.columns = first;
            Ok(table)
        }
        Op::Summarize { aggs, by } => summarize(src, &table, aggs, by, env, catalog, options, None),
        Op::Count => Ok(Table::new(vec![Column {
            name: "Count".into(),
            ty: Type::Long,
            values: Arc::new(vec![Value::Long(table.rows as i64)]),
        }])),
        Op::Take(n) => {
            let n = constant_count(src, n, env, catalog, options)?;
            let keep: Vec<usize> = (0..table.rows.min(n)).collect();
            Ok(table.take_rows(&keep))
        }
        Op::Top { n, key } => {
            let n = constant_count(src, n, env, catalog, options)?;
            let mut sorted = sort(src, &table, std::slice::from_ref(key), env, catalog, options)?;
            sorted.truncate(n);
            Ok(table.take_rows(&sorted))
        }
        Op::Sort(keys) => {
            let order = sort(src, &table, keys, env, catalog, options)?;
            Ok(table.take_rows(&order))
        }
        Op::Distinct(items) => {
            let projected = if matches!(items.as_slice(), [NamedExpr { expr: Expr::Star { .. }, .. }]) {
                table
            } else {
                apply(src, &Op::Project(items.clone()), span, table, env, catalog, options)?
            };
            let mut seen = std::collections::HashSet::new();
            let keep: Vec<usize> = (0..projected.rows)
                .filter(|&r| seen.insert(projected.columns.iter().map(|c| KeyPart::of(&c.values[r])).collect::<Vec<_>>()))
                .collect();
            Ok(projected.take_rows(&keep))
        }
        Op::Join { kind, right, on } => {
            let right = run_pipeline(src, right, env, catalog, options)?;
            join(src, span, table, right, *kind, on)
        }
        Op::Union { tables, inner } => {
            let mut parts = vec![table];
            for t in tables {
                parts.push(run_pipeline(src, t, env, catalog, options)?);
            }
            Ok(union(parts, *inner))
        }
        Op::MvExpand { columns, limit } => mv_expand(src, table, columns, *limit, env, catalog, options),
        Op::MakeSeries { aggs, on, from, to, step, by } => {
            make_series(src, span, &table, aggs, on, from.as_ref(), to.as_ref(), step, by, env, catalog, options)
        }
        Op::Parse { expr, pattern } => parse_columns(src, table, expr, pattern, env, catalog, options),
        Op::Render { visualization, properties } => {
            table.visualization = Some(Visualization { kind: visualization.clone(), properties: properties.clone() });
            Ok(table)
        }
        Op::Getschema => {
            table.columns.retain(|c| !c.name.starts_with('$'));
            let n = table.columns.len();
            Ok(Table::new(vec![
                Column {
                    name: "ColumnName".into(),
                    ty: Type::String,
                    values: Arc::new(table.columns.iter().map(|c| Value::str(&c.name)).collect()),
                },
                Column {
                    name: "ColumnOrdinal".into(),
                    ty: Type::Int,
                    values: Arc::new((0..n).map(|i| Value::Int(i as i32)).collect()),
                },
                Column {
                    name: "DataType".into(),
                    ty: Type::String,
                    values: Arc::new(table.columns.iter().map(|c| Value::str(dotnet_type(c.ty))).collect()),
                },
                Column {
                    name: "ColumnType".into(),
                    ty: Type::String,
                    values: Arc::new(table.columns.iter().map(|c| Value::str(c.ty.name())).collect()),
                },
            ]))
        }
    }
}

/// One chunk's groups and their accumulators.
type Partial = (Grouper, Vec<Vec<Acc>>);

/// A null to point at.
static NULL_VALUE: Value = Value::Null;

/// The rows for which `keep` holds, in order; large tables are scanned on several threads.
fn parallel_rows(rows: usize, keep: impl Fn(usize) -> bool + Sync) -> Vec<usize> {
    let threads = if rows >= 200_000 { std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4) } else { 1 };
    if threads == 1 {
        return (0..rows).filter(|&r| keep(r)).collect();
    }
    let chunk = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let keep = &keep;
                scope.spawn(move || (t * chunk..((t + 1) * chunk).min(rows)).filter(|&r| keep(r)).collect::<Vec<usize>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

fn dotnet_type(t: Type) -> &'static str {
    match t {
        Type::Bool => "System.SByte",
        Type::Int => "System.Int32",
        Type::Long => "System.Int64",
        Type::Real => "System.Double",
        Type::Decimal => "System.Data.SqlTypes.SqlDecimal",
        Type::String => "System.String",
        Type::DateTime => "System.DateTime",
        Type::TimeSpan => "System.TimeSpan",
        Type::Guid => "System.Guid",
        Type::Dynamic => "System.Object",
    }
}

fn constant_count(src: &str, e: &Expr, env: &Env, catalog: &dyn Catalog, options: &Options) -> Result<usize, KqlError> {
    let c = scope(src, &Table::default(), env, catalog, options).compile(e)?;
    let v = eval(&c.expr, &Table { rows: 1, ..Table::default() }, 0, options.now);
    v.as_i64()
        .filter(|n| *n >= 0)
        .map(|n| n as usize)
        .ok_or_else(|| KqlError::semantic(src, e.span().start, "expected a non-negative row count"))
}

fn sort(
    src: &str,
    table: &Table,
    keys: &[SortKey],
    env: &Env,
    catalog: &dyn Catalog,
    options: &Options,
) -> Result<Vec<usize>, KqlError> {
    let sc = scope(src, table, env, catalog, options);
    let mut columns = Vec::new();
    for k in keys {
        let c = sc.compile(&k.expr)?;
        let values: Vec<Value> = (0..table.rows).map(|r| eval(&c.expr, table, r, options.now)).collect();
        columns.push((values, k.desc, k.nulls_first.unwrap_or(!k.desc)));
    }
    let mut order: Vec<usize> = (0..table.rows).collect();
    order.sort_by(|&a, &b| {
        for (values, desc, nulls_first) in &columns {
            let (x, y) = (&values[a], &values[b]);
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => {
                    if *nulls_first {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    }
                }
                (false, true) => {
                    if *nulls_first {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Less
                    }
                }
                (false, false) => {
                    let o = compare(x, y).unwrap_or_else(|| x.cmp_total(y));
                    if *desc { o.reverse() } else { o }
                }
            };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(order)
}

/// Union by column name; missing columns are null. `inner` keeps only common columns.
pub fn union(parts: Vec<Table>, inner: bool) -> Table {
    let mut names: Vec<(String, Type)> = Vec::new();
    for t in &parts {
        for c in &t.columns {
            if !names.iter().any(|(n, _)| *n == c.name) {
                names.push((c.name.clone(), c.ty));
            }
        }
    }
    if inner {
        names.retain(|(n, _)| parts.iter().all(|t| t.index_of(n).is_some()));
    }
    let rows: usize = parts.iter().map(|t| t.rows).sum();
    let mut columns: Vec<Column> =
        names.iter().map(|(n, t)| Column { name: n.clone(), ty: *t, values: Arc::new(Vec::with_capacity(rows)) }).collect();
    for t in &parts {
        for col in &mut columns {
            match t.index_of(&col.name) {
                Some(i) => Arc::make_mut(&mut col.values).extend(t.columns[i].values.iter().cloned()),
                None => Arc::make_mut(&mut col.values).extend(std::iter::repeat_n(Value::Null, t.rows)),
            }
        }
    }
    let columns = columns.into_iter().map(|c| settle(c.name, Some(c.ty), Arc::unwrap_or_clone(c.values))).collect();
    Table { columns, rows, visualization: None }
}

/// An aggregation found inside a `summarize` expression.
struct AggCall {
    kind: AggKind,
    args: Vec<CExpr>,
    arg_type: Option<Type>,
    /// Extra output columns (arg_max/arg_min/take_any beyond the first).
    extra: Vec<(String, Option<Type>)>,
    /// For `*`-expanded arg_max: indices of the columns that follow the first.
    name: String,
    names: Vec<String>,
}

/// Replace aggregate calls in `e` by placeholder names `__aggN`, collecting them.
#[allow(clippy::too_many_arguments)]
fn extract_aggs(
    src: &str,
    e: &Expr,
    sc: &Scope<'_>,
    table: &Table,
    by_names: &[String],
    found: &mut Vec<AggCall>,
    top_names: &[String],
    top: bool,
) -> Result<Expr, KqlError> {
    Ok(match e {
        Expr::Call { name, args, span } if super::functions::is_aggregate(&name.to_ascii_lowercase()) => {
            let lower = name.to_ascii_lowercase();
            let mut kind = AggKind::parse(&lower)
                .ok_or_else(|| KqlError::semantic(src, span.start, &format!("unknown aggregation '{name}'")))?;
            let mut compiled = Vec::new();
            let mut arg_type = None;
            let mut extra = Vec::new();
            let mut names = Vec::new();
            let first_name = match args.first() {
                Some(Expr::Name { name, .. }) => Some(name.clone()),
                _ => None,
            };
            match &mut kind {
                AggKind::Percentiles(ps) => {
                    let [value, rest @ ..] = args.as_slice() else {
                        return Err(KqlError::semantic(src, span.start, "percentile needs a value and a percentage"));
                    };
                    if rest.is_empty() {
                        return Err(KqlError::semantic(src, span.start, "percentile needs a percentage"));
                    }
                    for p in rest {
                        let c = sc.compile(p)?;
                        match c.expr {
                            CExpr::Const(v) if v.as_f64().is_some() => ps.push(v.as_f64().unwrap_or(50.0)),
                            _ => {
                                return Err(KqlError::semantic(src, p.span().start, "a percentage must be a constant number"));
                            }
                        }
                    }
                    let c = sc.compile(value)?;
                    arg_type = c.ty;
                    compiled.push(c.expr);
                    let base = first_name.clone().unwrap_or_default();
                    for p in ps.iter() {
                        names.push(format!("percentile_{base}_{}", super::value::format_real(*p).replace('.', "_")));
                    }
                }
                AggKind::ArgMax | AggKind::ArgMin | AggKind::Any => {
                    for (i, a) in args.iter().enumerate() {
                        if let Expr::Star { .. } = a {
                            for (ci, col) in table.columns.iter().enumerate() {
                                let taken = by_names.contains(&col.name)
                                    || (kind != AggKind::Any && first_name.as_deref() == Some(&col.name));
                                if !taken {
                                    compiled.push(CExpr::Col(ci));
                                    if i > 0 || kind == AggKind::Any {
                                        extra.push((col.name.clone(), Some(col.ty)));
                                    }
                                }
                            }
                            continue;
                        }
                        let c = sc.compile(a)?;
                        if i == 0 {
                            arg_type = c.ty;
                        } else {
                            let n = match a {
                                Expr::Name { name, .. } => name.clone(),
                                _ => format!("{}_arg{i}", kind.prefix(&lower)),
                            };
                            extra.push((n, c.ty));
                        }
                        compiled.push(c.expr);
                    }
                    if kind == AggKind::Any && matches!(args.first(), Some(Expr::Star { .. })) {
                        // take_any(*): every column, named as itself.
                        let first = extra.remove(0);
                        arg_type = first.1;
                        names.push(first.0);
                    } else if kind == AggKind::Any {
                        names.push(format!("any_{}", first_name.clone().unwrap_or_default()));
                    } else {
                        names.push(
                            first_name
                                .clone()
                                .map(|n| if top_names.is_empty() { n } else { top_names[0].clone() })
                                .unwrap_or_else(|| format!("{}_", kind.prefix(&lower))),
                        );
                    }
                }
                _ => {
                    for a in args {
                        let c = sc.compile(a)?;
                        if arg_type.is_none() {
                            arg_type = c.ty;
                        }
                        compiled.push(c.expr);
                    }
                    let base = if kind.has_predicate() && args.len() == 1 { None } else { first_name.clone() };
                    names.push(match base {
                        Some(b) => format!("{}_{b}", kind.prefix(&lower)),
                        None => format!("{}_", kind.prefix(&lower)),
                    });
                }
            }
            let placeholder = format!("__agg{}", found.len());
            found.push(AggCall { kind, args: compiled, arg_type, extra, name: placeholder.clone(), names });
            let _ = top;
            Expr::Name { name: placeholder, span: *span }
        }
        Expr::Call { name, args, span } => Expr::Call {
            name: name.clone(),
            args: args.iter().map(|a| extract_aggs(src, a, sc, table, by_names, found, &[], false)).collect::<Result<_, _>>()?,
            span: *span,
        },
        Expr::Bin { op, l, r, span } => Expr::Bin {
            op: *op,
            l: Box::new(extract_aggs(src, l, sc, table, by_names, found, &[], false)?),
            r: Box::new(extract_aggs(src, r, sc, table, by_names, found, &[], false)?),
            span: *span,
        },
        Expr::Neg { e, span } => {
            Expr::Neg { e: Box::new(extract_aggs(src, e, sc, table, by_names, found, &[], false)?), span: *span }
        }
        Expr::Name { name, span } => {
            if matches!(sc.env.get(name), Some(Binding::Scalar(..))) || sc.locals.contains_key(name) {
                return Ok(e.clone());
            }
            return Err(KqlError::semantic(
                src,
                span.start,
                &format!("summarize: '{name}' must be aggregated or listed after 'by'"),
            ));
        }
        other => other.clone(),
    })
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    src: &str,
    table: &Table,
    aggs: &[NamedExpr],
    by: &[NamedExpr],
    env: &Env,
    catalog: &dyn Catalog,
    options: &Options,
    rows: Option<&[usize]>,
) -> Result<Table, KqlError> {
    let sc = scope(src, table, env, catalog, options);
    let mut counter = 0;
    // Group keys.
    let mut by_compiled = Vec::new();
    let mut by_names = Vec::new();
    for b in by {
        let name = b.names.first().cloned().unwrap_or_else(|| derived_name(&b.expr, &mut counter));
        by_compiled.push(sc.compile(&b.expr)?);
        by_names.push(name);
    }
    // Aggregations.
    let mut calls: Vec<AggCall> = Vec::new();
    let mut outputs: Vec<(Vec<String>, Expr, usize, usize)> = Vec::new();
    for a in aggs {
        let before = calls.len();
        let rewritten = extract_aggs(src, &a.expr, &sc, table, &by_names, &mut calls, &a.names, true)?;
        if calls.len() == before {
            return Err(KqlError::semantic(
                src,
                a.expr.span().start,
                "summarize: an aggregation expression needs an aggregation function (count(), sum(), …)",
            ));
        }
        outputs.push((a.names.clone(), rewritten, before, calls.len()));
    }
    // Group rows: key columns evaluated once (columns borrowed), then one hash lookup a row.
    // Plain columns are borrowed; computed keys (`bin(…)`) are evaluated inside the chunks.
    let key_columns: Vec<Option<&[Value]>> = by_compiled
        .iter()
        .map(|c| match &c.expr {
            CExpr::Col(i) => Some(table.columns[*i].values.as_slice()),
            _ => None,
        })
        .collect();
    let binned_keys: Vec<Option<(&[Value], &Value)>> = by_compiled
        .iter()
        .map(|c| match &c.expr {
            CExpr::Call(super::functions::Func::Bin, args) => match args.as_slice() {
                [CExpr::Col(i), CExpr::Const(step)] => Some((table.columns[*i].values.as_slice(), step)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    // Large inputs are split across threads; each chunk groups on its own, then the chunks
    // merge in order, so results (and group order) are those of one sequential pass.
    // `rows`: only these rows of `table` (a fused `where`), in order.
    let n_rows = rows.map_or(table.rows, <[usize]>::len);
    let threads = if n_rows >= 200_000 { std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4) } else { 1 };
    let chunk = n_rows.div_ceil(threads).max(1);
    let group_rows = |from: usize, to: usize| -> Result<Partial, KqlError> {
        let mut grouper = Grouper::default();
        let mut accs: Vec<Vec<Acc>> = Vec::new();
        let mut row_args: Vec<Value> = Vec::new();
        let mut computed: Vec<Value> = Vec::with_capacity(key_columns.len());
        for k in from..to {
            if k % 65_536 == 0 {
                check_deadline(options)?;
            }
            let r = rows.map_or(k, |rows| rows[k]);
            computed.clear();
            for ((c, col), binned) in by_compiled.iter().zip(&key_columns).zip(&binned_keys) {
                if col.is_none() {
                    computed.push(match binned {
                        // `bin(column, constant)`: straight to the function, no evaluator.
                        Some((values, step)) => super::functions::bin(&values[r], step),
                        None => eval(&c.expr, table, r, options.now),
                    });
                }
            }
            // The key's cells, on the stack for up to eight keys.
            let n = key_columns.len();
            let mut small: [&Value; 8] = [&NULL_VALUE; 8];
            let mut big: Vec<&Value> = Vec::new();
            let mut next_computed = computed.iter();
            for (i, col) in key_columns.iter().enumerate() {
                let v: &Value = match col {
                    Some(values) => &values[r],
                    None => next_computed.next().unwrap_or(&NULL_VALUE),
                };
                if n <= small.len() {
                    small[i] = v;
                } else {
                    big.push(v);
                }
            }
            let cells: &[&Value] = if n <= small.len() { &small[..n] } else { &big };
            let g = grouper.group_of(cells);
            if g == accs.len() {
                accs.push(calls.iter().map(|c| Acc::new(&c.kind)).collect());
            }
            for (ci, call) in calls.iter().enumerate() {
                if let [arg] = call.args.as_slice() {
                    let v = super::eval::eval_ref(arg, table, r, options.now);
                    accs[g][ci].add(&call.kind, std::slice::from_ref(&*v));
                    continue;
                }
                row_args.clear();
                row_args.extend(call.args.iter().map(|a| super::eval::eval_ref(a, table, r, options.now).into_owned()));
                accs[g][ci].add(&call.kind, &row_args);
            }
        }
        Ok((grouper, accs))
    };
    let mut parts: Vec<Result<Partial, KqlError>> = if threads == 1 {
        vec![group_rows(0, n_rows)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let group_rows = &group_rows;
                    scope.spawn(move || group_rows(t * chunk, ((t + 1) * chunk).min(n_rows)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(KqlError::limit("a summarize worker failed")))).collect()
        })
    };
    let (mut grouper, mut accs) = parts.remove(0)?;
    for part in parts {
        let (other, other_accs) = part?;
        for (key, group_accs) in other.keys.iter().zip(other_accs) {
            let cells: Vec<&Value> = key.iter().collect();
            let g = grouper.group_of(&cells);
            if g == accs.len() {
                accs.push(group_accs);
            } else {
                for ((acc, other_acc), call) in accs[g].iter_mut().zip(group_accs).zip(&calls) {
                    acc.merge(&call.kind, other_acc);
                }
            }
        }
    }
    let mut group_keys = grouper.keys;
    if by.is_empty() && group_keys.is_empty() {
        group_keys.push(Vec::new());
        accs.push(calls.iter().map(|c| Acc::new(&c.kind)).collect());
    }
    // Results of each aggregation call, per group: (placeholder columns).
    let n_groups = group_keys.len();
    let mut agg_columns: Vec<Vec<Column>> = Vec::new();
    for (ci, call) in calls.iter().enumerate() {
        let mut cols: Vec<Vec<Value>> = Vec::new();
        for acc in accs.iter().map(|g| &g[ci]) {
            let values = acc.finish(&call.kind, call.arg_type, call.extra.len());
            if cols.is_empty() {
                cols = vec![Vec::with_capacity(n_groups); values.len()];
            }
            for (i, v) in values.into_iter().enumerate() {
                if let Some(c) = cols.get_mut(i) {
                    c.push(v);
                }
            }
        }
        let width = match &call.kind {
            AggKind::Percentiles(ps) => ps.len(),
            _ => 1 + call.extra.len(),
        };
        cols.resize(width, vec![Value::Null; n_groups]);
        let mut out = Vec::new();
        for (i, values) in cols.into_iter().enumerate() {
            let (name, hint) = match &call.kind {
                AggKind::Percentiles(_) => (call.names.get(i).cloned().unwrap_or_default(), call.kind.result_type(call.arg_type)),
                _ if i == 0 => (call.names.first().cloned().unwrap_or_default(), call.kind.result_type(call.arg_type)),
                _ => (call.extra[i - 1].0.clone(), call.extra[i - 1].1.unwrap_or(Type::String)),
            };
            out.push(settle(name, Some(hint), values));
        }
        agg_columns.push(out);
    }
    let mut columns: Vec<Column> = Vec::new();
    for (i, name) in by_names.iter().enumerate() {
        let values: Vec<Value> = group_keys.iter().map(|k| k[i].clone()).collect();
        columns.push(settle(name.clone(), by_compiled[i].ty, values));
    }
    for (names, rewritten, from, to) in outputs {
        let direct = matches!(&rewritten, Expr::Name { name, .. } if name.starts_with("__agg")) && to - from == 1;
        if direct {
            let mut cols = agg_columns[from].clone();
            if let Some(n) = names.first() {
                cols[0].name = n.clone();
            }
            for (extra_name, col) in names.iter().skip(1).zip(cols.iter_mut().skip(1)) {
                col.name = extra_name.clone();
            }
            columns.extend(cols);
            continue;
        }
        // An expression over aggregates: evaluate it over a table of the placeholders.
        let placeholder_table = Table::new(
            (from..to)
                .map(|ci| {
                    let mut c = agg_columns[ci][0].clone();
                    c.name = calls[ci].name.clone();
                    c
                })
                .collect(),
        );
        let psc = scope(src, &placeholder_table, env, catalog, options);
        let c = psc.compile(&rewritten)?;
        let name = names.first().cloned().unwrap_or_else(|| next_column(&mut counter));
        columns.push(column_of(&c, &Table { rows: n_groups, ..placeholder_table }, name, options));
    }
    // Duplicate names get a numeric suffix, as Kusto does.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in &mut columns {
        let n = seen.entry(c.name.clone()).or_insert(0);
        if *n > 0 {
            c.name = format!("{}{}", c.name, n);
        }
        *n += 1;
    }
    Ok(Table { columns, rows: n_groups, visualization: None })
}

fn join(src: &str, span: Span, left: Table, right: Table, kind: JoinKind, on: &[(String, String)]) -> Result<Table, KqlError> {
    let lkeys: Vec<usize> = on
        .iter()
        .map(|(l, _)| {
            left.index_of(l)
                .ok_or_else(|| KqlError::semantic(src, span.start, &format!("join: the left side has no column '{l}'")))
        })
        .collect::<Result<_, _>>()?;
    let rkeys: Vec<usize> = on
        .iter()
        .map(|(_, r)| {
            right
                .index_of(r)
                .ok_or_else(|| KqlError::semantic(src, span.start, &format!("join: the right side has no column '{r}'")))
        })
        .collect::<Result<_, _>>()?;
    // Null keys never match.
    fn cells_of<'t>(t: &'t Table, cols: &[usize], row: usize) -> Option<Vec<&'t Value>> {
        let cells: Vec<&Value> = cols.iter().map(|&c| &t.columns[c].values[row]).collect();
        if cells.iter().any(|v| v.is_null()) { None } else { Some(cells) }
    }
    let mut right_groups = Grouper::default();
    let mut rows_of: Vec<Vec<usize>> = Vec::new();
    let mut buf: Vec<&Value> = Vec::with_capacity(rkeys.len());
    for r in 0..right.rows {
        buf.clear();
        buf.extend(rkeys.iter().map(|&c| &right.columns[c].values[r]));
        if !buf.iter().any(|v| v.is_null()) {
            let g = right_groups.group_of(&buf);
            if g == rows_of.len() {
                rows_of.push(Vec::new());
            }
            rows_of[g].push(r);
        }
    }
    let mut left_rows: Vec<usize> = (0..left.rows).collect();
    if kind == JoinKind::InnerUnique {
        // One left row per key (the first), then inner.
        let mut seen = Grouper::default();
        left_rows.retain(|&r| match cells_of(&left, &lkeys, r) {
            None => true,
            Some(cells) => {
                let before = seen.keys.len();
                seen.group_of(&cells) == before
            }
        });
    }
    let mut pairs: Vec<(Option<usize>, Option<usize>)> = Vec::new();
    let mut right_matched = vec![false; right.rows];
    let mut buf: Vec<&Value> = Vec::with_capacity(lkeys.len());
    for &l in &left_rows {
        buf.clear();
        buf.extend(lkeys.iter().map(|&c| &left.columns[c].values[l]));
        let matches = if buf.iter().any(|v| v.is_null()) { None } else { right_groups.find(&buf).map(|g| &rows_of[g]) };
        match kind {
            JoinKind::LeftSemi => {
                if matches.is_some() {
                    pairs.push((Some(l), None));
                }
            }
            JoinKind::LeftAnti => {
                if matches.is_none() {
                    pairs.push((Some(l), None));
                }
            }
            _ => match matches {
                Some(rs) => {
                    for &r in rs {
                        right_matched[r] = true;
                        if !matches!(kind, JoinKind::RightSemi | JoinKind::RightAnti) {
                            pairs.push((Some(l), Some(r)));
                        }
                    }
                }
                None => {
                    if matches!(kind, JoinKind::LeftOuter | JoinKind::FullOuter) {
                        pairs.push((Some(l), None));
                    }
                }
            },
        }
    }
    match kind {
        JoinKind::RightOuter | JoinKind::FullOuter => {
            for (r, m) in right_matched.iter().enumerate() {
                if !m {
                    pairs.push((None, Some(r)));
                }
            }
        }
        JoinKind::RightSemi => {
            pairs = right_matched.iter().enumerate().filter(|(_, m)| **m).map(|(r, _)| (None, Some(r))).collect()
        }
        JoinKind::RightAnti => {
            // A right row is anti-matched when no left row has its key.
            let mut left_keys = Grouper::default();
            for l in 0..left.rows {
                if let Some(cells) = cells_of(&left, &lkeys, l) {
                    left_keys.group_of(&cells);
                }
            }
            pairs = (0..right.rows)
                .filter(|&r| cells_of(&right, &rkeys, r).is_none_or(|cells| left_keys.find(&cells).is_none()))
                .map(|r| (None, Some(r)))
                .collect();
        }
        _ => {}
    }
    let with_left = !matches!(kind, JoinKind::RightSemi | JoinKind::RightAnti);
    let with_right = !matches!(kind, JoinKind::LeftSemi | JoinKind::LeftAnti);
    let mut columns = Vec::new();
    if with_left {
        for c in &left.columns {
            columns.push(Column {
                name: c.name.clone(),
                ty: c.ty,
                values: Arc::new(pairs.iter().map(|(l, _)| l.map_or(Value::Null, |l| c.values[l].clone())).collect()),
            });
        }
    }
    if with_right {
        for c in &right.columns {
            let mut name = c.name.clone();
            let mut n = 1;
            while columns.iter().any(|x: &Column| x.name == name) {
                name = format!("{}{n}", c.name);
                n += 1;
            }
            columns.push(Column {
                name,
                ty: c.ty,
                values: Arc::new(pairs.iter().map(|(_, r)| r.map_or(Value::Null, |r| c.values[r].clone())).collect()),
            });
        }
    }
    Ok(Table { rows: pairs.len(), columns, visualization: None })
}

fn mv_expand(
    src: &str,
    table: Table,
    columns: &[(Option<String>, Expr, Option<Type>)],
    limit: Option<usize>,
    env: &Env,
    catalog: &dyn Catalog,
    options: &Options,
) -> Result<Table, KqlError> {
    let sc = scope(src, &table, env, catalog, options);
    let mut targets = Vec::new();
    for (name, e, ty) in columns {
        let c = sc.compile(e)?;
        let name = match (name, e) {
            (Some(n), _) => n.clone(),
            (None, Expr::Name { name, .. }) => name.clone(),
            (None, other) => {
                return Err(KqlError::semantic(src, other.span().start, "mv-expand: name the expanded expression (x = …)"));
            }
        };
        let values: Vec<Value> = (0..table.rows).map(|r| eval(&c.expr, &table, r, options.now)).collect();
        targets.push((name, values, *ty));
    }
    let mut rows = Vec::new();
    let mut expanded: Vec<Vec<Value>> = vec![Vec::new(); targets.len()];
    for r in 0..table.rows {
        let lists: Vec<Vec<Value>> = targets
            .iter()
            .map(|(_, values, _)| match &values[r] {
                Value::Dynamic(j) => match &**j {
                    serde_json::Value::Array(a) => a.iter().map(|x| Value::Dynamic(Arc::new(x.clone()))).collect(),
                    serde_json::Value::Object(o) => o
                        .iter()
                        .map(|(k, v)| {
                            let mut m = serde_json::Map::new();
                            m.insert(k.clone(), v.clone());
                            Value::Dynamic(Arc::new(serde_json::Value::Object(m)))
                        })
                        .collect(),
                    _ => vec![values[r].clone()],
                },
                other => vec![other.clone()],
            })
            .collect();
        let n = lists.iter().map(Vec::len).max().unwrap_or(0).min(limit.unwrap_or(usize::MAX));
        for i in 0..n {
            rows.push(r);
            for (t, list) in lists.iter().enumerate() {
                expanded[t].push(list.get(i).cloned().unwrap_or(Value::Null));
            }
        }
    }
    let mut out = table.take_rows(&rows);
    for ((name, _, ty), values) in targets.into_iter().zip(expanded) {
        let (ty, values) = match ty {
            Some(t) => (t, values.iter().map(|v| convert_to(&super::eval::undyn(v), t)).collect()),
            None => (Type::Dynamic, values),
        };
        let col = Column::new(name.clone(), ty, values);
        match out.index_of(&name) {
            Some(i) => out.columns[i] = col,
            None => out.columns.push(col),
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn make_series(
    src: &str,
    span: Span,
    table: &Table,
    aggs: &[SeriesAgg],
    on: &Expr,
    from: Option<&Expr>,
    to: Option<&Expr>,
    step: &Expr,
    by: &[NamedExpr],
    env: &Env,
    catalog: &dyn Catalog,
    options: &Options,
) -> Result<Table, KqlError> {
    let sc = scope(src, table, env, catalog, options);
    let on_c = sc.compile(on)?;
    let on_values: Vec<Value> = (0..table.rows).map(|r| eval(&on_c.expr, table, r, options.now)).collect();
    let constant = |e: &Expr| -> Result<Value, KqlError> {
        let c = scope(src, &Table::default(), env, catalog, options).compile(e)?;
        Ok(eval(&c.expr, &Table { rows: 1, ..Table::default() }, 0, options.now))
    };
    let as_num = |v: &Value| match v {
        Value::DateTime(t) | Value::TimeSpan(t) => Some(*t as f64),
        other => other.as_f64(),
    };
    let step_v = constant(step)?;
    let step_n = as_num(&step_v)
        .filter(|s| *s > 0.0)
        .ok_or_else(|| KqlError::semantic(src, step.span().start, "make-series: step must be positive"))?;
    let data: Vec<f64> = on_values.iter().filter_map(as_num).collect();
    let start = match from {
        Some(e) => as_num(&constant(e)?).ok_or_else(|| KqlError::semantic(src, e.span().start, "make-series: bad 'from'"))?,
        None => data.iter().copied().fold(f64::INFINITY, f64::min),
    };
    let end = match to {
        Some(e) => as_num(&constant(e)?).ok_or_else(|| KqlError::semantic(src, e.span().start, "make-series: bad 'to'"))?,
        None => data.iter().copied().fold(f64::NEG_INFINITY, f64::max) + step_n,
    };
    let is_time =
        matches!(on_c.ty, Some(Type::DateTime)) || matches!(on_values.iter().find(|v| !v.is_null()), Some(Value::DateTime(_)));
    // Bins are aligned to the step, as bin() aligns them.
    let start = if from.is_some() || !start.is_finite() {
        start
    } else if is_time {
        super::functions::call(super::functions::Func::Bin, &[Value::DateTime(start as i64), step_v.clone()], 0)
            .as_f64()
            .unwrap_or(start)
            .max(start - step_n)
    } else {
        (start / step_n).floor() * step_n
    };
    let start = if is_time && from.is_none() && start.is_finite() {
        match super::functions::call(super::functions::Func::Bin, &[Value::DateTime(start as i64), step_v.clone()], 0) {
            Value::DateTime(t) => t as f64,
            _ => start,
        }
    } else {
        start
    };
    let bins = if start.is_finite() && end.is_finite() && end > start { ((end - start) / step_n).ceil() as usize } else { 0 };
    if bins > 1_000_000 {
        return Err(KqlError::semantic(src, span.start, "make-series would produce more than 1,000,000 bins"));
    }
    let mut counter = 0;
    let by_c: Vec<(String, Compiled)> = by
        .iter()
        .map(|b| Ok((b.names.first().cloned().unwrap_or_else(|| derived_name(&b.expr, &mut counter)), sc.compile(&b.expr)?)))
        .collect::<Result<_, KqlError>>()?;
    let mut calls = Vec::new();
    let mut names = Vec::new();
    let mut defaults = Vec::new();
    for a in aggs {
        let mut found = Vec::new();
        let by_names: Vec<String> = by_c.iter().map(|(n, _)| n.clone()).collect();
        extract_aggs(src, &a.agg.expr, &sc, table, &by_names, &mut found, &a.agg.names, true)?;
        let call = found
            .into_iter()
            .next()
            .ok_or_else(|| KqlError::semantic(src, a.agg.expr.span().start, "make-series needs an aggregation"))?;
        names.push(a.agg.names.first().cloned().unwrap_or_else(|| call.names.first().cloned().unwrap_or_default()));
        defaults.push(match &a.default {
            Some(d) => constant(d)?,
            None => match call.kind.result_type(call.arg_type) {
                Type::Long | Type::Int | Type::Real | Type::Decimal => Value::Long(0),
                _ => Value::Null,
            },
        });
        calls.push(call);
    }
    let mut groups: HashMap<Vec<KeyPart>, usize> = HashMap::new();
    let mut keys: Vec<Vec<Value>> = Vec::new();
    let mut accs: Vec<Vec<Vec<Acc>>> = Vec::new();
    let mut args = Vec::new();
    for (r, on_value) in on_values.iter().enumerate() {
        let Some(x) = as_num(on_value) else {
            continue;
        };
        if x < start || x >= end {
            continue;
        }
        let bin = ((x - start) / step_n).floor() as usize;
        if bin >= bins {
            continue;
        }
        let kv: Vec<Value> = by_c.iter().map(|(_, c)| eval(&c.expr, table, r, options.now)).collect();
        let k: Vec<KeyPart> = kv.iter().map(KeyPart::of).collect();
        let g = *groups.entry(k).or_insert_with(|| {
            keys.push(kv);
            accs.push(calls.iter().map(|c| vec![Acc::new(&c.kind); bins]).collect());
            keys.len() - 1
        });
        for (ci, call) in calls.iter().enumerate() {
            args.clear();
            args.extend(call.args.iter().map(|a| eval(a, table, r, options.now)));
            accs[g][ci][bin].add(&call.kind, &args);
        }
    }
    if by.is_empty() && keys.is_empty() && bins > 0 {
        keys.push(Vec::new());
        accs.push(calls.iter().map(|c| vec![Acc::new(&c.kind); bins]).collect());
    }
    let mut columns = Vec::new();
    for (i, (name, c)) in by_c.iter().enumerate() {
        columns.push(settle(name.clone(), c.ty, keys.iter().map(|k| k[i].clone()).collect()));
    }
    for (ci, call) in calls.iter().enumerate() {
        let values: Vec<Value> = accs
            .iter()
            .map(|g| {
                let series: Vec<serde_json::Value> = g[ci]
                    .iter()
                    .map(|acc| {
                        let empty = matches!(acc, Acc::Count(0))
                            || matches!(acc, Acc::Avg { n: 0, .. })
                            || matches!(acc, Acc::Sum { seen: false, .. })
                            || matches!(acc, Acc::Best(None));
                        if empty { to_json(&defaults[ci]) } else { to_json(&acc.finish(&call.kind, call.arg_type, 0)[0]) }
                    })
                    .collect();
                Value::Dynamic(Arc::new(serde_json::Value::Array(series)))
            })
            .collect();
        columns.push(Column::new(names[ci].clone(), Type::Dynamic, values));
    }
    let on_name = match on {
        Expr::Name { name, .. } => name.clone(),
        _ => derived_name(on, &mut counter),
    };
    let axis: Vec<serde_json::Value> = (0..bins)
        .map(|i| {
            let x = start + i as f64 * step_n;
            if is_time { serde_json::Value::String(format_datetime_iso(x as i64)) } else { to_json(&Value::Real(x)) }
        })
        .collect();
    let axis = Value::Dynamic(Arc::new(serde_json::Value::Array(axis)));
    columns.push(Column::new(on_name, Type::Dynamic, vec![axis; keys.len()]));
    let _ = TICKS_PER_DAY;
    Ok(Table { rows: keys.len(), columns, visualization: None })
}

fn parse_columns(
    src: &str,
    mut table: Table,
    expr: &Expr,
    pattern: &[ParsePart],
    env: &Env,
    catalog: &dyn Catalog,
    options: &Options,
) -> Result<Table, KqlError> {
    let c = scope(src, &table, env, catalog, options).compile(expr)?;
    let targets: Vec<(String, Type)> =
        pattern.iter().filter_map(|p| if let ParsePart::Column(n, t) = p { Some((n.clone(), *t)) } else { None }).collect();
    let mut out: Vec<Vec<Value>> = vec![Vec::with_capacity(table.rows); targets.len()];
    for r in 0..table.rows {
        let text = eval(&c.expr, &table, r, options.now).as_text().map(|s| s.into_owned()).unwrap_or_default();
        let found = parse_text(&text, pattern);
        for (i, (_, ty)) in targets.iter().enumerate() {
            let v = found
                .as_ref()
                .and_then(|f| f.get(i).cloned().flatten())
                .map_or(Value::Null, |s| convert_to(&Value::String(s.into()), *ty));
            out[i].push(v);
        }
    }
    for ((name, ty), values) in targets.into_iter().zip(out) {
        let col = Column::new(name.clone(), ty, values);
        match table.index_of(&name) {
            Some(i) => table.columns[i] = col,
            None => table.columns.push(col),
        }
    }
    Ok(table)
}

/// Match `text` against a simple `parse` pattern; the captured strings in order.
fn parse_text(text: &str, pattern: &[ParsePart]) -> Option<Vec<Option<String>>> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut i = 0;
    while i < pattern.len() {
        match &pattern[i] {
            ParsePart::Text(t) => rest = rest.strip_prefix(t.as_str())?,
            ParsePart::Column(..) | ParsePart::Any => {
                // Up to the next literal (or the end).
                let next = pattern[i + 1..].iter().find_map(|p| if let ParsePart::Text(t) = p { Some(t.as_str()) } else { None });
                let value = match next {
                    Some(t) if !t.is_empty() => {
                        let at = rest.find(t)?;
                        let v = &rest[..at];
                        rest = &rest[at..];
                        v
                    }
                    _ => {
                        let v = rest;
                        rest = "";
                        v
                    }
                };
                if matches!(pattern[i], ParsePart::Column(..)) {
                    out.push(Some(value.to_string()));
                }
            }
        }
        i += 1;
    }
    Some(out)
}

#[allow(dead_code)]
fn json_values(v: &serde_json::Value) -> Value {
    from_json(v)
}
