#!/usr/bin/env bash
# One command: install what is missing, build in release mode, synthesize a small venue and run the
# whole pipeline on it on the CPU. Outputs land in ./demo (or the folder given as $1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p flythrough
OUT="${1:-demo}"
./target/release/flythrough demo --out "$OUT"
echo
echo "Done. Open $OUT/run/report.html, or run: ./target/release/flythrough view $OUT/run"
