# Entry points: `make test` (the whole suite, what CI runs) and `make demo` (the pipeline end to end, locally).
.PHONY: setup test unit lint demo psql clean-stack bench

VENV_PY := .venv/bin/python

setup:
	@bash local/setup.sh

# The whole suite in two runs. First the unit and integration tiers on two workers (pytest-xdist; --dist loadfile
# keeps each file, and its module fixtures, in one worker, and each worker starts servers of its own): their tests
# mostly wait on the emulators, PostgreSQL and the sandbox. Then the chaos and e2e tiers, one test at a time: each
# runs the whole deployment as processes, with deadlines that another stack on the same two cores would eat into.
PARALLEL_TESTS := tests/unit tests/integration

test: setup
	$(VENV_PY) -m pytest -n 2 --dist loadfile $(PARALLEL_TESTS) $(PYTEST_ARGS)
	$(VENV_PY) -m pytest tests $(addprefix --ignore=,$(PARALLEL_TESTS)) $(PYTEST_ARGS)

# The server-free tier alone (tests/unit: paging, row mapping, decisions, handler mapping; seconds).
unit: setup
	$(VENV_PY) -m pytest tests/unit -q $(PYTEST_ARGS)

# ruff (ruff.toml) over the tree, and mypy --strict over shared/ and functions/ (mypy.ini).
lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy --config-file mypy.ini

demo: setup
	$(VENV_PY) -m local.demo $(DEMO_ARGS)

# Open psql on the data the last `make demo` left in .stack/demo/pgdata (starts the cluster, stops it after).
psql: setup
	$(VENV_PY) -m local.psql $(PSQL_ARGS)

# Measure the pipeline against the sandbox (docs/BENCHMARKS.md); ARGS="--scale 0.1 --only backfill" etc.
bench: setup
	.venv/bin/python -m local.bench $(ARGS)

# Remove the run directories (logs, throwaway clusters) of earlier stacks.
clean-stack:
	rm -rf .stack
