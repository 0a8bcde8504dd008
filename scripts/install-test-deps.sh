#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust, only when missing:
# - Mesa's lavapipe Vulkan driver, so the wgpu backend runs on the CPU;
# - a Python virtual environment with `tensorboard`, so the TensorBoard test
#   reads our event files with the real TensorBoard reader;
# - a Python virtual environment with `mlflow`, so the MLFlowLogger tests
#   run a real `mlflow server` (measured: 94 s to install on a fresh venv
#   without pip cache, 850 MB).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_get() {
  if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi
}

if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  echo "Installing mesa-vulkan-drivers (lavapipe software Vulkan for the wgpu tests)"
  apt_get update -qq && apt_get install -y -qq mesa-vulkan-drivers >/dev/null
fi

VENV=target/tb-venv
if ! "$VENV/bin/python" -c "import tensorboard" >/dev/null 2>&1; then
  echo "Creating $VENV with tensorboard (for the TensorBoard reader test)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check tensorboard
fi

VENV=target/mlflow-venv
if ! "$VENV/bin/mlflow" --version >/dev/null 2>&1; then
  echo "Creating $VENV with mlflow (for the MLFlowLogger tests against a real server)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "mlflow==3.17.2"
fi
