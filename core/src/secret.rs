//! A secret string that never shows itself in logs.

/// A secret (API key, client secret). `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A copy of `value` with the values of secret-looking fields (names containing secret,
/// token, password, api key, credential, connection string) replaced by `"[redacted]"`, at any
/// depth. Used for the audit and the agent's transcripts.
pub fn redact_json(value: &serde_json::Value) -> serde_json::Value {
    const SECRET: [&str; 8] = ["secret", "token", "password", "apikey", "api_key", "api-key", "credential", "connection_string"];
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    // Token *counts* (usage) are numbers, not secrets.
                    if SECRET.iter().any(|s| lower.contains(s)) && !v.is_number() {
                        (k.clone(), serde_json::Value::String("[redacted]".into()))
                    } else {
                        (k.clone(), redact_json(v))
                    }
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(redact_json).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_prints_itself() {
        let s = super::Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secrets_are_redacted_at_any_depth_and_counts_kept() {
        let v = serde_json::json!({"fleet": "f", "env": {"API_KEY": "k", "list": [{"client_secret": "s"}]}, "token": "t", "prompt_tokens": 12});
        let r = super::redact_json(&v);
        assert_eq!(r["fleet"], "f");
        assert_eq!(r["env"]["API_KEY"], "[redacted]");
        assert_eq!(r["env"]["list"][0]["client_secret"], "[redacted]");
        assert_eq!(r["token"], "[redacted]");
        assert_eq!(r["prompt_tokens"], 12);
    }
}
