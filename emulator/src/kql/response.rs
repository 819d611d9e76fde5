//! The Log Analytics query response shape (`tables[{name, columns[{name,type}], rows}]`) and
//! its error shape, shared by the emulator's query API and `fleetpilot kql --format json`.

use serde_json::{Value as Json, json};

use super::table::Table;
use super::value::{Value, format_datetime_iso, format_real, format_timespan};
use super::{ErrorKind, KqlError};

/// One cell as Log Analytics writes it: datetimes as ISO-8601 UTC strings, timespans as
/// `d.hh:mm:ss[.fffffff]`, dynamic values as their JSON text, non-finite reals as strings.
pub fn cell(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => json!(i),
        Value::Long(i) => json!(i),
        Value::Real(f) | Value::Decimal(f) => {
            serde_json::Number::from_f64(*f).map_or_else(|| Json::String(format_real(*f)), Json::Number)
        }
        Value::String(s) | Value::Guid(s) => Json::String(s.to_string()),
        Value::DateTime(t) => Json::String(format_datetime_iso(*t)),
        Value::TimeSpan(t) => Json::String(format_timespan(*t)),
        Value::Dynamic(j) => Json::String(j.to_string()),
    }
}

/// Columns whose names start with `$` are internal (ingestion time) and never returned.
fn visible(table: &Table) -> Vec<usize> {
    (0..table.columns.len()).filter(|&i| !table.columns[i].name.starts_with('$')).collect()
}

/// A result table as the `table` definition of the query API. Returns the JSON and whether
/// it was cut to `max_rows` rows or about `max_bytes` bytes of rows.
pub fn table_json(table: &Table, name: &str, max_rows: usize, max_bytes: usize) -> (Json, bool) {
    let cols = visible(table);
    let columns: Vec<Json> =
        cols.iter().map(|&i| json!({"name": table.columns[i].name, "type": table.columns[i].ty.name()})).collect();
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    for r in 0..table.rows.min(max_rows) {
        let row = Json::Array(cols.iter().map(|&i| cell(&table.columns[i].values[r])).collect());
        if max_bytes != usize::MAX {
            bytes += row.to_string().len() + 1;
            if bytes > max_bytes {
                return (json!({"name": name, "columns": columns, "rows": rows}), true);
            }
        }
        rows.push(row);
    }
    (json!({"name": name, "columns": columns, "rows": rows}), table.rows > max_rows)
}

/// The whole `queryResults` body, with the row and size caps.
pub fn query_results(table: &Table, max_rows: usize, max_bytes: usize, include_render: bool) -> Json {
    let (t, truncated) = table_json(table, "PrimaryResult", max_rows, max_bytes);
    let mut body = json!({ "tables": [t] });
    if truncated {
        body["error"] = json!({
            "code": "PartialError",
            "message": "There were some errors when processing your query.",
            "details": [{
                "code": "EngineError",
                "message": format!("Query result set has exceeded the internal limits ({max_rows} records or {max_bytes} bytes; E_QUERY_RESULT_SET_TOO_LARGE); the result was truncated."),
            }],
        });
    }
    if include_render && let Some(v) = &table.visualization {
        let mut render = serde_json::Map::new();
        render.insert("visualization".into(), Json::String(v.kind.clone()));
        for (k, val) in &v.properties {
            render.insert(k.clone(), Json::String(val.trim_matches('"').to_string()));
        }
        body["render"] = Json::Object(render);
    }
    body
}

/// A query error as Log Analytics answers it (HTTP 400): a `BadArgumentError` wrapping a
/// syntax or semantic error whose innermost part gives line, position and token.
pub fn error_json(e: &KqlError) -> Json {
    let (inner_code, inner_message, code) = match e.kind {
        ErrorKind::Syntax => ("SyntaxError", "A recognition error occurred in the query.", "SYN0002"),
        ErrorKind::Semantic => ("SemanticError", "A semantic error occurred.", "SEM0100"),
        ErrorKind::Limit => ("QueryLimitError", "The query exceeded a limit.", "LIM0001"),
    };
    let located = if e.line > 0 {
        format!("Query could not be parsed at '{}' on line [{},{}]: {}", e.token, e.line, e.pos, e.message)
    } else {
        e.message.clone()
    };
    json!({
        "error": {
            "message": "The request had some invalid properties",
            "code": "BadArgumentError",
            "innererror": {
                "code": inner_code,
                "message": inner_message,
                "innererror": {
                    "code": code,
                    "message": located,
                    "additionalProperties": {"line": e.line, "pos": e.pos, "token": e.token},
                },
            },
        }
    })
}
