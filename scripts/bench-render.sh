#!/usr/bin/env bash
# Render-stage benchmark: seconds per 360° (equirectangular) frame on the CPU back end.
#
#   scripts/bench-render.sh                 # analytic room (no model needed): tiling/camera overhead
#   scripts/bench-render.sh runs/demo       # the trained NeRF of a run folder (train stage finished),
#                                           # and the baked model beside it when the bake stage ran
#   WIDTH=2048 FRAMES=2 scripts/bench-render.sh runs/demo
#
# Prints a Markdown table row per source; numbers go into crates/render/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WIDTH=${WIDTH:-1024}
FRAMES=${FRAMES:-3}
cargo build --release -q -p flythrough-render --example bench_render
bin=target/release/examples/bench_render
if [ $# -ge 1 ]; then
  "$bin" --run "$1" --width "$WIDTH" --frames "$FRAMES"
else
  echo "(no run folder given: analytic room only; pass a run folder with a trained model for NeRF numbers)"
  "$bin" --width "$WIDTH" --frames "$FRAMES"
fi
