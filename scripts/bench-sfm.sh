#!/usr/bin/env bash
# Side-by-side benchmark of our SfM stage and COLMAP 3.8 (CPU only) on the shared real sets:
#   sceaux      11 x 2832x2128 outdoor photos      COLMAP automatic_reconstructor (exhaustive)
#   temple      19 x 640x480 object ring           COLMAP automatic_reconstructor; AUC vs templeR_par.txt
#   fox         67 x 1080x1920 phone-video frames  COLMAP feature_extractor + sequential_matcher + mapper;
#                                                  pose error vs the reference transforms.json (COLMAP's own)
#   redkitchen  100 x 640x480 Kinect walk frames   as fox; metric poses: one calibration pair from the true
#                                                  poses, scale and median centre error in metres after a
#                                                  similarity alignment
#   walk1000    1000 x 320x240 synthetic venue     a closed-loop walk, photos ~1 cm apart (written by
#               (examples/synth_venue.rs)          examples/synth_venue.rs into OUT; its two calibration
#                                                  pairs make it metric); our side only unless TOOLS
#                                                  names colmap (then as fox: sequential matcher; hours)
#   ba          bundle adjustment alone            examples/ba_scaling.rs: time per iteration and peak
#                                                  memory at 240, 500 and 1000 photos, dense vs sparse
#                                                  reduced camera system (its own table)
# Prints wall time, peak memory, registered photos, points, mean reprojection error and pose error per
# tool. Each (set, tool) result is a row file in OUT, so parts can be run separately
# (SETS="fox redkitchen" TOOLS=colmap scripts/bench-sfm.sh OUT, then TOOLS=ours ... with the same OUT);
# the table lists every row found in OUT.
#
# usage: [SETS="sceaux temple fox redkitchen walk1000 ba"] [TOOLS="ours colmap"] scripts/bench-sfm.sh [OUT_DIR]
# needs: colmap (apt-get install colmap), /usr/bin/time, python3. Our side: the default [sfm] config.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${FLYTHROUGH_SHARED_DATA:-$ROOT/../shared/data}
OUT=${1:-/tmp/bench-sfm}
SETS=${SETS:-sceaux temple fox redkitchen walk1000 ba}
TOOLS=${TOOLS:-ours colmap}
mkdir -p "$OUT"
[[ " $TOOLS " == *" colmap "* ]] && { command -v colmap >/dev/null || { echo "colmap not found: apt-get install colmap" >&2; exit 1; }; }
(cd "$ROOT" && cargo build --release -q -p flythrough-sfm --example sfm_folder --example eval_model \
  --example synth_venue --example ba_scaling)
SFM=$ROOT/target/release/examples/sfm_folder
EVAL=$ROOT/target/release/examples/eval_model
SYNTH=$ROOT/target/release/examples/synth_venue
BA=$ROOT/target/release/examples/ba_scaling
WALK=$OUT/walk1000-venue

wall_s() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"; }
rss_mb() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }
# Wall time of several /usr/bin/time files added up, and their largest peak RSS.
sum_wall() { local s=0; for f in "$@"; do s=$(python3 -c "print($s + $(wall_s "$f"))"); done; echo "$s"; }
max_rss() { local m=0; for f in "$@"; do r=$(rss_mb "$f"); (( r > m )) && m=$r; done; echo "$m"; }

images_of() {
  case $1 in
    sceaux) echo "$DATA/sceaux_castle/images" ;;
    temple) echo "$DATA/temple_ring19" ;;
    fox) echo "$DATA/fox/images" ;;
    redkitchen) echo "$DATA/redkitchen_every10/images" ;;
    walk1000) echo "$WALK/photos" ;;
  esac
}
# Ground-truth flags of sfm_folder, and the calibration pair for the metric set.
gt_flags() {
  case $1 in
    temple) echo "--gt-middlebury $(images_of temple)/templeR_par.txt" ;;
    fox) echo "--gt-nerf $DATA/fox/transforms.json" ;;
    redkitchen) echo "--gt-7scenes $DATA/redkitchen_every10/poses --calibrate-from-gt frame-000000.color.jpg frame-000500.color.jpg" ;;
    walk1000) echo "--config $WALK/venue.toml --gt $WALK/ground_truth" ;;
    *) echo "" ;;
  esac
}
# "AUC@5/@10 median-centre-error" from an eval.json (centre error in % of the spread, or in cm with
# metric ground truth), "- -" without one.
pose_cols() {
  local ev=$1 set=$2 tool=$3
  [[ -s $ev ]] || { echo "- -"; return; }
  python3 - "$ev" "$set" "$tool" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
a = '%.3f/%.3f' % (e['auc']['5'], e['auc']['10'])
if sys.argv[2] in ('redkitchen', 'walk1000'):
    c = '%.1fcm' % (100 * e['median_center_error'])
    if sys.argv[3] == 'ours':  # metric (one calibration pair); COLMAP's scale is arbitrary
        c += ',scale%+.1f%%' % (100 * (e['sim3_scale'] - 1))
else:
    c = '%.2f%%' % e['median_center_error_pct']
print(a, c)
PY
}

# The bundle adjustment benchmark: its own table.
ba_bench() {
  : > "$OUT/ba.jsonl"
  for n in 240 500 1000; do
    for solver in dense sparse; do
      /usr/bin/time -v -o "$OUT/ba.$n.$solver.time" "$BA" "$n" "$solver" 5 >> "$OUT/ba.jsonl"
    done
  done
  python3 - "$OUT/ba.jsonl" > "$OUT/ba.table" <<'PY'
import json, sys
print('%-7s %-7s %8s %12s %10s %10s %10s %10s %10s %9s' % ('photos', 'solver', 'columns', 'observations',
      'wall_s/it', 'cpu_s/it', 'schur_s', 'solve_s', 'linear_s', 'peak_MB'))
for l in open(sys.argv[1]):
    d = json.loads(l)
    print('%-7d %-7s %8d %12d %10.3f %10.3f %10.3f %10.3f %10.3f %9.0f' % (d['images'], d['solver'], d['columns'],
          d['observations'], d['wall_s_per_iteration'], d['cpu_s_per_iteration'], d['schur_s_per_iteration'],
          d['solve_s_per_iteration'], d['linearize_s_per_iteration'], d['peak_rss_mb']))
PY
}

# The 1000-photo walk's details: pairs, loop closures, time per phase (from report.json) and how
# many photos of the walk's first 100 share at least 10 model points with one of its last 100 (the
# loop closed in the model).
walk_details() {
  python3 - "$1" <<'PY'
import collections, itertools, json, os, sys
d = sys.argv[1]
r = json.load(open(os.path.join(d, 'report.json')))
t = r['timings_s']
print('walk1000 (ours): %d/%d registered, %d pairs matched, %d verified, %s verified retrieval pairs'
      % (r['registered'], r['total'], r['matched_pairs'], r['verified_pairs'], r['verified_retrieval_pairs']))
print('  seconds: ' + ', '.join('%s %.1f' % (k, t[k]) for k in ['features', 'pair selection', 'matching',
      'verification', 'mapping', 'mapping: incremental mapping: bundle adjustment',
      'mapping: final bundle adjustment', 'total'] if k in t))
idx, lines = {}, [l for l in open(os.path.join(d, 'sparse', 'images.txt')) if not l.startswith('#')]
for k in range(0, len(lines), 2):
    p = lines[k].split()
    idx[int(p[0])] = int(p[9][4:8]) - 1
share = collections.Counter()
for l in open(os.path.join(d, 'sparse', 'points3D.txt')):
    if l.startswith('#') or not l.strip():
        continue
    tr = sorted({idx[int(x)] for x in l.split()[8::2]})
    lo, hi = [i for i in tr if i < 100], [i for i in tr if i >= 900]
    for a, b in itertools.product(lo, hi):
        share[(a, b)] += 1
tied = {a for (a, b), c in share.items() if c >= 10}
print('  loop closed in the model: %d of the first 100 photos share >= 10 points with the last 100' % len(tied))
PY
}

for set in $SETS; do
  if [[ $set == ba ]]; then
    [[ " $TOOLS " == *" ours "* ]] && ba_bench
    continue
  fi
  if [[ $set == walk1000 && ! -d $WALK/photos ]]; then
    /usr/bin/time -v -o "$OUT/walk1000.synth.time" "$SYNTH" "$WALK" 1000 320 240 > "$OUT/walk1000.synth.log"
  fi
  imgs=$(images_of "$set")
  [[ -d $imgs ]] || { echo "skipping $set: $imgs not found" >&2; continue; }
  ntot=$(ls "$imgs" | grep -ciE '\.(jpe?g|png|tiff?)$')
  for tool in $TOOLS; do
    case $tool in
      ours)
        # shellcheck disable=SC2046
        /usr/bin/time -v -o "$OUT/$set.ours.time" "$SFM" "$imgs" "$OUT/$set/ours" $(gt_flags "$set") > "$OUT/$set.ours.log" 2>&1
        read -r reg tot pts err < <(python3 -c "
import json; r = json.load(open('$OUT/$set/ours/report.json'))
print(r['registered'], r['total'], r['points'], '%.3f' % r['mean_reproj_px'])")
        echo "$set ours $(wall_s "$OUT/$set.ours.time") $(rss_mb "$OUT/$set.ours.time") $reg/$tot $pts $err $(pose_cols "$OUT/$set/ours/eval.json" "$set" ours)" > "$OUT/$set.ours.row"
        ;;
      colmap)
        ws="$OUT/$set/colmap"; rm -rf "$ws"; mkdir -p "$ws"
        times=()
        if [[ $set == sceaux || $set == temple ]]; then
          QT_QPA_PLATFORM=offscreen /usr/bin/time -v -o "$OUT/$set.colmap.time" \
            colmap automatic_reconstructor --workspace_path "$ws" --image_path "$imgs" --use_gpu 0 --dense 0 \
            > "$OUT/$set.colmap.log" 2>&1
          times=("$OUT/$set.colmap.time")
        else
          # Video frames: one camera, sequential matching (COLMAP's choice for video; no vocabulary
          # tree file for loop detection here), the incremental mapper.
          /usr/bin/time -v -o "$OUT/$set.colmap.extract.time" colmap feature_extractor \
            --database_path "$ws/db.db" --image_path "$imgs" --ImageReader.single_camera 1 \
            --SiftExtraction.use_gpu 0 > "$OUT/$set.colmap.log" 2>&1
          /usr/bin/time -v -o "$OUT/$set.colmap.match.time" colmap sequential_matcher \
            --database_path "$ws/db.db" --SiftMatching.use_gpu 0 >> "$OUT/$set.colmap.log" 2>&1
          mkdir -p "$ws/sparse"
          /usr/bin/time -v -o "$OUT/$set.colmap.map.time" colmap mapper \
            --database_path "$ws/db.db" --image_path "$imgs" --output_path "$ws/sparse" >> "$OUT/$set.colmap.log" 2>&1
          times=("$OUT/$set.colmap.extract.time" "$OUT/$set.colmap.match.time" "$OUT/$set.colmap.map.time")
        fi
        # The largest model COLMAP made.
        model=""; best=0
        for m in "$ws"/sparse/*/; do
          colmap model_analyzer --path "$m" > "$m/analyzer.txt" 2>&1 || continue
          r=$(awk -F': ' '/Registered images/ {print $2}' "$m/analyzer.txt" | tr -d ' ')
          (( ${r:-0} > best )) && { best=$r; model=$m; }
        done
        creg=$(awk -F': ' '/Registered images/ {print $2}' "$model/analyzer.txt" | tr -d ' ')
        cpts=$(awk -F': ' '/Points:/ {print $2}' "$model/analyzer.txt" | tr -d ' ')
        cerr=$(awk -F': ' '/Mean reprojection error/ {print $2}' "$model/analyzer.txt" | tr -d ' px')
        ev="$OUT/$set/colmap/eval.json"; : > "$ev"
        case $set in
          temple) "$EVAL" "$model" "$imgs/templeR_par.txt" --only-names-of "$imgs" > "$ev" ;;
          fox) "$EVAL" "$model" --gt-nerf "$DATA/fox/transforms.json" --only-names-of "$imgs" > "$ev" ;;
          redkitchen)
            "$EVAL" "$model" --gt-7scenes "$DATA/redkitchen_every10/poses" --only-names-of "$imgs" > "$ev" ;;
          walk1000) "$EVAL" "$model" "$WALK/ground_truth" --only-names-of "$imgs" > "$ev" ;;
        esac
        echo "$set colmap-3.8 $(sum_wall "${times[@]}") $(max_rss "${times[@]}") $creg/$ntot $cpts $cerr $(pose_cols "$ev" "$set" colmap)" > "$OUT/$set.colmap.row"
        ;;
    esac
  done
done

printf '%-11s %-11s %8s %8s %10s %8s %10s %12s %s\n' set tool wall_s peak_MB registered points reproj_px "AUC@5/@10" "centre error"
for f in "$OUT"/*.row; do
  # shellcheck disable=SC2046
  printf '%-11s %-11s %8s %8s %10s %8s %10s %12s %s\n' $(cat "$f")
done
echo "(logs and models in $OUT; reprojection error in full-resolution pixels; centre error after a similarity"
echo " alignment: % of the reference's spread, or cm and the scale error for the metric redkitchen and"
echo " walk1000 poses)"
[[ -s $OUT/walk1000/ours/report.json ]] && walk_details "$OUT/walk1000/ours"
if [[ -s $OUT/ba.table ]]; then
  echo
  echo "bundle adjustment alone (examples/ba_scaling.rs: synthetic loop walk, 100 points per photo, 5 LM iterations):"
  cat "$OUT/ba.table"
fi
uptime
