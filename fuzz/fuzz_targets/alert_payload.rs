//! The common alert schema parser on any JSON: an alert or an error, never a panic; and an
//! alert's text, quoted for a model, never escapes its fence.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(alert) = fleetpilot_core::alert::Alert::from_common_schema(&body) {
        let _ = alert.dedup_key();
        let _ = alert.fleet_target();
    }
});
