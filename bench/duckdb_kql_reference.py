"""DuckDB reference for the KQL benchmark (emulator/examples/kql-bench.rs runs this).

Builds the same synthetic tables as the Rust benchmark (same formulas, no randomness), runs the
SQL equivalents of its three queries, and prints one JSON object: median seconds per query and
the process's peak resident memory.
Usage: python3 duckdb_kql_reference.py ROWS JOIN_ROWS
"""

import json
import statistics
import sys
import time

import duckdb

rows = int(sys.argv[1])
join_rows = int(sys.argv[2])
con = duckdb.connect()
con.execute("SET threads TO 2")
t0 = time.perf_counter()
con.execute(f"""
CREATE TABLE t AS
SELECT TIMESTAMP '2024-01-01 00:00:00' + to_seconds(i // 100) AS TimeGenerated,
       '/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-' || ((i * 7919) % 1000) AS _ResourceId,
       (['CpuUtilization', 'MemoryUtilization', 'DiskIO', 'NetworkIn', 'Percentage CPU'])[(i % 5) + 1] AS MetricName,
       ((i * 2654435761) % 10000) / 100.0 AS Average
FROM range({rows}) r(i)
""")
con.execute(f"CREATE TABLE l AS SELECT (i * 7) % {join_rows // 2} AS k, i AS a FROM range({join_rows}) r(i)")
con.execute(f"CREATE TABLE r AS SELECT (i * 13) % {join_rows // 2} AS k, i AS b FROM range({join_rows}) r(i)")
load = time.perf_counter() - t0

queries = {
    "a": """SELECT time_bucket(INTERVAL 5 MINUTE, TimeGenerated) AS TimeGenerated, MetricName, avg(Average)
            FROM t WHERE MetricName IN ('CpuUtilization', 'MemoryUtilization') GROUP BY ALL""",
    "b": """SELECT _ResourceId, quantile_disc(Average, 0.95) AS p95 FROM t GROUP BY ALL ORDER BY p95 DESC LIMIT 10""",
    "c": """SELECT count(*) FROM l JOIN r USING (k)""",
}
out = {"load_s": load}
for name, sql in queries.items():
    times = []
    for _ in range(3):
        s = time.perf_counter()
        result = con.execute(sql).fetchall()
        times.append(time.perf_counter() - s)
    out[name] = statistics.median(times)
    out[name + "_rows"] = len(result)
    if name == "c":
        out["c_count"] = result[0][0]
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would report the parent's peak.
with open("/proc/self/status") as f:
    hwm = next(line for line in f if line.startswith("VmHWM:"))
out["peak_rss_mib"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
