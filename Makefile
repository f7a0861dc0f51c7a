# pushtrack — `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install pushtrack with its dev tools

run: $(STAMP) ## Serve 127.0.0.1:8080 (dashboard at /) with ./pushtrack.db; a populated demo app on first start
	$(BIN)/pushtrack serve --demo

lint: $(STAMP) ## ruff (check + format --check) and mypy
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint ## Lint, then the whole test suite (SQLite and PostgreSQL), then bench-quick
	$(BIN)/pytest -n 2 --dist loadgroup
	$(BIN)/python -m bench --quick

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed ## The full benchmark suite; writes bench/results/latest.json
	$(BIN)/python -m bench

bench-quick: $(STAMP) ## Every benchmark workload at small scale
	$(BIN)/python -m bench --quick

soak: $(STAMP) ## Ten minutes of mixed load on a real server: no errors, flat memory, exact counts
	PUSHTRACK_SOAK_SECONDS=600 $(BIN)/pytest -p no:randomly tests/test_soak.py

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install run lint test bench bench-quick soak clean
