# unireward: every developer and CI entry point.
#
#   make test                       # fast tests (what CI runs: .ci/run)
#   make pipeline-run PROFILE=quick # the whole pipeline on this machine (kfp.local)
#   make help
#
# `make venv` builds .venv from pyproject.toml pinned by requirements.lock, and re-runs only when
# either file is newer than the stamp .venv/.installed.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= quick

# Nothing phones home, in any target (tools read these from the environment).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

.PHONY: help venv test test-all lint pipeline-run compile pretrain-base mlflow-ui

help:
	@echo "make venv | test | test-all | lint | compile PROFILE=quick | pipeline-run PROFILE=quick"
	@echo "     pretrain-base | mlflow-ui"

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		{ echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=..."; exit 1; }
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[train,pipeline,server,infra,dev]'
	@touch $@

test: venv
	$(BIN)/pytest -m "not slow" -q

test-all: venv
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .

compile: venv
	$(BIN)/python -m pipelines.compile --profile $(PROFILE) --output build/unireward-$(PROFILE).yaml

pipeline-run: venv
	$(BIN)/python -m pipelines.run_local --profile $(PROFILE)

# Regenerates the shipped base checkpoint (stage 0); see the README for its CPU time.
pretrain-base: venv
	$(BIN)/unireward pretrain_base --profile $(PROFILE) --output-dir models/base-tiny

mlflow-ui: venv
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000
