# deepfake_detect: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BASE ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
# the project directory: $DEEPFAKE_DETECT_HOME when set (as for the package), else this checkout
ROOT := $(or $(DEEPFAKE_DETECT_HOME),$(CURDIR))
STORE_URI := sqlite:///$(ROOT)/mlruns/mlflow.db
DEMO_DATA := $(ROOT)/data/synthetic
PORT ?= 5000
HOST ?= 127.0.0.1
BACKEND_URI ?= $(STORE_URI)
ARTIFACTS ?= $(ROOT)/mlruns/server-artifacts
OUT ?= results/model_eval.csv
EXPERIMENT ?=
SWEEP ?=
METRIC ?= val_auc
ALIAS ?= champion
PYTEST_ARGS ?=
# test files run in this many processes (pytest-xdist), each file in one: a training test is
# CPU-bound in bursts (TensorFlow imports, subprocesses), so two share CI's 2 cores well (3 were
# no faster); --no-loadscope-reorder keeps tests/conftest.py's order: the slowest files first
TEST_WORKERS ?= 2
PYTEST := TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
CLUSTER_DIR ?= $(ROOT)/.cluster
# cluster-up/down get HOST, PORT (default 5055: make server and make ui keep 5000) and
# ARTIFACTS only when given: otherwise the settings saved in .cluster/settings, then defaults
given = $(if $(filter command line environment,$(origin $(1))),$(1)=$($(1)))
CLUSTER_PACKAGES := postgresql slurm-wlm munge

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install (re-runs only when pyproject.toml changes)

$(DEMO_DATA)/.complete: | $(STAMP)
	$(VENV)/bin/deepfake-detect synth $(DEMO_DATA) --size 128 --train 600 --val 200 --test 200 --seed 0
	@touch $@

data: $(DEMO_DATA)/.complete ## make the synthetic demo dataset (data/synthetic) if missing

demo: install data ## install, make the demo data, train cnn_baseline and say where to look
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m deepfake_detect.train
	@echo "Open it: make ui  (then http://$(HOST):$(PORT)); table: make leaderboard"

chromium: ## install Debian's chromium for the browser test when missing
	@command -v chromium >/dev/null 2>&1 || (apt-get install -y chromium >/dev/null 2>&1 \
		|| (apt-get update -qq && apt-get install -y -qq chromium)) \
		|| echo "warning: could not install chromium; the browser test will be skipped"

cluster-packages: ## install Debian's postgresql, slurm-wlm and munge for the cluster test when missing (root)
	@(command -v pg_ctlcluster && command -v slurmctld && command -v munged) >/dev/null 2>&1 \
		|| [ "$$(id -u)" != 0 ] || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(CLUSTER_PACKAGES) >/dev/null 2>&1 || (apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(CLUSTER_PACKAGES) >/dev/null)) \
		|| echo "warning: could not install $(CLUSTER_PACKAGES); the cluster test will be skipped"

cluster-up: install ## PostgreSQL + MLflow server (127.0.0.1:PORT, default 5055) + one-node SLURM -> .cluster/env (AUTH=1: basic auth)
	@ROOT=$(ROOT) CLUSTER_DIR=$(CLUSTER_DIR) $(call given,HOST) $(call given,PORT) \
		$(call given,ARTIFACTS) MLFLOW_BIN=$(CURDIR)/$(VENV)/bin/mlflow AUTH=$(AUTH) cluster/up.sh

cluster-down: ## stop what cluster-up started (data stays; PURGE=1 drops its database and .cluster/)
	@ROOT=$(ROOT) CLUSTER_DIR=$(CLUSTER_DIR) cluster/down.sh

test: install chromium cluster-packages lint ## install if needed, lint, and run the whole test suite (CI)
	$(PYTEST) $(PYTEST_ARGS)

test-fast: install ## the inner loop: every test that trains no TensorFlow model (< 3 min)
	$(PYTEST) -m "not training and not slow" $(PYTEST_ARGS)

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check deepfake_detect hydra_plugins tests bench
	$(VENV)/bin/ruff format --check deepfake_detect hydra_plugins tests bench

leaderboard: install ## export runs to results/model_eval.csv (OUT= EXPERIMENT= SWEEP= METRIC=)
	$(VENV)/bin/deepfake-detect leaderboard --out $(OUT) --metric $(METRIC) \
		$(if $(EXPERIMENT),--experiment $(EXPERIMENT)) $(if $(SWEEP),--sweep $(SWEEP))

sweep: install data ## dropout x lr grid over cnn_baseline on the demo data, then its leaderboard
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m deepfake_detect.train -m hparams_search=grid_dropout_lr

promote: install ## point @champion at the best finished run (METRIC= ALIAS= EXPERIMENT= SWEEP=)
	$(VENV)/bin/deepfake-detect promote --metric $(METRIC) --alias $(ALIAS) \
		$(if $(EXPERIMENT),--experiment $(EXPERIMENT)) $(if $(SWEEP),--sweep $(SWEEP))

ui: install ## MLflow UI on http://127.0.0.1:$(PORT) over the project's store
	$(VENV)/bin/mlflow server --backend-store-uri $(STORE_URI) \
		--default-artifact-root $(ROOT)/mlruns/artifacts --host 127.0.0.1 --port $(PORT)

server: install ## team tracking server (BACKEND_URI= ARTIFACTS= HOST= PORT=)
	$(VENV)/bin/mlflow server --backend-store-uri $(BACKEND_URI) \
		--artifacts-destination $(ARTIFACTS) --serve-artifacts --host $(HOST) --port $(PORT)

bench: install ## speed benchmark -> results/bench.json, docs/bench.json and the README table (QUICK=1: shorter)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench.run $(if $(QUICK),--quick)
	$(PY) -m bench.report results/bench.json

docs: install ## build the documentation site offline into site/ (mkdocs, strict: broken links fail)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir site

clean-results: ## remove results/ (the tracking store in mlruns/ is never touched)
	rm -rf results

.PHONY: help install data demo chromium cluster-packages cluster-up cluster-down test test-fast lint leaderboard sweep promote ui server bench docs clean-results
