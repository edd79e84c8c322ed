#!/usr/bin/env bash
# NeRF training benchmark (crates/nerf): held-out PSNR against wall time, training samples/s and
# rays/s, render rays/s, on the project's synthetic venue at demo size (flythrough_synth defaults:
# 320x240, 40 photos, +-1 EV, lighting changes; ground-truth cameras), on the tests' analytic room at
# the same size, and on the Middlebury temple (../shared/data/temple_ring19, ground-truth cameras,
# every 8th photo held out).
#
#   scripts/bench-train.sh                 # default budgets
#   SYNTH_BUDGETS="270" ROOM_BUDGETS="60 270" TEMPLE_BUDGETS="120 270" TEMPLE_DOWNSCALE=2 scripts/bench-train.sh
#   BENCH_TRAIN_TOML='batch_rays = 4096' scripts/bench-train.sh   # extra [train] keys
#
# Each row is a fresh run with that training budget ([train] max_seconds); all other keys are the
# defaults of `flythrough config --defaults`. Reference (shared/data/README.md, same 2-core machine):
# nerfstudio 1.1.5 nerfacto on temple_ring19: 75 steps in 8.5 min (~600 rays/s), 9.24 dB held-out,
# renders 655 rays/s; trivial baselines 11.21 dB (black), 12.61 dB (mean colour), 19.23 dB
# (neighbouring photo).
set -euo pipefail
cd "$(dirname "$0")/.."
SYNTH_BUDGETS=${SYNTH_BUDGETS:-"270"}
ROOM_BUDGETS=${ROOM_BUDGETS:-"120 270"}
TEMPLE_BUDGETS=${TEMPLE_BUDGETS:-"120 270"}
TEMPLE_DOWNSCALE=${TEMPLE_DOWNSCALE:-2}
OUT=${OUT:-$(mktemp -d /tmp/bench-train.XXXXXX)}
cargo build --release -p flythrough-nerf --example bench_train >&2
BIN=target/release/examples/bench_train
echo
echo "| scene | train res | steps | budget | held-out PSNR | SSIM | train samples/s | train rays/s | render rays/s | wall (incl. eval) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for b in $SYNTH_BUDGETS; do
  timeout $((b + 600)) "$BIN" synth "$b" "$OUT/synth_$b" 1 320 240 40 | tail -1
done
for b in $ROOM_BUDGETS; do
  timeout $((b + 600)) "$BIN" room "$b" "$OUT/room_$b" 1 320 240 40 | tail -1
done
if [ -d ../shared/data/temple_ring19 ] || [ -n "${FLYTHROUGH_SHARED_DATA:-}" ]; then
  for b in $TEMPLE_BUDGETS; do
    timeout $((b + 900)) "$BIN" temple "$b" "$OUT/temple_$b" "$TEMPLE_DOWNSCALE" 640 480 19 | tail -1
  done
else
  echo "(temple_ring19 not found: skipped)"
fi
echo "| nerfstudio nerfacto (reference) | temple 640x480 | 75 | 8.5 min | 9.24 dB | 0.30 | | ~600 | 655 | |"
echo
echo "Training PSNR (batch) against wall time, from metrics.jsonl:"
for d in "$OUT"/*/out; do
  printf '%s:' "$(basename "$(dirname "$d")")"
  awk -F'[:,]' '{for(i=1;i<NF;i++){if($i=="\"elapsed_s\"")t=$(i+1); if($i=="\"psnr\"")p=$(i+1)}; n++; if(n%25==0) printf " %.0fs %.1fdB", t, p}' "$d/metrics.jsonl"
  echo
done
echo "(outputs in $OUT)"
