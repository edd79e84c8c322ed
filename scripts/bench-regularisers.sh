#!/usr/bin/env bash
# Measures training settings one at a time on the real captures, against the default, with
# everything before training shared: each variant copies the capture/privacy/sfm stages of a
# `scripts/bench-real.sh` run (so all variants see the same poses and photos) and runs
# `flythrough run --until train` with one extra [train] line. Prints held-out PSNR/SSIM (NeRF-W
# protocol), training steps and seconds per variant, side by side.
#
#   scripts/bench-real.sh                      # first: the base runs, in /tmp/bench-real
#   scripts/bench-regularisers.sh [BASE_DIR] [OUT_DIR]
#   SETS=fox VARIANTS=$'default\npose_lr = 1e-4' scripts/bench-regularisers.sh
#
# Training is bounded by wall time (300 s), so the step count of every variant depends on the
# machine's load: the load average is printed per row; run it on a quiet machine. The "default"
# row repeats the base configuration, so its difference from the base run's own PSNR shows the
# run-to-run spread (the batch order is seeded; thread timing is not).
# Not a CI test: about 5 minutes per variant per set on 2 idle cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${1:-/tmp/bench-real}
OUT=${2:-/tmp/bench-regularisers}
SETS=${SETS:-"fox redkitchen"}
VARIANTS=${VARIANTS:-$'default\npose_lr = 1e-4\ndistortion_weight = 0.0\ndistortion_weight = 0.05\nsteps = 3000'}
(cd "$ROOT" && cargo build --release -q -p flythrough)
BIN=$ROOT/target/release/flythrough
mkdir -p "$OUT"

ROWS=()
for set in $SETS; do
  base="$BASE/$set"
  [ -f "$base/run/sfm/stage.json" ] || {
    echo "no base run for $set in $base: run scripts/bench-real.sh first"; exit 1; }
  i=0
  while IFS= read -r variant; do
    [ -n "$variant" ] || continue
    i=$((i + 1))
    dir="$OUT/$set/$i"
    rm -rf "$dir" && mkdir -p "$dir/run"
    cp -a "$base/run/capture" "$base/run/privacy" "$base/run/sfm" "$dir/run/"
    # The base venue.toml without its [render] table (render is not run here), plus the variant.
    python3 - "$base/venue.toml" "$dir/venue.toml" "$variant" <<'EOF'
import re, sys
src, dst, variant = sys.argv[1:]
text = open(src).read()
text = re.split(r'^\[render\]\s*$', text, flags=re.M)[0].rstrip() + '\n'
if variant != 'default':
    if re.search(r'^\[train\]\s*$', text, flags=re.M):
        text = re.sub(r'^\[train\]\s*$', '[train]\n' + variant, text, count=1, flags=re.M)
    else:
        text += '\n[train]\n' + variant + '\n'
open(dst, 'w').write(text)
EOF
    load0=$(cut -d' ' -f1 /proc/loadavg)
    if ! "$BIN" -q run "$dir/venue.toml" --out "$dir/run" --until train > "$dir/run.log" 2>&1; then
      echo "$set / $variant: failed, see $dir/run.log"; tail -3 "$dir/run.log"; continue
    fi
    # The earlier stages must have been reused, not redone: otherwise the variants differ in more
    # than the one setting.
    if ! cmp -s "$base/run/sfm/stage.json" "$dir/run/sfm/stage.json"; then
      echo "$set / $variant: the sfm stage was redone (expected reuse), see $dir"; exit 1
    fi
    load1=$(cut -d' ' -f1 /proc/loadavg)
    ROWS+=("$(python3 - "$dir/run/train/stage.json" "$set" "$variant" "$load0" "$load1" <<'EOF'
import json, sys
path, name, variant, l0, l1 = sys.argv[1:]
s = json.load(open(path))['summary']
print(f"| {name} | `{variant}` | {s['steps']} | {s['train_seconds']:.0f} | **{s['psnr_holdout']:.2f} dB** | "
      f"{s['ssim_holdout']:.3f} | {l0} -> {l1} |")
EOF
)")
    echo "${ROWS[-1]}"
  done <<< "$VARIANTS"
  base_psnr=$(python3 -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['summary']['psnr_holdout']:.2f}\")" "$base/run/train/stage.json")
  echo "($set base run from $base: $base_psnr dB)"
done

echo
echo "Held-out PSNR/SSIM by the NeRF-W protocol; every variant shares the base run's capture, privacy and sfm stages."
echo "| set | [train] change | steps | training s | held-out PSNR | SSIM | load avg |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo "(outputs in $OUT; $(nproc) cores, $(uname -m))"
