# One entry point for people and CI. `make demo` and `make test` work on a fresh machine
# with Python 3.11+: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test soak lint install kafka schema-registry tools deploy-tools clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(INSTALLED)

# The embedded Apache Kafka's jars, resolved once by Maven into ~/.cache/scorer (outside the
# repo). Without Java or Maven this says so in one line and the stack runs on Tansu.
kafka: $(INSTALLED)
	$(BIN)/scorer stack fetch-kafka --if-possible

# The embedded schema registry (Apicurio Registry, about 160 MB), resolved once by Maven into
# ~/.cache/scorer; it runs on Java 21+ (the newest JDK under /usr/lib/jvm when PATH's is older).
schema-registry: $(INSTALLED)
	$(BIN)/scorer stack fetch-schema-registry

# promtool tests the alert rules (deploy/prometheus): Debian's prometheus package, installed
# here when it is missing and apt-get may run; otherwise the rule tests fail naming this step.
APT_PROMETHEUS := apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1
tools:
	@command -v promtool >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& { $(APT_PROMETHEUS) || { apt-get update -q >/dev/null && $(APT_PROMETHEUS); }; }; } \
		|| echo "make tools: install Debian's prometheus package (promtool) to test the alert rules"

# The chart and compose checks' tools (tests/unit/deploy), versions pinned in deploy/tools.env:
# helm and kubeconform built from the Go module proxy, and the KEDA and Prometheus Operator
# CRDs and the Compose schema copied out of their Go modules, all into ~/.cache/scorer/deploy
# (outside the repo; about 2 min of building the first time, nothing after). Without Go this
# says so in one line, and under `make test` the chart tests then fail naming this step.
include deploy/tools.env
DEPLOY_TOOLS ?= $(HOME)/.cache/scorer/deploy
HELM := $(DEPLOY_TOOLS)/helm-$(HELM_VERSION)/helm
KUBECONFORM := $(DEPLOY_TOOLS)/kubeconform-$(KUBECONFORM_VERSION)/kubeconform
KEDA_CRDS := $(DEPLOY_TOOLS)/keda-$(KEDA_VERSION)/.copied
PROMETHEUS_OPERATOR_CRDS := $(DEPLOY_TOOLS)/prometheus-operator-$(PROMETHEUS_OPERATOR_VERSION)/.copied
COMPOSE_SCHEMA := $(DEPLOY_TOOLS)/compose-go-$(COMPOSE_GO_VERSION)/compose-spec.json
GO_BUILD := CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath
# the module's directory in Go's module cache, downloaded first if need be
GO_MODULE_DIR = $$(go mod download -json $(1) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')

deploy-tools:
	@if command -v go >/dev/null; then \
		$(MAKE) --no-print-directory $(HELM) $(KUBECONFORM) $(KEDA_CRDS) $(PROMETHEUS_OPERATOR_CRDS) $(COMPOSE_SCHEMA); \
	else echo "make deploy-tools: Go is missing: install Go to build helm and kubeconform for the chart tests"; fi

$(HELM):
	GOBIN=$(@D) $(GO_BUILD) -ldflags '-s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION)' \
		helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

$(KUBECONFORM):
	GOBIN=$(@D) $(GO_BUILD) -ldflags '-s -w -X main.version=$(KUBECONFORM_VERSION)' \
		github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)

$(KEDA_CRDS):
	mkdir -p $(@D) && dir=$(call GO_MODULE_DIR,github.com/kedacore/keda/v2@$(KEDA_VERSION)) \
		&& cp $$dir/config/crd/bases/keda.sh_scaledobjects.yaml \
			$$dir/config/crd/bases/keda.sh_triggerauthentications.yaml $(@D)/ && touch $@

$(PROMETHEUS_OPERATOR_CRDS):
	mkdir -p $(@D) && dir=$(call GO_MODULE_DIR,github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION)) \
		&& cp $$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml $(@D)/ \
		&& touch $@

$(COMPOSE_SCHEMA):
	mkdir -p $(@D) && dir=$(call GO_MODULE_DIR,github.com/compose-spec/compose-go/v2@$(COMPOSE_GO_VERSION)) \
		&& cp $$dir/schema/compose-spec.json $@

demo: kafka
	$(BIN)/scorer demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two pytest processes, each with its own broker and redis-server (the suite mostly waits on
# group joins); a file's tests stay in one process, so they share its fixtures.
# SCORER_REQUIRE_DEPLOY_TOOLS: the chart tests fail, not skip, when helm or kubeconform is missing.
test: lint kafka schema-registry tools deploy-tools
	SCORER_REQUIRE_DEPLOY_TOOLS=1 $(BIN)/pytest -n 2 --dist loadfile

# Long end-to-end runs kept out of `make test` (and CI): the quality demo's timings and the
# false-alarm check (a healthy canary for SOAK_SECONDS, default 600, never aborted).
soak: kafka
	$(BIN)/pytest -m soak -s -p no:xdist

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .scorer
