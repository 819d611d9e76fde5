//! Benchmark of the KQL engine against DuckDB on the same data, in the same run.
//!
//! ```text
//! pip install duckdb
//! cargo run --release -p fleetpilot-emulator --example kql-bench -- [ROWS] [JOIN_ROWS]
//! ```
//!
//! Builds a table of ROWS rows (default 10,000,000: `TimeGenerated`, `_ResourceId`,
//! `MetricName`, `Average`, from fixed formulas) and two tables of JOIN_ROWS rows (default
//! 1,000,000), runs (a) `where` + `summarize avg(Average) by bin(TimeGenerated, 5m), MetricName`,
//! (b) `summarize percentile(Average, 95) by _ResourceId | top 10`, (c) an inner join — each
//! three times, median — then runs `bench/duckdb_kql_reference.py` on the same data and prints
//! the ratios and peak memory. Without DuckDB it prints the KQL figures alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use fleetpilot_emulator::kql::{self, Column, MapCatalog, Table, Type, Value};

mod support;
use support::peak_rss_mib;

fn build(rows: usize, join_rows: usize) -> (MapCatalog, f64) {
    let t0 = kql::value::parse_datetime("2024-01-01").unwrap_or(0);
    let metrics: Vec<Arc<str>> =
        ["CpuUtilization", "MemoryUtilization", "DiskIO", "NetworkIn", "Percentage CPU"].iter().map(|s| Arc::from(*s)).collect();
    let resources: Vec<Arc<str>> = (0..1000)
        .map(|i| {
            Arc::from(format!("/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-{i}").as_str())
        })
        .collect();
    let mut raw_bytes = 0f64;
    let mut time = Vec::with_capacity(rows);
    let mut resource = Vec::with_capacity(rows);
    let mut metric = Vec::with_capacity(rows);
    let mut average = Vec::with_capacity(rows);
    for i in 0..rows as u64 {
        time.push(Value::DateTime(t0 + (i / 100) as i64 * kql::value::TICKS_PER_SECOND));
        let r = &resources[((i * 7919) % 1000) as usize];
        let m = &metrics[(i % 5) as usize];
        raw_bytes += 16.0 + r.len() as f64 + m.len() as f64;
        resource.push(Value::String(r.clone()));
        metric.push(Value::String(m.clone()));
        average.push(Value::Real(((i.wrapping_mul(2654435761)) % 10000) as f64 / 100.0));
    }
    let t = Table::new(vec![
        Column::new("TimeGenerated", Type::DateTime, time),
        Column::new("_ResourceId", Type::String, resource),
        Column::new("MetricName", Type::String, metric),
        Column::new("Average", Type::Real, average),
    ]);
    let side = |mult: u64, name: &str| {
        Table::new(vec![
            Column::new(
                "k",
                Type::Long,
                (0..join_rows as u64).map(|i| Value::Long(((i * mult) % (join_rows as u64 / 2)) as i64)).collect(),
            ),
            Column::new(name, Type::Long, (0..join_rows as i64).map(Value::Long).collect()),
        ])
    };
    let catalog = MapCatalog(BTreeMap::from([
        ("T".to_string(), Arc::new(t)),
        ("L".to_string(), Arc::new(side(7, "a"))),
        ("R".to_string(), Arc::new(side(13, "b"))),
    ]));
    (catalog, raw_bytes / (1024.0 * 1024.0))
}

fn median_secs(catalog: &MapCatalog, query: &str) -> (f64, Table) {
    let mut times = Vec::new();
    let mut last = Table::default();
    for _ in 0..3 {
        let started = Instant::now();
        last = kql::run(query, catalog, &kql::Options::default()).unwrap_or_else(|e| panic!("{query}: {e}"));
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[1], last)
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rows = args.first().copied().unwrap_or(10_000_000);
    let join_rows = args.get(1).copied().unwrap_or(1_000_000);
    let started = Instant::now();
    let (catalog, raw_mib) = build(rows, join_rows);
    let load = started.elapsed().as_secs_f64();
    let after_load = peak_rss_mib();
    let queries = [
        (
            "a",
            "T | where MetricName in (\"CpuUtilization\", \"MemoryUtilization\") | summarize avg(Average) by bin(TimeGenerated, 5m), MetricName",
        ),
        ("b", "T | summarize p95 = percentile(Average, 95) by _ResourceId | top 10 by p95"),
        ("c", "L | join kind=inner R on k | count"),
    ];
    // `KQL_BENCH_EXTRA="query"` times one more query over the same tables (for profiling).
    if let Ok(extra) = std::env::var("KQL_BENCH_EXTRA") {
        let (secs, table) = median_secs(&catalog, &extra);
        println!("kql    (extra) {secs:8.3} s  -> {} rows: {extra}", table.rows);
    }
    let mut kql_times = BTreeMap::new();
    // `KQL_BENCH_ONLY=a` runs one of the three (for profiling; the DuckDB reference still runs all).
    let only = std::env::var("KQL_BENCH_ONLY").ok();
    for (name, q) in queries {
        if only.as_deref().is_some_and(|o| o != name) {
            kql_times.insert(name, f64::NAN);
            continue;
        }
        let (secs, table) = median_secs(&catalog, q);
        println!("kql    ({name}) {secs:8.3} s  -> {} rows", table.rows);
        if name == "c" {
            println!("       join count = {:?}", table.columns[0].values[0]);
        }
        kql_times.insert(name, secs);
    }
    let peak = peak_rss_mib();
    println!(
        "kql    load {load:.2} s; raw column data {raw_mib:.0} MiB; RSS after load {after_load:.0} MiB; peak RSS {peak:.0} MiB ({:.2}x raw)",
        peak / raw_mib
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/duckdb_kql_reference.py");
    let output = std::process::Command::new("python3").arg(script).arg(rows.to_string()).arg(join_rows.to_string()).output();
    match output {
        Ok(o) if o.status.success() => {
            let duck: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            for name in ["a", "b", "c"] {
                let d = duck[name].as_f64().unwrap_or(f64::NAN);
                println!("duckdb ({name}) {d:8.3} s  -> kql/duckdb = {:.1}x", kql_times[name] / d);
            }
            println!(
                "duckdb load {:.2} s; peak RSS {:.0} MiB; join count {}",
                duck["load_s"].as_f64().unwrap_or(0.0),
                duck["peak_rss_mib"].as_f64().unwrap_or(0.0),
                duck["c_count"]
            );
        }
        Ok(o) => println!("duckdb reference skipped: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("failed")),
        Err(e) => println!("duckdb reference skipped: cannot run python3 ({e})"),
    }
}
