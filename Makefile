# One entry point for people and CI. `make demo` and `make test` work on a fresh machine
# with Python 3.11+: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test soak lint install kafka tools clean

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

# promtool tests the alert rules (deploy/prometheus): Debian's prometheus package, installed
# here when it is missing and apt-get may run; otherwise the rule tests fail naming this step.
APT_PROMETHEUS := apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1
tools:
	@command -v promtool >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& { $(APT_PROMETHEUS) || { apt-get update -q >/dev/null && $(APT_PROMETHEUS); }; }; } \
		|| echo "make tools: install Debian's prometheus package (promtool) to test the alert rules"

demo: kafka
	$(BIN)/scorer demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two pytest processes, each with its own broker and redis-server (the suite mostly waits on
# group joins); a file's tests stay in one process, so they share its fixtures.
test: lint kafka tools
	$(BIN)/pytest -n 2 --dist loadfile

# Long end-to-end runs kept out of `make test` (and CI): the quality demo's timings and the
# false-alarm check (a healthy canary for SOAK_SECONDS, default 600, never aborted).
soak: kafka
	$(BIN)/pytest -m soak -s -p no:xdist

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .scorer
