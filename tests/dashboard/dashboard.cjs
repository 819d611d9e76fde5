// The dashboard in a real browser: headless Chromium driven by Playwright against
// `fleetpilot serve` on loopback.
//
//   node tests/dashboard/dashboard.cjs BIN NODE_MODULES ARTIFACTS
//
// BIN: the fleetpilot binary; NODE_MODULES: where `playwright-core` is installed; ARTIFACTS:
// where screenshots go. Chromium is the system's (CHROMIUM, default /usr/bin/chromium).
// Checks: the page loads with no console errors; the charts have data points; a scale change
// made through MCP appears in the timeline within seconds; a proposal waiting for approval,
// approved in the page, is applied and the fleet changes. Exits non-zero on any failure.
"use strict";

const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const [bin, modules, artifacts] = process.argv.slice(2);
if (!bin || !modules || !artifacts) {
  console.error("usage: node dashboard.cjs BIN NODE_MODULES ARTIFACTS");
  process.exit(2);
}
const { chromium } = require(path.resolve(modules, "playwright-core"));
fs.mkdirSync(artifacts, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

async function waitHealthy(base) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) return;
    } catch {}
    await sleep(100);
  }
  throw new Error(`${base}/healthz never answered`);
}

let callId = 0;
async function mcp(base, tool, args) {
  const r = await fetch(`${base}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++callId, method: "tools/call", params: { name: tool, arguments: args } }),
  });
  const body = await r.json();
  if (body.error) throw new Error(`${tool}: ${JSON.stringify(body.error)}`);
  return body.result;
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fleetpilot-dashboard-"));
  const config = path.join(dir, "fleetpilot.toml");
  // The page approves (approver role); changes are quick to allow (no cooldown), and one
  // over 4 VMs needs a person's approval.
  fs.writeFileSync(config, [
    "[server]", 'http_role = "approver"', "",
    "[alerts]", "follow_up_secs = 0", "",
    "[policy.default]", "cooldown_secs = 0", "stabilization_secs = 0", "approval_above_delta = 4", "max_changes_per_hour = 100", "",
    "[dashboard]", "refresh_secs = 1", `evals_dir = ${JSON.stringify(path.join(dir, "evals"))}`, "",
  ].join("\n"));
  // Eval reports for the Evals section: one incident, and the policy comparison on a small
  // trace that ships with the project.
  const evals = path.join(dir, "evals");
  const quiet = { stdio: ["ignore", "ignore", "inherit"] };
  execFileSync(bin, ["eval", "incidents", "--k", "1", "--incident", "api-faults-01", "--out", evals], { ...quiet, cwd: path.resolve(__dirname, "../..") });
  const trace = path.resolve(__dirname, "../../emulator/data/traces/azure_functions_2019_sample500_0800_1600.csv.gz");
  execFileSync(bin, ["eval", "policies", "--trace", trace, "--plot", path.join(evals, "policies")], quiet);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(bin, ["--config", config, "serve", "--listen", `127.0.0.1:${port}`, "--state", path.join(dir, "state.db"), "--speed", "60"], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  let serverLog = "";
  server.stderr.on("data", (d) => { serverLog += d; });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  const problems = [];
  try {
    await waitHealthy(base);
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => { if (!r.url().endsWith("/api/events")) problems.push(`request failed: ${r.url()}`); });

    await page.goto(base, { waitUntil: "domcontentloaded" });
    check((await page.title()) === "fleetpilot", "the page has the wrong title");
    // Virtual time runs at 60×: telemetry lands within seconds.
    await page.waitForFunction(() => document.querySelectorAll("#chart-capacity circle.point").length >= 2, null, { timeout: 45000 });
    await page.waitForFunction(() => document.querySelectorAll("#chart-demand circle.point").length >= 2, null, { timeout: 30000 });
    const counts = await page.evaluate(() => ["capacity", "demand", "util", "cost"].map((c) => document.querySelectorAll(`#chart-${c} circle.point`).length));
    console.log(`data points per chart (capacity, demand, utilization, cost): ${counts.join(", ")}`);
    check(counts.every((n) => n > 0), `a chart has no data points: ${counts}`);
    await page.waitForSelector("#live.ok", { timeout: 10000 });
    await page.screenshot({ path: path.join(artifacts, "1-loaded.png"), fullPage: true });

    // A change made through MCP shows in the timeline.
    const fleet = JSON.parse((await mcp(base, "read_fleet", { fleet: "cf-ml-scaling" })).content[0].text);
    const spot = fleet.spot.capacity;
    const proposed = await mcp(base, "propose_scale", { fleet: "cf-ml-scaling", spot_capacity: spot + 2, reason: "dashboard test: MCP scale-out" });
    const proposal = proposed.structuredContent;
    check(!proposed.isError, `propose_scale failed: ${proposed.content[0].text}`);
    const applied = await mcp(base, "apply_proposal", { proposal_id: proposal.id });
    check(!applied.isError, `apply_proposal failed: ${applied.content[0].text}`);
    const started = Date.now();
    await page.waitForSelector(`#timeline li.applied[data-proposal="${proposal.id}"]`, { timeout: 10000 });
    console.log(`MCP change ${proposal.id} in the timeline after ${Date.now() - started} ms`);
    const text = await page.textContent(`#timeline li[data-proposal="${proposal.id}"]`);
    check(text.includes("MCP client") && text.includes("dashboard test: MCP scale-out"), `the timeline entry lacks who or why: ${text}`);
    await page.screenshot({ path: path.join(artifacts, "2-mcp-change.png"), fullPage: true });

    // A change over the approval threshold waits; approved in the page, it is applied.
    const regular = fleet.regular.capacity;
    const big = await mcp(base, "propose_scale", { fleet: "cf-ml-scaling", regular_capacity: regular + 6, reason: "dashboard test: needs approval" });
    const pending = big.structuredContent;
    check(pending.status === "needs_approval", `expected needs_approval, got ${pending.status}: ${big.content[0].text}`);
    const button = `#approvals [data-proposal="${pending.id}"] button.primary`;
    await page.waitForSelector(button, { timeout: 10000 });
    await page.screenshot({ path: path.join(artifacts, "3-pending.png"), fullPage: true });
    await page.focus(button);
    await page.keyboard.press("Enter");
    await page.waitForFunction((id) => (document.getElementById("review-result").textContent || "").includes(`${id}: applied`), pending.id, { timeout: 30000 });
    await page.waitForSelector(`#timeline li.applied[data-proposal="${pending.id}"]`, { timeout: 10000 });
    const after = JSON.parse((await mcp(base, "read_fleet", { fleet: "cf-ml-scaling" })).content[0].text);
    check(after.regular.capacity === regular + 6, `the fleet did not change: regular ${after.regular.capacity}, wanted ${regular + 6}`);
    await page.waitForFunction((want) => (document.getElementById("cards").textContent || "").includes(`${want} /`), regular + 6, { timeout: 10000 });
    await page.screenshot({ path: path.join(artifacts, "4-approved.png"), fullPage: true });
    console.log(`approved ${pending.id} in the page: regular ${regular} -> ${after.regular.capacity}`);

    // The eval reports, with the policy plot loaded.
    await page.waitForFunction(() => (document.getElementById("evals").textContent || "").includes("pass_1"), null, { timeout: 10000 });
    const plots = await page.evaluate(() => [...document.querySelectorAll("#evals img")].map((i) => i.complete && i.naturalWidth > 0));
    check(plots.length > 0 && plots.every(Boolean), `the policy plots did not load: ${plots}`);
    check((await page.textContent("#evals")).includes("cost_vs_oracle"), "the policy table is missing");
    await page.locator("#evals").screenshot({ path: path.join(artifacts, "5-evals.png") });

    // Keyboard: every control can be reached, and every input has a label.
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll("select, input")].filter((e) => !e.labels || e.labels.length === 0).length);
    check(unlabelled === 0, `${unlabelled} form controls without a label`);
    check(problems.length === 0, `problems in the page:\n${problems.join("\n")}`);
    console.log("dashboard: ok");
  } finally {
    await browser.close();
    server.kill();
  }
}

main().catch((e) => {
  console.error(`dashboard test failed: ${e.stack || e}`);
  process.exit(1);
});
