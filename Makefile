# ropd-kit: the README's two commands are `make demo` and `make test`. Both are idempotent.
SHELL := /bin/bash
PY_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
CONSTRAINTS := $(if $(HAS_CUDA),,-c constraints/cpu.txt)
export PYTHONUNBUFFERED := 1

.PHONY: venv models server chromium demo demo-full test test-fast bench gpu gpu-smoke clean-venv strip-notebooks

venv: $(STAMP)

# The stamp depends on what decides the install, so editing pyproject.toml refreshes the venv and nothing else does.
# The stamp holds the seconds the install took: part of a new user's set-up (`make bench`'s demo_time reports it).
$(STAMP): pyproject.toml constraints/cpu.txt
	@mkdir -p $(VENV) && date +%s > $(VENV)/.install-started
	@test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	@# Without CUDA, take the CPU torch file before anything asks for torch (a bare requirement pulls GBs of CUDA).
	$(if $(HAS_CUDA),,$(PIP) install -q torch==2.13.0)
	$(PIP) install -q $(CONSTRAINTS) -e '.[notebooks,dev]'
	$(PY) -m ipykernel install --user --name ropd-kit --display-name "ropd-kit (.venv)" >/dev/null
	@echo $$(( $$(date +%s) - $$(cat $(VENV)/.install-started) )) > $(STAMP)

# Offline default model files (GGUFs inside PyPI wheels), assembled and sha256-checked into ~/.cache/ropd-kit; the
# student and the teacher also converted once into the transformers folders that training and the white-box teacher
# load (a minute or more each on a CPU, alone; set-up, so the demo starts with them ready).
models: venv
	$(PY) -m ropd_kit.offline.models install --all
	$(PY) -m ropd_kit.offline.models hf qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct

# llama.cpp's llama-server, built once from the source inside the llama-cpp-python sdist (cached in ~/.cache/ropd-kit).
server: venv
	$(PY) -m ropd_kit.offline.serve build

# Headless Chromium (Debian package) for the tests that open pages in a browser: the HTML reports render their plots,
# and the rubric inspector works in a real JupyterLab.
chromium:
	bash scripts/install_chromium.sh

# ropd against lopd, one training step each, and the reward signals' AUCs: the paper's two claims in the least time.
demo: venv server models
	$(PY) -m ropd_kit.demo

# The three methods (ropd, lopd, rlvr), two steps each, through notebooks 01-06.
demo-full: venv server models
	$(PY) -m ropd_kit.demo --full

# pytest keeps its rewritten test modules as bytecode; with bytecode writing turned off in the environment it
# rewrites (and Python recompiles) every module on each run, several seconds of a short run.
test test-fast: export PYTHONDONTWRITEBYTECODE :=

# The JUnit report is what `make bench` (tests_time) holds against the suite's 20-minute budget on 2 cores.
test: venv server chromium
	$(PY) -m ropd_kit.offline.models install smollm2
	$(PY) -m pytest tests --junitxml=reports/tests/junit.xml --durations=25

test-fast: venv
	$(PY) -m pytest tests -m "not integration and not slow"

bench: venv server models
	$(PY) -m ropd_kit.bench

# The GPU path: unsloth replaces the CPU torch with a CUDA build, so it lives in its own extra.
gpu: venv
	$(PIP) install -e '.[gpu]'

# A few ropd GRPO steps on CUDA per backend, on an offline GPU box (no venv there: the image's python3 plus the
# carried wheels). `make gpu-smoke GPU_SMOKE_ARGS=--prepare` here first, `GPU_SMOKE_ARGS=--dry-run` on a CPU.
GPU_SMOKE_ARGS ?=
gpu-smoke:
	bash scripts/gpu_smoke.sh $(GPU_SMOKE_ARGS)

strip-notebooks: venv
	$(PY) -m ropd_kit.batch.report strip notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
