# The native local stack and everything around it. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv up down status logs env test test-unit test-integration test-e2e demo lint fmt trace \
	sam-venv sam-build invoke deploy-local localstack-down compose-plugin

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

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

env: venv ## the endpoints as shell assignments: eval "$(make -s env)"
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

lint: venv sam-venv ## ruff, cfn-lint, sam validate --lint, sam build, shellcheck, compose config
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(SAM) validate
	$(SAM) validate --lint
	$(MAKE) --no-print-directory sam-build
	command -v shellcheck >/dev/null || apt-get install -y -qq shellcheck >&2 \
		|| { apt-get update -qq && apt-get install -y -qq shellcheck >&2; }
	shellcheck localstack/*.sh localstack/init/*.sh localstack/init/ready.d/*.sh
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
		|| apt-get install -y -qq docker-compose >&2
	bash localstack/check-compose.sh

# AWS SAM CLI in its own venv: its pins clash with ours. `sam build` needs python3.11 on PATH.
SAM_VENV := .venv-sam
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0

$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || python3.11 -m venv $(SAM_VENV) >&2
	$(SAM_VENV)/bin/pip install -q --disable-pip-version-check aws-sam-cli==$(SAM_VERSION) >&2
	touch $@

sam-venv: $(SAM_VENV)/.installed ## AWS SAM CLI in .venv-sam

# The layer's requirements are a copy: SAM's build cache only watches the file in the layer.
functions/shared/requirements.txt: requirements.txt
	cp requirements.txt $@

sam-build: sam-venv functions/shared/requirements.txt ## sam build, no Docker (.aws-sam/build)
	$(SAM) build --cached

# make invoke FN=ApiFunction EVENT=events/api-health.json (FN: logical id or function name)
invoke: venv ## run one sample event through the emulator: make invoke FN=<function> EVENT=<file>
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=<function> EVENT=<file>"; exit 2; }
	$(PY) -m emulator invoke $(FN) $(EVENT)

deploy-local: venv sam-venv ## build and deploy to LocalStack, then bridge Redpanda to it
	bash localstack/deploy.sh

localstack-down: ## stop LocalStack, Redpanda and Postgres (docker compose down -v)
	bash localstack/deploy.sh down

compose-plugin: ## build the docker compose v2 plugin from its Go module if it is missing
	bash localstack/build-compose-plugin.sh

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
