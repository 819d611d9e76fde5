//! Azure Monitor metric alert rules: evaluated every `evaluation_frequency` over the average of
//! their metric across `window_size`, they fire when the condition starts to hold and resolve
//! when it stops, and notify an action group's webhook in the common alert schema — the source
//! recipe's `ml-scaling-trigger` and `scaling-efficiency-alert` in the reference scenario.

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Greater or less than.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Operator {
    /// Above the threshold.
    GreaterThan,
    /// Below it.
    LessThan,
}

/// One metric alert rule.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRule {
    /// Rule name.
    pub name: String,
    /// Its description (text a person wrote).
    pub description: String,
    /// `Sev0`–`Sev4`.
    pub severity: String,
    /// The resource it watches (ARM id).
    pub scope: String,
    /// The metric's namespace (the scope's resource type).
    pub namespace: String,
    /// Metric name.
    pub metric: String,
    /// Comparison.
    pub operator: Operator,
    /// Threshold.
    pub threshold: f64,
    /// Averaging window, in minutes.
    pub window_minutes: u32,
    /// Evaluation frequency, in minutes.
    pub frequency_minutes: u32,
    /// The metric alert resource this rule was provisioned from (lowercase ARM id); `None` for
    /// the scenario's built-in rules.
    pub id: Option<String>,
    /// Action groups it notifies (lowercase ARM ids); none: the emulator's default webhooks.
    pub action_groups: Vec<String>,
    /// Minute samples of the metric (minute start, value), newest last.
    #[serde(skip)]
    pub samples: VecDeque<(OffsetDateTime, f64)>,
    /// The open alert: its id and when it fired.
    #[serde(skip)]
    pub fired: Option<(String, OffsetDateTime)>,
    /// When it was last evaluated.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_evaluated: Option<OffsetDateTime>,
}

impl AlertRule {
    /// The average over the window, if there are samples in it.
    pub fn window_average(&self, now: OffsetDateTime) -> Option<f64> {
        let from = now - time::Duration::minutes(i64::from(self.window_minutes));
        let in_window: Vec<f64> = self.samples.iter().filter(|(t, _)| *t > from).map(|(_, v)| *v).collect();
        (!in_window.is_empty()).then(|| in_window.iter().sum::<f64>() / in_window.len() as f64)
    }

    fn holds(&self, value: f64) -> bool {
        match self.operator {
            Operator::GreaterThan => value > self.threshold,
            Operator::LessThan => value < self.threshold,
        }
    }

    /// Add this minute's sample; when due, evaluate and return a notification to send.
    pub fn observe(&mut self, at: OffsetDateTime, value: Option<f64>, subscription: &str, next_id: &mut u64) -> Option<Value> {
        if let Some(v) = value {
            self.samples.push_back((at, v));
        }
        let horizon = at - time::Duration::minutes(i64::from(self.window_minutes.max(1)) * 2);
        while self.samples.front().is_some_and(|(t, _)| *t < horizon) {
            self.samples.pop_front();
        }
        let due = self.last_evaluated.is_none_or(|last| (at - last).whole_minutes() >= i64::from(self.frequency_minutes.max(1)));
        if !due {
            return None;
        }
        self.last_evaluated = Some(at);
        let average = self.window_average(at)?;
        match (&self.fired, self.holds(average)) {
            (None, true) => {
                *next_id += 1;
                let id = format!(
                    "/subscriptions/{subscription}/providers/Microsoft.AlertsManagement/alerts/{:08x}-0000-4000-a000-{:012x}",
                    *next_id, *next_id
                );
                self.fired = Some((id.clone(), at));
                Some(self.notification(&id, at, None, average))
            }
            (Some((id, fired_at)), false) => {
                let (id, fired_at) = (id.clone(), *fired_at);
                self.fired = None;
                Some(self.notification(&id, fired_at, Some(at), average))
            }
            _ => None,
        }
    }

    /// A notification in the common alert schema.
    pub fn notification(&self, id: &str, fired_at: OffsetDateTime, resolved_at: Option<OffsetDateTime>, value: f64) -> Value {
        let rfc = |t: OffsetDateTime| crate::wire::rfc3339(t);
        let mut essentials = json!({
            "alertId": id,
            "alertRule": self.name,
            "severity": self.severity,
            "signalType": "Metric",
            "monitorCondition": if resolved_at.is_some() { "Resolved" } else { "Fired" },
            "monitoringService": "Platform",
            "alertTargetIDs": [self.scope.to_ascii_lowercase()],
            "configurationItems": [self.scope.rsplit('/').next().unwrap_or_default()],
            "originAlertId": format!("{}_{}", id.rsplit('/').next().unwrap_or_default(), self.name),
            "firedDateTime": rfc(fired_at),
            "description": self.description,
            "essentialsVersion": "1.0",
            "alertContextVersion": "1.0",
        });
        if let Some(r) = resolved_at {
            essentials["resolvedDateTime"] = json!(rfc(r));
        }
        let window_end = resolved_at.unwrap_or(fired_at);
        json!({
            "schemaId": "azureMonitorCommonAlertSchema",
            "data": {
                "essentials": essentials,
                "alertContext": {
                    "properties": null,
                    "conditionType": "SingleResourceMultipleMetricCriteria",
                    "condition": {
                        "windowSize": format!("PT{}M", self.window_minutes),
                        "allOf": [{
                            "metricName": self.metric,
                            "metricNamespace": self.namespace,
                            "operator": self.operator,
                            "threshold": format!("{}", self.threshold),
                            "timeAggregation": "Average",
                            "dimensions": [],
                            "metricValue": (value * 1000.0).round() / 1000.0,
                        }],
                        "windowStartTime": rfc(window_end - time::Duration::minutes(i64::from(self.window_minutes))),
                        "windowEndTime": rfc(window_end),
                    }
                },
                "customProperties": null
            }
        })
    }
}

/// The source recipe's two rules (`alert-rules.json`), on the reference workspace and fleet.
pub fn recipe_rules(workspace_id: &str, fleet_id: &str) -> Vec<AlertRule> {
    let rule = |name: &str,
                description: &str,
                severity: &str,
                scope: &str,
                namespace: &str,
                metric: &str,
                operator,
                threshold,
                window,
                frequency| AlertRule {
        name: name.into(),
        description: description.into(),
        severity: severity.into(),
        scope: scope.into(),
        namespace: namespace.into(),
        metric: metric.into(),
        operator,
        threshold,
        window_minutes: window,
        frequency_minutes: frequency,
        id: None,
        action_groups: Vec::new(),
        samples: VecDeque::new(),
        fired: None,
        last_evaluated: None,
    };
    vec![
        rule(
            "ml-scaling-trigger",
            "Triggers scaling actions based on ML workload metrics",
            "Sev2",
            workspace_id,
            "Microsoft.MachineLearningServices/workspaces",
            "Percentage CPU",
            Operator::GreaterThan,
            75.0,
            5,
            1,
        ),
        rule(
            "scaling-efficiency-alert",
            "Monitors scaling efficiency and cost optimization",
            "Sev3",
            fleet_id,
            "Microsoft.AzureFleet/fleets",
            "SpotInstanceUtilization",
            Operator::LessThan,
            40.0,
            15,
            5,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_when_the_average_crosses_and_resolves_when_it_falls_back() {
        let mut rules =
            recipe_rules("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w", "/f");
        let rule = &mut rules[0];
        let t0 = time::macros::datetime!(2026-03-02 08:00 UTC);
        let mut id = 0;
        let mut sent = Vec::new();
        for (minute, cpu) in [50.0, 60.0, 90.0, 95.0, 99.0, 99.0, 99.0, 40.0, 30.0, 20.0, 20.0, 20.0].iter().enumerate() {
            if let Some(n) = rule.observe(t0 + time::Duration::minutes(minute as i64), Some(*cpu), "s", &mut id) {
                sent.push((minute, n["data"]["essentials"]["monitorCondition"].as_str().unwrap().to_string(), n));
            }
        }
        let kinds: Vec<(usize, &str)> = sent.iter().map(|(m, k, _)| (*m, k.as_str())).collect();
        assert_eq!(kinds, [(4, "Fired"), (8, "Resolved")]);
        let fired = fleetpilot_core::alert::Alert::from_common_schema(&sent[0].2).unwrap();
        assert_eq!(fired.rule, "ml-scaling-trigger");
        assert_eq!(fired.criteria[0].metric, "Percentage CPU");
        assert!(fired.criteria[0].value.unwrap() > 75.0);
        let resolved = fleetpilot_core::alert::Alert::from_common_schema(&sent[1].2).unwrap();
        assert_eq!(resolved.alert_id, fired.alert_id, "one alert, fired then resolved");
    }
}
