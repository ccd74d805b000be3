# The native local stack and everything around it. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv up down status logs env test test-unit test-integration test-e2e demo lint fmt trace

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt >&2
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . >&2
	touch $@

venv: $(STAMP) ## make the virtual environment at .venv

up: venv ## install what is missing, start infra and the emulator, print the endpoints
	$(PY) -m infra up

down: ## stop everything the stack started (the data stays)
	@if test -x $(PY); then $(PY) -m infra down; else echo "no .venv: nothing can be running"; fi

status: venv ## what runs and where
	$(PY) -m infra status

logs: venv ## follow the stack's logs
	$(PY) -m infra logs

env: venv ## the endpoints as shell assignments: eval "$$(make -s env)"
	@$(PY) -m infra env

# ARGS go to pytest, e.g. make test ARGS="-k kafka -x"
test: venv ## unit, integration and e2e tests; starts what they need, leaves nothing running
	$(PY) -m infra test $(ARGS)

test-unit: venv ## fast tests, no services
	$(PY) -m pytest -m unit -q $(ARGS)

test-integration: venv ## tests against the real services (a throwaway stack)
	$(PY) -m infra test -m integration $(ARGS)

test-e2e: venv ## tests through HTTP, like a user (a throwaway stack)
	$(PY) -m infra test -m e2e $(ARGS)

lint: venv ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: venv ## ruff format
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: up ## the main job: bring the stack up, run the demo scenario, print the summary and report path
	$(VENV)/bin/consim run demo --trace $(ARGS)

trace: venv ## the waterfall of one payment's trace: make trace ID=<payment id>
	@test -n "$(ID)" || { echo "usage: make trace ID=<payment id>"; exit 2; }
	$(PY) -m simulator.tracing $(ID)

.PHONY: rebuild-projections bench-hot-account
rebuild-projections: venv ## rewrite the DynamoDB read models from the event store
	$(PY) -m consim.services.rebuild

bench-hot-account: venv ## optimistic retry vs per-stream lock on one hot account (running stack)
	$(PY) benchmarks/hot_account.py $(ARGS)
