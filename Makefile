# RLHF Studio: `make run` for the product on embedded defaults (`make run SIMULATE=4` adds
# four simulated labelers working the queue, with rounds that start by themselves), `make
# test` for the suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTHON ?= python3
PGVER = $(shell ls /etc/postgresql 2>/dev/null | head -n1)
# torch==2.13.0 is the CPU build where a local wheel is provided; elsewhere pip picks one.
TORCH ?= torch==2.13.0

.PHONY: run install install-dev services browser test test-fast test-pg test-sqlite bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e '.[train]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e '.[train,dev,bench]'
	touch $@

# Browser libraries come from npm (static/package.json) and are served from /static/vendor.
static/vendor/.installed: static/package.json static/package-lock.json
	@command -v npm >/dev/null || { echo "make run needs npm (for the browser libraries in static/package.json): install Node.js and npm." >&2; exit 1; }
	npm ci --prefix static --no-audit --no-fund --silent
	mkdir -p static/vendor
	cp static/node_modules/sortablejs/Sortable.min.js static/vendor/sortable.min.js
	cp static/node_modules/chart.js/dist/chart.umd.js static/vendor/chart.umd.js
	touch $@

install: $(VENV)/.installed static/vendor/.installed
install-dev: $(VENV)/.installed-dev static/vendor/.installed

run: install
	$(VENV)/bin/rlhf-studio db upgrade
	$(VENV)/bin/rlhf-studio demo >/dev/null
	$(VENV)/bin/rlhf-studio up --host 127.0.0.1 --port 8000 $(if $(SIMULATE),--simulate $(SIMULATE) --schedule)

# PostgreSQL and Redis for the tests: use them if running, start them where we can.
services:
	@if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
	  if [ -n "$(PGVER)" ]; then pg_ctlcluster --skip-systemctl-redirect $(PGVER) main start || true; fi; \
	  for i in $$(seq 20); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done; \
	fi
	@pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started: install and start it (trust auth for user postgres), or set RLHF_TEST_DATABASE_URL." >&2; exit 1; }
	@if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then \
	  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null; \
	  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true; \
	  for i in $$(seq 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done; \
	fi
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "Redis is not reachable on 127.0.0.1:6379 and could not be started: install redis-server, or set RLHF_TEST_REDIS_URL." >&2; exit 1; }

# Debian's chromium for the browser tests (Playwright cannot download its own here).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Browser tests need /usr/bin/chromium: run 'sudo apt-get install chromium'." >&2; exit 1; fi; \
	fi

# The quick tests in two processes (each on its own database), then the slow and browser
# ones, also in two: each process has its own database, Redis database (RLHF_TEST_REDIS_URL's
# and the one below it), ports and data directories. tests/conftest.py hands the longest
# out first, and --maxschedchunk 1 the rest one at a time, so the two end together.
XDIST ?= -n 2
test-pg: install-dev services browser
	$(PY) -m pytest -q -p no:cacheprovider tests -m "not slow and not e2e" $(XDIST)
	$(PY) -m pytest -q -p no:cacheprovider tests -m "slow or e2e" $(XDIST) --maxschedchunk 1

# The database tests again on the embedded default (SQLite): those that use the test database
# (tests/conftest.py leaves out the rest, which ran already).
test-sqlite: install-dev
# The simulated labelers too (concurrent writers on the one write lock); the whole training
# loop runs once, on PostgreSQL.
	RLHF_TEST_DB=sqlite $(PY) -m pytest -q -p no:cacheprovider tests -m "not postgres_only and not e2e" \
	  --ignore=tests/training --ignore=tests/e2e --ignore=tests/simulation/test_loop.py $(XDIST)

test: lint test-pg test-sqlite

# The tests not marked slow or e2e, on PostgreSQL: over 90% of the tests in a sixth of the
# time (85 s on 2 cores; serial, XDIST=, 145 s).
test-fast: install-dev services
	$(PY) -m pytest -q -p no:cacheprovider tests -m "not slow and not e2e" $(XDIST)

bench: install-dev services
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: install-dev
	$(VENV)/bin/ruff check app training simulation tests bench
	$(VENV)/bin/mypy app training simulation

clean:
	rm -rf $(VENV) data
