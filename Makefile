# Two commands: `make run` (set up + serve on embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint fmt typecheck bench openapi migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/openpitrix serve --demo

# Two pytest-xdist workers, each with its own nats-server, database and moto; a file's tests
# stay together on one worker, in order. `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench migrations
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench migrations
	$(BIN)/ruff check --fix src tests bench migrations

bench: $(STAMP)
	$(BIN)/python bench/bench_index.py
	$(BIN)/python bench/bench_deploy.py
	$(BIN)/python bench/bench_relay.py
	$(BIN)/python bench/bench_reads.py
	$(BIN)/python bench/bench_sse.py
	$(BIN)/python bench/bench_vm.py

openapi: $(STAMP)
	$(BIN)/openpitrix openapi > openapi/openapi.json

migrate: $(STAMP)
	$(BIN)/openpitrix migrate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
