//! `fleetpilot kql`: run the KQL engine locally over files, without a server.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use fleetpilot_emulator::kql::{self, Column, MapCatalog, Table, Type, Value};

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// The Log Analytics query API response (`tables[{name, columns, rows}]`).
    Json,
    /// CSV with a header row.
    Csv,
}

/// Run `query` over the tables given as `NAME=FILE`, print the result, and return the exit code
/// (2 for a query error, whose message and position go to stderr).
pub fn run(tables: &[String], format: Format, query: &str) -> Result<std::process::ExitCode> {
    let mut catalog = MapCatalog::default();
    for spec in tables {
        let (name, file) = spec.split_once('=').with_context(|| format!("--table {spec:?}: write it as NAME=FILE"))?;
        let table = load(Path::new(file)).with_context(|| format!("cannot load table {name} from {file}"))?;
        catalog.0.insert(name.to_string(), Arc::new(table));
    }
    match kql::run(query, &catalog, &kql::Options::default()) {
        Ok(result) => {
            print!("{}", render(&result, format)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("query error: {} (line {}, position {})", e.message, e.line, e.pos);
            if let Some(line) = query.lines().nth(e.line.saturating_sub(1)) {
                eprintln!("  {line}");
                eprintln!("  {}^", " ".repeat(e.pos));
            }
            Ok(std::process::ExitCode::from(2))
        }
    }
}

fn render(table: &Table, format: Format) -> Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&kql::response::query_results(table, usize::MAX, usize::MAX, true))? + "\n",
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let cols: Vec<&Column> = table.columns.iter().filter(|c| !c.name.starts_with('$')).collect();
            w.write_record(cols.iter().map(|c| c.name.as_str()))?;
            for r in 0..table.rows {
                w.write_record(cols.iter().map(|c| text(&c.values[r])))?;
            }
            String::from_utf8(w.into_inner()?)?
        }
        Format::Table => {
            let cols: Vec<&Column> = table.columns.iter().filter(|c| !c.name.starts_with('$')).collect();
            let cells: Vec<Vec<String>> = (0..table.rows).map(|r| cols.iter().map(|c| text(&c.values[r])).collect()).collect();
            let widths: Vec<usize> = cols
                .iter()
                .enumerate()
                .map(|(i, c)| cells.iter().map(|row| row[i].chars().count()).chain([c.name.chars().count()]).max().unwrap_or(0))
                .collect();
            let line = |values: Vec<String>| -> String {
                values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
                    + "\n"
            };
            let mut out = line(cols.iter().map(|c| c.name.clone()).collect());
            out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
            for row in cells {
                out.push_str(&line(row));
            }
            out.push_str(&format!("({} row{})\n", table.rows, if table.rows == 1 { "" } else { "s" }));
            out
        }
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Dynamic(j) => j.to_string(),
        other => kql::value::to_display(other),
    }
}

/// Load a table from CSV (optionally gzip), a JSON array of objects, or JSON lines.
pub fn load(path: &Path) -> Result<Table> {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let (bytes, name) = if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).context("not valid gzip")?;
        (out, name.trim_end_matches(".gz").to_string())
    } else {
        (bytes, name)
    };
    if name.ends_with(".csv") {
        load_csv(&bytes)
    } else if name.ends_with(".json") {
        let v: serde_json::Value = serde_json::from_slice(&bytes).context("not valid JSON")?;
        let rows = v.as_array().context("expected a JSON array of objects")?;
        load_objects(rows.iter())
    } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        let text = String::from_utf8(bytes).context("not UTF-8")?;
        let rows: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}: not valid JSON", i + 1)))
            .collect::<Result<_>>()?;
        load_objects(rows.iter())
    } else {
        bail!("unknown file type: use .csv, .csv.gz, .json (array of objects) or .jsonl")
    }
}

fn load_csv(bytes: &[u8]) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader.headers()?.clone();
    let declared: Vec<(String, Option<Type>)> = headers
        .iter()
        .map(|h| match h.rsplit_once(':') {
            Some((name, ty)) if Type::parse(ty.trim()).is_some() => (name.trim().to_string(), Type::parse(ty.trim())),
            _ => (h.trim().to_string(), None),
        })
        .collect();
    let mut raw: Vec<Vec<String>> = vec![Vec::new(); declared.len()];
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("CSV row {}", i + 2))?;
        for (c, cell) in record.iter().enumerate() {
            raw[c].push(cell.to_string());
        }
    }
    let columns = declared
        .into_iter()
        .zip(raw)
        .map(|((name, ty), cells)| {
            let ty = ty.unwrap_or_else(|| infer(&cells));
            let values = cells.iter().map(|c| parse_cell(c, ty)).collect();
            Column::new(name, ty, values)
        })
        .collect();
    Ok(Table::new(columns))
}

/// The narrowest type every non-empty cell parses as.
fn infer(cells: &[String]) -> Type {
    let present: Vec<&str> = cells.iter().map(|c| c.trim()).filter(|c| !c.is_empty()).collect();
    if present.is_empty() {
        return Type::String;
    }
    if present.iter().all(|c| c.parse::<i64>().is_ok()) {
        Type::Long
    } else if present.iter().all(|c| c.parse::<f64>().is_ok()) {
        Type::Real
    } else if present.iter().all(|c| c.eq_ignore_ascii_case("true") || c.eq_ignore_ascii_case("false")) {
        Type::Bool
    } else if present.iter().all(|c| c.len() >= 10 && kql::value::parse_datetime(c).is_some()) {
        Type::DateTime
    } else {
        Type::String
    }
}

fn parse_cell(cell: &str, ty: Type) -> Value {
    if ty == Type::String {
        return Value::str(cell);
    }
    if cell.trim().is_empty() {
        return Value::Null;
    }
    let parsed = match ty {
        Type::Dynamic => {
            kql::parser::parse_dynamic(cell).map(|j| Value::Dynamic(Arc::new(j))).unwrap_or_else(|_| Value::str(cell))
        }
        _ => Value::str(cell.trim()),
    };
    kql::functions::convert_to(&parsed, ty)
}

fn load_objects<'a>(rows: impl Iterator<Item = &'a serde_json::Value>) -> Result<Table> {
    let rows: Vec<&serde_json::Map<String, serde_json::Value>> = rows
        .enumerate()
        .map(|(i, r)| r.as_object().with_context(|| format!("row {} is not an object", i + 1)))
        .collect::<Result<_>>()?;
    let mut names: Vec<String> = Vec::new();
    for r in &rows {
        for k in r.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let columns = names
        .into_iter()
        .map(|name| {
            let cells: Vec<Option<&serde_json::Value>> = rows.iter().map(|r| r.get(&name).filter(|v| !v.is_null())).collect();
            let ty = infer_json(cells.iter().flatten().copied());
            let values = cells
                .iter()
                .map(|c| match c {
                    None => Value::Null,
                    Some(v) => match ty {
                        Type::Dynamic => Value::Dynamic(Arc::new((*v).clone())),
                        _ => kql::functions::convert_to(&fleetpilot_emulator::kql::eval::from_json(v), ty),
                    },
                })
                .collect();
            Column::new(name, ty, values)
        })
        .collect();
    Ok(Table::new(columns))
}

fn infer_json<'a>(values: impl Iterator<Item = &'a serde_json::Value>) -> Type {
    let mut ty: Option<Type> = None;
    for v in values {
        let t = match v {
            serde_json::Value::Bool(_) => Type::Bool,
            serde_json::Value::Number(n) if n.is_i64() => Type::Long,
            serde_json::Value::Number(_) => Type::Real,
            serde_json::Value::String(s) if s.len() >= 10 && kql::value::parse_datetime(s).is_some() => Type::DateTime,
            serde_json::Value::String(_) => Type::String,
            _ => Type::Dynamic,
        };
        ty = Some(match (ty, t) {
            (None, t) => t,
            (Some(a), b) if a == b => a,
            (Some(Type::Long), Type::Real) | (Some(Type::Real), Type::Long) => Type::Real,
            (Some(Type::DateTime), Type::String) | (Some(Type::String), Type::DateTime) => Type::String,
            _ => Type::Dynamic,
        });
    }
    ty.unwrap_or(Type::String)
}
