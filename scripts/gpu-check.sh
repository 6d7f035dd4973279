#!/usr/bin/env bash
# The GPU check of issue #18 (GPU tests, latency/batch-size curve per precision, fp16/bf16
# against fp32 on Davidson, raw loop vs pipeline on the GPU): under 8 minutes on one GPU.
# Needs scripts/setup.sh's environment with a CUDA build of torch: on Linux x86-64 the
# PyPI wheel of torch==2.13.0 is one (setup.sh installs it unless torch is already there).
#   scripts/gpu-check.sh [OUT_DIR]     → OUT_DIR/summary.md (default gpu-check-<date>)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m moderator.benchmark.gpu_check --out "${1:-gpu-check-$(date +%F)}"
