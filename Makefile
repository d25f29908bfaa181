# Every target bootstraps .venv on a fresh machine; nothing needs installing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: test run bench lint types pytest docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,prometheus,otel,http,postgres,redis,docs,sentry]'
	touch $(STAMP)

## make test: THE test command — lint, format, types, tests with the branch-coverage gate,
## and the documentation site built strictly.
test: lint types pytest docs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy resilience middleware kernel examples bench noxfile.py docs/_hooks

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=95

## make docs: the documentation site into site/ (mkdocs --strict: a broken link, a page left
## out of the nav or an unresolved API reference fails the build).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## make run: the example order service (HTTP on 127.0.0.1:8080; Ctrl-C stops it gracefully).
run: $(STAMP)
	$(BIN)/python examples/service

## make bench: every scenario, ours beside the peers, BlueLibs Runner (npm ci on first use) and
## DBOS Transact (its own venv under bench/anchors/dbos_py on first use);
## prints the table, writes bench/results/latest.json and latest.png.
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage htmlcov site .nox
