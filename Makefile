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

.PHONY: help venv kerberos-packages servers servers-all servers-secure servers-spark \
	servers-down test sinks unit demo bench clean

help:
	@echo "make demo          start local servers, load a sample table, export it"
	@echo "make test          unit + integration tests against real local servers"
	@echo "make servers       start (or reuse) local HBase + Elasticsearch"
	@echo "make servers-all   the same plus Elasticsearch 8 and 9, OpenSearch 2 and 3"
	@echo "make servers-spark make servers, plus a Spark standalone master and 2 workers"
	@echo "make servers-down  stop the servers 'make servers' or 'make servers-all' started"
	@echo "make sinks         the sink contract tests on every engine (starts them as needed)"
	@echo "make servers-secure a KDC and a Kerberos-secured HBase (SASL and HTTPS Thrift servers)"
	@echo "make bench         benchmark against the local servers (BENCH_SCALE=0.1 for a quick run)"

# MIT Kerberos first (apt-get as root, only what is missing): the test extra's gssapi builds
# against its headers, and the secure servers run its KDC.
kerberos-packages:
	@bash tools/kerberos-packages.sh

$(VENV)/.installed: pyproject.toml
	@bash tools/kerberos-packages.sh
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

# A second, Kerberos-secured HBase beside the plain one (tools/secureservers.py): its
# addresses and the test realm's krb5.conf and keytab go to .devservers/secure.env.
servers-secure: venv kerberos-packages
	$(PY) tools/secureservers.py up

# Both sets, each by the PIDs it recorded. (Not a hook inside devservers.py down: `make
# test` stops the plain set it started without touching a secure set it only reused.)
servers-down: venv
	$(PY) tools/devservers.py down
	$(PY) tools/secureservers.py down

# Starts the servers (HBase and every engine, for the sink tests; and the secure ones)
# unless they already run, and stops them only when it started them; engines it added
# beside servers that were already running are left running with them.
# The sink tests (-m sink) run in the same session on every engine .devservers/env names.
test: venv kerberos-packages
	@state=$$($(PY) tools/devservers.py up --all) || exit 1; \
	secure=$$($(PY) tools/secureservers.py up) || { [ "$$state" = started ] && \
	  $(PY) tools/devservers.py down; exit 1; }; \
	trap '[ "$$secure" = started ] && $(PY) tools/secureservers.py down; \
	  [ "$$state" = started ] && $(PY) tools/devservers.py down' EXIT; \
	set -a; . .devservers/env; . .devservers/secure.env; set +a; \
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
	@# Bytecode as an installed wheel has it: under PYTHONDONTWRITEBYTECODE=1 an editable
	@# checkout would make every worker compile the project anew, a cost no user pays.
	$(PY) -m compileall -q hbase2es
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .devservers build *.egg-info .pytest_cache servers/*/target
