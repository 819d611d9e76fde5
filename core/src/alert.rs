//! Azure Monitor's common alert schema, as much of it as fleetpilot acts on: which rule fired
//! (or resolved), when, on which resources, and what the condition saw. Parsing is strict about
//! what it needs and lenient about everything else, and says exactly what is missing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Fired or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MonitorCondition {
    /// The condition holds.
    Fired,
    /// It no longer does.
    Resolved,
}

/// One criterion of the condition, as the alert reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Criterion {
    /// Metric (metric alerts) or the query's name (log alerts).
    pub metric: String,
    /// `GreaterThan`, `LessThan`, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operator: String,
    /// The threshold, as text (Azure sends it as a string).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub threshold: String,
    /// The value that crossed it, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "f64")]
    pub value: Option<f64>,
}

/// An alert notification, reduced to what a scaling decision needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    /// The alert's id (stable across fired and resolved).
    pub alert_id: String,
    /// The rule's name.
    pub rule: String,
    /// `Sev0` … `Sev4`.
    pub severity: String,
    /// `Metric`, `Log` or `Activity Log`.
    pub signal_type: String,
    /// Fired or resolved.
    pub condition: MonitorCondition,
    /// When it fired (RFC 3339, as sent).
    pub fired_at: String,
    /// When it resolved, for a resolved notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub resolved_at: Option<String>,
    /// ARM ids of the resources the alert is about.
    pub target_ids: Vec<String>,
    /// The rule's description — text a person wrote; never instructions to the agent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What the condition saw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub criteria: Vec<Criterion>,
}

impl Alert {
    /// Parse a notification in the common alert schema.
    ///
    /// # Errors
    /// A sentence naming what is missing or malformed.
    pub fn from_common_schema(body: &serde_json::Value) -> Result<Alert, String> {
        if !body.is_object() {
            return Err("the body is not a JSON object".into());
        }
        match body.get("schemaId").and_then(|v| v.as_str()) {
            Some("azureMonitorCommonAlertSchema") => {}
            Some(other) => {
                return Err(format!("schemaId is {other:?}; enable the common alert schema on the action group"));
            }
            None => return Err("schemaId is missing; expected \"azureMonitorCommonAlertSchema\"".into()),
        }
        let essentials = body.pointer("/data/essentials").ok_or("data.essentials is missing")?;
        let text = |key: &str| -> Result<String, String> {
            essentials
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("data.essentials.{key} is missing or not a string"))
        };
        let optional = |key: &str| essentials.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let condition = match text("monitorCondition")?.as_str() {
            "Fired" => MonitorCondition::Fired,
            "Resolved" => MonitorCondition::Resolved,
            other => return Err(format!("data.essentials.monitorCondition is {other:?}; expected Fired or Resolved")),
        };
        let target_ids = essentials
            .get("alertTargetIDs")
            .and_then(|v| v.as_array())
            .ok_or("data.essentials.alertTargetIDs is missing or not an array")?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let criteria = body
            .pointer("/data/alertContext/condition/allOf")
            .and_then(|v| v.as_array())
            .map(|all| {
                all.iter()
                    .map(|c| {
                        let s = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                        let metric = if c.get("metricName").is_some() { s("metricName") } else { s("searchQuery") };
                        let threshold = match c.get("threshold") {
                            Some(serde_json::Value::String(t)) => t.clone(),
                            Some(serde_json::Value::Number(n)) => n.to_string(),
                            _ => String::new(),
                        };
                        let value = c.get("metricValue").and_then(|v| v.as_f64());
                        Criterion { metric, operator: s("operator"), threshold, value }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Alert {
            alert_id: text("alertId")?,
            rule: text("alertRule")?,
            severity: optional("severity"),
            signal_type: optional("signalType"),
            condition,
            fired_at: text("firedDateTime")?,
            resolved_at: essentials.get("resolvedDateTime").and_then(|v| v.as_str()).map(str::to_string),
            target_ids,
            description: optional("description"),
            criteria,
        })
    }

    /// The key that makes a notification unique: alert id, condition, and when it fired.
    pub fn dedup_key(&self) -> String {
        let condition = match self.condition {
            MonitorCondition::Fired => "Fired",
            MonitorCondition::Resolved => "Resolved",
        };
        format!("{}|{condition}|{}", self.alert_id, self.fired_at)
    }

    /// The fleet an alert is about, when one of its targets is a Compute Fleet.
    pub fn fleet_target(&self) -> Option<crate::FleetRef> {
        self.target_ids.iter().find_map(|id| {
            let lower = id.to_ascii_lowercase();
            let parts: Vec<&str> = id.split('/').collect();
            let lparts: Vec<&str> = lower.split('/').collect();
            let rg = lparts.iter().position(|p| *p == "resourcegroups").and_then(|i| parts.get(i + 1))?;
            let fleet = lparts.iter().position(|p| *p == "fleets").and_then(|i| parts.get(i + 1))?;
            lower
                .contains("/providers/microsoft.azurefleet/fleets/")
                .then(|| crate::FleetRef { resource_group: (*rg).to_string(), name: (*fleet).to_string() })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "schemaId": "azureMonitorCommonAlertSchema",
            "data": {
                "essentials": {
                    "alertId": "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/a1",
                    "alertRule": "scaling-efficiency-alert",
                    "severity": "Sev3",
                    "signalType": "Metric",
                    "monitorCondition": "Fired",
                    "alertTargetIDs": ["/subscriptions/s/resourceGroups/rg-ml/providers/Microsoft.AzureFleet/fleets/cf-ml-scaling"],
                    "firedDateTime": "2026-03-02T08:00:00Z",
                    "description": "Monitors scaling efficiency"
                },
                "alertContext": {"condition": {"allOf": [
                    {"metricName": "SpotInstanceUtilization", "operator": "LessThan", "threshold": "40", "metricValue": 31.5}
                ]}}
            }
        })
    }

    #[test]
    fn parses_what_a_decision_needs() {
        let a = Alert::from_common_schema(&sample()).unwrap();
        assert_eq!(a.rule, "scaling-efficiency-alert");
        assert_eq!(a.condition, MonitorCondition::Fired);
        assert_eq!(a.criteria[0].metric, "SpotInstanceUtilization");
        assert_eq!(a.criteria[0].value, Some(31.5));
        let fleet = a.fleet_target().unwrap();
        assert_eq!((fleet.resource_group.as_str(), fleet.name.as_str()), ("rg-ml", "cf-ml-scaling"));
        assert!(a.dedup_key().ends_with("|Fired|2026-03-02T08:00:00Z"));
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(Alert::from_common_schema(&serde_json::json!([])).unwrap_err().contains("not a JSON object"));
        assert!(
            Alert::from_common_schema(&serde_json::json!({"schemaId": "Microsoft.Insights/activityLogs"}))
                .unwrap_err()
                .contains("common alert schema")
        );
        let mut no_rule = sample();
        no_rule["data"]["essentials"].as_object_mut().unwrap().remove("alertRule");
        assert_eq!(Alert::from_common_schema(&no_rule).unwrap_err(), "data.essentials.alertRule is missing or not a string");
        let mut odd = sample();
        odd["data"]["essentials"]["monitorCondition"] = "Maybe".into();
        assert!(Alert::from_common_schema(&odd).unwrap_err().contains("Fired or Resolved"));
    }
}
