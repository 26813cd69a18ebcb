# hbase2es developer entry points. Quick start: `make demo`, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CI and the local servers use Elasticsearch 7.10.2, so the 7.17 client; users of
# ES 8/9 install the matching client instead (see README).
ES_CLIENT ?= elasticsearch>=7.17,<7.18
PYTEST_ARGS ?=

.PHONY: help venv servers servers-all servers-spark servers-down test unit demo bench clean

help:
	@echo "make demo          start local servers, load a sample table, export it"
	@echo "make test          unit + integration tests against real local servers"
	@echo "make servers       start (or reuse) local HBase + Elasticsearch"
	@echo "make servers-all   the same plus Elasticsearch 8 and 9, OpenSearch 2 and 3"
	@echo "make servers-spark make servers, plus a Spark standalone master and 2 workers"
	@echo "make servers-down  stop the servers 'make servers' or 'make servers-all' started"
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

# A Spark standalone master and 2 workers (1 core, 1 GB each) from pyspark's own jars, for
# tests/test_spark_cluster.py; its URL goes to .devservers/env as HBASE2ES_TEST_SPARK_MASTER.
# Without it those tests start the same cluster themselves and stop it afterwards.
servers-spark: servers
	$(PY) tools/devservers.py spark

servers-down: venv
	$(PY) tools/devservers.py down

# Starts the servers unless they already run, and stops only what it started.
test: venv
	@state=$$($(PY) tools/devservers.py up) || exit 1; \
	trap '[ "$$state" = started ] && $(PY) tools/devservers.py down' EXIT; \
	set -a; . .devservers/env; set +a; \
	$(PY) -m pytest $(PYTEST_ARGS)

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
