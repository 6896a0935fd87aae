# Tessera — `make run` serves the hub with demo data; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
# The PostgreSQL the suite also runs against when it is reachable (CI has one on localhost).
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=

.PHONY: install run test test-sqlite test-postgres clean

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

test: test-sqlite test-postgres

test-sqlite: install e2e-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_TEST_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		echo "== PostgreSQL run ($(PG_TEST_URL)) =="; \
		TESSERA_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest $(PYTEST_ARGS); \
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

# Debian's Chromium for tests/e2e (Playwright drives it; Playwright never downloads a browser).
e2e-deps:
	@if [ -x /usr/bin/chromium ]; then \
		echo "Chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium \
		|| echo "!! could not install Chromium: the e2e tests will be SKIPPED"; \
	else \
		echo "!! /usr/bin/chromium is missing and apt-get is not available: the e2e tests will be SKIPPED"; \
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
