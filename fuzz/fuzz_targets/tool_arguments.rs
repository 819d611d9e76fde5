//! Every tool's arguments on any JSON: accepted or refused, never a panic; and any text quoted
//! for a model stays inside its fence (the prompt-injection defence).
#![no_main]
use fleetpilot_tools::schema::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ProposeScaleInput>(data);
    let _ = serde_json::from_slice::<ReadFleetInput>(data);
    let _ = serde_json::from_slice::<EstimateCostInput>(data);
    let _ = serde_json::from_slice::<QueryKqlInput>(data);
    let _ = serde_json::from_slice::<ListProposalsInput>(data);
    let _ = serde_json::from_slice::<ApplyProposalInput>(data);
    let _ = serde_json::from_slice::<SubmitMlJobInput>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let quoted = fleetpilot_prompts::quote(text, 2000);
        if quoted != "(none)" {
            let inner = quoted.strip_prefix("<<<quoted\n").and_then(|q| q.strip_suffix("\n>>>")).expect("a fenced block");
            assert!(!inner.contains("<<<") && !inner.contains(">>>") && !inner.contains("```"), "text escaped its fence: {quoted:?}");
        }
    }
});
