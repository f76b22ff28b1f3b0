# make run: set everything up on a fresh machine and serve on http://127.0.0.1:5000
# make test: set up and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app standalone_mfa
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint format setup system-deps

$(BIN)/activate: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/activate

setup: $(BIN)/activate
	$(BIN)/python -m standalone_mfa.instance
	$(FLASK) init-db

run: setup
	$(FLASK) run --host $(HOST) --port $(PORT)

test: $(BIN)/activate system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian packages two tests need: oathtool (an independent TOTP implementation)
# and libzbar0 (the QR decoder behind pyzbar). Installed with apt when missing.
system-deps:
	@missing=""; \
	command -v oathtool >/dev/null 2>&1 || missing="$$missing oathtool"; \
	/sbin/ldconfig -p 2>/dev/null | grep -q 'libzbar\.so\.0' || missing="$$missing libzbar0"; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "Installing$$missing with apt"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/activate
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# make bench: gunicorn + load generator on a fresh seeded database (see README,
# Performance). DB=postgres uses BENCH_DATABASE_URL, whose tables it DROPS first.
DB ?= sqlite
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
WORKERS ?= 2
THREADS ?= 1
.PHONY: bench
bench: $(BIN)/activate
	$(BIN)/python -m bench.run --workers $(WORKERS) --threads $(THREADS) \
	  $(if $(filter postgres,$(DB)),--database-url $(BENCH_DATABASE_URL)) $(if $(POOL),--pool) $(BENCH_ARGS)
