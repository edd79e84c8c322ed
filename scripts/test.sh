#!/usr/bin/env bash
# One command: install what is missing, then run every test in release mode (numeric code is only
# meaningful optimised). Tests that need ../shared/data skip with a one-line message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --release --locked "$@"
