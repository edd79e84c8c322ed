#!/usr/bin/env bash
# Privacy-stage benchmark.
#   scripts/bench-privacy.sh [photos=4] [min_face_px ...]   detector recall on ../shared/data/faces (CenterFace vs
#                                                            SeetaFace) and seconds per 12-megapixel photo through the
#                                                            whole stage, per pyramid size (default list: 24 30)
#   scripts/bench-privacy.sh memory [photos=4] [WxH=8000x6000] [BASELINE_BINARY]
#                                                            peak RSS of `flythrough run --until privacy` on N photos
#                                                            of WxH (castle photos upscaled, faces pasted), measured
#                                                            with /usr/bin/time -v, against the stated bound; with a
#                                                            second binary (e.g. an older build) its figure side by side
set -euo pipefail
cd "$(dirname "$0")/.."
export FLYTHROUGH_QUIET=1
if [[ "${1:-}" == memory ]]; then
  N=${2:-4}
  SIZE=${3:-8000x6000}
  BASE=${4:-}
  W=${SIZE%x*}
  H=${SIZE#*x}
  [[ -x /usr/bin/time ]] || { echo "bench-privacy memory needs /usr/bin/time (apt-get install time)"; exit 1; }
  cargo build --release -p flythrough -p flythrough-privacy --example bench
  TMP=$(mktemp -d /tmp/bench-privacy-mem.XXXXXX)
  trap 'rm -rf "$TMP"' EXIT
  EST=$(target/release/examples/bench venue "$TMP/venue" "$N" "$W" "$H" | awk '/estimate_bytes_per_photo/ {print $2}')
  THREADS=${RAYON_NUM_THREADS:-$(nproc)}
  KB=0
  row() { # binary run-folder label: prints a table row, sets KB to the peak RSS (kB) of the privacy stage alone
    "$1" -q run "$TMP/venue/venue.toml" --out "$2" --until capture >/dev/null
    /usr/bin/time -v "$1" -q run "$TMP/venue/venue.toml" --out "$2" --until privacy >/dev/null 2>"$2.time"
    KB=$(awk -F': ' '/Maximum resident/ {print $2}' "$2.time")
    local cpu wall
    cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {printf "%.1f", u+s}' "$2.time")
    wall=$(awk -F': ' '/Elapsed/ {print $2}' "$2.time")
    echo "| $3 | $(awk "BEGIN {printf \"%.2f GB\", $KB/1048576}") | $cpu | $wall |"
  }
  echo "## privacy stage, $N photos of ${W}x${H} ($(awk "BEGIN {printf \"%.1f\", $W*$H/1e6}") MP), $THREADS threads, load: $(uptime | sed 's/.*load average: //')"
  echo "| build | peak RSS | CPU s (user+sys) | wall |"
  echo "|---|---|---|---|"
  if [[ -n "$BASE" ]]; then row "$BASE" "$TMP/run-base" "baseline ($BASE)"; fi
  row target/release/flythrough "$TMP/run" "this build"
  # Bound: the process baseline (model, run bookkeeping: 0.15 GB) plus, per photo in flight (at most
  # one per thread, and at most budget / estimate), the stage's estimate of one photo.
  INFLIGHT=$(( THREADS < N ? THREADS : N ))
  BOUND_KB=$(( 150 * 1024 + INFLIGHT * EST / 1024 ))
  echo
  echo "estimate per photo: $(awk "BEGIN {printf \"%.2f GB\", $EST/1073741824}"); bound = 0.15 GB + $INFLIGHT in flight x estimate = $(awk "BEGIN {printf \"%.2f GB\", $BOUND_KB/1048576}")"
  if (( KB <= BOUND_KB )); then echo "PASS: peak RSS within the bound"; else echo "FAIL: peak RSS above the bound"; exit 1; fi
  exit 0
fi
N=${1:-4}
shift || true
SIZES=${*:-24 30}
cargo build --release -p flythrough-privacy --example bench
BIN=target/release/examples/bench
echo "## recall at the default threshold 0.5"
$BIN recall 0.5
for s in $SIZES; do
  echo
  echo "## 12 MP, min_face_px $s"
  $BIN speed "$N" "$s"
done
