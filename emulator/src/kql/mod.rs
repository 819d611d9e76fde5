//! A KQL engine: lexer, parser with precise error positions, and a typed evaluator over
//! in-memory tables. It serves the emulator's Log Analytics query API and `fleetpilot kql`.
//!
//! Entry point: [`run`] (parse + execute a query against a [`Catalog`]).

pub mod aggregate;
pub mod ast;
pub mod eval;
pub mod functions;
pub mod lexer;
pub mod ops;
pub mod parser;
pub mod response;
pub mod table;
pub mod value;

pub use table::{Column, Table, Visualization};
pub use value::{Type, Value};

use std::sync::Arc;

/// What kind of failure a query met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not KQL.
    Syntax,
    /// It is KQL, but names something that does not exist or mixes types.
    Semantic,
    /// A limit was hit (time, size).
    Limit,
}

/// A query error with its position (1-based line, 0-based position in the line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, position {pos})")]
pub struct KqlError {
    /// Kind.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
    /// 1-based line.
    pub line: usize,
    /// 0-based character position within the line.
    pub pos: usize,
    /// The text at the position (a word), when there is one.
    pub token: String,
}

impl KqlError {
    fn at(kind: ErrorKind, src: &str, offset: usize, message: &str) -> Self {
        let offset = offset.min(src.len());
        let before = &src[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let pos = src[line_start..offset].chars().count();
        let token: String = src[offset..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take_while(|c| c.is_alphanumeric() || "_-!~=<>.$@'\"".contains(*c))
            .collect();
        Self { kind, message: message.to_string(), line, pos, token }
    }

    /// A syntax error at a byte offset of `src`.
    pub fn syntax(src: &str, offset: usize, message: &str) -> Self {
        Self::at(ErrorKind::Syntax, src, offset, message)
    }

    /// A semantic error at a byte offset of `src`.
    pub fn semantic(src: &str, offset: usize, message: &str) -> Self {
        Self::at(ErrorKind::Semantic, src, offset, message)
    }

    /// A limit error (no position).
    pub fn limit(message: &str) -> Self {
        Self { kind: ErrorKind::Limit, message: message.into(), line: 0, pos: 0, token: String::new() }
    }
}

/// Where tables come from.
pub trait Catalog {
    /// A table by name (Log Analytics table names are case-sensitive).
    fn table(&self, name: &str) -> Option<Arc<Table>>;
}

/// A catalog over a fixed set of tables.
#[derive(Debug, Default, Clone)]
pub struct MapCatalog(pub std::collections::BTreeMap<String, Arc<Table>>);

impl Catalog for MapCatalog {
    fn table(&self, name: &str) -> Option<Arc<Table>> {
        self.0.get(name).cloned()
    }
}

/// Limits and context of one execution.
#[derive(Debug, Clone)]
pub struct Options {
    /// `now()` in ticks since the Unix epoch.
    pub now: i64,
    /// Longest query text accepted.
    pub max_query_len: usize,
    /// When to give up.
    pub deadline: Option<std::time::Instant>,
}

impl Default for Options {
    fn default() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self {
            now: value::ticks_from_unix_seconds(now.unix_timestamp(), i64::from(now.nanosecond())),
            max_query_len: 100_000,
            deadline: None,
        }
    }
}

/// Control commands (`.drop`, `.set`, …) are management, not queries: refuse them.
fn reject_commands(src: &str) -> Result<(), KqlError> {
    let trimmed = src.trim_start();
    if trimmed.starts_with('.') {
        let offset = src.len() - trimmed.len();
        return Err(KqlError::syntax(src, offset, "control commands are not allowed: this endpoint only runs queries"));
    }
    Ok(())
}

/// Parse and run a query.
///
/// # Errors
/// Syntax, semantic and limit errors, each with its position where it has one.
pub fn run(src: &str, catalog: &dyn Catalog, options: &Options) -> Result<Table, KqlError> {
    if src.len() > options.max_query_len {
        return Err(KqlError::limit(&format!(
            "the query is {} characters long; the limit is {}",
            src.len(),
            options.max_query_len
        )));
    }
    reject_commands(src)?;
    let statements = parser::parse(src)?;
    ops::execute(src, &statements, catalog, options)
}
