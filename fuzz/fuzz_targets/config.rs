//! fleetpilot's configuration (the binary's own parser, raw then validated) on any text: a
//! configuration or an error naming the key, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../src/config.rs"]
mod config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(raw) = toml::from_str::<config::RawConfig>(text) else { return };
    let _ = config::validate(raw, &config::Overrides::default());
});
