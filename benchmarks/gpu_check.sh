#!/usr/bin/env bash
# The GPU check of issue 12 (benchmarks/gpu_check.py): privaudit's scoring and training on CUDA against the CPU, the
# AUCs compared, DP-SGD timed against non-DP on the GPU. Run it on a fresh CUDA machine from the repository root:
#
#     benchmarks/gpu_check.sh                     # cuda; results in benchmarks/results/gpu.json
#     benchmarks/gpu_check.sh --device cuda:1
#     benchmarks/gpu_check.sh --device cpu --quick --skip-minilm    # dry run of the script itself, on the CPU
#
# make install pins torch==2.13.0, which PyPI serves as a CUDA build on a Linux GPU machine (the CPU build here comes
# from this machine's local wheel). Exit codes: 0 every AUC inside the CPU's interval, 1 one outside, 2 no CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
make install
.venv/bin/python -m pip install --quiet -e '.[dev,ray,bench]'
if [[ " $* " != *" --device cpu "* ]] && ! .venv/bin/python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_check: no CUDA device: torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') sees none; run this on a GPU machine (or --device cpu --quick for a dry run)" >&2
    exit 2
fi
.venv/bin/python -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPUs {torch.cuda.device_count()}")'
.venv/bin/python benchmarks/gpu_check.py "$@"
