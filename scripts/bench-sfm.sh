#!/usr/bin/env bash
# Side-by-side benchmark of our SfM stage and COLMAP 3.8 (CPU, `automatic_reconstructor`) on the
# shared Sceaux castle (11 x 2832x2128) and Middlebury temple ring (19 x 640x480) photos.
# Prints wall time, peak memory, registered photos, points and mean reprojection error per tool,
# and the relative-pose AUC against the temple's ground truth.
#
# usage: scripts/bench-sfm.sh [OUT_DIR]     (needs: colmap (apt-get install colmap), /usr/bin/time, python3)
# Our side uses the default [sfm] config (features at 1600 px max side, 8192 features).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${FLYTHROUGH_SHARED_DATA:-$ROOT/../shared/data}
OUT=${1:-/tmp/bench-sfm}
rm -rf "$OUT" && mkdir -p "$OUT"
command -v colmap >/dev/null || { echo "colmap not found: apt-get install colmap" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p flythrough-sfm --example sfm_folder --example eval_model)
SFM=$ROOT/target/release/examples/sfm_folder
EVAL=$ROOT/target/release/examples/eval_model

wall_s() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"; }
rss_mb() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }

declare -A IMAGES=([sceaux]="$DATA/sceaux_castle/images" [temple]="$DATA/temple_ring19")
ROWS=()
for set in sceaux temple; do
  imgs=${IMAGES[$set]}
  # Ours.
  gtflag=()
  [[ $set == temple ]] && gtflag=(--gt-middlebury "$imgs/templeR_par.txt")
  /usr/bin/time -v -o "$OUT/$set.ours.time" "$SFM" "$imgs" "$OUT/$set/ours" "${gtflag[@]}" > "$OUT/$set.ours.log" 2>&1
  read -r reg tot pts err < <(python3 -c "
import json; r = json.load(open('$OUT/$set/ours/report.json'))
print(r['registered'], r['total'], r['points'], '%.3f' % r['mean_reproj_px'])")
  auc="-"
  [[ $set == temple ]] && auc=$(python3 -c "import json; e=json.load(open('$OUT/$set/ours/eval.json')); print('%.3f/%.3f' % (e['auc']['5'], e['auc']['10']))")
  ROWS+=("$set ours $(wall_s "$OUT/$set.ours.time") $(rss_mb "$OUT/$set.ours.time") $reg/$tot $pts $err $auc")
  # COLMAP.
  ws="$OUT/$set/colmap"; mkdir -p "$ws"
  QT_QPA_PLATFORM=offscreen /usr/bin/time -v -o "$OUT/$set.colmap.time" \
    colmap automatic_reconstructor --workspace_path "$ws" --image_path "$imgs" --use_gpu 0 --dense 0 \
    > "$OUT/$set.colmap.log" 2>&1
  model=$(ls -d "$ws"/sparse/* | head -1)
  colmap model_analyzer --path "$model" > "$OUT/$set.colmap.analyzer" 2>&1
  creg=$(awk -F': ' '/Registered images/ {print $2}' "$OUT/$set.colmap.analyzer" | tr -d ' ')
  cpts=$(awk -F': ' '/Points:/ {print $2}' "$OUT/$set.colmap.analyzer" | tr -d ' ')
  cerr=$(awk -F': ' '/Mean reprojection error/ {print $2}' "$OUT/$set.colmap.analyzer" | tr -d ' px')
  ntot=$(ls "$imgs" | grep -ciE '\.(jpe?g|png|tiff?)$')
  cauc="-"
  [[ $set == temple ]] && cauc=$("$EVAL" "$model" "$imgs/templeR_par.txt" --only-names-of "$imgs" | python3 -c "import json,sys; e=json.load(sys.stdin); print('%.3f/%.3f' % (e['auc']['5'], e['auc']['10']))")
  ROWS+=("$set colmap-3.8 $(wall_s "$OUT/$set.colmap.time") $(rss_mb "$OUT/$set.colmap.time") $creg/$ntot $cpts $cerr $cauc")
done

printf '%-8s %-11s %10s %10s %10s %8s %12s %14s\n' set tool wall_s peak_MB registered points reproj_px "AUC@5/@10"
for r in "${ROWS[@]}"; do
  # shellcheck disable=SC2086
  printf '%-8s %-11s %10s %10s %10s %8s %12s %14s\n' $r
done
echo "(logs and models in $OUT; ours: reprojection error in full-resolution pixels)"
