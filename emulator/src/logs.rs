//! Log Analytics: the emulated workspace's tables, the telemetry the world writes into them
//! (with ingestion delays), and the query API (`POST|GET /v1/workspaces/{id}/query`).
//!
//! Table names and columns follow the Azure Monitor table schemas (a subset of columns).
//! Rows become visible when their ingestion time has passed; `ingestion_time()` reads it
//! from the internal `$IngestionTime` column, which queries never return.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use time::OffsetDateTime;

use crate::kql::value::{TICKS_PER_SECOND, ticks_from_unix_seconds};
use crate::kql::{self, Catalog, Column, Table, Type, Value};

/// Internal column holding each row's ingestion time.
pub const INGESTION_COLUMN: &str = "$IngestionTime";

/// Settings of the emulated workspace.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Workspace (customer) id the query API answers for.
    pub workspace_id: String,
    /// Rows older than this (by `TimeGenerated`) are dropped.
    pub retention: Duration,
    /// Most rows returned by one query (Log Analytics: 500,000).
    pub max_rows: usize,
    /// Most bytes of rows returned by one query (Log Analytics: about 64 MB).
    pub max_bytes: usize,
    /// Longest query text accepted.
    pub max_query_len: usize,
    /// Default query timeout (a `Prefer: wait=N` header may lower or raise it up to 10 min).
    pub timeout: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            workspace_id: "5c6a0d6e-8b1f-4b5e-9d1a-0f3c2b7e4a91".into(),
            retention: Duration::from_secs(2 * 86_400),
            max_rows: 500_000,
            max_bytes: 64 * 1024 * 1024,
            max_query_len: 64 * 1024,
            timeout: Duration::from_secs(180),
        }
    }
}

/// Column layouts of the tables the emulator writes.
pub fn schemas() -> BTreeMap<&'static str, Vec<(&'static str, Type)>> {
    use Type::*;
    BTreeMap::from([
        (
            "AzureMetrics",
            vec![
                ("TenantId", String),
                ("SourceSystem", String),
                ("TimeGenerated", DateTime),
                ("ResourceId", String),
                ("MetricName", String),
                ("Total", Real),
                ("Count", Real),
                ("Maximum", Real),
                ("Minimum", Real),
                ("Average", Real),
                ("TimeGrain", String),
                ("UnitName", String),
                ("Type", String),
                ("_ResourceId", String),
                ("SubscriptionId", String),
                ("ResourceGroup", String),
                ("ResourceProvider", String),
                ("Resource", String),
            ],
        ),
        (
            "AzureActivity",
            vec![
                ("TenantId", String),
                ("SourceSystem", String),
                ("CallerIpAddress", String),
                ("CategoryValue", String),
                ("CorrelationId", String),
                ("Level", String),
                ("OperationNameValue", String),
                ("Caller", String),
                ("EventSubmissionTimestamp", DateTime),
                ("ActivityStatusValue", String),
                ("ActivitySubstatusValue", String),
                ("ResourceGroup", String),
                ("ResourceProviderValue", String),
                ("SubscriptionId", String),
                ("TimeGenerated", DateTime),
                ("OperationName", String),
                ("ActivityStatus", String),
                ("ResourceProvider", String),
                ("Resource", String),
                ("ResourceId", String),
                ("Properties", Dynamic),
                ("_ResourceId", String),
                ("Type", String),
            ],
        ),
        (
            "Heartbeat",
            vec![
                ("TenantId", String),
                ("SourceSystem", String),
                ("TimeGenerated", DateTime),
                ("Computer", String),
                ("Category", String),
                ("OSType", String),
                ("OSName", String),
                ("Version", String),
                ("ResourceId", String),
                ("ResourceGroup", String),
                ("SubscriptionId", String),
                ("ResourceProvider", String),
                ("Resource", String),
                ("ResourceType", String),
                ("_ResourceId", String),
                ("Type", String),
            ],
        ),
        (
            "Perf",
            vec![
                ("TenantId", String),
                ("Computer", String),
                ("ObjectName", String),
                ("CounterName", String),
                ("InstanceName", String),
                ("CounterValue", Real),
                ("TimeGenerated", DateTime),
                ("CounterPath", String),
                ("SourceSystem", String),
                ("_ResourceId", String),
                ("Type", String),
            ],
        ),
        (
            "AmlComputeJobEvent",
            vec![
                ("TimeGenerated", DateTime),
                ("ResourceId", String),
                ("OperationName", String),
                ("EventType", String),
                ("JobId", String),
                ("JobName", String),
                ("ExperimentName", String),
                ("ClusterName", String),
                ("JobStatus", String),
                ("ToolType", String),
                ("_ResourceId", String),
                ("Type", String),
            ],
        ),
        (
            "AmlComputeClusterEvent",
            vec![
                ("TimeGenerated", DateTime),
                ("ResourceId", String),
                ("OperationName", String),
                ("EventType", String),
                ("ClusterName", String),
                ("VmSize", String),
                ("VmPriority", String),
                ("CurrentNodeCount", Long),
                ("TargetNodeCount", Long),
                ("_ResourceId", String),
                ("Type", String),
            ],
        ),
        (
            "ComputeFleetEvents_CL",
            vec![
                ("TimeGenerated", DateTime),
                ("Fleet", String),
                ("EventType", String),
                ("VmSize", String),
                ("Priority", String),
                ("Message", String),
                ("_ResourceId", String),
                ("Type", String),
            ],
        ),
    ])
}

/// How long after `TimeGenerated` a table's rows become queryable (min, max), per the
/// latencies Azure Monitor documents: agents 30 s–2 min, platform metrics ~3 min, Activity
/// Log 3–20 min.
pub(crate) fn ingestion_delay(table: &str) -> (u64, u64) {
    match table {
        "AzureActivity" => (180, 1200),
        "AzureMetrics" => (120, 240),
        "Heartbeat" | "Perf" => (30, 120),
        _ => (30, 90),
    }
}

/// The workspace's tables and the rows on their way in.
#[derive(Debug)]
pub struct LogStore {
    /// Settings.
    pub config: LogConfig,
    tables: BTreeMap<String, Arc<Table>>,
    /// What per-VM `Heartbeat` and `Perf` rows are generated from (see [`crate::vm_telemetry`]).
    pub vm: Arc<crate::vm_telemetry::VmTelemetry>,
    /// The time of the last `ingest_until` (ticks).
    now: i64,
    /// Rows not yet ingested, per table.
    inboxes: hashbrown::HashMap<String, Inbox>,
    arrivals: u64,
    /// When rows past retention were last dropped (ticks).
    last_sweep: i64,
    /// Strings seen before, shared so that repeated names cost one allocation.
    interned: hashbrown::HashSet<Arc<str>>,
    rng: StdRng,
    /// Seconds added to every row's ingestion delay (a fault).
    pub extra_delay_secs: u64,
}

/// The column names a writer sent last for a table, and their positions.
#[derive(Debug, Default)]
struct Layout {
    names: Vec<Box<str>>,
    positions: Vec<Option<usize>>,
}

/// The shared copy of `s`, kept from now on if it is new. The set is bounded: past 100,000
/// strings it starts over, which costs memory only, not correctness.
fn intern(set: &mut hashbrown::HashSet<Arc<str>>, s: &str) -> Arc<str> {
    if let Some(shared) = set.get(s) {
        return shared.clone();
    }
    if set.len() > 100_000 {
        set.clear();
    }
    let shared: Arc<str> = Arc::from(s);
    set.insert(shared.clone());
    shared
}

/// Rows of one table on their way in, column by column (no allocation per row).
#[derive(Debug, Default)]
struct Inbox {
    /// The column names its writer sent last, and their positions.
    layout: Layout,
    /// Ingestion time and arrival order of each row.
    at: Vec<(i64, u64)>,
    /// One vector per column of the table; the ingestion column is filled on ingestion.
    columns: Vec<Vec<Value>>,
    /// The soonest ingestion time in the inbox.
    earliest: i64,
    /// Positions of `TimeGenerated` and `Type`.
    time_generated: Option<usize>,
    type_column: Option<usize>,
}

/// Ticks of a time.
pub fn ticks(t: OffsetDateTime) -> i64 {
    ticks_from_unix_seconds(t.unix_timestamp(), i64::from(t.nanosecond()))
}

impl LogStore {
    /// An empty workspace with the emulator's tables.
    pub fn new(config: LogConfig, seed: u64) -> Self {
        let mut tables = BTreeMap::new();
        for (name, columns) in schemas() {
            let mut cols: Vec<Column> =
                columns.iter().map(|(n, t)| Column { name: (*n).into(), ty: *t, values: Arc::new(Vec::new()) }).collect();
            cols.push(Column { name: INGESTION_COLUMN.into(), ty: Type::DateTime, values: Arc::new(Vec::new()) });
            tables.insert(name.to_string(), Arc::new(Table::new(cols)));
        }
        Self {
            config,
            tables,
            inboxes: Default::default(),
            vm: Default::default(),
            now: i64::MIN,
            arrivals: 0,
            last_sweep: i64::MIN,
            interned: Default::default(),
            rng: StdRng::seed_from_u64(seed.wrapping_add(0x5eed)),
            extra_delay_secs: 0,
        }
    }

    /// Queue a row for `table`, by column name; missing columns are null. `Type` is filled in.
    pub fn write<'a>(&mut self, table: &str, time_generated: OffsetDateTime, cells: impl IntoIterator<Item = (&'a str, Value)>) {
        let Some(t) = self.tables.get(table) else {
            return;
        };
        let (lo, hi) = ingestion_delay(table);
        let delay = lo + (self.rng.random::<f64>() * (hi - lo) as f64) as u64 + self.extra_delay_secs;
        self.arrivals += 1;
        let at = ticks(time_generated) + delay as i64 * TICKS_PER_SECOND;
        let inbox = self.inboxes.entry_ref(table).or_default();
        if inbox.columns.len() != t.columns.len() {
            inbox.columns = t.columns.iter().map(|_| Vec::new()).collect();
            inbox.time_generated = t.index_of("TimeGenerated");
            inbox.type_column = t.index_of("Type");
        }
        let row = inbox.at.len();
        for column in &mut inbox.columns {
            column.push(Value::Null);
        }
        // Writers send the same column names row after row: positions are looked up once.
        let layout = &mut inbox.layout;
        for (k, (name, v)) in cells.into_iter().enumerate() {
            if layout.names.get(k).is_none_or(|n| **n != *name) {
                layout.names.truncate(k);
                layout.positions.truncate(k);
                layout.names.push(name.into());
                layout.positions.push(t.index_of(name));
            }
            let Some(i) = layout.positions[k] else { continue };
            inbox.columns[i][row] = match v {
                // A string the caller already shares costs nothing more to keep.
                Value::String(s) if Arc::strong_count(&s) > 1 => Value::String(s),
                Value::String(s) => Value::String(intern(&mut self.interned, &s)),
                other => other,
            };
        }
        if let Some(i) = inbox.time_generated {
            inbox.columns[i][row] = Value::DateTime(ticks(time_generated));
        }
        if let Some(i) = inbox.type_column {
            inbox.columns[i][row] = Value::String(intern(&mut self.interned, table));
        }
        inbox.earliest = if row == 0 { at } else { inbox.earliest.min(at) };
        inbox.at.push((at, self.arrivals));
    }

    /// Make rows whose ingestion time has come visible, and drop rows past retention. Rows
    /// are dropped in batches, every quarter of the retention period, so a row lives at most
    /// a quarter longer than the retention (Log Analytics, too, purges in the background):
    /// dropping rows from the front of every column costs a move of the whole table.
    pub fn ingest_until(&mut self, now: OffsetDateTime) {
        let now_ticks = ticks(now);
        self.now = now_ticks;
        // Due rows, in ingestion order (then arrival order), appended column by column.
        for (name, inbox) in self.inboxes.iter_mut() {
            if inbox.at.is_empty() || inbox.earliest > now_ticks {
                continue;
            }
            let Some(t) = self.tables.get_mut(name) else { continue };
            let mut due: Vec<usize> = (0..inbox.at.len()).filter(|&r| inbox.at[r].0 <= now_ticks).collect();
            due.sort_unstable_by_key(|&r| inbox.at[r]);
            let t = Arc::make_mut(t);
            t.rows += due.len();
            let ingestion = t.columns.len() - 1;
            for (c, column) in t.columns.iter_mut().enumerate() {
                let values = Arc::make_mut(&mut column.values);
                values.reserve(due.len());
                if c == ingestion {
                    values.extend(due.iter().map(|&r| Value::DateTime(inbox.at[r].0)));
                } else {
                    let source = &mut inbox.columns[c];
                    values.extend(due.iter().map(|&r| std::mem::replace(&mut source[r], Value::Null)));
                }
            }
            // Keep the rows still on their way.
            let keep: Vec<bool> = inbox.at.iter().map(|(at, _)| *at > now_ticks).collect();
            for column in &mut inbox.columns {
                let mut k = keep.iter();
                column.retain(|_| *k.next().unwrap_or(&false));
            }
            inbox.at.retain(|(at, _)| *at > now_ticks);
            inbox.earliest = inbox.at.iter().map(|(at, _)| *at).min().unwrap_or(i64::MAX);
        }
        let retention = self.config.retention.as_secs() as i64 * TICKS_PER_SECOND;
        if now_ticks.saturating_sub(self.last_sweep) < retention / 4 {
            return;
        }
        self.last_sweep = now_ticks;
        let horizon = now_ticks - retention;
        if !self.vm.is_empty() {
            Arc::make_mut(&mut self.vm).forget_before(horizon);
        }
        for t in self.tables.values_mut() {
            let Some(i) = t.index_of("TimeGenerated") else {
                continue;
            };
            let old = t.columns[i].values.iter().take_while(|v| matches!(v, Value::DateTime(x) if *x < horizon)).count();
            if old > 0 {
                let t = Arc::make_mut(t);
                for c in &mut t.columns {
                    Arc::make_mut(&mut c.values).drain(..old);
                }
                t.rows -= old;
            }
        }
    }

    /// A snapshot of the tables for one query, limited to `[from, to)` by `TimeGenerated`
    /// when a timespan was given.
    pub fn snapshot(&self, window: Option<(i64, i64)>) -> Snapshot {
        let horizon = self.now.saturating_sub(self.config.retention.as_secs() as i64 * TICKS_PER_SECOND);
        Snapshot { tables: self.tables.clone(), window, vm: self.vm.clone(), now: self.now, horizon }
    }

    /// Rows visible in a table (for tests and status).
    pub fn rows(&self, table: &str) -> usize {
        match table {
            "Heartbeat" | "Perf" if !self.vm.is_empty() => self.snapshot(None).table(table).map_or(0, |t| t.rows),
            _ => self.tables.get(table).map_or(0, |t| t.rows),
        }
    }
}

/// The tables as they were when a query started.
#[derive(Debug, Clone)]
pub struct Snapshot {
    tables: BTreeMap<String, Arc<Table>>,
    window: Option<(i64, i64)>,
    vm: Arc<crate::vm_telemetry::VmTelemetry>,
    /// When the snapshot was taken, and the retention horizon then (ticks).
    now: i64,
    horizon: i64,
}

impl Catalog for Snapshot {
    fn table(&self, name: &str) -> Option<Arc<Table>> {
        let t = self.tables.get(name)?;
        if matches!(name, "Heartbeat" | "Perf") && !self.vm.is_empty() {
            let (from, to) = self.window.unwrap_or((i64::MIN, i64::MAX));
            let columns: Vec<(String, Type)> = t.columns.iter().map(|c| (c.name.clone(), c.ty)).collect();
            let generated = self.vm.table(name, &columns, self.now, from.max(self.horizon), to)?;
            let written = match self.window {
                None => t.clone(),
                Some((from, to)) => Arc::new(t.take_rows(&rows_between(t, from, to))),
            };
            return Some(Arc::new(written.concat(&generated)));
        }
        let Some((from, to)) = self.window else {
            return Some(t.clone());
        };
        t.index_of("TimeGenerated")?;
        Some(Arc::new(t.take_rows(&rows_between(t, from, to))))
    }
}

/// Rows of `t` whose `TimeGenerated` is in `[from, to)`.
fn rows_between(t: &Table, from: i64, to: i64) -> Vec<usize> {
    let Some(i) = t.index_of("TimeGenerated") else {
        return (0..t.rows).collect();
    };
    (0..t.rows).filter(|&r| matches!(t.columns[i].values[r], Value::DateTime(x) if x >= from && x < to)).collect()
}

/// Parse the query API's `timespan`: an ISO-8601 duration ending now (`PT12H`, `P1D`), or an
/// interval `start/end` or `start/duration`.
pub fn parse_timespan_param(text: &str, now: i64) -> Option<(i64, i64)> {
    let duration = |d: &str| iso_duration(d);
    match text.split_once('/') {
        None => duration(text).map(|d| (now - d, now + 1)),
        Some((a, b)) => {
            let start = kql::value::parse_datetime(a)?;
            let end = kql::value::parse_datetime(b).or_else(|| duration(b).map(|d| start + d))?;
            Some((start, end))
        }
    }
}

/// An ISO-8601 duration (`P1DT2H30M`, `PT15M`, `P7D`) in ticks.
pub fn iso_duration(text: &str) -> Option<i64> {
    let t = text.trim().strip_prefix('P')?;
    let (date, time) = t.split_once('T').unwrap_or((t, ""));
    let date_unit = |c: char| match c {
        'D' => Some(86_400.0),
        'W' => Some(7.0 * 86_400.0),
        _ => None,
    };
    let time_unit = |c: char| match c {
        'H' => Some(3600.0),
        'M' => Some(60.0),
        'S' => Some(1.0),
        _ => None,
    };
    let seconds = duration_part(date, date_unit)? + duration_part(time, time_unit)?;
    Some((seconds * TICKS_PER_SECOND as f64).round() as i64)
}

/// Seconds in one part of an ISO-8601 duration: numbers each followed by a unit letter.
fn duration_part(text: &str, unit: impl Fn(char) -> Option<f64>) -> Option<f64> {
    let mut total = 0f64;
    let mut num = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        total += num.parse::<f64>().ok()? * unit(c)?;
        num.clear();
    }
    num.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn rows_become_visible_after_their_ingestion_delay() {
        let mut store = LogStore::new(LogConfig::default(), 1);
        let t0 = datetime!(2024-01-01 00:00 UTC);
        store.write("Heartbeat", t0, [("Computer", Value::str("vm-1"))]);
        store.ingest_until(t0 + time::Duration::seconds(29));
        assert_eq!(store.rows("Heartbeat"), 0);
        store.ingest_until(t0 + time::Duration::seconds(121));
        assert_eq!(store.rows("Heartbeat"), 1);
        let snapshot = store.snapshot(None);
        let t = snapshot.table("Heartbeat").unwrap();
        assert_eq!(t.columns[t.index_of("Type").unwrap()].values[0], Value::str("Heartbeat"));
    }

    #[test]
    fn retention_drops_old_rows() {
        let mut store = LogStore::new(LogConfig { retention: Duration::from_secs(3600), ..LogConfig::default() }, 1);
        let t0 = datetime!(2024-01-01 00:00 UTC);
        store.write("Heartbeat", t0, []);
        store.ingest_until(t0 + time::Duration::minutes(5));
        assert_eq!(store.rows("Heartbeat"), 1);
        store.ingest_until(t0 + time::Duration::minutes(61));
        assert_eq!(store.rows("Heartbeat"), 0);
    }

    #[test]
    fn timespan_parameters() {
        let now = kql::value::parse_datetime("2024-01-10").unwrap();
        let h = 3600 * TICKS_PER_SECOND;
        assert_eq!(parse_timespan_param("PT12H", now), Some((now - 12 * h, now + 1)));
        assert_eq!(parse_timespan_param("P1D", now), Some((now - 24 * h, now + 1)));
        let start = kql::value::parse_datetime("2024-01-01").unwrap();
        assert_eq!(parse_timespan_param("2024-01-01T00:00:00Z/PT1H", now), Some((start, start + h)));
        assert_eq!(parse_timespan_param("2024-01-01/2024-01-02", now), Some((start, start + 24 * h)));
        assert_eq!(parse_timespan_param("yesterday", now), None);
    }
}
