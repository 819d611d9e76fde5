//! fleetpilot's prompts: kept as files under `prompts/files/`, rendered with typed inputs.
//! A placeholder is `{{name}}`; rendering fails on a missing value or an unknown placeholder,
//! so a prompt never reaches a model half-filled.

use std::collections::BTreeMap;

/// The system prompt of the scaling agent.
pub const SYSTEM: &str = include_str!("../files/system.md");

/// A prompt could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template names a placeholder that no value was given for.
    #[error("no value for placeholder {{{{{0}}}}}")]
    Missing(String),
    /// A value was given for a placeholder the template does not have.
    #[error("value given for unknown placeholder {0}")]
    Unused(String),
    /// `{{` without a closing `}}`.
    #[error("unclosed placeholder at byte {0}")]
    Unclosed(usize),
}

/// Inputs of the system prompt.
#[derive(Debug, Clone)]
pub struct SystemInputs<'a> {
    /// Fleet name.
    pub fleet: &'a str,
    /// Resource group.
    pub resource_group: &'a str,
    /// When the agent may apply its own proposals (e.g. "the verdict is allow").
    pub apply_rule: &'a str,
}

/// Render the system prompt.
///
/// # Errors
/// Never for the shipped template; see [`render`].
pub fn system(inputs: &SystemInputs<'_>) -> Result<String, RenderError> {
    render(
        SYSTEM,
        &BTreeMap::from([("fleet", inputs.fleet), ("resource_group", inputs.resource_group), ("apply_rule", inputs.apply_rule)]),
    )
}

/// Replace every `{{name}}` in `template` with its value.
///
/// # Errors
/// A placeholder without a value, a value without a placeholder, an unclosed `{{`.
pub fn render(template: &str, values: &BTreeMap<&str, &str>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len());
    let mut used = std::collections::BTreeSet::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(RenderError::Unclosed(offset + start))?;
        let name = after[..end].trim();
        let value = values.get(name).ok_or_else(|| RenderError::Missing(name.to_string()))?;
        out.push_str(value);
        used.insert(name);
        let consumed = start + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    if let Some(unused) = values.keys().find(|k| !used.contains(*k)) {
        return Err(RenderError::Unused((*unused).to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str, values: &[(&str, &str)], expect: Result<&str, RenderError>) {
        let values: BTreeMap<&str, &str> = values.iter().copied().collect();
        assert_eq!(render(template, &values), expect.map(str::to_string));
    }

    #[test]
    fn renders_and_refuses_half_filled_prompts() {
        check("a {{x}} b {{ y }}", &[("x", "1"), ("y", "2")], Ok("a 1 b 2"));
        check("a {{x}}", &[], Err(RenderError::Missing("x".into())));
        check("a", &[("x", "1")], Err(RenderError::Unused("x".into())));
        check("a {{x", &[("x", "1")], Err(RenderError::Unclosed(2)));
    }

    #[test]
    fn the_system_prompt_renders() {
        let text =
            system(&SystemInputs { fleet: "cf-ml-scaling", resource_group: "rg", apply_rule: "the verdict is allow" }).unwrap();
        assert!(text.contains("Compute Fleet cf-ml-scaling in resource group rg"));
        assert!(!text.contains("{{"));
    }
}
