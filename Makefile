# Tessera — `make run` serves the hub with demo data; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
# The PostgreSQL the suite also runs against when it is reachable (CI has one on localhost).
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=
# The browser of the e2e tests (tests/e2e/conftest.py reads E2E_CHROMIUM too).
CHROMIUM ?= /usr/bin/chromium
export E2E_CHROMIUM := $(CHROMIUM)
# The reverse proxy of tests/test_reverse_proxy.py (deploy/nginx in front of a live hub; it reads E2E_NGINX).
NGINX ?= /usr/sbin/nginx
export E2E_NGINX := $(NGINX)
# CI=true (CI sets it; .ci/run too): a PostgreSQL that is not reachable, or a Chromium or nginx that cannot
# be installed FAILS the run, so a green CI run has run every test. Elsewhere they are skipped with a warning.
STRICT := $(filter 1 true yes,$(shell echo '$(CI)' | tr '[:upper:]' '[:lower:]'))

.PHONY: install run test lint test-sqlite test-postgres clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/tessera db upgrade
	$(BIN)/tessera demo seed
	TESSERA_ALLOW_PRIVATE_OUTBOUND=1 TESSERA_INPROCESS_WORKER=1 $(BIN)/tessera serve --host $(HOST) --port $(PORT)

test: lint test-sqlite test-postgres

# The layers of docs/architecture.md (import-linter; the contract is in pyproject.toml).
lint: install
	$(BIN)/lint-imports --no-cache

test-sqlite: install e2e-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_TEST_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		echo "== PostgreSQL run ($(PG_TEST_URL)) =="; \
		TESSERA_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ -n "$(STRICT)" ]; then \
		echo "!! CI=true and PostgreSQL is not reachable at $(PG_TEST_URL): FAILING (set PG_TEST_URL, start PostgreSQL)" >&2; \
		exit 1; \
	else \
		echo "!! PostgreSQL is not reachable at $(PG_TEST_URL): the PostgreSQL run was SKIPPED"; \
	fi

clean:
	rm -rf $(VENV) instance .pytest_cache

# --- demo partner sites and the real-browser tests ------------------------------------------------
.PHONY: demo e2e-deps

# The hub and two partner sites (Site A on 127.0.0.1:5001, Site B on localhost:5002); Ctrl-C stops all.
demo: install
	TESSERA_ALLOW_PRIVATE_OUTBOUND=1 HOST=$(HOST) PORT=$(PORT) $(BIN)/python -m examples.demo

# Debian's Chromium for tests/e2e (Playwright drives it; Playwright never downloads a browser), and
# Debian's nginx for tests/test_reverse_proxy.py (the test runs it as the current user from a temporary
# prefix; where systemd runs, Debian also starts its own nginx service on install: `systemctl disable
# --now nginx` if you do not want it). Under CI=true either one that cannot be installed fails the run
# (and its tests fail, not skip).
e2e-deps:
	@if [ -x $(CHROMIUM) ]; then \
		echo "Chromium: $$($(CHROMIUM) --version 2>/dev/null)"; \
	elif [ "$(CHROMIUM)" = /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 \
		&& SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ) \
		&& $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium \
		&& [ -x $(CHROMIUM) ]; then \
		echo "Chromium: $$($(CHROMIUM) --version 2>/dev/null)"; \
	elif [ -n "$(STRICT)" ]; then \
		echo "!! CI=true and $(CHROMIUM) is missing and could not be installed (apt-get install chromium): FAILING" >&2; \
		exit 1; \
	else \
		echo "!! $(CHROMIUM) is missing and could not be installed: the e2e tests will be SKIPPED"; \
	fi
	@if [ -x $(NGINX) ]; then \
		echo "nginx: $$($(NGINX) -v 2>&1)"; \
	elif [ "$(NGINX)" = /usr/sbin/nginx ] && command -v apt-get >/dev/null 2>&1 \
		&& SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ) \
		&& $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y nginx \
		&& [ -x $(NGINX) ]; then \
		echo "nginx: $$($(NGINX) -v 2>&1)"; \
	elif [ -n "$(STRICT)" ]; then \
		echo "!! CI=true and $(NGINX) is missing and could not be installed (apt-get install nginx): FAILING" >&2; \
		exit 1; \
	else \
		echo "!! $(NGINX) is missing and could not be installed: the reverse-proxy tests will be SKIPPED"; \
	fi

# Benchmarks (bench/README.md): one gunicorn sync worker pinned to core 0 against PostgreSQL
# (database $(BENCH_DB), dropped and recreated), the load driver on core 1. ~2.5 minutes.
BENCH_DB ?= tessera_bench
.PHONY: bench
bench: install
	BENCH_DB=$(BENCH_DB) taskset -c 1 $(BIN)/python bench/run.py

# Bulk import benchmark (bench/README.md "Bulk import"): 1,000,000 generated legacy records into a
# fresh PostgreSQL database ($(BENCH_IMPORT_DB), dropped and recreated); prints records/s and peak RSS.
BENCH_IMPORT_DB ?= tessera_import_bench
BENCH_IMPORT_ARGS ?= --records 1000000 --shards 2
.PHONY: bench-import
bench-import: install
	BENCH_IMPORT_DB=$(BENCH_IMPORT_DB) $(BIN)/python bench/import_bench.py $(BENCH_IMPORT_ARGS)
