# make run: set everything up on a fresh machine and serve on http://127.0.0.1:5000
# make test: set up and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app standalone_mfa
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint format setup clean-venv

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

test: $(BIN)/activate
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/activate
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
