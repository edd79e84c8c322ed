#!/usr/bin/env bash
# The GPU back end's tests once more under the Khronos Vulkan validation layer, core and
# synchronization validation on: every API call, every shader module's SPIR-V (capabilities, limits,
# the features it needs) and every barrier that wgpu records is checked against the Vulkan spec.
# lavapipe accepts some things a hardware driver may reject or get wrong; the layer does not. Fails
# when the layer reports any error or warning (listed), or when it did not load.
#
# Called by scripts/test.sh (package vulkan-validationlayers, from scripts/setup.sh). Without the
# layer it fails under CI (CI=true) and skips elsewhere, appending a line to $FLYTHROUGH_SKIP_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."
layer=""
for d in /usr/share/vulkan/explicit_layer.d /usr/local/share/vulkan/explicit_layer.d /etc/vulkan/explicit_layer.d; do
  [ -e "$d/VkLayer_khronos_validation.json" ] && layer="$d/VkLayer_khronos_validation.json"
done
if [ -z "$layer" ]; then
  msg="the Khronos Vulkan validation layer (Debian package vulkan-validationlayers) is not installed"
  if [ "${CI:-}" = true ]; then
    echo "gpu-validation: FAILED: $msg" >&2
    exit 1
  fi
  echo "gpu-validation: skipped: $msg"
  [ -n "${FLYTHROUGH_SKIP_LOG:-}" ] && printf 'scripts/gpu-validation.sh\t%s\n' "$msg" >> "$FLYTHROUGH_SKIP_LOG"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The layer writes its messages to the process's stdout (not captured by the test harness);
# `info` only for the "Layer Active" line that proves it loaded.
cat > "$work/vk_layer_settings.txt" <<'EOF'
khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG
khronos_validation.log_filename = stdout
khronos_validation.report_flags = error,warn,perf,info
khronos_validation.enables = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT
EOF
export VK_LAYER_SETTINGS_PATH="$work/vk_layer_settings.txt" VK_INSTANCE_LAYERS=VK_LAYER_KHRONOS_validation
status=0
# Every kernel against its CPU twin, whole training steps and frames, the baked renderer.
cargo test --release --locked -p flythrough-nerf --lib gpu:: > "$work/log" 2>&1 || status=$?
cargo test --release --locked -p flythrough-nerf --test gpu >> "$work/log" 2>&1 || status=$?
cargo test --release --locked -p flythrough-bake --lib >> "$work/log" 2>&1 || status=$?
grep -E "^test result" "$work/log" || true
if [ "$status" -ne 0 ]; then
  echo "gpu-validation: FAILED: a test failed under the validation layer:" >&2
  grep -E "panicked|FAILED|^error" "$work/log" | head -20 >&2
  exit 1
fi
loaded=$(grep -c "Khronos Validation Layer Active" "$work/log" || true)
if [ "$loaded" -eq 0 ]; then
  echo "gpu-validation: FAILED: the validation layer ($layer) did not load (VK_INSTANCE_LAYERS)" >&2
  exit 1
fi
reports=$(grep -E "Validation (Error|Warning|Performance Warning)" "$work/log" || true)
if [ -n "$reports" ]; then
  echo "gpu-validation: FAILED: the validation layer reported $(echo "$reports" | wc -l) problems:" >&2
  echo "$reports" | cut -c1-600 | sort | uniq -c | sort -rn | head -20 >&2
  exit 1
fi
echo "gpu-validation: no errors or warnings from the validation layer ($loaded Vulkan instances checked)"
