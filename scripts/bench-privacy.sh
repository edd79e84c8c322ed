#!/usr/bin/env bash
# Privacy-stage benchmark: detector recall on ../shared/data/faces (CenterFace vs SeetaFace) and seconds
# per 12-megapixel photo through the whole stage, for a few pyramid sizes ([privacy] min_face_px).
# Usage: scripts/bench-privacy.sh [photos=4] [min_face_px ...]   (default list: 24 30)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}
shift || true
SIZES=${*:-24 30}
export FLYTHROUGH_QUIET=1
cargo build --release -p flythrough-privacy --example bench
BIN=target/release/examples/bench
echo "## recall at the default threshold 0.5"
$BIN recall 0.5
for s in $SIZES; do
  echo
  echo "## 12 MP, min_face_px $s"
  $BIN speed "$N" "$s"
done
