//! The result of a log query, as plain data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One column of a result table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogColumn {
    /// Name.
    pub name: String,
    /// KQL type (`string`, `long`, `real`, `datetime`, `timespan`, `dynamic`, …).
    #[serde(rename = "type")]
    pub ty: String,
}

/// One result table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogTable {
    /// `PrimaryResult` for the query's result.
    pub name: String,
    /// Columns, in order.
    pub columns: Vec<LogColumn>,
    /// Rows: one JSON value per column (datetimes and timespans as strings).
    #[schemars(schema_with = "rows_schema")]
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// What a log query returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogQueryResult {
    /// Result tables.
    pub tables: Vec<LogTable>,
    /// Set when the service cut the result (row or size limit): its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub partial_error: Option<String>,
}

/// Rows are arrays of cells; a cell is a string, a number, a bool or null. Said as a schema
/// object rather than `true`, which strict MCP clients reject.
fn rows_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {
            "type": "array",
            "items": { "description": "A cell: string, number, bool or null, in the column's order." }
        }
    })
}
