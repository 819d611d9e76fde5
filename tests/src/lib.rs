//! End-to-end tests of the fleetpilot binary live in `tests/`; this library is empty on purpose.
