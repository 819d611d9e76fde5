//! `fleetpilot job`: Azure ML jobs from the command line, through a running fleetpilot's MCP
//! endpoint — the same tools and guardrails every other client goes through.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use serde::Deserialize;
use serde_json::{Value, json};

/// An Azure ML command job YAML (`$schema: …/commandJob.schema.json`).
#[derive(Debug, Deserialize)]
struct JobYaml {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    command: String,
    #[serde(default)]
    code: Option<String>,
    environment: serde_yaml_ng::Value,
    compute: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    experiment_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    resources: Option<Resources>,
}

#[derive(Debug, Deserialize)]
struct Resources {
    #[serde(default)]
    instance_count: Option<u32>,
}

fn scalar(v: &serde_yaml_ng::Value) -> String {
    match v {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Number(n) => n.to_string(),
        serde_yaml_ng::Value::Bool(b) => b.to_string(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// The arguments of `submit_ml_job` for a job YAML file.
pub fn job_arguments(file: &Path, name: Option<&str>) -> Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let job: JobYaml = serde_yaml_ng::from_str(&text).with_context(|| format!("{} is not a command job YAML", file.display()))?;
    let _ = &job.description;
    let environment = match &job.environment {
        serde_yaml_ng::Value::String(s) => s.clone(),
        serde_yaml_ng::Value::Mapping(m) => m.get("image").map(scalar).context("an inline environment needs an 'image'")?,
        other => bail!("'environment' must be a name or a mapping, not {other:?}"),
    };
    let inputs: BTreeMap<String, String> = job
        .inputs
        .iter()
        .map(|(k, v)| {
            let value = match v {
                serde_yaml_ng::Value::Mapping(m) => m.get("path").or_else(|| m.get("value")).map(scalar).unwrap_or_default(),
                other => scalar(other),
            };
            (k.clone(), value)
        })
        .collect();
    let mut args = json!({
        "command": job.command.trim(),
        "environment": environment,
        "compute": job.compute.trim_start_matches("azureml:"),
        "code": job.code.unwrap_or_else(|| ".".into()),
        "inputs": inputs,
        "instance_count": job.resources.and_then(|r| r.instance_count).unwrap_or(1),
    });
    if let Some(d) = job.display_name {
        args["display_name"] = json!(d);
    }
    if let Some(e) = job.experiment_name {
        args["experiment_name"] = json!(e);
    }
    if let Some(n) = name {
        args["name"] = json!(n);
    }
    Ok(args)
}

/// Call one tool on the server and print its result; returns the process's exit code.
pub async fn call(server: &str, tool: &str, arguments: Value) -> Result<std::process::ExitCode> {
    let client = ()
        .serve(StreamableHttpClientTransport::from_uri(server.to_string()))
        .await
        .with_context(|| format!("cannot reach fleetpilot at {server}; start it with `fleetpilot serve` or pass --server"))?;
    let args = arguments.as_object().cloned().unwrap_or_default();
    let result = client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args)).await?;
    let _ = client.cancel().await;
    if result.is_error == Some(true) {
        let text = result.content.iter().find_map(|c| c.as_text().map(|t| t.text.clone())).unwrap_or_default();
        eprintln!("error: {text}");
        return Ok(std::process::ExitCode::from(1));
    }
    let body = result.structured_content.unwrap_or(Value::Null);
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_job_files_read_unchanged() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/recipe");
        let args = job_arguments(&dir.join("job.yml"), Some("j1")).unwrap();
        assert_eq!(args["command"], "python train_model.py --samples 50000 --features 100 --complexity 2");
        assert_eq!(args["environment"], "azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest");
        assert_eq!(
            (args["compute"].as_str(), args["display_name"].as_str(), args["name"].as_str()),
            (Some("compute-cluster"), Some("scaling-test-job"), Some("j1"))
        );
        let args = job_arguments(&dir.join("scaling-test-job.yml"), None).unwrap();
        assert_eq!(args["experiment_name"], "adaptive-scaling-validation");
        assert!(args.get("name").is_none());
    }
}
