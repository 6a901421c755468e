#!/usr/bin/env bash
# GPU check (issue 21), under 8 minutes on one GPU: fetch the hippocampus from ../shared/datasets,
# plan it (--time-budget 3), train with AMP on CUDA, infer --half on the validation volumes,
# evaluate, and time the compiled Dual Focal Loss against F.cross_entropy and MONAI FocalLoss;
# one table at the end (benchmarks/gpu_check.py). Extra arguments go to gpu_check.py
# (e.g. --time-budget 2, --skip-pipeline; --device cpu --quick runs the same path on a CPU).
# Uses .venv (made by scripts/_env.sh if missing: torch==2.13.0, then the project).
source "$(dirname "$0")/_env.sh"
cuda_ok() { python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
wants_cpu=0
for arg in "$@"; do case "$arg" in cpu|--device=cpu) wants_cpu=1 ;; esac; done
if [ "$wants_cpu" = 0 ] && ! cuda_ok; then
  echo "gpu_check: torch $(python -c 'import torch; print(torch.__version__)') sees no CUDA device" \
       "(nvidia-smi: $(nvidia-smi -L 2>/dev/null | head -1 || echo none)); installing a CUDA build of torch"
  python -m pip install --quiet --upgrade --force-reinstall "torch" || true
  if ! cuda_ok; then
    echo "gpu_check: still no CUDA; trying the PyTorch CUDA 12.8 wheel index"
    python -m pip install --quiet --force-reinstall "torch" --index-url https://download.pytorch.org/whl/cu128 || true
  fi
  if ! cuda_ok; then
    echo "gpu_check: giving up: torch $(python -c 'import torch; print(torch.__version__)') still sees no CUDA device" >&2
    exit 1
  fi
  python -m pip install --quiet -e ".[dev]"  # the project again, against the new torch
fi
timeout 470 python benchmarks/gpu_check.py "$@"
