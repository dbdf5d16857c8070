# Quick start (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SRC := $(shell find ab plugins -name '*.py' -o -name '*.j2' -o -name 'pyproject.toml' 2>/dev/null) pyproject.toml

.PHONY: setup lock system-deps demo test bench gpu-check clean-venv

# Headless Chromium for the report's browser test, and bubblewrap, the jail every model runs in
# (Debian packages); needs root or sudo.
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v bwrap >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; }

# Dependencies come from uv (parallel downloads, a shared cache: seconds where pip took nearly three minutes),
# held to constraints.txt, the versions the test suite last passed with.
UV := $(VENV)/bin/uv
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(UV) pip install -q --python $(PY) -c constraints.txt ".[plot,ray,llm,test]"
	touch $(STAMP)

# Bytecode is written as modules are first imported instead of compiled for all ~27,000 files at install
# (37 s on 2 cores; about 4,000 are ever loaded). Jails mount the environment read-only and cannot write it,
# so the warm-up below imports what a jail loads, and what the commands load, in two processes side by side.
unexport PYTHONDONTWRITEBYTECODE
WARM_JAIL := torch, torchvision, safetensors.torch, torch._dynamo, torch._inductor.compile_fx, \
  torch._inductor.codegen.cpp, torch.utils.checkpoint, ab.gpt.brute.fract.trial.worker, \
  ab.gpt.brute.fract.trial.runner, ab.gpt.brute.fract.generation.warm
WARM_TOOLS := pandas, scipy.stats, matplotlib.pyplot, ray, jinja2, click, tqdm, ab.gpt.brute.fract.cli, \
  ab.gpt.NNEval, ab.gpt.brute.fract.AlterNNFN, ab.gpt.brute.fract.study.runner, \
  ab.gpt.brute.fract.study.analysis, ab.gpt.brute.fract.report.build

# Reinstall our own package (no dependencies) whenever its sources change, so the installed copy is current.
$(VENV)/.pkg: $(STAMP) $(SRC)
	rm -rf build
	$(UV) pip install -q --python $(PY) --no-deps --reinstall-package nn-gpt-fractal .
	{ $(PY) -c "import $(WARM_JAIL)" & p=$$!; $(PY) -c "import $(WARM_TOOLS)" && wait $$p; }
	touch $(VENV)/.pkg

# Refresh constraints.txt from the current environment (after a dependency change and a green `make test`).
lock: $(STAMP)
	{ sed -n '1,2p' constraints.txt; $(UV) pip freeze --python $(PY) --exclude nn-gpt-fractal; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

setup: $(VENV)/.pkg

demo: setup system-deps
	$(PY) -m ab.gpt.brute.fract.demo

# Tests run on every core (pytest-xdist), one unit of work per module (tests/conftest.py); the 15 slowest
# are listed at the end.
TEST_WORKERS ?= auto
test: setup system-deps
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=15

bench: setup
	$(PY) bench/bench_generate.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_boundary.py

# Every GPU figure in one run (about 6 minutes on one H100/H200-class GPU); fails without CUDA.
gpu-check: setup system-deps
	$(PY) bench/gpu_check.py --out gpu_check.json

clean-venv:
	rm -rf $(VENV)
