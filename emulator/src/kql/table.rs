//! In-memory tables: named, typed columns of values.

use std::sync::Arc;

use super::value::{Type, Value};

/// One column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: Type,
    /// Values, one per row; shared between tables until one of them writes
    /// (`Arc::make_mut`), so projecting, renaming or reading a stored table copies nothing.
    pub values: Arc<Vec<Value>>,
}

impl Column {
    /// A column from its values.
    pub fn new(name: impl Into<String>, ty: Type, values: Vec<Value>) -> Self {
        Self { name: name.into(), ty, values: Arc::new(values) }
    }
}

/// How a result asks to be drawn (`render`), returned as Log Analytics does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Visualization {
    /// `timechart`, `barchart`, …
    pub kind: String,
    /// `with (...)` properties, as written.
    pub properties: Vec<(String, String)>,
}

/// A table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Columns, in order.
    pub columns: Vec<Column>,
    /// Rows (kept beside the columns so a table with no columns still has a count).
    pub rows: usize,
    /// Set by `render`.
    pub visualization: Option<Visualization>,
}

impl Table {
    /// A table from columns of equal length.
    ///
    /// # Panics
    /// When the columns differ in length (a bug in the caller).
    pub fn new(columns: Vec<Column>) -> Self {
        let rows = columns.first().map_or(0, |c| c.values.len());
        assert!(columns.iter().all(|c| c.values.len() == rows), "columns of unequal length");
        Self { columns, rows, visualization: None }
    }

    /// This table's rows followed by `other`'s (same columns, in the same order); shares
    /// this table's columns when `other` is empty.
    pub fn concat(&self, other: &Table) -> Table {
        if other.rows == 0 {
            return self.clone();
        }
        if self.rows == 0 {
            return other.clone();
        }
        let columns = self
            .columns
            .iter()
            .zip(&other.columns)
            .map(|(a, b)| Column::new(a.name.clone(), a.ty, a.values.iter().chain(b.values.iter()).cloned().collect()))
            .collect();
        Table::new(columns)
    }

    /// Index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Keep the rows at `indices`, in that order (columns copied in parallel when large).
    pub fn take_rows(&self, indices: &[usize]) -> Table {
        let take = |c: &Column| Column::new(c.name.clone(), c.ty, indices.iter().map(|&i| c.values[i].clone()).collect());
        let columns = if indices.len() >= 200_000 && self.columns.len() > 1 {
            std::thread::scope(|scope| {
                let handles: Vec<_> = self.columns.iter().map(|c| scope.spawn(move || take(c))).collect();
                handles.into_iter().zip(&self.columns).map(|(h, c)| h.join().unwrap_or_else(|_| take(c))).collect()
            })
        } else {
            self.columns.iter().map(take).collect()
        };
        Table { columns, rows: indices.len(), visualization: self.visualization.clone() }
    }

    /// Render as text for tests: a `name:type` header, then one line per row.
    pub fn to_test_text(&self) -> String {
        let mut out = self.columns.iter().map(|c| format!("{}:{}", c.name, c.ty.name())).collect::<Vec<_>>().join(", ");
        for row in 0..self.rows {
            out.push('\n');
            let cells: Vec<String> = self.columns.iter().map(|c| test_cell(&c.values[row], c.ty)).collect();
            out.push_str(&cells.join(", "));
        }
        out
    }
}

fn test_cell(v: &Value, ty: Type) -> String {
    use super::value::{format_datetime_iso, format_real, format_timespan};
    match v {
        Value::Null => "null".into(),
        Value::String(s) | Value::Guid(s) => serde_json::to_string(&**s).unwrap_or_default(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Long(i) => i.to_string(),
        Value::Real(f) | Value::Decimal(f) => {
            if f.is_nan() {
                "null".into()
            } else {
                let _ = ty;
                format_real((f * 1e9).round() / 1e9)
            }
        }
        Value::DateTime(t) => format_datetime_iso(*t),
        Value::TimeSpan(t) => format_timespan(*t),
        Value::Dynamic(j) => j.to_string(),
    }
}
