#!/usr/bin/env bash
# Times the synthetic venue generator (flythrough-synth) at three sizes and prints a table.
# Usage: scripts/bench-synth.sh [IMAGES]   (default 40 photos per size)
set -euo pipefail
cd "$(dirname "$0")/.."
images="${1:-40}"
cargo build --release -q -p flythrough-synth --example synth
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
printf '| size | photos | wall s | photos/s | photos with a detectable face |\n|---|---|---|---|---|\n'
for size in 320x240 640x480 1024x768; do
  w="${size%x*}"; h="${size#*x}"
  line="$(./target/release/examples/synth "$out/$size" 1 "$images" "$w" "$h")"
  secs="$(sed -E 's/.* in ([0-9.]+) s;.*/\1/' <<<"$line")"
  faces="$(sed -E 's/.*photos with a detectable face ([0-9]+).*/\1/' <<<"$line")"
  rate="$(awk -v n="$images" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')"
  printf '| %s | %s | %s | %s | %s |\n' "$size" "$images" "$secs" "$rate" "$faces"
done
echo "($(nproc) cores)"
