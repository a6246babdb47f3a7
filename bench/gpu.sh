#!/usr/bin/env bash
# GPU training benchmark (≤ 8 minutes on one CUDA GPU): dmfr's training step against a plain
# PyTorch loop, IResNet-50 and -100, 112x112, batch 128, bf16 AMP + channels_last.
# Extra arguments go to bench/gpu_bench.py (e.g. --device cpu --tiny for a smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec timeout 480 "$PY" bench/gpu_bench.py "$@"
