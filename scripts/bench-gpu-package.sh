#!/usr/bin/env bash
# Prepare scripts/bench-gpu.sh for a GPU machine that has no Rust toolchain (such as the device
# machine of this workplace, an x86-64 host with an NVIDIA H100/H200 and its driver):
#   .bench/bench_gpu            the x86-64 release build of crates/nerf/examples/bench_gpu.rs (stripped)
#   .bench/bench_baked_gpu      the same of crates/bake/examples/bench_baked_gpu.rs (the baked renderer)
#   .bench/data/{fox,redkitchen_every10}   the real captures from ../shared/data (read there in place
#                               otherwise; never committed: both folders are git-ignored locally)
#   .gl/*.deb                   the Vulkan and GL loaders NVIDIA's driver needs (Debian bookworm
#                               libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2:
#                               its Vulkan ICD links libGLdispatch.so.0 from libglvnd0), unpacked there
#   .gl/vvl/*.deb               the Khronos validation layer (vulkan-validationlayers, 4.5 MB), which
#                               bench-gpu.sh unpacks under its OUT for its validation part
# and print the one command to run there. Everything it writes is listed in .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."
EXCLUDE="$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$EXCLUDE")"
for d in /.bench/ /.gl/; do
  grep -qxF "$d" "$EXCLUDE" 2>/dev/null || echo "$d" >> "$EXCLUDE"
done
cargo build --release --workspace --example bench_gpu --example bench_baked_gpu >&2
mkdir -p .bench/data .gl
for b in bench_gpu bench_baked_gpu; do
  cp "target/release/examples/$b" ".bench/$b"
  strip ".bench/$b" 2>/dev/null || true
done
SHARED=${FLYTHROUGH_SHARED_DATA:-../shared/data}
for s in fox redkitchen_every10; do
  if [ -d "$SHARED/$s" ]; then
    rm -rf ".bench/data/$s"
    cp -r "$SHARED/$s" ".bench/data/$s"
  else
    echo "bench-gpu-package: $SHARED/$s not found: that scene will be skipped there" >&2
  fi
done
LOADERS="libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2"
# The Khronos validation layer for the run's validation part, in a folder of its own: the device
# command unpacks .gl/*.deb into /, bench-gpu.sh unpacks this one under its OUT.
mkdir -p .gl/vvl
if ! ls .gl/vvl/vulkan-validationlayers_*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  (apt-get $o update -qq && cd .gl/vvl && apt-get $o download vulkan-validationlayers) \
    || echo "bench-gpu-package: could not download vulkan-validationlayers; the validation part will be skipped" >&2
fi
missing=""
for p in $LOADERS; do ls .gl/"${p}"_*.deb >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  mkdir -p /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq && (cd .gl && apt-get $o download $missing) \
    || echo "bench-gpu-package: could not download$missing; bring the loaders another way" >&2
fi
du -sh .bench .gl >&2
cat <<'EOF'
On the GPU machine, in a copy of this repository with .bench and .gl (about 40 MB), run (one command,
about 5 minutes: the smoke test first names the NVIDIA adapter or stops at once with the loader's
error; everything is written under /tmp/bench-gpu and only results.jsonl, table.md and logs.tar.gz are
copied to $OUT):

  for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig; \
  [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; \
  BIN_DIR=.bench FLYTHROUGH_SHARED_DATA=.bench/data OUT=/tmp/bench-gpu RESULTS_TO=$OUT scripts/bench-gpu.sh

(with the device tool: carry [".bench", ".gl"], timeout_s 330.)
EOF
