//! Reports of an incident run: JSON (the summary and every incident), Markdown (tables), and
//! a self-contained HTML page with plots (inline SVG, no external assets).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::score::{IncidentResult, Summary};

/// `{"summary": …, "incidents": [...]}`.
pub fn json(summary: &Summary, results: &[IncidentResult]) -> Value {
    json!({"summary": summary, "incidents": results})
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

/// Tables: the summary, per category, and every incident that failed a check.
pub fn markdown(summary: &Summary, results: &[IncidentResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Incident evals\n");
    let _ = writeln!(
        s,
        "| incidents | k | pass^1 | pass^k | safety pass^k | controls passed | tool calls | tokens | model USD | decision ms | wall s |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {}/{} | {:.1} | {:.0} | {:.4} | {:.1} | {:.1} |\n",
        summary.incidents,
        summary.k,
        pct(summary.pass_1),
        pct(summary.pass_k),
        pct(summary.safety_pass_k),
        summary.controls_passed,
        summary.controls,
        summary.tool_calls,
        summary.tokens,
        summary.model_cost_usd,
        summary.decision_ms,
        summary.wall_s
    );
    let _ = writeln!(s, "| split | pass^1 |\n| --- | --- |");
    for (split, p) in &summary.pass_1_by_split {
        let _ = writeln!(s, "| {split} | {} |", pct(*p));
    }
    let _ = writeln!(
        s,
        "\n| category | incidents | pass^1 | pass^k | safety | mean cost vs oracle |\n| --- | --- | --- | --- | --- | --- |"
    );
    for category in summary.pass_1_by_category.keys() {
        let rs: Vec<&IncidentResult> = results.iter().filter(|r| r.category.as_str() == category).collect();
        let n = rs.len() as f64;
        let ratios: Vec<f64> = rs.iter().filter_map(|r| r.cost_vs_oracle).collect();
        let _ = writeln!(
            s,
            "| {category} | {} | {} | {} | {}/{} | {} |",
            rs.len(),
            pct(rs.iter().map(|r| r.pass_1).sum::<f64>() / n),
            pct(rs.iter().map(|r| r.pass_k).sum::<f64>() / n),
            rs.iter().filter(|r| r.safety_passed).count(),
            rs.len(),
            if ratios.is_empty() { "—".into() } else { format!("{:.2}", ratios.iter().sum::<f64>() / ratios.len() as f64) }
        );
    }
    if !summary.vs_baselines.is_empty() {
        let _ = writeln!(
            s,
            "\n| against baseline | agent cost / baseline cost | agent SLA − baseline SLA (points) |\n| --- | --- | --- |"
        );
        for (name, r) in &summary.vs_baselines {
            let _ = writeln!(s, "| {name} | {:.2} | {:+.2} |", r.cost_ratio, r.sla_points);
        }
    }
    let failing: Vec<&IncidentResult> = results.iter().filter(|r| !r.failures.is_empty()).collect();
    if !failing.is_empty() {
        let _ = writeln!(
            s,
            "\n## Failures\n\n| incident | split | check | trials failed | first detail |\n| --- | --- | --- | --- | --- |"
        );
        for r in failing {
            for (check, (n, detail)) in &r.failures {
                let _ =
                    writeln!(s, "| {} | {} | {check} | {n}/{} | {} |", r.id, r.split, r.trials.len(), detail.replace('|', "\\|"));
            }
        }
    }
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A small plot of one incident's first trial: demand (VMs needed), total target, serving VMs.
pub fn sparkline(series: &[(f64, u32, u32)]) -> String {
    let (w, h) = (320.0, 90.0);
    let top = series.iter().map(|(d, t, r)| d.max(f64::from(*t)).max(f64::from(*r))).fold(1.0, f64::max);
    let n = series.len().max(2) as f64 - 1.0;
    let line = |f: &dyn Fn(&(f64, u32, u32)) -> f64, colour: &str, label: &str| {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", i as f64 / n * w, h - f(p) / top * (h - 4.0)))
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{label}</title></polyline>",
            points.join(" ")
        )
    };
    format!(
        "<svg role=\"img\" aria-label=\"demand, target and serving VMs per minute\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">{}{}{}</svg>",
        line(&|p| p.0, "#888", "demand (VMs at full use)"),
        line(&|p| f64::from(p.1), "#1f6feb", "total target"),
        line(&|p| f64::from(p.2), "#2da44e", "serving VMs")
    )
}

/// A self-contained page: the summary, a bar per category, and every incident with its plot.
pub fn html(summary: &Summary, results: &[IncidentResult]) -> String {
    let mut s = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>fleetpilot incident evals</title>\
         <style>body{font:14px system-ui,sans-serif;margin:2em;max-width:72em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}.fail{color:#b00}.ok{color:#070}</style></head><body>",
    );
    let _ = write!(
        s,
        "<h1>Incident evals</h1><p>{} incidents × {} trials: pass^1 <b>{}</b>, pass^k <b>{}</b>, safety pass^k <b>{}</b>, \
         no-fault controls {}/{}, {:.1} tool calls, {:.0} tokens (USD {:.4}) per trial, {:.1} ms per decision, {:.1} s in all.</p>",
        summary.incidents,
        summary.k,
        pct(summary.pass_1),
        pct(summary.pass_k),
        pct(summary.safety_pass_k),
        summary.controls_passed,
        summary.controls,
        summary.tool_calls,
        summary.tokens,
        summary.model_cost_usd,
        summary.decision_ms,
        summary.wall_s
    );
    if !summary.vs_baselines.is_empty() {
        let _ = write!(
            s,
            "<h2>Regret against the baselines</h2><table><thead><tr><th scope=\"col\">baseline</th>\
             <th scope=\"col\">agent cost / baseline cost</th><th scope=\"col\">agent SLA − baseline SLA (points)</th></tr></thead><tbody>"
        );
        for (name, r) in &summary.vs_baselines {
            let _ = write!(s, "<tr><td>{}</td><td>{:.2}</td><td>{:+.2}</td></tr>", escape(name), r.cost_ratio, r.sla_points);
        }
        let _ = write!(s, "</tbody></table>");
    }
    let _ = write!(
        s,
        "<h2>pass^1 by category</h2><svg role=\"img\" aria-label=\"pass rate by category\" width=\"560\" height=\"{}\">",
        22 * summary.pass_1_by_category.len()
    );
    for (i, (category, p)) in summary.pass_1_by_category.iter().enumerate() {
        let y = 22 * i;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"160\" y=\"{}\" width=\"{:.0}\" height=\"16\" fill=\"#1f6feb\"/>\
             <text x=\"{:.0}\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 13,
            escape(category),
            y + 2,
            300.0 * p,
            165.0 + 300.0 * p,
            y + 13,
            pct(*p)
        );
    }
    s.push_str("</svg><h2>Incidents</h2><table><thead><tr><th scope=\"col\">incident</th><th scope=\"col\">category</th><th scope=\"col\">split</th>\
                <th scope=\"col\">pass^1</th><th scope=\"col\">safety</th><th scope=\"col\">SLA %</th><th scope=\"col\">cost vs oracle</th>\
                <th scope=\"col\">failed checks</th><th scope=\"col\">first trial (grey demand, blue target, green serving)</th></tr></thead><tbody>");
    for r in results {
        let failed =
            r.failures.iter().map(|(c, (n, d))| format!("{} ({n}): {}", escape(c), escape(d))).collect::<Vec<_>>().join("<br>");
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.id),
            r.category.as_str(),
            r.split,
            if r.pass_1 >= 1.0 { "ok" } else { "fail" },
            pct(r.pass_1),
            if r.safety_passed { "ok" } else { "fail" },
            if r.safety_passed { "held" } else { "FAILED" },
            r.sla_pct,
            r.cost_vs_oracle.map_or("—".into(), |c| format!("{c:.2}")),
            failed,
            sparkline(&r.series)
        );
    }
    s.push_str("</tbody></table></body></html>\n");
    s
}
