//! The `fleetpilot` binary: parses configuration and flags and wires the crates together.

mod admin_cli;
mod autonomy;
mod chat;
mod config;
mod eval_cli;
mod eval_emulated;
mod incidents_cli;
mod job_cli;
mod kql_cli;
mod provision_cli;
mod run;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// glibc's allocator contends on its arena locks under concurrent load (measured with
/// `fleetpilot-bench`); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// fleetpilot lets an LLM agent scale Azure ML compute safely: typed tools over MCP,
/// deterministic guardrails, an idempotent executor, and a local Azure emulator.
///
/// With no configuration it runs against the embedded emulator, which holds the source
/// recipe's reference deployment (fleet `cf-ml-scaling` in `rg-ml-adaptive-scaling`).
#[derive(Debug, Parser)]
#[command(name = "fleetpilot", version, propagate_version = true)]
struct Cli {
    /// Configuration file (default: ./fleetpilot.toml when it exists).
    #[arg(long, global = true, env = "FLEETPILOT_CONFIG")]
    config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text", env = "FLEETPILOT_LOG_FORMAT")]
    log_format: run::LogFormat,

    /// Export spans over OTLP/HTTP to this collector (e.g. http://localhost:4318; `/v1/traces` is
    /// appended). Off when unset. `OTEL_EXPORTER_OTLP_HEADERS` adds headers.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,

    #[command(subcommand)]
    command: Command,
}

/// Options shared by the commands that run fleetpilot's tools.
#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// SQLite file for proposals and the journal (default: .fleetpilot/fleetpilot.db).
    #[arg(long, env = "FLEETPILOT_STATE")]
    state: Option<PathBuf>,

    /// Embedded emulator: virtual seconds per real second (0 pauses time).
    #[arg(long, env = "FLEETPILOT_EMULATOR_SPEED")]
    speed: Option<f64>,

    /// Embedded emulator: seed of every random draw.
    #[arg(long, env = "FLEETPILOT_EMULATOR_SEED")]
    seed: Option<u64>,

    /// Embedded emulator: `reference` (the recipe's deployment), `multi-region` (the same
    /// service on a second fleet in westus2) or `empty`.
    #[arg(long)]
    scenario: Option<String>,

    /// Embedded emulator: address to listen on (default 127.0.0.1 on a free port).
    #[arg(long, env = "FLEETPILOT_EMULATOR_LISTEN")]
    emulator_listen: Option<String>,

    /// Compute plans but change nothing, for every fleet.
    #[arg(long, env = "FLEETPILOT_DRY_RUN")]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the tools over MCP streamable HTTP (/mcp) and REST (/api/v1/tools/{name},
    /// /openapi.json), the dashboard (/), Azure Monitor alerts (/alerts), /metrics and /healthz.
    ///
    /// Without authentication configured it listens on loopback only (development mode).
    Serve {
        /// Address to listen on (default: `[server] listen` of the configuration, else
        /// 127.0.0.1:8080).
        #[arg(long, env = "FLEETPILOT_LISTEN")]
        listen: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Serve the tools over MCP on stdin/stdout (for IDE assistants). Logs go to stderr.
    Mcp {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run the Azure emulator alone: ARM paths at its root, /healthz, /_emulator/clock.
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// Virtual seconds per real second (0 pauses time).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Seed of every random draw.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// `reference` (the recipe's deployment), `multi-region` (its service on a second
        /// fleet in westus2) or `empty`.
        #[arg(long, default_value = "reference")]
        scenario: String,
    },
    /// Run a KQL query locally over files (CSV, CSV.gz, JSON array, JSON lines), without a server.
    ///
    /// A CSV header cell written `Name:type` (a KQL type) sets the column's type; otherwise
    /// types are inferred. Example:
    ///   fleetpilot kql --table Perf=perf.csv 'Perf | summarize avg(CounterValue) by Computer'
    Kql {
        /// A table: NAME=FILE (repeatable).
        #[arg(long = "table", value_name = "NAME=FILE")]
        tables: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: kql_cli::Format,
        /// The query.
        query: String,
    },
    /// Azure ML jobs, through a running fleetpilot's tools (and their guardrails).
    #[command(subcommand)]
    Job(JobCommand),
    /// The source recipe's whole stack (storage, key vault, monitoring, AI Foundry hub and
    /// project, ML workspace, network, Compute Fleet, AmlCompute, action group, alert rules,
    /// workbooks, the Foundry agent), declaratively: plan, apply, destroy.
    ///
    /// Names and SKUs come from the [stack] section of fleetpilot.toml (the recipe's by default).
    /// Try it on the emulator:
    ///   fleetpilot emulator --scenario empty &
    ///   FLEETPILOT_ALERTS_TOKEN=$(openssl rand -hex 16) fleetpilot provision apply --arm-endpoint http://127.0.0.1:8081
    #[command(subcommand, verbatim_doc_comment)]
    Provision(ProvisionCommand),
    /// Proposals in the state database: list, show, approve, reject.
    #[command(subcommand)]
    Proposals(ProposalsCommand),
    /// Agent runs (autonomous, on alerts; and chats): list and show with transcripts.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Chat with the agent in the terminal: it investigates with the tools and proposes
    /// changes; proposals that need approval are put to you. Without a configured model
    /// ([model] in fleetpilot.toml) the built-in planner answers.
    Chat {
        /// One message, answered, then exit (no prompt; for scripts).
        #[arg(long)]
        message: Option<String>,
        /// The fleet in focus.
        #[arg(long, default_value = "cf-ml-scaling")]
        fleet: String,
        /// Use a running fleetpilot's MCP endpoint instead of an in-process backend.
        #[arg(long, env = "FLEETPILOT_SERVER")]
        server: Option<String>,
        /// Answer "yes" to approval questions (scripts; needs a role that may approve).
        #[arg(long)]
        approve: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Offline evaluations.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Every tool call, as audited: who, with what role, which tool and arguments (secrets
    /// redacted), the verdict and the result. Newest first.
    Audit {
        /// Only calls at or after this time: a duration back from now (15m, 2h, 7d) or RFC 3339.
        #[arg(long, default_value = "1d")]
        since: String,
        /// Only calls before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Only this caller (e.g. mcp-http:claude-code, cli:alice).
        #[arg(long)]
        caller: Option<String>,
        /// Only calls about this fleet.
        #[arg(long)]
        fleet: Option<String>,
        /// Only this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Most records.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// The freeze switch: `on` refuses every mutation (scale changes, job submissions and
    /// cancellations) on every fleet until `off`; `status` shows it. Takes effect at once on a
    /// running server sharing the state database.
    Freeze {
        /// on, off or status.
        #[arg(value_parser = ["on", "off", "status"])]
        action: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// Validate the configuration and print what it resolves to.
    CheckConfig,
}

/// The state database a command reads.
#[derive(Debug, Clone, Args)]
struct StateArg {
    /// SQLite file of the server (default: the configuration's, .fleetpilot/fleetpilot.db).
    #[arg(long, env = "FLEETPILOT_STATE")]
    state: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// Run scaling policies (fleetpilot, agent-planner, recipe-rule, hpa, static-peak, spothedge,
    /// oracle) over demand traces on the same spot weather, and compare cost, SLA, unserved
    /// demand, actions and flaps. Traces: per-minute CSV (`timestamp,value`, the Alibaba per-minute file), the
    /// Azure LLM and Functions formats, plain or gzip.
    Policies {
        /// A trace file (repeatable).
        #[arg(long = "trace", value_name = "FILE")]
        traces: Vec<PathBuf>,
        /// Only these policies (repeatable; default all).
        #[arg(long = "policy", value_name = "NAME")]
        policies: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: eval_cli::Format,
        /// Write an SVG per trace (demand and each policy's serving VMs) and report.json into this
        /// directory (the dashboard shows `<evals_dir>/policies`).
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
        /// Seed of the spot weather (the same for every policy).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Where the targets are carried out: the emulator's world, stepped minute by minute
        /// (Compute Fleet goal seeking, boot jitter, M/M/c latency SLA), or the policy crate's
        /// minute-level model (faster; SLA at 95 % utilization).
        #[arg(long, value_enum, default_value = "emulator")]
        engine: eval_cli::Engine,
    },
    /// Run the incident suite: each incident k times in the emulator's stepped mode, the agent
    /// invoked on every alert as in production; report pass^1, pass^k, the safety subset,
    /// cost and SLA against the oracle, tool calls, tokens and decision latency. With
    /// --baseline, exits 1 on any safety failure or a pass rate below the baseline.
    Incidents(incidents_cli::IncidentOptions),
    /// Record an incident from an emulator run: the world from --start for --minutes under
    /// --faults, with no agent; the alerts its rules fire become the incident's triggers.
    Record {
        /// Incident id.
        #[arg(long)]
        id: String,
        /// Category (e.g. demand_surge, eviction_storm, no_fault).
        #[arg(long)]
        category: String,
        /// Virtual start time (RFC 3339).
        #[arg(long)]
        start: String,
        /// Minutes to record.
        #[arg(long, default_value_t = 60)]
        minutes: u32,
        /// Emulator faults as JSON (the fields of POST /_emulator/faults).
        #[arg(long)]
        faults: Option<String>,
        /// Seed of the emulator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the incident here (default stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only this fleet.
        #[arg(long)]
        fleet: Option<String>,
        /// Most runs.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Show one run with its transcript.
    Show {
        /// Run id.
        id: String,
        /// Print JSON (the transcript as JSON lines in a field).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArg,
    },
}

#[derive(Debug, Subcommand)]
enum ProposalsCommand {
    /// List proposals, newest first.
    List {
        /// Only this fleet.
        #[arg(long)]
        fleet: Option<String>,
        /// Only this status (proposed, needs_approval, approved, rejected, expired, denied, dry_run, applied, failed).
        #[arg(long)]
        status: Option<String>,
        /// Most proposals.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Show one proposal: its verdict, review, outcome and journal.
    Show {
        /// Proposal id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Approve a proposal waiting for approval; the server re-checks and applies it.
    Approve {
        /// Proposal id.
        id: String,
        /// Why (kept with the decision).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// Reject a proposal that is not applied; it never will be.
    Reject {
        /// Proposal id.
        id: String,
        /// Why (kept with the decision).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        state: StateArg,
    },
}

/// Where a running fleetpilot serves MCP.
#[derive(Debug, Args)]
struct ServerArg {
    /// fleetpilot's MCP endpoint.
    #[arg(long = "server", default_value = "http://127.0.0.1:8080/mcp", env = "FLEETPILOT_SERVER")]
    url: String,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Submit a command job YAML (e.g. the recipe's job.yml) to the compute cluster.
    Submit {
        /// The job YAML.
        file: PathBuf,
        /// Job name (default: generated).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show a job.
    Get {
        /// Job name.
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Cancel a job.
    Cancel {
        /// Job name.
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

#[derive(Debug, Subcommand)]
enum ProvisionCommand {
    /// Read what exists and show what apply would create, update or delete (secrets redacted).
    Plan {
        #[command(flatten)]
        target: provision_cli::ProvisionArgs,
        /// Exit 0 with no changes, 2 with changes (1 on errors), for drift checks in CI.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Also ask ARM's what-if (the stack as a template deployment; the resource group must
        /// exist). Works against Azure and the emulator.
        #[arg(long)]
        what_if: bool,
    },
    /// Converge the stack: dependency order, independent resources in parallel, long-running
    /// operations awaited, transient errors retried. Re-running it is always safe.
    Apply {
        #[command(flatten)]
        target: provision_cli::ProvisionArgs,
        #[command(flatten)]
        args: provision_cli::ApplyArgs,
    },
    /// Delete every resource of the stack, dependents first (asks unless --yes).
    Destroy {
        #[command(flatten)]
        target: provision_cli::ProvisionArgs,
        #[command(flatten)]
        args: provision_cli::ApplyArgs,
    },
}

fn overrides(listen: Option<String>, run: Option<&RunArgs>) -> config::Overrides {
    let mut o = config::Overrides { listen, ..Default::default() };
    if let Some(run) = run {
        o.state = run.state.clone();
        o.speed = run.speed;
        o.seed = run.seed;
        o.scenario = run.scenario.clone();
        o.emulator_listen = run.emulator_listen.clone();
        o.dry_run = run.dry_run;
    }
    o
}

/// The exit status a command asked for (a failed gate, a refused job, a plan with changes);
/// set instead of exiting at once, so that `main` returns and the buffered spans are flushed.
static EXIT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn set_exit(code: u8) {
    EXIT.store(code, std::sync::atomic::Ordering::Relaxed);
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Evaluations report on stdout and show progress; their worlds' chatter is noise.
    let level = match cli.command {
        Command::Eval(_) => "error",
        // Provisioning prints its own progress; retries still warn.
        Command::Provision(_) => "warn",
        _ => "info",
    };
    let _telemetry = run::init_tracing(cli.log_format, level, cli.otlp_endpoint.as_deref());
    let result = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(async move {
            match cli.command {
                Command::Serve { listen, run } => {
                    let config = config::load(cli.config.as_deref(), &overrides(listen, Some(&run)))?;
                    run::serve(config).await
                }
                Command::Mcp { run } => {
                    let config = config::load(cli.config.as_deref(), &overrides(None, Some(&run)))?;
                    run::mcp_stdio(config).await
                }
                Command::Emulator { listen, speed, seed, scenario } => run::emulator(&listen, speed, seed, &scenario).await,
                Command::Kql { tables, format, query } => {
                    let code = kql_cli::run(&tables, format, &query)?;
                    if code != std::process::ExitCode::SUCCESS {
                        set_exit(2);
                    }
                    Ok(())
                }
                Command::Job(job) => {
                    let code = match job {
                        JobCommand::Submit { file, name, server } => {
                            job_cli::call(&server.url, "submit_ml_job", job_cli::job_arguments(&file, name.as_deref())?).await?
                        }
                        JobCommand::Get { name, server } => {
                            job_cli::call(&server.url, "get_ml_job", serde_json::json!({ "name": name })).await?
                        }
                        JobCommand::Cancel { name, server } => {
                            job_cli::call(&server.url, "cancel_ml_job", serde_json::json!({ "name": name })).await?
                        }
                    };
                    if code != std::process::ExitCode::SUCCESS {
                        set_exit(1);
                    }
                    Ok(())
                }
                Command::Provision(command) => {
                    let config = config::load(cli.config.as_deref(), &overrides(None, None))?;
                    let code = match command {
                        ProvisionCommand::Plan { target, detailed_exitcode, what_if } => {
                            provision_cli::plan(&config, &target, detailed_exitcode, what_if).await?
                        }
                        ProvisionCommand::Apply { target, args } => provision_cli::apply(&config, &target, &args).await?,
                        ProvisionCommand::Destroy { target, args } => provision_cli::destroy(&config, &target, &args).await?,
                    };
                    if code != std::process::ExitCode::SUCCESS {
                        set_exit(if code == std::process::ExitCode::from(2) { 2 } else { 1 });
                    }
                    Ok(())
                }
                Command::Proposals(command) => {
                    let state = match &command {
                        ProposalsCommand::List { state, .. }
                        | ProposalsCommand::Show { state, .. }
                        | ProposalsCommand::Approve { state, .. }
                        | ProposalsCommand::Reject { state, .. } => state.state.clone(),
                    };
                    let config = config::load(cli.config.as_deref(), &config::Overrides { state, ..Default::default() })?;
                    let store = admin_cli::open_store(&config)?;
                    match command {
                        ProposalsCommand::List { fleet, status, limit, json, .. } => {
                            admin_cli::list(&store, &config, fleet.as_deref(), status.as_deref(), limit, json)
                        }
                        ProposalsCommand::Show { id, json, .. } => admin_cli::show(&store, &id, json),
                        ProposalsCommand::Approve { id, note, .. } => admin_cli::review(&store, &config, &id, true, &note),
                        ProposalsCommand::Reject { id, note, .. } => admin_cli::review(&store, &config, &id, false, &note),
                    }
                }
                Command::Eval(EvalCommand::Policies { traces, policies, format, plot, seed, engine }) => {
                    eval_cli::run(&eval_cli::EvalOptions { traces, policies, format, plot, seed, engine })
                }
                Command::Eval(EvalCommand::Incidents(options)) => {
                    let config = config::load(cli.config.as_deref(), &config::Overrides::default())?;
                    if !incidents_cli::run(&config, &options).await? {
                        set_exit(1);
                    }
                    Ok(())
                }
                Command::Eval(EvalCommand::Record { id, category, start, minutes, faults, seed, out }) => {
                    let category = serde_json::from_value(serde_json::Value::String(category.clone()))
                        .map_err(|_| anyhow::anyhow!("unknown category {category:?} (see evals/README.md)"))?;
                    let faults = faults
                        .map(|f| serde_json::from_str(&f))
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("--faults is not JSON: {e}"))?;
                    incidents_cli::record(&incidents_cli::RecordOptions { id, category, start, minutes, faults, seed, out })
                }
                Command::Runs(command) => {
                    let state = match &command {
                        RunsCommand::List { state, .. } | RunsCommand::Show { state, .. } => state.state.clone(),
                    };
                    let config = config::load(cli.config.as_deref(), &config::Overrides { state, ..Default::default() })?;
                    let store = admin_cli::open_store(&config)?;
                    match command {
                        RunsCommand::List { fleet, limit, json, .. } => {
                            admin_cli::runs_list(&store, fleet.as_deref(), limit, json)
                        }
                        RunsCommand::Show { id, json, .. } => admin_cli::runs_show(&store, &id, json),
                    }
                }
                Command::Chat { message, fleet, server, approve, run } => {
                    let config = config::load(cli.config.as_deref(), &overrides(None, Some(&run)))?;
                    chat::run(config, chat::ChatOptions { message, fleet, server, approve }).await
                }
                Command::Audit { since, until, caller, fleet, tool, limit, json, state } => {
                    let config =
                        config::load(cli.config.as_deref(), &config::Overrides { state: state.state, ..Default::default() })?;
                    let store = admin_cli::open_store(&config)?;
                    let now = time::OffsetDateTime::now_utc();
                    let filter = fleetpilot_infra::AuditFilter {
                        since: Some(admin_cli::parse_time(&since, now)?),
                        until: until.as_deref().map(|u| admin_cli::parse_time(u, now)).transpose()?,
                        caller,
                        fleet,
                        tool,
                        limit,
                    };
                    admin_cli::audit(&store, &filter, json)
                }
                Command::Freeze { action, state } => {
                    let config =
                        config::load(cli.config.as_deref(), &config::Overrides { state: state.state, ..Default::default() })?;
                    let store = admin_cli::open_store(&config)?;
                    admin_cli::freeze(&store, &config, &action)
                }
                Command::CheckConfig => {
                    let config = config::load(cli.config.as_deref(), &overrides(None, None))?;
                    println!("{config:#?}");
                    Ok(())
                }
            }
        })
    });
    match result {
        Ok(()) => match EXIT.load(std::sync::atomic::Ordering::Relaxed) {
            0 => std::process::ExitCode::SUCCESS,
            code => std::process::ExitCode::from(code),
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
