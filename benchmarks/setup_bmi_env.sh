#!/usr/bin/env bash
# benchmark-mi's own environment for benchmarks/bmi_suite.py: .venv-bmi with benchmark-mi 0.1.3, which
# imports only beside jax/jaxlib 0.4.30 (newer jax breaks it), kept apart from faceprobe's .venv.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-bmi/bin/python ] || "$PY" -m venv .venv-bmi
.venv-bmi/bin/python -m pip install -q --disable-pip-version-check benchmark-mi==0.1.3 jax==0.4.30 jaxlib==0.4.30
.venv-bmi/bin/python -c "import bmi, jax; from bmi.benchmark import BENCHMARK_TASKS as T; print(f'benchmark-mi ready: jax {jax.__version__}, {len(T)} tasks')"
