#!/usr/bin/env bash
# One command: install what is missing, then run every test in release mode (numeric code is only
# meaningful optimised).
#
# A test that needs something from outside the repository (the shared real-photo data in
# ../shared/data, ffmpeg, ffprobe, chromium, ...) fails under CI (CI=true) naming what is missing; on
# a user's machine it skips, and each skip appends one line to the skip log, which this script
# counts and lists at the end (cargo test itself hides a test's output when it passes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p target
export FLYTHROUGH_SKIP_LOG="$PWD/target/test-skips.log"
: > "$FLYTHROUGH_SKIP_LOG"
status=0
# --no-fail-fast: one failing test binary must not hide the failures of the others.
cargo test --workspace --release --locked --no-fail-fast "$@" || status=$?
# The subgroup scatter at other subgroup sizes: lavapipe's lanes are its vector width / 32 (8 by
# default; NVIDIA has 32, AMD 32 or 64), so the same test runs with 4- and 16-lane subgroups (it
# checks it got them). A hardware adapter ignores the variable and reruns it as it is.
if [ $# -eq 0 ]; then
    for bits in 128 512; do
        echo "hash-grid scatter with LP_NATIVE_VECTOR_WIDTH=$bits:"
        LP_NATIVE_VECTOR_WIDTH=$bits cargo test -p flythrough-nerf --lib --release --locked \
            gpu::tests::hash::hash_encode_backward_matches_cpu_native_cas_and_subgroups || status=$?
    done
    # The GPU training step, loss curve, frames and resume with the MLP kernels' variants, the
    # weights staged in workgroup memory and 8-row register tiles (the kernels' own tests check
    # each against the default bit for bit; this goes through the model).
    echo "GPU integration tests with FLYTHROUGH_GPU_MLP_WEIGHTS=workgroup FLYTHROUGH_GPU_MLP_ROWS=8:"
    FLYTHROUGH_GPU_MLP_WEIGHTS=workgroup FLYTHROUGH_GPU_MLP_ROWS=8 cargo test -p flythrough-nerf \
        --release --locked --test gpu || status=$?
    # The GPU tests again under the Khronos validation layer (API, SPIR-V and synchronization
    # checks a hardware driver relies on and lavapipe does not enforce).
    bash scripts/gpu-validation.sh || status=$?
fi
# Lints: clippy under the workspace's [workspace.lints], every warning an error. After the tests, so
# a lint never hides a failing test; its failure fails the run all the same.
echo "clippy (all targets, warnings as errors):"
cargo clippy --workspace --all-targets --release --locked -- -D warnings || status=$?
# One line per skip, "crate::test<TAB>what is missing"; a test that hit two missing things counts once.
skipped=$(cut -f1 "$FLYTHROUGH_SKIP_LOG" | sort -u | wc -l)
if [ "$skipped" -gt 0 ]; then
    echo
    echo "skipped tests: $skipped (what they need is missing on this machine; under CI=true they fail):"
    sort "$FLYTHROUGH_SKIP_LOG" | awk -F'\t' '!seen[$1]++ { printf "  %s: %s\n", $1, $2 }'
    if grep -q "FLYTHROUGH_SHARED_DATA" "$FLYTHROUGH_SKIP_LOG"; then
        echo "The real-photo sets are not in this repository: put them in ../shared/data beside the checkout,"
        echo "or set FLYTHROUGH_SHARED_DATA to their folder. They are sceaux_castle (openMVG's sample set),"
        echo "temple_ring19 (Middlebury multi-view stereo), fox (instant-ngp's sample data), redkitchen_every10"
        echo "(every 10th frame of Microsoft 7-Scenes' redkitchen), and faces/ and exif/ (sample files of the"
        echo "scikit-image, Pillow, rustface and kamadak-exif packages)."
    fi
else
    echo "skipped tests: 0"
fi
exit "$status"
