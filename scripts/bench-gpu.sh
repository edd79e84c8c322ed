#!/usr/bin/env bash
# GPU back-end benchmark (crates/gpu, crates/nerf/src/gpu, shaders/): one table, GPU and CPU back ends
# side by side in the same run, on the same machine:
#   - adapter; training samples/s and rays/s at the default [train] model and batch (2048 rays x 160
#     samples), GPU/CPU ratio; per-kernel GPU time of a step from timestamp queries (the `step`
#     micro-benchmark: one batch, no read-backs);
#   - real GPU training through the driver (`train`: fresh batches every step, metrics, checkpoints
#     by time written in the background, TRAIN_BUDGET seconds): samples/s, rays/s and per step the
#     dispatches, compute passes, uploaded bytes and host wait (also for `step`);
#   - seconds per 2048x1024 and 3840x1920 360° frame (the CPU renders a band of rows, extrapolated),
#     from the NeRF and from a baked model (bench_baked_gpu: a synthetic 256^3 room, issue 18);
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
# Environment: OUT (output folder, default /tmp/bench-gpu), RESULTS_TO (a folder that gets only
# results.jsonl, table.md and logs.tar.gz, a few MB: the device tool's $OUT), BIN_DIR (prebuilt
# bench_gpu and bench_baked_gpu), SIZE (full|tiny), TRAIN_BUDGET (the `train` part's seconds, default 20; 3 for tiny;
# "" = none), DEADLINE (seconds for the whole run, default 285: every part's
# time-out is cut to what is left, and a part with under 15 s left is skipped), SYNTH_BUDGETS
# (default "45"), REAL_BUDGETS (default "20"), REAL_SCENES (default "fox redkitchen_every10"),
# CPU_BUDGETS (the synthetic venue on the CPU, default "30"; set and empty = none), DEVICE (gpu|auto,
# default gpu: any adapter, software ones included), REQUIRE_HARDWARE (default 1 for full, 0 for
# tiny: the smoke test must name a hardware adapter or the run stops at once, printing why).
# The parts run most valuable first: smoke, the step micro-benchmark (GPU and CPU side by side;
# then the GPU step again with f32 activations and the plain hash scatter, with the MLP weights
# staged in workgroup memory, and with 8-row MLP register tiles, their per-kernel times in columns
# beside the default's, at 4x the batch: the per-step fixed cost and per-ray cost, and
# the default once more: the run-to-run spread),
# real training through the driver on the GPU (train), the synthetic venue on the GPU, 360° frames
# on the GPU, a tiny step and frame under the Vulkan validation layer, the real captures, then the
# CPU parts.
set -uo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-full}
OUT=${OUT:-/tmp/bench-gpu}
mkdir -p "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-runtime}
mkdir -p "$XDG_RUNTIME_DIR"
if [ -n "${BIN_DIR:-}" ]; then
  BIN="$BIN_DIR/bench_gpu"
  BAKED_BIN="$BIN_DIR/bench_baked_gpu"
else
  cargo build --release --workspace --example bench_gpu --example bench_baked_gpu >&2 || exit 1
  BIN=target/release/examples/bench_gpu
  BAKED_BIN=target/release/examples/bench_baked_gpu
fi
if [ "$SIZE" = tiny ]; then
  STEP_ARGS="256 3 tiny"; STEP_BATCH_ARGS="1024 3 tiny"; RENDER_W="64 128"; RENDER_TINY=tiny
  TRAIN_BUDGET=${TRAIN_BUDGET-"3"}; TRAIN_ARGS="256 $TRAIN_BUDGET $OUT/train tiny"
  export BENCH_TRAIN_TOML=${BENCH_TRAIN_TOML:-'batch_rays = 256
prop_samples = [16, 16]
nerf_samples = 16
hash_levels = 8
hash_table_log2 = 14
hash_max_res = 256
mlp_width = 32'}
  # `${X-default}`: a variable set to "" means none of that part.
  SYNTH_BUDGETS=${SYNTH_BUDGETS-"4"}; CPU_BUDGETS=${CPU_BUDGETS-"4"}; REAL_BUDGETS=${REAL_BUDGETS-""}; SYNTH_SIZE="64 48 10"
  REQUIRE_HARDWARE=${REQUIRE_HARDWARE:-0}; DEADLINE=${DEADLINE:-600}
else
  STEP_ARGS="2048 50"; STEP_BATCH_ARGS="8192 20"; RENDER_W="2048 3840"; RENDER_TINY=""
  TRAIN_BUDGET=${TRAIN_BUDGET-"20"}; TRAIN_ARGS="2048 $TRAIN_BUDGET $OUT/train"
  SYNTH_BUDGETS=${SYNTH_BUDGETS-"45"}; CPU_BUDGETS=${CPU_BUDGETS-"30"}; REAL_BUDGETS=${REAL_BUDGETS-"20"}; SYNTH_SIZE="640 480 40"
  REQUIRE_HARDWARE=${REQUIRE_HARDWARE:-1}; DEADLINE=${DEADLINE:-285}
fi
REAL_SCENES=${REAL_SCENES:-"fox redkitchen_every10"}
DEVICE=${DEVICE:-gpu}
RES="$OUT/results.jsonl"
: > "$RES"
T0=$(date +%s)
part() { # name timeout command...
  local name=$1 t=$2; shift 2
  local s left; s=$(date +%s); left=$(( DEADLINE - (s - T0) - 10 ))
  if [ "$left" -lt 15 ]; then
    echo "bench-gpu: $name skipped: the run's DEADLINE of $DEADLINE s is reached" >&2
    return 1
  fi
  [ "$t" -gt "$left" ] && t=$left
  if timeout "$t" "$@" >> "$RES" 2> "$OUT/$name.log"; then
    echo "bench-gpu: $name done in $(( $(date +%s) - s )) s" >&2
  else
    echo "bench-gpu: $name FAILED or timed out after $(( $(date +%s) - s )) s (log: $OUT/$name.log): $(tail -1 "$OUT/$name.log")" >&2
    return 1
  fi
}
uptime >&2 || true
if ! part smoke 30 "$BIN" smoke && [ "$REQUIRE_HARDWARE" = 1 ]; then
  echo "bench-gpu: no hardware GPU adapter; stopping before any measurement:" >&2
  cat "$OUT/smoke.log" >&2
  if [ -n "${RESULTS_TO:-}" ]; then mkdir -p "$RESULTS_TO" && cp "$OUT/smoke.log" "$RESULTS_TO/"; fi
  exit 3
fi
part step 90 "$BIN" step $STEP_ARGS
# The same step with f32 activations and the plain scatter (GPU only): what f16 and subgroups bring.
part step_plain 60 env FLYTHROUGH_GPU_F16=0 FLYTHROUGH_GPU_SUBGROUPS=0 BENCH_NO_CPU=1 "$BIN" step $STEP_ARGS
# The same step with the MLP weights staged in workgroup memory (GPU only): whether staging beats
# reading them through L1 (KERNELS.md "Weights in workgroup memory"; the per-kernel table shows
# mlp_fwd and mlp_bwd_data side by side).
part step_staged 60 env FLYTHROUGH_GPU_MLP_WEIGHTS=workgroup BENCH_NO_CPU=1 "$BIN" step $STEP_ARGS
# The same step with register tiles of 8 rows x 4 columns in the MLP kernels (64 invocations per
# workgroup; GPU only): twice the multiply-adds per weight load, half the invocations in flight.
part step_rows8 60 env FLYTHROUGH_GPU_MLP_ROWS=8 BENCH_NO_CPU=1 "$BIN" step $STEP_ARGS
# The default step at 4x the batch (GPU only): ms per step = fixed + per ray x rays, the two numbers
# a GPU default batch_rays is chosen from (the table prints them).
part step_batch 60 env BENCH_NO_CPU=1 "$BIN" step $STEP_BATCH_ARGS
# The default step once more (GPU only): its spread against the first run is the noise any
# difference above must exceed.
part step_repeat 60 env BENCH_NO_CPU=1 "$BIN" step $STEP_ARGS
if [ -n "$TRAIN_BUDGET" ]; then
  part train $((TRAIN_BUDGET + 40)) "$BIN" train $TRAIN_ARGS
fi
for b in $SYNTH_BUDGETS; do
  part "synth_gpu_$b" $((b + 60)) "$BIN" venue synth "$b" "$DEVICE" "$OUT/synth_gpu_$b" $SYNTH_SIZE
done
for w in $RENDER_W; do
  part "render_gpu_$w" 60 "$BIN" render "$w" 3 "$DEVICE" $RENDER_TINY
done
# The widest frame again with 8-row MLP register tiles (a frame's time is mostly mlp_fwd: the
# 0.5 s target at 3840x1920 is where the register tile matters most).
part "render_gpu_rows8_$w" 60 env FLYTHROUGH_GPU_MLP_ROWS=8 "$BIN" render "$w" 3 "$DEVICE" $RENDER_TINY
# The baked model (crates/bake/examples/bench_baked_gpu.rs: a synthetic 256^3 room) on the GPU.
for w in $RENDER_W; do
  part "baked_gpu_$w" 60 "$BAKED_BIN" "$w" 3 "$DEVICE" $RENDER_TINY
done
# Vulkan validation on this adapter's own driver (the Khronos layer, core + synchronization): a
# tiny training step and a tiny frame with every API call, shader module and barrier checked.
# The layer comes from .gl/vvl/ (scripts/bench-gpu-package.sh; unpacked under $OUT, not into /)
# or the system (Debian's vulkan-validationlayers). Messages go to $OUT/validation_*.log (in the
# logs tarball); one JSON line counts them.
validation() {
  local s left deb layer_dir="" lib_dir="" errors=0 warnings=0 loaded=0 ok=1 f
  s=$(date +%s); left=$(( DEADLINE - (s - T0) - 10 ))
  if [ "$left" -lt 25 ]; then
    echo "bench-gpu: validation skipped: the run's DEADLINE of $DEADLINE s is reached" >&2
    return 1
  fi
  deb=$(ls .gl/vvl/vulkan-validationlayers_*.deb 2>/dev/null | head -1)
  if [ -n "$deb" ]; then
    rm -rf "$OUT/vvl" && dpkg -x "$deb" "$OUT/vvl" || return 1
    layer_dir="$OUT/vvl/usr/share/vulkan/explicit_layer.d"
    lib_dir="$OUT/vvl/usr/lib/x86_64-linux-gnu"
  elif ! ls /usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json >/dev/null 2>&1; then
    echo "bench-gpu: validation skipped: no Khronos validation layer (.gl/vvl or vulkan-validationlayers)" >&2
    return 1
  fi
  for what in step render; do
    f="$OUT/validation_$what.log"
    printf '%s\n' "khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG" \
      "khronos_validation.log_filename = $f" \
      "khronos_validation.report_flags = error,warn,perf,info" \
      "khronos_validation.enables = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT" \
      > "$OUT/vk_layer_settings_$what.txt"
    local args="step 256 3 tiny"
    [ "$what" = render ] && args="render 64 1 gpu tiny"
    # shellcheck disable=SC2086
    if ! timeout $(( left / 2 )) env VK_LAYER_SETTINGS_PATH="$OUT/vk_layer_settings_$what.txt" \
        VK_INSTANCE_LAYERS=VK_LAYER_KHRONOS_validation \
        ${layer_dir:+VK_ADD_LAYER_PATH="$layer_dir"} ${lib_dir:+LD_LIBRARY_PATH="$lib_dir:${LD_LIBRARY_PATH:-}"} \
        BENCH_NO_CPU=1 "$BIN" $args > /dev/null 2> "$OUT/validation_${what}_run.log"; then
      ok=0
    fi
    errors=$(( errors + $(grep -c "Validation Error" "$f" 2>/dev/null || true) ))
    warnings=$(( warnings + $(grep -cE "Validation (Warning|Performance Warning)" "$f" 2>/dev/null || true) ))
    loaded=$(( loaded + $(grep -c "Khronos Validation Layer Active" "$f" 2>/dev/null || true) ))
  done
  printf '{"mode":"validation","runs_ok":%s,"layer_loaded":%s,"errors":%d,"warnings":%d}\n' \
    "$([ $ok = 1 ] && echo true || echo false)" "$([ "$loaded" -gt 0 ] && echo true || echo false)" \
    "$errors" "$warnings" >> "$RES"
  echo "bench-gpu: validation done in $(( $(date +%s) - s )) s: $errors errors, $warnings warnings (layer loaded: $loaded runs)" >&2
}
validation
# The real captures after the validation run (a few seconds, and what a driver bug would show
# first), so a run that reaches its DEADLINE loses the captures' PSNR rather than the check.
for s in $REAL_SCENES; do
  for b in $REAL_BUDGETS; do
    part "${s}_gpu_$b" $((b + 45)) "$BIN" venue "$s" "$b" "$DEVICE" "$OUT/${s}_gpu_$b"
  done
done
for b in $CPU_BUDGETS; do
  part "synth_cpu_$b" $((b + 60)) "$BIN" venue synth "$b" cpu "$OUT/synth_cpu_$b" $SYNTH_SIZE
done
for w in $RENDER_W; do
  part "render_cpu_$w" 60 "$BIN" render "$w" 1 cpu $RENDER_TINY
done
for w in $RENDER_W; do
  part "baked_cpu_$w" 60 "$BAKED_BIN" "$w" 1 cpu $RENDER_TINY
done
echo
"$BIN" table "$RES" | tee "$OUT/table.md"
echo
echo "(whole run $(( $(date +%s) - T0 )) s; JSON lines and logs in $OUT)"
# Only small files travel back: the results, the table and the logs (no checkpoints or photos).
if [ -n "${RESULTS_TO:-}" ]; then
  mkdir -p "$RESULTS_TO"
  cp "$RES" "$OUT/table.md" "$RESULTS_TO/"
  (cd "$OUT" && tar czf "$RESULTS_TO/logs.tar.gz" ./*.log ./*/*.jsonl ./*/*.json 2>/dev/null) || true
  ls -la "$RESULTS_TO" >&2
fi
