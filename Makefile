# The two commands: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/customer-master serve --demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: $(STAMP) lint
	scripts/ensure-chromium.sh  # the web UI tests drive Debian's Chromium
	$(BIN)/pytest -n 2 --dist worksteal  # two workers, each with its own PostgreSQL and server

bench: $(STAMP)
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .customer-master .pytest_cache .mypy_cache .ruff_cache
