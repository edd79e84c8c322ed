#!/usr/bin/env bash
# Render-stage benchmark: seconds per 360° (equirectangular) frame on the CPU back end.
#
#   scripts/bench-render.sh                     # analytic room (no model needed): tiling/camera overhead
#   scripts/bench-render.sh runs/demo [RUN…]    # per run folder (train stage finished): the trained
#                                               # NeRF and, when the bake stage ran, the baked model,
#                                               # side by side at each width, with their ratio, the
#                                               # bake's size and time and held-out PSNR (baked vs NeRF)
#   WIDTHS="1024 3840" FRAMES=2 FRAMES_WIDE=1 scripts/bench-render.sh runs/demo
#   BAKED_ONLY=1 scripts/bench-render.sh runs/demo   # the baked model alone (no NeRF minutes)
#
# Defaults: WIDTHS "1024 3840", FRAMES 2 (frames per width below 2048), FRAMES_WIDE 1 (at 2048 and
# up: a 3840x1920 NeRF frame takes minutes on 2 cores). Prints one Markdown table; numbers go into
# the README's performance section and crates/render/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WIDTHS=${WIDTHS:-"1024 3840"}
FRAMES=${FRAMES:-2}
FRAMES_WIDE=${FRAMES_WIDE:-1}
cargo build --release -q --workspace --example bench_render
bin=target/release/examples/bench_render
if [ $# -eq 0 ]; then
  echo "(no run folder given: analytic room only; pass a run folder with a trained model for NeRF numbers)"
  for w in $WIDTHS; do "$bin" --width "$w" --frames "$FRAMES"; done
  exit 0
fi
extra=()
[ -n "${BAKED_ONLY:-}" ] && extra=(--baked-only)
echo "| run | source | frame | threads | frames | s / 360° frame | Mrays / s |"
echo "|---|---|---|---|---|---|---|"
bake_rows=()
for run in "$@"; do
  for w in $WIDTHS; do
    f=$FRAMES
    [ "$w" -ge 2048 ] && f=$FRAMES_WIDE
    out=$("$bin" --run "$run" --width "$w" --frames "$f" "${extra[@]}" 2>/dev/null)
    # Source rows, with the run's name in front; the NeRF/baked ratio of this width after them.
    echo "$out" | awk -v run="$run" -F'|' '
      /^\| (nerf|baked)/ { printf "| %s |%s|%s|%s|%s|%s|%s|\n", run, $2, $3, $4, $5, $6, $7
                          s = $6 + 0; if ($2 ~ /nerf/) n = s; else b = s; size = $3 }
      END { if (n > 0 && b > 0) printf "| %s | NeRF / baked | %s | | | **%.1fx** | |\n", run, size, n / b }'
    row=$(echo "$out" | grep '^| bake |' || true)
    [ -n "$row" ] && bake_rows+=("| $run | ${row#| }")
  done
done
if [ ${#bake_rows[@]} -gt 0 ]; then
  echo
  echo "| run | stage | grid, stored, bytes, bake time | held-out PSNR |"
  echo "|---|---|---|---|"
  printf '%s\n' "${bake_rows[@]}" | sort -u
fi
