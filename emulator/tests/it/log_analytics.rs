//! The Log Analytics query API over HTTP: the world's telemetry, the response and error
//! shapes of the official spec, limits, and ingestion delay.

use std::sync::Arc;

use fleetpilot_emulator::logs::LogConfig;
use fleetpilot_emulator::{Emulator, EmulatorConfig, Scenario, WorldConfig};
use serde_json::{Value, json};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

use crate::spec::Spec;

struct Env {
    base: String,
    workspace: String,
    http: reqwest::Client,
    emulator: Arc<Emulator>,
    _cancel: tokio_util::sync::DropGuard,
}

async fn start(logs: LogConfig) -> Env {
    let workspace = logs.workspace_id.clone();
    let emulator = Emulator::new(EmulatorConfig {
        world: WorldConfig { logs, retry_after_secs: 0, ..WorldConfig::default() },
        start: datetime!(2026-03-02 08:00 UTC),
        speed: 0.0,
        scenario: Scenario::Reference,
    });
    let cancel = CancellationToken::new();
    let (addr, _) = fleetpilot_emulator::spawn(emulator.clone(), "127.0.0.1:0".parse().unwrap(), cancel.clone()).await.unwrap();
    Env { base: format!("http://{addr}"), workspace, http: reqwest::Client::new(), emulator, _cancel: cancel.drop_guard() }
}

impl Env {
    async fn query(&self, query: &str, timespan: Option<&str>) -> (u16, Value) {
        let mut body = json!({ "query": query });
        if let Some(t) = timespan {
            body["timespan"] = json!(t);
        }
        let r = self.http.post(format!("{}/v1/workspaces/{}/query", self.base, self.workspace)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    fn advance(&self, seconds: u64) {
        self.emulator.clock.advance(std::time::Duration::from_secs(seconds));
    }
}

fn la_spec() -> Spec {
    let mut spec = Spec::load("OperationalInsights.2022-10-27.json");
    // The spec types cells as `object`; Log Analytics returns scalars there.
    spec.relax("table", "/properties/rows/items/items");
    spec
}

fn rows(body: &Value) -> &Vec<Value> {
    body["tables"][0]["rows"].as_array().unwrap()
}

#[tokio::test]
async fn heartbeats_and_metrics_arrive_after_their_ingestion_delay() {
    let env = start(LogConfig::default()).await;
    let (status, body) = env.query("Heartbeat | count", None).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&body)[0][0], 0, "nothing is ingested at start");
    env.advance(600);
    let (status, body) = env.query("Heartbeat | summarize vms = dcount(Computer), n = count()", None).await;
    assert_eq!(status, 200, "{body}");
    la_spec().check("queryResults", &body);
    assert_eq!(rows(&body)[0][0], 30, "one heartbeat stream per running VM");
    let (_, body) = env
        .query("Heartbeat | extend delay = ingestion_time() - TimeGenerated | summarize lo = min(delay), hi = max(delay)", None)
        .await;
    let (lo, hi) = (rows(&body)[0][0].as_str().unwrap().to_string(), rows(&body)[0][1].as_str().unwrap().to_string());
    assert!(lo.as_str() >= "00:00:30" && hi.as_str() <= "00:02:00", "delays {lo}..{hi}");
    let (_, body) = env
        .query(
            r#"Perf | where CounterName == "% Processor Time" | summarize vms = dcount(Computer), cpu = avg(CounterValue)"#,
            None,
        )
        .await;
    assert_eq!(rows(&body)[0][0], 30);
    let cpu = rows(&body)[0][1].as_f64().unwrap();
    assert!(cpu > 2.5 && cpu < 100.0, "VMs serving the reference service: {cpu}% CPU");
    let (_, body) = env.query(r#"AzureMetrics | where MetricName == "SpotCapacity" | summarize max(Average)"#, None).await;
    assert_eq!(rows(&body)[0][0], 20.0);
    assert_eq!(body["tables"][0]["columns"][0], json!({"name": "max_Average", "type": "real"}));
}

#[tokio::test]
async fn arm_writes_land_in_azure_activity_and_the_recipe_query_sees_them() {
    let env = start(LogConfig::default()).await;
    let fleet = format!(
        "{}/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.AzureFleet/fleets/cf-ml-scaling?api-version=2024-11-01",
        env.base
    );
    let r = env
        .http
        .patch(&fleet)
        .header("user-agent", "fleetpilot-test/1.0")
        .json(&json!({"properties": {"spotPriorityProfile": {"capacity": 22}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    env.advance(25 * 60);
    let recipe = "AzureActivity\n| where ResourceProvider == \"Microsoft.AzureFleet\"\n| where OperationNameValue contains \"scale\"\n| summarize count() by bin(TimeGenerated, 15m)\n| render timechart";
    let (status, body) = env.query(recipe, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(&body).len(), 1);
    assert_eq!(rows(&body)[0][1], 1);
    let (_, body) = env.query("AzureActivity | project OperationNameValue, ActivityStatusValue, Caller", None).await;
    let ops: Vec<&str> = rows(&body).iter().filter_map(|r| r[0].as_str()).collect();
    assert!(ops.contains(&"Microsoft.AzureFleet/fleets/write"), "{ops:?}");
    assert_eq!(rows(&body)[0][1], "Success");
    assert_eq!(rows(&body)[0][2], "fleetpilot-test", "the caller comes from the client's User-Agent product");
}

#[tokio::test]
async fn errors_follow_the_spec_and_say_where() {
    let env = start(LogConfig::default()).await;
    let spec = la_spec();
    let (status, body) = env.query("Heartbeat | whre Computer == 'x'", None).await;
    assert_eq!(status, 400);
    spec.check("errorResponse", &body);
    let inner = &body["error"]["innererror"]["innererror"];
    assert_eq!(inner["additionalProperties"], json!({"line": 1, "pos": 12, "token": "whre"}));
    assert!(inner["message"].as_str().unwrap().contains("line [1,12]"));
    let (status, body) = env.query(".drop table Heartbeat", None).await;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("control commands are not allowed"));
    let (status, body) = env.query("NoSuchTable", None).await;
    assert_eq!((status, body["error"]["innererror"]["code"].as_str()), (400, Some("SemanticError")));
    let r = env
        .http
        .post(format!("{}/v1/workspaces/not-this-one/query", env.base))
        .json(&json!({"query": "print 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = env.http.post(format!("{}/v1/workspaces/{}/query", env.base, env.workspace)).body("{oops").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let (status, _) = env.query("print 1", Some("not a timespan")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn limits_cut_results_and_long_queries() {
    let env = start(LogConfig { max_rows: 5, max_query_len: 100, ..LogConfig::default() }).await;
    let (status, body) = env.query("range x from 1 to 10 step 1", None).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&body).len(), 5);
    assert_eq!(body["error"]["code"], "PartialError");
    la_spec().check("queryResults", &body);
    let (status, _) = env.query(&format!("print x = \"{}\"", "a".repeat(200)), None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_size_cap_cuts_big_results() {
    let env = start(LogConfig { max_bytes: 1000, ..LogConfig::default() }).await;
    let (status, body) = env.query("range x from 1 to 1000 step 1 | extend s = strcat('row-', x)", None).await;
    assert_eq!(status, 200);
    let n = rows(&body).len();
    assert!(n > 10 && n < 100, "{n} rows fit in 1000 bytes");
    assert_eq!(body["error"]["code"], "PartialError");
}

#[tokio::test]
async fn the_get_form_and_the_timespan_filter() {
    let env = start(LogConfig::default()).await;
    env.advance(3600);
    let url = format!("{}/v1/workspaces/{}/query", env.base, env.workspace);
    let all: Value = env.http.get(&url).query(&[("query", "Heartbeat | count")]).send().await.unwrap().json().await.unwrap();
    let recent: Value = env
        .http
        .get(&url)
        .query(&[("query", "Heartbeat | count"), ("timespan", "PT10M")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (all, recent) = (rows(&all)[0][0].as_i64().unwrap(), rows(&recent)[0][0].as_i64().unwrap());
    assert!(all > recent && recent > 0, "all {all}, last 10 minutes {recent}");
}

#[tokio::test]
async fn render_is_returned_when_asked() {
    let env = start(LogConfig::default()).await;
    let r = env
        .http
        .post(format!("{}/v1/workspaces/{}/query", env.base, env.workspace))
        .header("prefer", "include-render=true, include-statistics=true")
        .json(&json!({"query": "print x = 1 | render timechart"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["render"]["visualization"], "timechart");
    assert!(body["statistics"]["query"]["executionTime"].is_number());
}
