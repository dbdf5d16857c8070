#!/usr/bin/env bash
# On the GPU machine, in the repository root, with .gpu/ carried (bench/gpu_carry.sh): install the carried
# wheels into the image's python3 (offline, no dependency resolution), use the carried bwrap when there is none,
# then run bench/gpu_check.py with the given options (e.g. --out $OUT/gpu_check.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .gpu/whl/*.whl
if ! command -v bwrap >/dev/null; then
  chmod +x .gpu/bwrap-pkg/usr/bin/bwrap && export PATH="$PWD/.gpu/bwrap-pkg/usr/bin:$PATH"
fi
bwrap --version
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec $PY bench/gpu_check.py --data-dir .gpu/cifar-10-batches-py "$@"
