//! `fleetpilot proposals`, `fleetpilot audit` and `fleetpilot freeze`: the state database
//! from a terminal. They read and write the same SQLite file a running server uses (WAL lets
//! both at once); a proposal approved here is applied by the server within seconds, after the
//! executor re-checks it against the fleet as it is then.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fleetpilot_core::{Proposal, ProposalStatus};
use fleetpilot_infra::{AuditFilter, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::Config;

/// Open the configured state database, which must exist.
pub fn open_store(config: &Config) -> Result<Store> {
    let path = &config.state_path;
    if !Path::new(path).exists() {
        bail!(
            "no state database at {}; start `fleetpilot serve` once, or pass --state with the server's database",
            path.display()
        );
    }
    Store::open(path).with_context(|| format!("cannot open the state database {}", path.display()))
}

/// Who is at the terminal, as the audit and reviews record it.
pub fn terminal_user() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// `15m`, `2h`, `7d`, `90s` before now, or an RFC 3339 time.
pub fn parse_time(value: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(t);
    }
    let (number, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let n: i64 = number.parse().with_context(|| format!("{value:?} is neither a duration (15m, 2h, 7d) nor an RFC 3339 time"))?;
    let secs = match unit {
        "s" => n,
        "m" | "" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        other => bail!("unknown unit {other:?} in {value:?}; use s, m, h or d"),
    };
    Ok(now - time::Duration::seconds(secs))
}

fn short(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default().chars().take(19).collect::<String>().replace('T', " ")
}

fn target_text(p: &Proposal) -> String {
    let mut parts = Vec::new();
    if let Some(s) = p.target.spot_capacity {
        parts.push(format!("spot {}→{s}", p.observed_spot_capacity));
    }
    if let Some(r) = p.target.regular_capacity {
        parts.push(format!("regular {}→{r}", p.observed_regular_capacity));
    }
    if let Some(sizes) = &p.target.vm_sizes {
        parts.push(format!("sizes {}", sizes.join(",")));
    }
    parts.join(", ")
}

/// `fleetpilot proposals list`.
pub fn list(store: &Store, config: &Config, fleet: Option<&str>, status: Option<&str>, limit: u32, json: bool) -> Result<()> {
    let status = status.map(|s| ProposalStatus::parse(s).with_context(|| format!("unknown status {s:?}"))).transpose()?;
    let now = OffsetDateTime::now_utc();
    let mut proposals = store.proposals(fleet, status, limit)?;
    for p in &mut proposals {
        let policy = config.policies.for_fleet(&p.fleet.name);
        fleetpilot_tools::service::expire_if_stale(store, p, &policy, now).map_err(|e| anyhow::anyhow!(e.message))?;
    }
    proposals.retain(|p| status.is_none_or(|s| p.status == s));
    if json {
        println!("{}", serde_json::to_string_pretty(&proposals)?);
        return Ok(());
    }
    if proposals.is_empty() {
        println!("no proposals");
        return Ok(());
    }
    println!("{:<38} {:<19} {:<15} {:<16} {:<28} REQUESTED BY", "ID", "CREATED (UTC)", "STATUS", "FLEET", "CHANGE");
    for p in &proposals {
        println!(
            "{:<38} {:<19} {:<15} {:<16} {:<28} {}",
            p.id,
            short(p.created_at),
            p.status.as_str(),
            p.fleet.name,
            target_text(p),
            p.requested_by
        );
    }
    Ok(())
}

/// `fleetpilot proposals show`.
pub fn show(store: &Store, id: &str, json: bool) -> Result<()> {
    let p = store.proposal(id)?.with_context(|| format!("no proposal {id:?}"))?;
    let journal = store.journal_of(id)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "proposal": p, "journal": journal }))?);
        return Ok(());
    }
    println!("proposal   {}", p.id);
    println!("fleet      {}", p.fleet);
    println!("status     {}", p.status.as_str());
    println!("created    {} by {}", short(p.created_at), p.requested_by);
    println!("reason     {}", p.reason);
    println!("change     {}", target_text(&p));
    if let Some(cost) = &p.cost {
        println!(
            "cost       ${:.2}/h → ${:.2}/h ({:+.2}/h)",
            cost.current_hourly_usd, cost.proposed_hourly_usd, cost.delta_hourly_usd
        );
    }
    println!("verdict    {:?}{}", p.verdict.decision, if p.verdict.dry_run { " (dry-run)" } else { "" });
    for v in &p.verdict.violations {
        println!("  - {} ({:?}): {}", v.bound, v.effect, v.message);
    }
    if let Some(r) = &p.review {
        println!(
            "review     {} by {} at {}{}",
            if r.approved { "approved" } else { "rejected" },
            r.by,
            short(r.at),
            if r.note.is_empty() { String::new() } else { format!(": {}", r.note) }
        );
    }
    if let Some(o) = &p.outcome {
        println!(
            "outcome    verified={} spot={} regular={}{}",
            o.verified,
            o.spot_capacity,
            o.regular_capacity,
            o.error.as_ref().map(|e| format!(" error: {e}")).unwrap_or_default()
        );
    }
    if !journal.is_empty() {
        println!("journal");
        for e in &journal {
            println!("  {:>5} {} {:<8} {}", e.seq, e.at.chars().take(19).collect::<String>().replace('T', " "), e.phase, e.body);
        }
    }
    Ok(())
}

/// `fleetpilot proposals approve|reject`.
pub fn review(store: &Store, config: &Config, id: &str, approve: bool, note: &str) -> Result<()> {
    let who = terminal_user();
    let p = fleetpilot_tools::service::record_review(store, &config.policies, OffsetDateTime::now_utc(), id, &who, approve, note)
        .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
    let tool = if approve { "approve_proposal" } else { "reject_proposal" };
    let args = serde_json::json!({ "proposal_id": id, "note": note });
    let verdict = serde_json::to_value(p.verdict.decision)?.as_str().map(str::to_string);
    audit_terminal(store, tool, Some(p.fleet.name.clone()), args, verdict, format!("proposal {}", p.id))?;
    if approve {
        println!(
            "approved {} as {who}; a running `fleetpilot serve` re-checks and applies it within seconds (`fleetpilot proposals show {}` shows the outcome)",
            p.id, p.id
        );
    } else {
        println!("rejected {} as {who}; it will not be applied", p.id);
    }
    Ok(())
}

/// Audit what a person did at the terminal, as the tools audit their calls.
fn audit_terminal(
    store: &Store,
    tool: &str,
    fleet: Option<String>,
    arguments: serde_json::Value,
    verdict: Option<String>,
    detail: String,
) -> Result<()> {
    store.audit(&fleetpilot_infra::AuditRecord {
        seq: 0,
        at: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        caller: terminal_user(),
        role: "admin".into(),
        tool: tool.into(),
        fleet,
        arguments,
        verdict,
        result: "ok".into(),
        detail,
    })?;
    Ok(())
}

/// `fleetpilot audit`.
pub fn audit(store: &Store, filter: &AuditFilter, json: bool) -> Result<()> {
    let records = store.audit_records(filter)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    if records.is_empty() {
        println!("no audit records match");
        return Ok(());
    }
    println!(
        "{:<19} {:<28} {:<9} {:<16} {:<14} {:<15} {:<15} DETAIL",
        "AT (UTC)", "CALLER", "ROLE", "TOOL", "FLEET", "VERDICT", "RESULT"
    );
    for r in records {
        println!(
            "{:<19} {:<28} {:<9} {:<16} {:<14} {:<15} {:<15} {}",
            r.at.chars().take(19).collect::<String>().replace('T', " "),
            r.caller,
            r.role,
            r.tool,
            r.fleet.unwrap_or_default(),
            r.verdict.unwrap_or_default(),
            r.result,
            r.detail.chars().take(100).collect::<String>()
        );
    }
    Ok(())
}

/// `fleetpilot freeze on|off|status`.
pub fn freeze(store: &Store, config: &Config, action: &str) -> Result<()> {
    match action {
        "on" | "off" => {
            store.set_frozen(action == "on", &terminal_user())?;
            audit_terminal(store, "freeze", None, serde_json::json!({ "action": action }), None, format!("freeze {action}"))?;
            println!(
                "freeze is {action}: {}",
                if action == "on" { "every change is refused" } else { "changes go through the guardrails again" }
            );
        }
        "status" => match store.frozen()? {
            Some((on, by, at)) => println!("freeze is {} (set by {by} at {at})", if on { "on" } else { "off" }),
            None => println!("freeze is off (never set)"),
        },
        other => bail!("unknown freeze action {other:?}; use on, off or status"),
    }
    if config.policies.globally_frozen() {
        println!("note: the configuration sets `policy.freeze = true`, which freezes every fleet whatever the switch says");
    }
    Ok(())
}

/// `fleetpilot runs list`.
pub fn runs_list(store: &Store, fleet: Option<&str>, limit: u32, json: bool) -> Result<()> {
    let runs = store.runs(fleet, limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs");
        return Ok(());
    }
    println!("{:<36} {:<19} {:<6} {:<16} {:<17} {:<16} ANSWER", "ID", "CREATED (UTC)", "KIND", "FLEET", "STATUS", "MODEL");
    for r in runs {
        println!(
            "{:<36} {:<19} {:<6} {:<16} {:<17} {:<16} {}",
            r.id,
            r.created_at.chars().take(19).collect::<String>().replace('T', " "),
            r.kind,
            r.fleet,
            r.status,
            r.model,
            r.answer.chars().take(90).collect::<String>()
        );
    }
    Ok(())
}

/// `fleetpilot runs show`.
pub fn runs_show(store: &Store, id: &str, json: bool) -> Result<()> {
    let run = store.run(id)?.with_context(|| format!("no run {id:?}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&run)?);
        return Ok(());
    }
    println!("run        {}", run.id);
    println!("fleet      {}", run.fleet);
    println!("kind       {} ({})", run.kind, run.model);
    println!("status     {}", run.status);
    println!("created    {}", run.created_at);
    if let Some(f) = &run.finished_at {
        println!("finished   {f}");
    }
    println!("tools      {} calls, {} tokens", run.tool_calls, run.tokens);
    if !run.proposals.is_empty() {
        println!("proposals  {}", run.proposals.join(", "));
    }
    println!("trigger    {}", run.trigger);
    println!("answer     {}", run.answer);
    for line in run.transcript.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        match e["kind"].as_str() {
            Some("tool") => println!(
                "  {:>6} ms  {} {} -> {}{}",
                e["t_ms"],
                e["name"].as_str().unwrap_or(""),
                e["arguments"],
                if e["is_error"] == true { "error " } else { "" },
                e["result"].to_string().chars().take(160).collect::<String>()
            ),
            Some("model") => println!(
                "  {:>6} ms  model ({} ms): {}",
                e["t_ms"],
                e["took_ms"],
                e["reply"]["text"].as_str().unwrap_or("").chars().take(160).collect::<String>()
            ),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_durations_or_rfc3339() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(parse_time("15m", now).unwrap(), now - time::Duration::minutes(15));
        assert_eq!(parse_time("2h", now).unwrap(), now - time::Duration::hours(2));
        assert_eq!(parse_time("7d", now).unwrap(), now - time::Duration::days(7));
        let at = OffsetDateTime::parse("2027-01-15T08:00:00Z", &Rfc3339).unwrap();
        assert_eq!(parse_time("2027-01-15T08:00:00Z", now).unwrap(), at);
        assert!(parse_time("soon", now).is_err());
        assert!(parse_time("5w", now).is_err());
    }
}
