# homefeed: `make demo` builds the demo world end to end, `make test` runs the tests.
# Both start with `make setup`, which is idempotent and fast when nothing changed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo lint test test-slow bench lock dagster clean

setup: $(INSTALLED)
	@$(BIN)/homefeed setup

# Reinstall only when the lock or the package metadata changed.
$(INSTALLED): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "homefeed needs Python 3.11, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(INSTALLED)

demo: setup
	$(BIN)/homefeed demo

# The floors of docs/architecture.md (import-linter's contracts in pyproject.toml), ruff's rules and its format.
lint: setup
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The test world built in local mode and on a Spark standalone cluster (a master and two workers on
# loopback), every Delta table compared; a JSON summary. CLUSTER_CHECK_ARGS="--workdir DIR --rows"
.PHONY: cluster-check
CLUSTER_CHECK_ARGS ?=
cluster-check: setup
	$(BIN)/python -m benchmarks.cluster_check $(CLUSTER_CHECK_ARGS)

# The test world built into s3a:// on a local S3-compatible server (moto) and into a local folder,
# every Delta table compared, then queried (homefeed sql) and published (homefeed publish) from the
# object store; a JSON summary. Fetches Hadoop's S3A jars (with the AWS SDK, ~690 MB) once.
.PHONY: object-storage-check
OBJECT_STORAGE_CHECK_ARGS ?=
object-storage-check: setup
	$(BIN)/homefeed setup --object-storage
	$(BIN)/python -m benchmarks.object_storage_check $(OBJECT_STORAGE_CHECK_ARGS)

# Every benchmark at 10K and 100K users: benchmarks/results/latest.json and a markdown table.
# Smaller or partial runs: make bench BENCH_ARGS="--sizes 2000 --only generate_ingest graph_jobs"
# Going on with an interrupted run: make bench BENCH_ARGS="--workdir DIR --resume"
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m benchmarks.suite $(BENCH_ARGS)

# The Dagster UI over the same definitions and the instance `homefeed run` and `homefeed demo` record
# their runs in (http://127.0.0.1:3000).
dagster: setup
	DAGSTER_HOME=$${HOMEFEED_DAGSTER_HOME:-$${DAGSTER_HOME:-$(CURDIR)/.dagster_home}} ; mkdir -p $$DAGSTER_HOME ; \
	DAGSTER_HOME=$$DAGSTER_HOME $(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

# Recompile requirements.lock after editing requirements.in.
lock: $(INSTALLED)
	$(BIN)/uv pip compile -q requirements.in --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf warehouse data/demo .dagster_home
