# Countersign: `make run` starts everything, `make test` runs the tests.
# Both create .venv on first use (Python 3.11+ and make are all a machine needs).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-postgres browser lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit("Countersign needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Web on http://127.0.0.1:5000 (gunicorn), the worker, an embedded Redis, SQLite, demo data.
run: $(STAMP)
	COUNTERSIGN_DEMO=1 COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1 $(BIN)/flask --app app serve

# The whole suite on SQLite; TEST_DATABASE_URL=postgresql+psycopg://... runs it on PostgreSQL.
# Browser tests drive Debian's /usr/bin/chromium; without it, Playwright's own download.
test: $(STAMP) browser
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(STAMP) browser
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql+psycopg://127.0.0.1:5432/test} $(BIN)/pytest $(PYTEST_ARGS)

browser: $(STAMP)
	@test -x /usr/bin/chromium || $(BIN)/playwright install chromium

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
