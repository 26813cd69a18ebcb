# hbase2es developer entry points. Quick start: `make demo`, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CI and the local servers use Elasticsearch 7.10.2, so the 7.17 client; users of
# ES 8/9 install the matching client instead (see README).
ES_CLIENT ?= elasticsearch>=7.17,<7.18
PYTEST_ARGS ?=

.PHONY: help venv kerberos-packages servers servers-all servers-secure servers-down test unit demo \
	bench clean

help:
	@echo "make demo          start local servers, load a sample table, export it"
	@echo "make test          unit + integration tests against real local servers"
	@echo "make servers       start (or reuse) local HBase + Elasticsearch"
	@echo "make servers-all   the same plus Elasticsearch 8 and 9, OpenSearch 2 and 3"
	@echo "make servers-secure a KDC and a Kerberos-secured HBase (SASL and HTTPS Thrift servers)"
	@echo "make servers-down  stop the servers 'make servers', 'servers-all' or 'servers-secure' started"
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

# A second, Kerberos-secured HBase beside the plain one (tools/secureservers.py): its
# addresses and the test realm's krb5.conf and keytab go to .devservers/secure.env.
servers-secure: venv kerberos-packages
	$(PY) tools/secureservers.py up

# Both sets, each by the PIDs it recorded. (Not a hook inside devservers.py down: `make
# test` stops the plain set it started without touching a secure set it only reused.)
servers-down: venv
	$(PY) tools/devservers.py down
	$(PY) tools/secureservers.py down

# Starts the servers (plain and secure) unless they already run, and stops only what it
# started.
test: venv kerberos-packages
	@state=$$($(PY) tools/devservers.py up) || exit 1; \
	secure=$$($(PY) tools/secureservers.py up) || { [ "$$state" = started ] && \
	  $(PY) tools/devservers.py down; exit 1; }; \
	trap '[ "$$secure" = started ] && $(PY) tools/secureservers.py down; \
	  [ "$$state" = started ] && $(PY) tools/devservers.py down' EXIT; \
	set -a; . .devservers/env; . .devservers/secure.env; set +a; \
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
