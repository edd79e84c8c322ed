#!/usr/bin/env bash
# GPU back-end benchmark (crates/gpu, crates/nerf/src/gpu, shaders/): one table, GPU and CPU back ends
# side by side in the same run, on the same machine:
#   - adapter; training samples/s and rays/s at the default [train] model and batch (2048 rays x 160
#     samples), GPU/CPU ratio; per-kernel GPU time of a step from timestamp queries;
#   - seconds per 2048x1024 and 3840x1920 360° frame (the CPU renders a band of rows, extrapolated);
#   - held-out PSNR of the synthetic venue at 640x480 after 30 s and 60 s of training (GPU and CPU),
#     the time its training-batch PSNR reaches 30 dB, and held-out PSNR of the real captures fox and
#     redkitchen_every10 (../shared/data) after 30 s and 60 s on the GPU.
#
# Locally:   scripts/bench-gpu.sh                       (builds the bench binary with cargo)
#            SIZE=tiny scripts/bench-gpu.sh             (tiny model and budgets: proves the script on lavapipe)
# On a GPU machine without cargo (the device machine of crates/gpu/README.md): carry the x86-64
# release binary and the Vulkan loader, then
#            BIN_DIR=.bench FLYTHROUGH_SHARED_DATA=.bench/data scripts/bench-gpu.sh
#
# Environment: OUT (output folder, default a temp dir), BIN_DIR (prebuilt bench_gpu), SIZE (full|tiny),
# SYNTH_BUDGETS (default "30 60"), REAL_BUDGETS (default "30 60"), REAL_SCENES (default
# "fox redkitchen_every10"), CPU_BUDGETS (the synthetic venue on the CPU, default "60"; "" = none),
# DEVICE (gpu|auto, default gpu: any adapter, software ones included). The default full run takes
# about 7 minutes on a GPU machine (budgets 30 + 60 s x 3 scenes on the GPU, 60 s on the CPU).
# Every part is bounded by `timeout`; a failed part prints one line and the table shows what ran.
set -uo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-full}
OUT=${OUT:-$(mktemp -d /tmp/bench-gpu.XXXXXX)}
mkdir -p "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-runtime}
mkdir -p "$XDG_RUNTIME_DIR"
if [ -n "${BIN_DIR:-}" ]; then
  BIN="$BIN_DIR/bench_gpu"
else
  cargo build --release -p flythrough-nerf --example bench_gpu >&2 || exit 1
  BIN=target/release/examples/bench_gpu
fi
if [ "$SIZE" = tiny ]; then
  STEP_ARGS="256 3 tiny"; RENDER_W="64 128"; RENDER_TINY=tiny
  export BENCH_TRAIN_TOML=${BENCH_TRAIN_TOML:-'batch_rays = 256
prop_samples = [16, 16]
nerf_samples = 16
hash_levels = 8
hash_table_log2 = 14
hash_max_res = 256
mlp_width = 32'}
  SYNTH_BUDGETS=${SYNTH_BUDGETS:-"4"}; CPU_BUDGETS=${CPU_BUDGETS:-"4"}; REAL_BUDGETS=${REAL_BUDGETS:-""}; SYNTH_SIZE="64 48 10"
else
  STEP_ARGS="2048 20"; RENDER_W="2048 3840"; RENDER_TINY=""
  SYNTH_BUDGETS=${SYNTH_BUDGETS:-"30 60"}; CPU_BUDGETS=${CPU_BUDGETS:-"60"}; REAL_BUDGETS=${REAL_BUDGETS:-"30 60"}; SYNTH_SIZE="640 480 40"
fi
REAL_SCENES=${REAL_SCENES:-"fox redkitchen_every10"}
DEVICE=${DEVICE:-gpu}
RES="$OUT/results.jsonl"
: > "$RES"
T0=$(date +%s)
part() { # name timeout command...
  local name=$1 t=$2; shift 2
  local s; s=$(date +%s)
  if timeout "$t" "$@" >> "$RES" 2> "$OUT/$name.log"; then
    echo "bench-gpu: $name done in $(( $(date +%s) - s )) s" >&2
  else
    echo "bench-gpu: $name FAILED or timed out after $(( $(date +%s) - s )) s (log: $OUT/$name.log): $(tail -1 "$OUT/$name.log")" >&2
  fi
}
uptime >&2 || true
part step 180 "$BIN" step $STEP_ARGS
for w in $RENDER_W; do
  part "render_gpu_$w" 120 "$BIN" render "$w" 3 "$DEVICE" $RENDER_TINY
  part "render_cpu_$w" 120 "$BIN" render "$w" 1 cpu $RENDER_TINY
done
for b in $SYNTH_BUDGETS; do
  part "synth_gpu_$b" $((b + 120)) "$BIN" train synth "$b" "$DEVICE" "$OUT/synth_gpu_$b" $SYNTH_SIZE
done
for b in $CPU_BUDGETS; do
  part "synth_cpu_$b" $((b + 120)) "$BIN" train synth "$b" cpu "$OUT/synth_cpu_$b" $SYNTH_SIZE
done
for s in $REAL_SCENES; do
  for b in $REAL_BUDGETS; do
    part "${s}_gpu_$b" $((b + 120)) "$BIN" train "$s" "$b" "$DEVICE" "$OUT/${s}_gpu_$b"
  done
done
echo
"$BIN" table "$RES"
echo
echo "(whole run $(( $(date +%s) - T0 )) s; JSON lines and logs in $OUT)"
