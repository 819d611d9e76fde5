//! Validating JSON against the definitions of an official Swagger 2.0 spec.
//!
//! The spec files are copied verbatim into `emulator/spec/`. To make the check strict, the
//! definitions are prepared: references into the ARM common types are resolved to a local
//! copy, `allOf` inheritance is flattened, and every object definition that does not say
//! otherwise gets `additionalProperties: false`, so a misspelled property fails.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

pub struct Spec {
    definitions: Map<String, Value>,
}

fn load_json(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Rewrite `$ref`s: common types → `#/definitions/common.X`; other files → permissive `{}`.
fn rewrite_refs(value: &mut Value, local_prefix: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref").cloned().as_ref() {
                let (file, pointer) = reference.split_once('#').unwrap_or(("", reference));
                let name = pointer.trim_start_matches("/definitions/");
                if file.is_empty() {
                    map.insert("$ref".into(), json!(format!("#/definitions/{local_prefix}{name}")));
                } else if file.ends_with("/types.json") {
                    map.insert("$ref".into(), json!(format!("#/definitions/common.{name}")));
                } else {
                    map.clear();
                    return;
                }
            }
            for v in map.values_mut() {
                rewrite_refs(v, local_prefix);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, local_prefix)),
        _ => {}
    }
}

fn flatten(name: &str, defs: &Map<String, Value>, done: &mut BTreeMap<String, Value>) -> Value {
    if let Some(v) = done.get(name) {
        return v.clone();
    }
    let mut def = defs.get(name).cloned().unwrap_or_else(|| panic!("no definition {name}"));
    if let Some(Value::Array(parents)) = def.as_object_mut().and_then(|d| d.remove("allOf")) {
        let mut properties = def.get("properties").cloned().unwrap_or_else(|| json!({}));
        let mut required: Vec<Value> = def.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
        for parent in parents {
            let parent = match parent.get("$ref").and_then(Value::as_str) {
                Some(r) => flatten(r.trim_start_matches("#/definitions/"), defs, done),
                None => parent,
            };
            if let Some(Value::Object(p)) = parent.get("properties") {
                for (k, v) in p {
                    properties.as_object_mut().unwrap().entry(k.clone()).or_insert(v.clone());
                }
            }
            required.extend(parent.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
        }
        def["properties"] = properties;
        required.dedup();
        if !required.is_empty() {
            def["required"] = Value::Array(required);
        }
        def["type"] = json!("object");
    }
    if def.get("properties").is_some() && def.get("additionalProperties").is_none() {
        def["additionalProperties"] = json!(false);
    }
    done.insert(name.to_string(), def.clone());
    def
}

impl Spec {
    pub fn load(file: &str) -> Self {
        let mut spec = load_json(file);
        let mut common = load_json("types.v5.json");
        rewrite_refs(&mut spec, "");
        rewrite_refs(&mut common, "common.");
        let mut raw = spec["definitions"].as_object().unwrap().clone();
        for (k, v) in common["definitions"].as_object().unwrap() {
            raw.insert(format!("common.{k}"), v.clone());
        }
        let mut done = BTreeMap::new();
        let names: Vec<String> = raw.keys().cloned().collect();
        let mut definitions = Map::new();
        for name in names {
            definitions.insert(name.clone(), flatten(&name, &raw, &mut done));
        }
        Self { definitions }
    }

    /// Replace the schema at a JSON pointer inside a definition (for known spec quirks).
    pub fn relax(&mut self, definition: &str, pointer: &str) {
        if let Some(node) = self.definitions.get_mut(definition).and_then(|d| d.pointer_mut(pointer)) {
            *node = json!({});
        }
    }

    pub fn errors(&self, definition: &str, instance: &Value) -> Vec<String> {
        assert!(self.definitions.contains_key(definition), "no definition {definition}");
        let schema = json!({"$ref": format!("#/definitions/{definition}"), "definitions": self.definitions});
        let validator = jsonschema::draft4::new(&schema).unwrap();
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect()
    }

    pub fn check(&self, definition: &str, instance: &Value) {
        let errors = self.errors(definition, instance);
        assert!(errors.is_empty(), "{definition} does not validate:\n{}\n{instance:#}", errors.join("\n"));
    }
}
