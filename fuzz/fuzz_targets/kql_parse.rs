//! The KQL parser on any text: an error or a parse, never a panic (or a stack overflow).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fleetpilot_emulator::kql::parser::parse(text);
    }
});
