# Countersign: `make run` starts everything, `make test` runs the tests.
# Both create .venv on first use (Python 3.11+ and make are all a machine needs).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-postgres browser nginx lint format bench clean

$(STAMP): pyproject.toml setup.py constraints.txt clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Countersign needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e clients/python
	@touch $(STAMP)

# Web on http://127.0.0.1:5000 (gunicorn), the worker, an embedded Redis, SQLite, demo data.
run: $(STAMP)
	COUNTERSIGN_DEMO=1 COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1 $(BIN)/flask --app app serve

# The whole suite on SQLite; TEST_DATABASE_URL=postgresql+psycopg://... runs it on PostgreSQL.
test: $(STAMP) browser nginx
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(STAMP) browser nginx
	TEST_DATABASE_URL=$${TEST_DATABASE_URL:-postgresql+psycopg://127.0.0.1:5432/test} $(BIN)/pytest $(PYTEST_ARGS)

# Browser tests drive Debian's /usr/bin/chromium. When it is missing, root with apt-get
# (CI, a fresh container) installs it from Debian; anyone else is told what to install.
# Not `playwright install`: it downloads a browser from outside the package registries.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "countersign: installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "countersign: browser tests need Debian's chromium: sudo apt-get install chromium" >&2; \
	    exit 1; \
	  fi; \
	fi

# tests/test_deploy.py puts deploy/nginx/countersign.conf in a real nginx in front of the
# app. Debian's nginx-light comes as chromium does (root with apt-get); without it, that
# one test is skipped.
nginx:
	@if ! command -v nginx >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "countersign: installing Debian's nginx-light for tests/test_deploy.py"; \
	  apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
