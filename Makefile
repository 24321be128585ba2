# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: run test install system-deps lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Serve the demo on http://127.0.0.1:8000 (SQLite + local encrypted files under ./var/).
run: install
	@sh scripts/system-deps.sh runtime
	$(BIN)/consilium check-config
	$(BIN)/consilium migrate
	$(BIN)/consilium seed-demo
	$(BIN)/consilium serve --no-migrate

# Debian packages the tests need (WeasyPrint's libraries; Chromium for the browser tests).
system-deps:
	@sh scripts/system-deps.sh

# The whole suite: SQLite and PostgreSQL, SMTP, and the browser tests. Nothing may skip.
# One worker per core (pytest-xdist), a test file to a worker: every test has its own database
# and files, and a file's module-wide servers stay in one process. On 2 cores: 20 min, not 28.
test: install system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q -p no:cacheprovider -n auto --dist loadfile $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
