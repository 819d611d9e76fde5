"""Interop: drive fleetpilot with the official MCP Python SDK over both transports.

Usage: python3 python_client.py BINARY
Starts `BINARY serve` (HTTP, tried in the SDK's `auto` and `legacy` modes) and
`BINARY mcp` (stdio), each with a paused clock and a fresh state database, and checks the
same journey on each: list tools, read the fleet, propose within bounds, apply, propose
beyond a bound (an isError result naming it), re-apply (nothing changes).
Prints "N passed, M failed" and exits non-zero on any failure.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from mcp import Client
from mcp.client.stdio import StdioServerParameters

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/fleetpilot"
EXPECTED_TOOLS = [
    "apply_proposal", "approve_proposal", "cancel_ml_job", "estimate_cost", "forecast_demand", "get_ml_job", "get_policy", "get_run",
    "list_fleets", "list_proposals", "list_runs", "propose_scale", "query_kql", "read_fleet", "reject_proposal",
    "submit_ml_job",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def journey(client: Client, label: str) -> None:
    tools = await client.list_tools()
    names = sorted(t.name for t in tools.tools)
    assert names == EXPECTED_TOOLS, f"{label}: tools {names}"
    apply_tool = next(t for t in tools.tools if t.name == "apply_proposal")
    assert apply_tool.annotations.destructive_hint is True, f"{label}: apply_proposal annotations"
    assert apply_tool.output_schema is not None

    kql = await client.call_tool("query_kql", {"query": "print x = 1 + 1"})
    assert not kql.is_error and kql.structured_content["tables"][0]["rows"] == [[2]], f"{label}: {kql}"
    bad = await client.call_tool("query_kql", {"query": "print x = "})
    assert bad.is_error and json.loads(bad.content[0].text)["code"] == "kql_error", f"{label}: {bad}"

    fleet = await client.call_tool("read_fleet", {"fleet": "cf-ml-scaling"})
    assert not fleet.is_error, f"{label}: {fleet}"
    before = fleet.structured_content["spot"]["capacity"]

    proposed = await client.call_tool(
        "propose_scale",
        {"fleet": "cf-ml-scaling", "spot_capacity": before + 2, "reason": f"interop {label}"},
    )
    assert not proposed.is_error, f"{label}: {proposed}"
    assert proposed.structured_content["verdict"]["decision"] == "allow"
    pid = proposed.structured_content["id"]

    applied = await client.call_tool("apply_proposal", {"proposal_id": pid})
    assert not applied.is_error, f"{label}: {applied}"
    assert applied.structured_content["result"] == "applied"

    denied = await client.call_tool(
        "propose_scale", {"fleet": "cf-ml-scaling", "spot_capacity": 500, "reason": "too much"}
    )
    assert denied.is_error, f"{label}: a denial must be an error result"
    error = json.loads(denied.content[0].text)
    bounds = [v["bound"] for v in error["violations"]]
    assert error["code"] == "denied" and "max_spot" in bounds, f"{label}: {error}"
    assert denied.structured_content["status"] == "denied", f"{label}: the denied proposal is the structured content"

    again = await client.call_tool("apply_proposal", {"proposal_id": pid})
    assert not again.is_error and again.structured_content["result"] == "already_applied", f"{label}: {again}"
    after = await client.call_tool("read_fleet", {"fleet": "cf-ml-scaling"})
    assert after.structured_content["spot"]["capacity"] == before + 2, f"{label}: capacity moved twice"


def wait_healthy(base: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{base}/healthz never answered")


async def main() -> int:
    results: list[tuple[str, str | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ["auto", "legacy"]:
            port = free_port()
            env = dict(os.environ, RUST_LOG="warn")
            server = subprocess.Popen(
                [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--speed", "0", "--state", f"{tmp}/http-{mode}.db"],
                env=env,
            )
            try:
                wait_healthy(f"http://127.0.0.1:{port}")
                label = f"http/{mode}"
                try:
                    async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as client:
                        await journey(client, label)
                    results.append((label, None))
                except Exception as e:  # noqa: BLE001 - report every failure, keep going
                    results.append((label, repr(e)))
            finally:
                server.terminate()
                server.wait(timeout=10)
        for mode in ["auto", "legacy"]:
            label = f"stdio/{mode}"
            params = StdioServerParameters(
                command=BIN,
                args=["mcp", "--speed", "0", "--state", f"{tmp}/stdio-{mode}.db"],
                env={"RUST_LOG": "warn", "PATH": os.environ.get("PATH", "")},
            )
            try:
                async with Client(params, mode=mode) as client:
                    await journey(client, label)
                results.append((label, None))
            except Exception as e:  # noqa: BLE001
                results.append((label, repr(e)))
    failed = [(label, err) for label, err in results if err]
    for label, err in results:
        print(f"{'ok  ' if err is None else 'FAIL'} python-sdk {label}" + (f": {err}" if err else ""))
    print(f"python-sdk: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
