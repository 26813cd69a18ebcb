# hbase2es developer entry points. Quick start: `make demo`, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The tests' own client for assertions on the default engine (Elasticsearch 7.10.2).
# hbase2es itself talks to every engine through elastic-transport and does not care which
# elasticsearch-py is installed; the sink tests (tests/test_sinks.py) use its engine layer.
ES_CLIENT ?= elasticsearch>=7.17,<7.18
PYTEST_ARGS ?=

.PHONY: help venv servers servers-all servers-down test sinks unit demo bench clean

help:
	@echo "make demo          start local servers, load a sample table, export it"
	@echo "make test          unit + integration tests against real local servers"
	@echo "make servers       start (or reuse) local HBase + Elasticsearch"
	@echo "make servers-all   the same plus Elasticsearch 8 and 9, OpenSearch 2 and 3"
	@echo "make servers-down  stop the servers 'make servers' or 'make servers-all' started"
	@echo "make sinks         the sink contract tests on every engine (starts them as needed)"
	@echo "make bench         benchmark against the local servers (BENCH_SCALE=0.1 for a quick run)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' '$(ES_CLIENT)'
	@touch $@

venv: $(VENV)/.installed

servers: venv
	$(PY) tools/devservers.py up

# One node of every engine hbase2es supports, each in its own JVM (512 MB heap); their
# addresses go to .devservers/env as HBASE2ES_TEST_ES_ES7/_ES8/_ES9/_OS2/_OS3.
servers-all: venv
	$(PY) tools/devservers.py up --all

servers-down: venv
	$(PY) tools/devservers.py down

# Starts the servers (HBase and every engine, for the sink tests) unless they already run,
# and stops them only when it started them all; engines it added beside servers that were
# already running are left running with them.
# The sink tests (-m sink) run in the same session on every engine .devservers/env names.
test: venv
	@state=$$($(PY) tools/devservers.py up --all) || exit 1; \
	trap '[ "$$state" = started ] && $(PY) tools/devservers.py down' EXIT; \
	set -a; . .devservers/env; set +a; \
	$(PY) -m pytest $(PYTEST_ARGS)

# The sink contract alone, on every engine: adds the engines beside running servers
# (those are left running for the next run; `make servers-down` stops them all).
sinks: servers-all
	@set -a; . .devservers/env; set +a; \
	$(PY) -m pytest -m sink $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

demo: servers
	$(PY) tools/demo.py

# BENCH_SCALE, BENCH_DATASETS, BENCH_REPEAT ... pass through the environment (bench/run.py).
bench: servers
	@$(PY) -c "import matplotlib, pyinstrument" 2>/dev/null || \
	  $(PY) -m pip install -q -e '.[bench]' '$(ES_CLIENT)'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .devservers build *.egg-info .pytest_cache servers/*/target
