#!/usr/bin/env bash
# Fill the ignored folder .gpu/ with what bench/gpu_check.py needs on a GPU machine that has torch but no
# network: the CIFAR-10 subset, wheels of the packages its image lacks (python 3.12, x86-64; no
# dependencies resolved: the list is complete for nn-dataset 2.2.11 and this project) and bubblewrap
# (Debian's x86-64 binary; it links libselinux and libcap only).
# Run here, in the repository root; then carry ".gpu" (see bench/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSET=${1:-../shared/data/cifar-10-subset}
rm -rf .gpu && mkdir -p .gpu/whl
cp -r "$SUBSET/cifar-10-batches-py" .gpu/ && chmod -R u+w .gpu/cifar-10-batches-py
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
  nn-dataset==2.2.11 optuna==5.1.0 colorlog==6.12.0 radon==6.0.1 mando==0.7.1 zstandard==0.25.0 \
  sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 cloup==4.0.0
(cd .gpu && apt-get download -q bubblewrap >/dev/null 2>&1 && dpkg -x bubblewrap_*.deb bwrap-pkg && rm bubblewrap_*.deb)
test -x .gpu/bwrap-pkg/usr/bin/bwrap
du -sh .gpu
