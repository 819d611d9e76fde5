//! `fleetpilot provision plan|apply|destroy`: the recipe's whole stack, declaratively, against
//! Azure or a running `fleetpilot emulator`. The model is `fleetpilot_infra::stack`, the engine
//! `fleetpilot_infra::provision`; this file reads flags and configuration, renders plans like
//! `terraform plan` (or as JSON) and shows progress.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fleetpilot_infra::provision::{Action, Change, Outcome, Progress, Provisioner, Redactor, Report, StackPlan};
use fleetpilot_infra::stack::{Stack, StackInputs};
use fleetpilot_infra::{ArmClient, ArmConfig, CredentialConfig};
use serde_json::Value;

use crate::config::{Config, Target};

/// Plan output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Coloured, like `terraform plan`.
    Text,
    /// `{"changes":[{"id","type","action","properties":[…]}]}`.
    Json,
}

/// When to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// When stdout is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Where and how to provision.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionArgs {
    /// ARM endpoint: a running `fleetpilot emulator` (e.g. http://127.0.0.1:8081) or Azure's.
    /// Default: `stack.arm_endpoint`, then `azure.endpoint`.
    #[arg(long, env = "FLEETPILOT_ARM_ENDPOINT")]
    pub arm_endpoint: Option<String>,
    /// Subscription (default: `azure.subscription_id`, or the emulator's).
    #[arg(long)]
    pub subscription: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Colour the text output.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: Color,
}

/// Options of `apply` and `destroy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    /// How many resources may be in flight at once (1: one after another).
    #[arg(long, default_value_t = 8)]
    pub parallelism: usize,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// The emulator's subscription (`WorldConfig::default`).
fn emulator_subscription() -> String {
    fleetpilot_emulator::world::WorldConfig::default().subscription_id
}

fn is_loopback(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or_default();
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") || url.starts_with("http://[::1]")
}

/// The provisioner and the stack it builds, from configuration and flags.
fn setup(config: &Config, target: &ProvisionArgs) -> Result<(Provisioner, Stack)> {
    let (endpoint, subscription, credential) = match (&target.arm_endpoint, &config.stack.arm_endpoint, &config.target) {
        (Some(e), _, t) | (None, Some(e), t) => {
            let azure = match t {
                Target::Azure { subscription_id, credential, .. } if !is_loopback(e) => {
                    Some((subscription_id.clone(), credential.clone()))
                }
                _ => None,
            };
            let (sub, cred) = azure.unwrap_or_else(|| (emulator_subscription(), CredentialConfig::None));
            (e.clone(), sub, cred)
        }
        (None, None, Target::Azure { endpoint, subscription_id, credential, .. }) => {
            (endpoint.clone(), subscription_id.clone(), credential.clone())
        }
        (None, None, Target::Emulator(_)) => bail!(
            "provision needs an ARM endpoint. Try it on the emulator: run `fleetpilot emulator --scenario empty` and pass \
             --arm-endpoint http://127.0.0.1:8081; for Azure, configure [azure] (or stack.arm_endpoint)"
        ),
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        bail!("the ARM endpoint {endpoint:?} is not an http(s) URL");
    }
    let subscription = target.subscription.clone().unwrap_or(subscription);
    let token = config.alerts_token.as_ref().map(|t| t.expose().to_string()).context(
        "provision needs the alert webhook's token: set alerts.token or FLEETPILOT_ALERTS_TOKEN (16+ random characters). \
         The action group sends it to /alerts and the key vault keeps it",
    )?;
    let stack_config = &config.stack;
    let project_endpoint = match &stack_config.agent.project_endpoint {
        Some(p) => p.clone(),
        None if is_loopback(&endpoint) => {
            format!("{}/api/projects/{}", endpoint.trim_end_matches('/'), stack_config.project)
        }
        None => bail!(
            "set stack.agent.project_endpoint to the AI Foundry project's endpoint \
             (https://<resource>.services.ai.azure.com/api/projects/{})",
            stack_config.project
        ),
    };
    let inputs = StackInputs {
        subscription_id: subscription.clone(),
        alerts_token: token,
        project_endpoint,
        tool_names: fleetpilot_tools::FleetTools::tool_names(),
    };
    let stack = stack_config.resources(&inputs);
    let mut arm = ArmConfig::new(endpoint.clone(), subscription.clone());
    arm.credential = credential.clone();
    arm.retry = config.retry.clone();
    arm.operation_timeout = config.operation_timeout;
    let mut agents = ArmConfig::new(endpoint, subscription);
    agents.credential = credential;
    agents.retry = config.retry.clone();
    agents.token_scope = "https://ai.azure.com/.default".into();
    let provisioner = Provisioner::new(
        ArmClient::new(arm).context("cannot build the ARM client")?,
        ArmClient::new(agents).context("cannot build the AI Foundry client")?,
        &stack.secrets,
    );
    Ok((provisioner, stack))
}

/// ANSI colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Paint(bool);

impl Paint {
    fn for_stdout(color: Color) -> Self {
        Paint(match color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        })
    }
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }
    fn green(self, t: &str) -> String {
        self.wrap("32", t)
    }
    fn yellow(self, t: &str) -> String {
        self.wrap("33", t)
    }
    fn red(self, t: &str) -> String {
        self.wrap("31", t)
    }
    fn bold(self, t: &str) -> String {
        self.wrap("1", t)
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    let chars = text.chars().count();
    if chars > 90 { format!("{}… ({chars} characters)", text.chars().take(60).collect::<String>()) } else { text }
}

fn name_of(change: &Change) -> &str {
    change.id.rsplit('/').next().unwrap_or(&change.id)
}

/// The plan as text, like `terraform plan`: one block per change, then the counts.
pub fn render_text(plan: &StackPlan, redactor: &Redactor, paint: Paint) -> String {
    let mut out = String::new();
    let visible: Vec<&Change> = plan.changes.iter().filter(|c| c.action != Action::NoOp || c.reason.is_some()).collect();
    if plan.is_empty() && visible.is_empty() {
        out.push_str(&paint.green("No changes."));
        out.push_str(" The stack matches the configuration.\n");
        return out;
    }
    out.push_str("fleetpilot will perform the following actions:\n");
    for c in visible {
        let (sign, verb, color): (&str, &str, fn(Paint, &str) -> String) = match c.action {
            Action::Create => ("+", "will be created", Paint::green),
            Action::Update => ("~", "will be updated in-place", Paint::yellow),
            Action::Delete => ("-", "will be destroyed", Paint::red),
            Action::NoOp => (" ", "is left as it is", |_, t: &str| t.to_string()),
        };
        out.push('\n');
        out.push_str(&paint.bold(&format!("  # {} {} {verb}", c.type_name, name_of(c))));
        out.push('\n');
        if let Some(reason) = &c.reason {
            out.push_str(&format!("  # ({})\n", redactor.text(reason)));
        }
        let label = if c.key.is_empty() { String::new() } else { format!("{} ", c.key) };
        out.push_str(&format!("  {} {label}{}\n", color(paint, sign), redactor.text(&c.id)));
        for p in &c.properties {
            let line = match (&p.before, &p.after) {
                (None, Some(after)) => format!("      {} {} = {}", color(paint, "+"), p.path, short(&redactor.value(after))),
                (Some(before), Some(after)) => format!(
                    "      {} {} = {} -> {}",
                    color(paint, "~"),
                    p.path,
                    short(&redactor.value(before)),
                    short(&redactor.value(after))
                ),
                (Some(before), None) => format!("      {} {} = {}", color(paint, "-"), p.path, short(&redactor.value(before))),
                (None, None) => continue,
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "\n{} {} to create, {} to update, {} to delete, {} unchanged.\n",
        paint.bold("Plan:"),
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Delete),
        plan.count(Action::NoOp),
    ));
    out
}

fn print_plan(plan: &StackPlan, redactor: &Redactor, target: &ProvisionArgs) -> Result<()> {
    let text = match target.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&redactor.plan_json(plan))?),
        Format::Text => render_text(plan, redactor, Paint::for_stdout(target.color)),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// ARM's what-if, as text: one line per resource, then the changed properties.
pub fn render_what_if(result: &Value, paint: Paint) -> String {
    let mut out = String::from("\nARM what-if (the same stack as a template deployment, incremental):\n");
    let changes = result.pointer("/properties/changes").and_then(Value::as_array).cloned().unwrap_or_default();
    for c in &changes {
        let kind = c.get("changeType").and_then(Value::as_str).unwrap_or("Unsupported");
        let (sign, color): (&str, fn(Paint, &str) -> String) = match kind {
            "Create" => ("+", Paint::green),
            "Modify" | "Deploy" => ("~", Paint::yellow),
            "Delete" => ("-", Paint::red),
            "NoChange" => ("=", |_, t: &str| t.to_string()),
            _ => ("*", |_, t: &str| t.to_string()),
        };
        let id = c.get("resourceId").and_then(Value::as_str).unwrap_or_default();
        out.push_str(&format!("  {} {kind} {id}\n", color(paint, sign)));
        for d in c.get("delta").and_then(Value::as_array).into_iter().flatten() {
            let path = d.get("path").and_then(Value::as_str).unwrap_or_default();
            let before = d.get("before").map(short).unwrap_or_default();
            let after = d.get("after").map(short).unwrap_or_default();
            out.push_str(&format!("      {} {path} = {before} -> {after}\n", color(paint, "~")));
        }
    }
    let count = |t: &str| changes.iter().filter(|c| c.get("changeType").and_then(Value::as_str) == Some(t)).count();
    out.push_str(&format!(
        "ARM: {} to create, {} to modify, {} unchanged, {} ignored.\n",
        count("Create"),
        count("Modify"),
        count("NoChange"),
        count("Ignore")
    ));
    out
}

/// `provision plan`. With `detailed_exitcode`, 2 when there are changes; with `what_if`, ARM's
/// what-if too (the resource group must exist).
pub async fn plan(
    config: &Config,
    target: &ProvisionArgs,
    detailed_exitcode: bool,
    what_if: bool,
) -> Result<std::process::ExitCode> {
    let (provisioner, stack) = setup(config, target)?;
    let plan = provisioner.plan(&stack).await.context("cannot read the stack")?;
    let group_missing =
        plan.changes.iter().any(|c| c.type_name == "Microsoft.Resources/resourceGroups" && c.action == Action::Create);
    if what_if && group_missing {
        print_plan(&plan, provisioner.redactor(), target)?;
        eprintln!(
            "ARM what-if skipped: it runs in the stack's resource group, which does not exist yet (everything above is a create)."
        );
    } else if what_if {
        let token = config.alerts_token.as_ref().map(|t| t.expose().to_string()).unwrap_or_default();
        let result = provisioner.what_if(&stack, &token).await?;
        match target.format {
            Format::Json => {
                let mut json = provisioner.redactor().plan_json(&plan);
                json["what_if"] = result;
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
            Format::Text => {
                let paint = Paint::for_stdout(target.color);
                print!(
                    "{}{}",
                    render_text(&plan, provisioner.redactor(), paint),
                    provisioner.redactor().text(&render_what_if(&result, paint))
                );
            }
        }
    } else {
        print_plan(&plan, provisioner.redactor(), target)?;
    }
    Ok(if detailed_exitcode && !plan.is_empty() { std::process::ExitCode::from(2) } else { std::process::ExitCode::SUCCESS })
}

fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} needs confirmation, and stdin is not a terminal: pass --yes");
    }
    eprint!("{question} Only 'yes' will be accepted: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// Progress on stderr: spinners on a terminal, one line per event otherwise.
struct CliProgress {
    bars: Option<(indicatif::MultiProgress, Mutex<HashMap<String, indicatif::ProgressBar>>)>,
    redactor: Redactor,
}

impl CliProgress {
    fn new(redactor: Redactor) -> Self {
        let bars = std::io::stderr().is_terminal().then(|| (indicatif::MultiProgress::new(), Mutex::new(HashMap::new())));
        Self { bars, redactor }
    }
    fn label(change: &Change) -> String {
        if change.key.is_empty() { name_of(change).to_string() } else { format!("{} ({})", change.key, name_of(change)) }
    }
}

fn verb(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("creating", "created"),
        Action::Update => ("updating", "updated"),
        Action::Delete => ("destroying", "destroyed"),
        Action::NoOp => ("checking", "unchanged"),
    }
}

impl Progress for CliProgress {
    fn started(&self, change: &Change) {
        let message = format!("{} {}…", verb(change.action).0, Self::label(change));
        match &self.bars {
            Some((multi, bars)) => {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                    bar.set_style(style);
                }
                bar.set_message(message);
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.lock().unwrap_or_else(|e| e.into_inner()).insert(change.id.clone(), bar);
            }
            None => eprintln!("{message}"),
        }
    }

    fn finished(&self, change: &Change, outcome: &Outcome) {
        let label = Self::label(change);
        let message = match outcome {
            Outcome::Done(took) => format!("✓ {label} {} ({:.1}s)", verb(change.action).1, took.as_secs_f64()),
            Outcome::Unchanged => return,
            Outcome::Failed(why) => format!("✗ {label}: {}", self.redactor.text(why)),
            Outcome::Skipped(why) => format!("· {label} skipped: {why}"),
        };
        match &self.bars {
            Some((multi, bars)) => match bars.lock().unwrap_or_else(|e| e.into_inner()).remove(&change.id) {
                Some(bar) => bar.finish_with_message(message),
                None => {
                    let _ = multi.println(message);
                }
            },
            None => eprintln!("{message}"),
        }
    }
}

fn summary(report: &Report, destroy: bool) -> String {
    let failed: Vec<String> = report
        .outcomes
        .iter()
        .filter_map(|(c, o)| match o {
            Outcome::Failed(why) => Some(format!("  {}: {why}", c.id)),
            _ => None,
        })
        .collect();
    let skipped = report.outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Skipped(_))).count();
    let head = if destroy {
        format!("{} destroyed", report.done(Action::Delete))
    } else {
        format!(
            "{} added, {} changed, {} destroyed",
            report.done(Action::Create),
            report.done(Action::Update),
            report.done(Action::Delete)
        )
    };
    if failed.is_empty() {
        format!(
            "{} complete in {:.1}s! Resources: {head}.\n",
            if destroy { "Destroy" } else { "Apply" },
            report.elapsed.as_secs_f64()
        )
    } else {
        format!(
            "{} failed after {:.1}s. Resources: {head}; {} failed, {skipped} skipped:\n{}\nRun it again: it picks up where this one stopped.\n",
            if destroy { "Destroy" } else { "Apply" },
            report.elapsed.as_secs_f64(),
            failed.len(),
            failed.join("\n")
        )
    }
}

/// `provision apply`: plan, confirm, converge, then check that nothing is left to do.
pub async fn apply(config: &Config, target: &ProvisionArgs, args: &ApplyArgs) -> Result<std::process::ExitCode> {
    let (provisioner, stack) = setup(config, target)?;
    let plan = provisioner.plan(&stack).await.context("cannot read the stack")?;
    print_plan(&plan, provisioner.redactor(), target)?;
    if plan.is_empty() {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if !confirm("Apply these changes?", args.yes)? {
        eprintln!("Apply cancelled.");
        return Ok(std::process::ExitCode::FAILURE);
    }
    let progress = Arc::new(CliProgress::new(provisioner.redactor().clone()));
    let report = provisioner.apply(&stack, &plan, args.parallelism, progress).await;
    eprint!("{}", summary(&report, false));
    if !report.succeeded() {
        return Ok(std::process::ExitCode::FAILURE);
    }
    let after = provisioner.plan(&stack).await.context("cannot re-read the stack")?;
    if !after.is_empty() {
        eprintln!("warning: the stack still differs after apply (something else changed it meanwhile?):");
        eprint!("{}", render_text(&after, provisioner.redactor(), Paint(false)));
        return Ok(std::process::ExitCode::FAILURE);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `provision destroy`: every resource of the stack, dependents first.
pub async fn destroy(config: &Config, target: &ProvisionArgs, args: &ApplyArgs) -> Result<std::process::ExitCode> {
    let (provisioner, stack) = setup(config, target)?;
    let plan = provisioner.plan_destroy(&stack).await.context("cannot read the stack")?;
    if plan.count(Action::Delete) == 0 {
        println!("Nothing to destroy: no resource of the stack exists.");
        return Ok(std::process::ExitCode::SUCCESS);
    }
    print_plan(&plan, provisioner.redactor(), target)?;
    if !confirm("Destroy every resource above? There is no undo.", args.yes)? {
        eprintln!("Destroy cancelled.");
        return Ok(std::process::ExitCode::FAILURE);
    }
    let progress = Arc::new(CliProgress::new(provisioner.redactor().clone()));
    let report = provisioner.apply(&stack, &plan, args.parallelism, progress).await;
    eprint!("{}", summary(&report, true));
    Ok(if report.succeeded() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8081"));
        assert!(is_loopback("http://localhost:8081/"));
        assert!(!is_loopback("https://management.azure.com"));
        assert!(!is_loopback("https://127.0.0.1.example.com"));
    }
}
