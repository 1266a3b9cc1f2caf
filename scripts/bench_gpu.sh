#!/usr/bin/env bash
# keras-se bench --device gpu on a machine with JAX (CUDA) and PyTorch + timm, no TensorFlow.
#
# Records SE-ResNet-50 vs ResNet-50 inference and training images/s (mixed bfloat16, XLA)
# and keras_se-on-JAX vs timm-on-PyTorch (channels_last, autocast bfloat16) on the same GPU.
# Keras and keras_se are pure Python: run from the repository root, no install needed
# (keras, numpy and safetensors must be importable; timm for the PyTorch rows).
#
#   scripts/bench_gpu.sh [OUT_DIR] [extra keras-se bench flags, e.g. --quick]   (--help: usage)
#
# Writes OUT_DIR/gpu.json and the table into OUT_DIR/BENCHMARKS-gpu.md (copy it into
# BENCHMARKS.md's bench-gpu section). About 3 minutes on one GPU; --quick: about 1.
set -euo pipefail
usage() {
  cat <<'USAGE'
usage: scripts/bench_gpu.sh [-h] [OUT_DIR] [keras-se bench flags, e.g. --quick]

keras-se bench --device gpu under JAX (SE-ResNet-50 vs ResNet-50, and keras_se on JAX vs
timm on PyTorch when torch and timm are importable). Run from a checkout; needs jax, keras,
numpy and safetensors. Writes OUT_DIR/gpu.json and OUT_DIR/BENCHMARKS-gpu.md
(OUT_DIR default: bench-gpu). Environment: PYTHON, KERAS_SE_PEER_PYTHON,
XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.45).
USAGE
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The first argument is OUT_DIR unless it is a flag (then every argument goes to keras-se bench).
OUT=bench-gpu
if [[ $# -gt 0 && "$1" != -* ]]; then
  OUT="$1"
  shift
fi
mkdir -p "$OUT"
export KERAS_BACKEND=jax
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# JAX takes 75 % of the GPU memory at start-up by default; leave room for the PyTorch worker.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c "import jax; print('JAX', jax.__version__, jax.devices())"
# The PyTorch side may run under another Python (a venv): KERAS_SE_PEER_PYTHON.
"${KERAS_SE_PEER_PYTHON:-$PYTHON}" -c "import torch, timm; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available(), 'timm', timm.__version__)" \
  || echo "no torch/timm in ${KERAS_SE_PEER_PYTHON:-$PYTHON}: the keras_se-vs-timm rows will be skipped"
"$PYTHON" -m keras_se_core.cli bench --device gpu --out "$OUT/gpu.json" --markdown "$OUT/BENCHMARKS-gpu.md" "$@"
