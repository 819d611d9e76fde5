//! Azure ML over HTTP: the recipe's job runs on the compute cluster in virtual time, shows up
//! in `AmlComputeJobEvent`, and can be canceled; the cluster grows and shrinks with the work.

use std::sync::Arc;
use std::time::Duration;

use fleetpilot_emulator::logs::LogConfig;
use fleetpilot_emulator::{Emulator, EmulatorConfig, Scenario, WorldConfig};
use serde_json::{Value, json};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

struct Env {
    base: String,
    http: reqwest::Client,
    emulator: Arc<Emulator>,
    _cancel: tokio_util::sync::DropGuard,
}

async fn start() -> Env {
    let emulator = Emulator::new(EmulatorConfig {
        world: WorldConfig { retry_after_secs: 0, ..WorldConfig::default() },
        start: datetime!(2026-03-02 08:00 UTC),
        speed: 0.0,
        scenario: Scenario::Reference,
    });
    let cancel = CancellationToken::new();
    let (addr, _) = fleetpilot_emulator::spawn(emulator.clone(), "127.0.0.1:0".parse().unwrap(), cancel.clone()).await.unwrap();
    Env { base: format!("http://{addr}"), http: reqwest::Client::new(), emulator, _cancel: cancel.drop_guard() }
}

const WS: &str = "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.MachineLearningServices/workspaces/mlw-adaptive-scaling";

impl Env {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let sep = if path.contains('?') { "&" } else { "?" };
        let mut r = self.http.request(method, format!("{}{path}{sep}api-version=2026-07-01", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    async fn job_status(&self, name: &str) -> String {
        self.call(reqwest::Method::GET, &format!("{WS}/jobs/{name}"), None).await.1["properties"]["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn kql(&self, query: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/v1/workspaces/{}/query", self.base, LogConfig::default().workspace_id))
            .json(&json!({"query": query}))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }
}

/// The recipe's job.yml as an ARM command job.
fn recipe_job() -> Value {
    json!({"properties": {
        "jobType": "Command",
        "command": "python train_model.py --samples 50000 --features 100 --complexity 2",
        "codeId": ".",
        "environmentId": "azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest",
        "computeId": format!("{WS}/computes/compute-cluster"),
        "displayName": "scaling-test-job",
        "experimentName": "adaptive-scaling-test",
    }})
}

#[tokio::test]
async fn the_recipe_job_queues_runs_completes_and_is_logged() {
    let env = start().await;
    let (status, body) = env.call(reqwest::Method::PUT, &format!("{WS}/jobs/job-1"), Some(recipe_job())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["properties"]["status"], "NotStarted");
    let advance = |s| env.emulator.clock.advance(Duration::from_secs(s));
    advance(20);
    assert_eq!(env.job_status("job-1").await, "Queued", "the cluster starts at zero nodes");
    let (_, compute) = env.call(reqwest::Method::GET, &format!("{WS}/computes/compute-cluster"), None).await;
    assert_eq!(compute["properties"]["properties"]["allocationState"], "Resizing");
    advance(150);
    let s = env.job_status("job-1").await;
    assert!(s == "Preparing" || s == "Running", "{s}");
    // --samples 50000 --features 100 --complexity 2: 200 s of work.
    advance(300);
    assert_eq!(env.job_status("job-1").await, "Completed");
    advance(30 * 60);
    let (_, compute) = env.call(reqwest::Method::GET, &format!("{WS}/computes/compute-cluster"), None).await;
    assert_eq!(compute["properties"]["properties"]["currentNodeCount"], 0, "idle nodes leave after the idle time");
    let events = env.kql("AmlComputeJobEvent | where JobName == 'job-1' | order by TimeGenerated asc | project EventType").await;
    let kinds: Vec<&str> = events["tables"][0]["rows"].as_array().unwrap().iter().filter_map(|r| r[0].as_str()).collect();
    assert_eq!(kinds, ["JobSubmitted", "JobPreparing", "JobRunning", "JobCompleted"]);
    let clusters = env.kql("AmlComputeClusterEvent | summarize ups = countif(TargetNodeCount > CurrentNodeCount), downs = countif(TargetNodeCount < CurrentNodeCount)").await;
    assert_eq!(clusters["tables"][0]["rows"][0], json!([1, 1]));
    let priority = env.kql("AmlComputeClusterEvent | distinct VmPriority").await;
    assert_eq!(priority["tables"][0]["rows"], json!([["Dedicated"]]), "the cluster's own priority");
    // The cluster's nodes cost money while allocated, and show as active while the job runs.
    let metrics = env
        .kql("AzureMetrics | where Resource endswith '/COMPUTES/COMPUTE-CLUSTER' | summarize cost = sum(iff(MetricName == 'TotalCost', Total, 0.0)), active = max(iff(MetricName == 'Active Nodes', Maximum, 0.0))")
        .await;
    let row = &metrics["tables"][0]["rows"][0];
    assert!(row[0].as_f64().unwrap() > 0.0, "allocated nodes cost money: {row}");
    assert_eq!(row[1].as_f64(), Some(1.0), "one node ran the job: {row}");
}

#[tokio::test]
async fn cancel_and_bad_jobs() {
    let env = start().await;
    env.call(reqwest::Method::PUT, &format!("{WS}/jobs/job-2"), Some(recipe_job())).await;
    let r = env.http.post(format!("{}{WS}/jobs/job-2/cancel?api-version=2026-07-01", env.base)).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("location"));
    env.emulator.clock.advance(Duration::from_secs(20));
    assert_eq!(env.job_status("job-2").await, "Canceled");
    let mut bad = recipe_job();
    bad["properties"]["computeId"] = json!("nope");
    let (status, body) = env.call(reqwest::Method::PUT, &format!("{WS}/jobs/job-3"), Some(bad)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("UserError")));
    let (status, _) = env.call(reqwest::Method::PUT, &format!("{WS}/jobs/job-2"), Some(recipe_job())).await;
    assert_eq!(status, 409, "job names are unique");
    let (status, _) = env.call(reqwest::Method::GET, &format!("{WS}/jobs/none"), None).await;
    assert_eq!(status, 404);
    let (status, list) = env.call(reqwest::Method::GET, &format!("{WS}/jobs"), None).await;
    assert_eq!((status, list["value"].as_array().unwrap().len()), (200, 1));
}

#[tokio::test]
async fn workspaces_of_kind_hub_and_project() {
    let env = start().await;
    let hub = "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-ml-adaptive-scaling/providers/Microsoft.MachineLearningServices/workspaces/hub-1";
    let (status, body) = env.call(reqwest::Method::PUT, hub, Some(json!({"location": "eastus", "kind": "Hub"}))).await;
    assert_eq!((status, body["kind"].as_str()), (201, Some("Hub")));
    let project = hub.replace("hub-1", "project-1");
    let (status, _) = env.call(reqwest::Method::PUT, &project, Some(json!({"location": "eastus", "kind": "Project"}))).await;
    assert_eq!(status, 400, "a project needs its hub");
    let (status, body) = env
        .call(
            reqwest::Method::PUT,
            &project,
            Some(json!({"location": "eastus", "kind": "Project", "properties": {"hubResourceId": hub}})),
        )
        .await;
    assert_eq!((status, body["properties"]["hubResourceId"].as_str()), (201, Some(hub)));
}
