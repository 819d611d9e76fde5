#!/usr/bin/env bash
# Fuzz each target for a bounded time (default 60 s each) with cargo fuzz (libFuzzer, nightly,
# AddressSanitizer). Not part of CI. Prints executions per target; a crash stops with its input
# under fuzz/artifacts/<target>/.
#   cargo install cargo-fuzz; rustup toolchain install nightly
#   bench/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-60}
for target in kql_parse alert_payload config tool_arguments; do
    echo "== $target (${SECONDS_EACH} s)"
    cargo +nightly fuzz run -O "$target" -- -max_total_time="$SECONDS_EACH" -max_len=4096 2>&1 \
        | grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs|ERROR|panicked|SUMMARY" | tail -3 || true
done
