#!/usr/bin/env bash
# A full `flythrough run` (capture, privacy, sfm, train, bake, render) on the real captures of
# ../shared/data, at default settings, with the time of every stage and the held-out PSNR:
#   fox         67 phone-video frames, 1080x1920, no EXIF (instant-ngp sample data)
#   redkitchen  100 frames of a kitchen walk, 640x480, metric poses (Microsoft 7-Scenes)
#
#   scripts/bench-real.sh [OUT_DIR]                 # default /tmp/bench-real
#   POSES=import scripts/bench-real.sh              # reference poses instead of the pipeline's own SfM
#   BENCH_REAL_TRAIN='pose_lr = 1e-4' scripts/bench-real.sh   # extra [train] keys
#   BENCH_REAL_RENDER='max_frames = 0' scripts/bench-real.sh  # [render] keys (default below)
#   SETS="redkitchen" scripts/bench-real.sh
#
# POSES=sfm (default): every stage as a user runs it, [train] at its defaults (300 s budget).
# The render is bounded by default (BENCH_REAL_RENDER: 512x256 360° frames, at most 24 frames, the
# frame rate lowered to fit the path), since a 1024x512 CPU frame takes ~12 s: the row gives the
# seconds per frame, which is what scales.
# POSES=import: `[sfm] import` of a COLMAP model of the reference poses written by
# `crates/nerf/examples/known_poses.rs` (fox: COLMAP's poses from its transforms.json; redkitchen:
# the 7-Scenes poses with the Kinect colour camera's focal 525, see that file), with sparse points
# triangulated from SIFT matches, so training is measured independently of SfM. The SfM stage then
# only imports, scales (redkitchen: one calibration pair from the true poses) and levels the model.
# Not a CI test: about 5-10 minutes per set on 2 idle cores, several times that under load.
# The machine's load average is printed before and after each run (it is shared).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${FLYTHROUGH_SHARED_DATA:-$ROOT/../shared/data}
OUT=${1:-/tmp/bench-real}
POSES=${POSES:-sfm}
RENDER=${BENCH_REAL_RENDER-'width = 512\nheight = 256\nmax_frames = 24'}
SETS=${SETS:-"fox redkitchen"}
mkdir -p "$OUT"
(cd "$ROOT" && cargo build --release -q -p flythrough)
# The reference-pose writer only when it is used (its build takes minutes on 2 cores).
[ "$POSES" = import ] && (cd "$ROOT" && cargo build --release -q -p flythrough-nerf --example known_poses)
BIN=$ROOT/target/release/flythrough
KNOWN=$ROOT/target/release/examples/known_poses

declare -A FOLDER=([fox]=fox [redkitchen]=redkitchen_every10)
ROWS=()
for set in $SETS; do
  photos="$DATA/${FOLDER[$set]}/images"
  [ -d "$photos" ] || { echo "skipped $set: $photos not found"; continue; }
  dir="$OUT/$set"
  rm -rf "$dir" && mkdir -p "$dir"
  # venue.toml: keyframes evenly along the capture order; redkitchen gets one calibration pair
  # (frames 0 and 300) with its distance from the true poses.
  python3 - "$set" "$photos" "$DATA/${FOLDER[$set]}" "$dir/venue.toml" <<'EOF'
import math, os, sys
name, photos, root, out = sys.argv[1:]
files = sorted(f for f in os.listdir(photos) if f.lower().endswith(('.jpg', '.jpeg', '.png')))
keys = [files[round(i * (len(files) - 1) / 4)] for i in range(5)]
toml = f'[venue]\nname = "{name}"\nphotos = "{photos}"\nkeyframes = {keys!r}\n'.replace("'", '"')
if name == 'redkitchen':
    def centre(f):
        t = [float(v) for v in open(os.path.join(root, 'poses', f.replace('.color.jpg', '.pose.txt'))).read().split()]
        return t[3], t[7], t[11]
    a, b = files[0], files[30]
    toml += f'\n[[calibration]]\na = "{a}"\nb = "{b}"\ndistance_m = {math.dist(centre(a), centre(b)):.4f}\n'
open(out, 'w').write(toml)
EOF
  if [ "$POSES" = import ]; then
    "$KNOWN" "$set" "$dir/reference_model" > "$dir/known_poses.log" 2>&1
    printf '\n[sfm]\nimport = "reference_model"\n' >> "$dir/venue.toml"
  fi
  if [ -n "${BENCH_REAL_TRAIN:-}" ]; then
    printf '\n[train]\n%b\n' "$BENCH_REAL_TRAIN" >> "$dir/venue.toml"
  fi
  if [ -n "$RENDER" ]; then
    printf '\n[render]\n%b\n' "$RENDER" >> "$dir/venue.toml"
  fi
  load0=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -v -o "$dir/time.txt" "$BIN" -q run "$dir/venue.toml" --out "$dir/run" > "$dir/run.log" 2>&1 || {
    echo "$set: flythrough run failed, see $dir/run.log"; tail -5 "$dir/run.log"; continue; }
  load1=$(cut -d' ' -f1 /proc/loadavg)
  ROWS+=("$(python3 - "$dir" "$set" "$POSES" "$load0" "$load1" <<'EOF'
import json, os, sys
d, name, poses, l0, l1 = sys.argv[1:]
run = os.path.join(d, 'run')
def stage(s):
    return json.load(open(os.path.join(run, s, 'stage.json')))
secs = {s: stage(s)['seconds'] for s in ['capture', 'privacy', 'sfm', 'train', 'bake', 'render']}
bk = stage('bake')['summary']
ev = json.load(open(os.path.join(run, 'train', 'eval.json')))
tr = stage('train')['summary']
rd = stage('render')['summary']
sfm = json.load(open(os.path.join(run, 'sfm', 'report.json')))
rss = [l for l in open(os.path.join(d, 'time.txt')) if 'Maximum resident' in l][0].split(':')[1]
sel = ev['selection']
print(f"| {name} | {sfm['registered']}/{sfm['total']} ({poses}) | {secs['capture']:.0f} | {secs['privacy']:.0f} | "
      f"{secs['sfm']:.0f} | {secs['train']:.0f} ({tr['train_seconds']:.0f} + eval {tr['eval_seconds']:.0f}) | "
      f"{secs['bake']:.0f} ({bk['resolution']}^3, {100 * bk['occupied_fraction']:.1f} % stored, {bk['bytes'] / 1e6:.0f} MB, fine-tuning {bk.get('finetune_seconds', 0):.0f} s) | "
      f"{secs['render']:.0f} ({rd['frames']} x {rd['width']}x{rd['height']} from the {rd.get('source', 'nerf')}, {rd['seconds_per_frame']:.2f} s/frame) | "
      f"{sum(secs.values()):.0f} | {tr['train_width']}x{tr['train_height']}, {tr['steps']} steps | "
      f"**{ev['mean_psnr']:.2f} dB** / {ev['mean_ssim']:.3f} ({sel['evaluated']} of {sel['held_out']} at {sel['eval_size'][0]}x{sel['eval_size'][1]}) | "
      f"**{bk['psnr_holdout_baked']:.2f} dB** / {bk['ssim_holdout_baked']:.3f} | "
      f"{int(rss) / 1e6:.1f} GB | {l0} -> {l1} |")
EOF
)")
done
echo
echo "Seconds per stage; held-out PSNR/SSIM by the NeRF-W protocol (GLO latent fitted on the left half, right half scored)."
echo "| set | registered (poses) | capture | privacy | sfm | train (training + evaluation) | bake | render | total | training | held-out PSNR / SSIM, NeRF | held-out PSNR / SSIM, baked (same protocol) | peak RSS | load avg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo "(outputs in $OUT; $(nproc) cores, $(uname -m))"
