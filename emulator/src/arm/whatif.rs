//! ARM what-if (`POST …/resourceGroups/{rg}/providers/Microsoft.Resources/deployments/{name}/whatIf`):
//! what a template deployment would change in a resource group, without changing it.
//!
//! The template's expressions are evaluated as far as the emulator knows them:
//! `parameters('x')`, `concat(…)` of strings and parameters, and `reference('id', 'api').P`
//! of a resource that exists (one the template would create stays unevaluated, as ARM
//! shows it). Each resource is `Create`, `Modify` (with the changed properties),
//! `NoChange`, or — in the group but not in the template, incremental mode — `Ignore`.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Reply, parse_body};
use crate::world::{ArmError, World};

/// One parsed argument or value of a template expression.
#[derive(Debug, Clone)]
enum Term {
    Text(String),
    Call(String, Vec<Term>, Option<String>),
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip(&mut self) {
        while self.at < self.text.len() && self.text[self.at] == b' ' {
            self.at += 1;
        }
    }

    fn term(&mut self) -> Option<Term> {
        self.skip();
        if self.text.get(self.at) == Some(&b'\'') {
            self.at += 1;
            let mut out = String::new();
            loop {
                match self.text.get(self.at)? {
                    b'\'' if self.text.get(self.at + 1) == Some(&b'\'') => {
                        out.push('\'');
                        self.at += 2;
                    }
                    b'\'' => {
                        self.at += 1;
                        return Some(Term::Text(out));
                    }
                    _ => {
                        let rest = std::str::from_utf8(&self.text[self.at..]).ok()?;
                        let c = rest.chars().next()?;
                        out.push(c);
                        self.at += c.len_utf8();
                    }
                }
            }
        }
        let start = self.at;
        while self.text.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.at += 1;
        }
        let name = std::str::from_utf8(&self.text[start..self.at]).ok()?.to_string();
        self.skip();
        if self.text.get(self.at) != Some(&b'(') || name.is_empty() {
            return None;
        }
        self.at += 1;
        let mut args = Vec::new();
        loop {
            self.skip();
            if self.text.get(self.at) == Some(&b')') {
                self.at += 1;
                break;
            }
            args.push(self.term()?);
            self.skip();
            match self.text.get(self.at)? {
                b',' => self.at += 1,
                b')' => {
                    self.at += 1;
                    break;
                }
                _ => return None,
            }
        }
        let mut property = None;
        if self.text.get(self.at) == Some(&b'.') {
            self.at += 1;
            let start = self.at;
            while self.text.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.') {
                self.at += 1;
            }
            property = Some(std::str::from_utf8(&self.text[start..self.at]).ok()?.to_string());
        }
        Some(Term::Call(name, args, property))
    }
}

/// Evaluate a term; `None` when it cannot be known yet (or is not supported).
fn eval(term: &Term, world: &World, parameters: &Value) -> Option<String> {
    match term {
        Term::Text(t) => Some(t.clone()),
        Term::Call(name, args, property) => {
            let values: Option<Vec<String>> = args.iter().map(|a| eval(a, world, parameters)).collect();
            let values = values?;
            match (name.to_ascii_lowercase().as_str(), values.as_slice(), property) {
                ("parameters", [p], None) => {
                    parameters.pointer(&format!("/{p}/value")).and_then(Value::as_str).map(str::to_string)
                }
                ("concat", parts, None) => Some(parts.concat()),
                ("reference", [id, ..], Some(property)) => {
                    let current = super::resource_json_at(world, id)?;
                    let mut at = current.get("properties")?;
                    for part in property.split('.') {
                        at = at.get(part)?;
                    }
                    at.as_str().map(str::to_string)
                }
                _ => None,
            }
        }
    }
}

/// A template string's value: a literal, an evaluated expression, or (unknown) the expression.
fn evaluate(text: &str, world: &World, parameters: &Value) -> Value {
    if let Some(literal) = text.strip_prefix("[[") {
        return json!(format!("[{literal}"));
    }
    let Some(expression) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
        return json!(text);
    };
    let mut parser = Parser { text: expression.as_bytes(), at: 0 };
    match parser.term().filter(|_| parser.at == expression.len()) {
        Some(term) => eval(&term, world, parameters).map_or_else(|| json!(text), Value::String),
        None => json!(text),
    }
}

fn evaluate_all(value: &Value, world: &World, parameters: &Value) -> Value {
    match value {
        Value::String(s) => evaluate(s, world, parameters),
        Value::Array(items) => Value::Array(items.iter().map(|v| evaluate_all(v, world, parameters)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), evaluate_all(v, world, parameters))).collect()),
        other => other.clone(),
    }
}

fn compare(desired: &Value, found: Option<&Value>, path: &str, skip: &[&str], out: &mut Vec<Value>) {
    if skip.contains(&path) {
        return;
    }
    match (desired, found) {
        (Value::Object(d), Some(Value::Object(_)) | None) => {
            for (k, v) in d {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                compare(v, found.and_then(|f| f.get(k)), &child, skip, out);
            }
        }
        (d, Some(f)) if d == f || (d.as_f64().is_some() && d.as_f64() == f.as_f64()) => {}
        (d, None) => out.push(json!({"path": path, "propertyChangeType": "Create", "after": d})),
        (d, Some(f)) => out.push(json!({"path": path, "propertyChangeType": "Modify", "before": f, "after": d})),
    }
}

/// Serve a what-if in resource group `rg`.
pub(crate) fn what_if(world: &World, rg: &str, body: &Bytes) -> Result<Reply, ArmError> {
    let input: Value = parse_body(body)?;
    let mode = input.pointer("/properties/mode").and_then(Value::as_str).unwrap_or_default();
    if !matches!(mode, "Incremental" | "Complete") {
        return Err(ArmError::new(400, "InvalidDeploymentMode", "'properties.mode' must be 'Incremental' or 'Complete'."));
    }
    let Some(resources) = input.pointer("/properties/template/resources").and_then(Value::as_array) else {
        return Err(ArmError::new(400, "InvalidTemplate", "The template has no 'resources' array."));
    };
    let parameters = input.pointer("/properties/parameters").cloned().unwrap_or(json!({}));
    let subscription = world.config.subscription_id.clone();
    let mut changes = Vec::new();
    let mut named = std::collections::HashSet::new();
    for resource in resources {
        let type_name = resource.get("type").and_then(Value::as_str).unwrap_or_default();
        let name = resource.get("name").and_then(Value::as_str).unwrap_or_default();
        let (namespace, types) = type_name.split_once('/').unwrap_or((type_name, ""));
        let types: Vec<&str> = types.split('/').collect();
        let names: Vec<&str> = name.split('/').collect();
        if types.len() != names.len() || name.is_empty() {
            return Err(ArmError::new(
                400,
                "InvalidTemplate",
                format!("The resource name '{name}' does not match its type '{type_name}' (one name segment per type segment)."),
            ));
        }
        let path: Vec<String> = types.iter().zip(&names).map(|(t, n)| format!("{t}/{n}")).collect();
        let id = format!("/subscriptions/{subscription}/resourceGroups/{rg}/providers/{namespace}/{}", path.join("/"));
        named.insert(id.to_ascii_lowercase());
        let mut after: Map<String, Value> = Map::new();
        for key in ["location", "kind", "sku", "tags", "properties"] {
            if let Some(v) = resource.get(key) {
                after.insert(key.into(), evaluate_all(v, world, &parameters));
            }
        }
        let mut shown = json!({"id": id, "type": type_name, "name": names.last(), "apiVersion": resource.get("apiVersion")});
        for (k, v) in &after {
            shown[k] = v.clone();
        }
        let change = match super::resource_json_at(world, &id) {
            None => json!({"resourceId": id, "changeType": "Create", "after": shown}),
            Some(found) => {
                let write_only: Vec<String> = super::generic::spec_for(type_name)
                    .map(|s| s.write_only.iter().map(|w| format!("properties.{w}")).collect())
                    .unwrap_or_default();
                let skip: Vec<&str> = write_only.iter().map(String::as_str).collect();
                let mut delta = Vec::new();
                compare(&Value::Object(after.clone()), Some(&found), "", &skip, &mut delta);
                if delta.is_empty() {
                    json!({"resourceId": id, "changeType": "NoChange", "before": found, "after": shown})
                } else {
                    json!({"resourceId": id, "changeType": "Modify", "before": found, "after": shown, "delta": delta})
                }
            }
        };
        changes.push(change);
    }
    // In the group but not in the template: incremental mode leaves them alone.
    if let Some(listed) = super::generic::list_group(world, rg).get("value").and_then(Value::as_array) {
        for r in listed {
            let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
            if !named.contains(&id.to_ascii_lowercase()) {
                let change_type = if mode == "Complete" { "Delete" } else { "Ignore" };
                changes.push(json!({"resourceId": id, "changeType": change_type}));
            }
        }
    }
    Ok(Reply::json(StatusCode::OK, json!({"status": "Succeeded", "properties": {"changes": changes}})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::new(crate::WorldConfig::default(), fleetpilot_core::PriceTable::embedded(), time::OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn expressions_evaluate_parameters_and_concat_and_leave_the_unknown_alone() {
        let w = world();
        let p = json!({"token": {"value": "s3cret"}});
        assert_eq!(evaluate("[parameters('token')]", &w, &p), json!("s3cret"));
        assert_eq!(
            evaluate("[concat('https://x/alerts?token=', parameters('token'))]", &w, &p),
            json!("https://x/alerts?token=s3cret")
        );
        assert_eq!(evaluate("[concat('it''s ', 'fine')]", &w, &p), json!("it's fine"));
        assert_eq!(evaluate("[[literal]", &w, &p), json!("[literal]"));
        assert_eq!(evaluate("plain", &w, &p), json!("plain"));
        let unknown = "[reference('/subscriptions/x/resourceGroups/rg/providers/Microsoft.Insights/components/ai', '2020-02-02').ConnectionString]";
        assert_eq!(evaluate(unknown, &w, &p), json!(unknown));
        assert_eq!(evaluate("[nonsense(]", &w, &p), json!("[nonsense(]"));
    }
}
