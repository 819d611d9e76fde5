//! Architecture rules, checked over `cargo metadata` and the sources. See ARCHITECTURE.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    dependencies: Vec<Dependency>,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
    kind: Option<String>,
}

fn metadata() -> Metadata {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata output")
}

/// Normal (non-dev, non-build) dependencies of each workspace package.
fn graph(meta: &Metadata) -> BTreeMap<String, BTreeSet<String>> {
    meta.packages
        .iter()
        .map(|p| (p.name.clone(), p.dependencies.iter().filter(|d| d.kind.is_none()).map(|d| d.name.clone()).collect()))
        .collect()
}

/// Everything `package` reaches through workspace packages (external crates included, not expanded).
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, package: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![package.to_string()];
    while let Some(p) = stack.pop() {
        for dep in graph.get(&p).into_iter().flatten() {
            if seen.insert(dep.clone()) && graph.contains_key(dep) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

const ASYNC_OR_IO: &[&str] = &[
    "tokio",
    "tokio-util",
    "futures",
    "async-trait",
    "reqwest",
    "hyper",
    "axum",
    "rmcp",
    "rusqlite",
    "azure_core",
    "azure_identity",
];

/// (package, crates it must never reach, directly or through workspace crates)
fn rules() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut core = ASYNC_OR_IO.to_vec();
    core.extend([
        "async-openai",
        "fleetpilot-emulator",
        "fleetpilot-infra",
        "fleetpilot-guardrails",
        "fleetpilot-tools",
        "fleetpilot-agent",
    ]);
    let mut guardrails = ASYNC_OR_IO.to_vec();
    guardrails.extend(["async-openai", "fleetpilot-emulator", "fleetpilot-infra", "fleetpilot-tools", "fleetpilot-agent"]);
    // The scaling policy is pure like the guardrails: series and observations in, decisions out.
    let policy = guardrails.clone();
    vec![
        ("fleetpilot-core", core),
        ("fleetpilot-guardrails", guardrails),
        ("fleetpilot-policy", policy),
        (
            "fleetpilot-emulator",
            vec![
                "fleetpilot-infra",
                "fleetpilot-guardrails",
                "fleetpilot-tools",
                "fleetpilot-agent",
                "fleetpilot-evals",
                "rmcp",
                "async-openai",
            ],
        ),
        (
            "fleetpilot-infra",
            vec!["fleetpilot-emulator", "fleetpilot-guardrails", "fleetpilot-tools", "fleetpilot-agent", "rmcp", "async-openai"],
        ),
        ("fleetpilot-tools", vec!["fleetpilot-emulator", "fleetpilot-agent", "async-openai"]),
        ("fleetpilot-agent", vec!["fleetpilot-infra", "fleetpilot-emulator", "fleetpilot-tools", "azure_core", "azure_identity"]),
        ("fleetpilot-prompts", vec!["tokio", "reqwest", "rmcp", "fleetpilot-infra", "fleetpilot-tools", "fleetpilot-agent"]),
    ]
}

#[test]
fn forbidden_dependencies_are_absent() {
    let meta = metadata();
    let graph = graph(&meta);
    let mut broken = Vec::new();
    for (package, forbidden) in rules() {
        assert!(graph.contains_key(package), "workspace has no package {package}");
        let reached = reach(&graph, package);
        for f in forbidden {
            if reached.contains(f) {
                broken.push(format!("{package} reaches {f}"));
            }
        }
    }
    assert!(broken.is_empty(), "architecture rules broken:\n{}", broken.join("\n"));
}

#[test]
fn the_rules_would_catch_a_violation() {
    let mut graph = BTreeMap::new();
    graph.insert("fleetpilot-agent".to_string(), BTreeSet::from(["fleetpilot-tools".to_string()]));
    graph.insert("fleetpilot-tools".to_string(), BTreeSet::from(["fleetpilot-infra".to_string()]));
    assert!(reach(&graph, "fleetpilot-agent").contains("fleetpilot-infra"), "transitive reach");
}

#[test]
fn every_crate_of_the_design_exists() {
    let names: BTreeSet<String> = metadata().packages.into_iter().map(|p| p.name).collect();
    for name in [
        "fleetpilot",
        "fleetpilot-core",
        "fleetpilot-emulator",
        "fleetpilot-infra",
        "fleetpilot-guardrails",
        "fleetpilot-policy",
        "fleetpilot-tools",
        "fleetpilot-prompts",
        "fleetpilot-agent",
        "fleetpilot-evals",
        "fleetpilot-e2e",
    ] {
        assert!(names.contains(name), "missing crate {name}");
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !matches!(path.file_name().and_then(|n| n.to_str()), Some("target" | "tests" | ".git" | "node_modules")) {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every mutation of Azure state goes through the executor: outside `infra/src/executor.rs`
/// (and the trait and its implementation in `infra/src/api.rs`), no library or binary code
/// calls the mutating `AzureApi` methods.
#[test]
fn only_the_executor_mutates_azure() {
    let meta = metadata();
    let mut files = Vec::new();
    rust_files(&meta.workspace_root, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let allowed = [Path::new("infra/src/executor.rs"), Path::new("infra/src/api.rs")];
    let mut offenders = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&meta.workspace_root).unwrap_or(&file).to_path_buf();
        if allowed.iter().any(|a| relative == *a) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for needle in [".update_fleet(", ".delete_vms(", ".submit_ml_job(", ".cancel_ml_job("] {
            if text.contains(needle) {
                offenders.push(format!("{} calls {needle}", relative.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "mutations outside the executor:\n{}", offenders.join("\n"));
}

/// Raw ARM writes happen in two places only: behind `AzureApi` (`infra/src/api.rs`, called by the
/// fleet executor) and in the stack executor (`infra/src/provision.rs`), besides the client
/// itself (`infra/src/arm.rs`). Any other code that holds an `ArmClient` only reads.
#[test]
fn only_the_executors_write_through_the_arm_client() {
    let meta = metadata();
    let mut files = Vec::new();
    rust_files(&meta.workspace_root, &mut files);
    let allowed = [Path::new("infra/src/arm.rs"), Path::new("infra/src/api.rs"), Path::new("infra/src/provision.rs")];
    let mut offenders = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&meta.workspace_root).unwrap_or(&file).to_path_buf();
        if allowed.iter().any(|a| relative == *a) || relative.components().any(|c| c.as_os_str() == "examples") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if !text.contains("ArmClient") {
            continue;
        }
        for needle in [".put(", ".patch(", ".delete("] {
            if text.contains(needle) {
                offenders.push(format!("{} holds an ArmClient and calls {needle}", relative.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "ARM writes outside the executors:\n{}", offenders.join("\n"));
}

/// The README's quick start is `cargo run --release -- serve`: that needs exactly one binary
/// in the workspace (benchmarks are examples).
#[test]
fn cargo_run_has_one_binary_to_run() {
    let bins: Vec<String> = metadata()
        .packages
        .iter()
        .flat_map(|p| {
            p.targets.iter().filter(|t| t.kind.iter().any(|k| k == "bin")).map(move |t| format!("{}:{}", p.name, t.name))
        })
        .collect();
    assert_eq!(bins, ["fleetpilot:fleetpilot"]);
}
