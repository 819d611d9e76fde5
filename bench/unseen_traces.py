#!/usr/bin/env python3
"""Demand traces fleetpilot's policy was not tuned on, derived from ../shared/data/demand.

    python3 bench/unseen_traces.py OUT_DIR
    cargo run --release -- eval policies --trace OUT_DIR/functions_http_only.csv ...

Writes per-minute CSVs (`minute_start,requests`, the format of the diffusion per-minute file):

- functions_http_only.csv    the Azure Functions sample's HTTP-triggered functions alone
                             (a low level with rare 7x spikes);
- functions_nonhttp_only.csv the same sample's other triggers (timers, queues, events...);
- functions_reversed.csv     the whole sample, minutes in reverse order (its ramps become falls);
- conv_reversed.csv          the Azure LLM conv trace per minute, in reverse order.

Real requests, only split or reordered; the evaluation scales each trace so that its peak
needs 40 VMs. Standard library only. Exits 0 with a message when ../shared is absent.
"""

import csv
import datetime
import gzip
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEMAND = os.path.join(HERE, "..", "..", "shared", "data", "demand")


def write(path, start, series):
    with open(path, "w", newline="") as f:
        f.write("minute_start,requests\n")
        for i, v in enumerate(series):
            stamp = (start + datetime.timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M")
            f.write(f"{stamp},{int(v)}\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    functions = os.path.join(DEMAND, "azure_functions_2019_sample500_0800_1600.csv.gz")
    per_minute = os.path.join(DEMAND, "azure_llm_2023_per_minute.csv")
    if not (os.path.exists(functions) and os.path.exists(per_minute)):
        print(f"skipped: the demand traces are not in {os.path.normpath(DEMAND)} (../shared is absent)")
        return
    os.makedirs(out, exist_ok=True)
    with gzip.open(functions, "rt") as f:
        rows = list(csv.reader(f))
    minutes = len(rows[0]) - 4
    sums = {"http": [0.0] * minutes, "other": [0.0] * minutes}
    for row in rows[1:]:
        series = sums["http" if row[3] == "http" else "other"]
        for i, v in enumerate(row[4:]):
            if v:
                series[i] += float(v)
    start = datetime.datetime(2019, 7, 15, 8, 0)
    write(os.path.join(out, "functions_http_only.csv"), start, sums["http"])
    write(os.path.join(out, "functions_nonhttp_only.csv"), start, sums["other"])
    total = [a + b for a, b in zip(sums["http"], sums["other"])]
    write(os.path.join(out, "functions_reversed.csv"), start, total[::-1])
    with open(per_minute) as f:
        conv = [int(r["requests"]) for r in csv.DictReader(f) if r["trace"] == "conv"]
    write(os.path.join(out, "conv_reversed.csv"), datetime.datetime(2023, 11, 16, 18, 15), conv[::-1])
    print(f"wrote 4 traces to {out}")


if __name__ == "__main__":
    main()
