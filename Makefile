# One entry point for people and CI. `make demo` and `make test` work on a fresh machine
# with Python 3.11+: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint install kafka clean

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

demo: kafka
	$(BIN)/scorer demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint kafka
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .scorer
