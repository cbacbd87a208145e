# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned dependency set on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# Debian's DCMTK and Orthanc leave Nagle on unless this is set (40 ms stalls per C-STORE).
export TCP_NODELAY := 1
# Compiled here once: every process (CLI, listener workers, Dagster code servers, test
# subprocesses) then loads bytecode instead of compiling ~5 s of imports, also where
# PYTHONDONTWRITEBYTECODE keeps Python from caching what it compiles.
PACKAGES := axiom_dagster assets realtime resources sensors

.PHONY: demo test test-fast dev bench lock system-deps clean

$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q uv==0.13.9
	$(UV) pip sync -q --compile-bytecode --python $(PY) requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	$(PY) -m compileall -q -j 0 $(PACKAGES)
	touch $@

# DCMTK and Orthanc (with its DICOMweb plugin) are the real peers the tests talk to.
system-deps:
	@if ! command -v storescu >/dev/null || ! command -v Orthanc >/dev/null || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk orthanc orthanc-dicomweb >/dev/null; \
	fi

demo: $(VENV)/.installed
	$(VENV)/bin/axiom demo

test: system-deps $(VENV)/.installed
	$(PY) -m pytest -n 3 -q

# The inner loop: everything but the tests marked slow (see README, Tests).
test-fast: system-deps $(VENV)/.installed
	$(PY) -m pytest -m "not slow" -n 3 -q

dev: $(VENV)/.installed
	$(VENV)/bin/dg dev

bench: $(VENV)/.installed
	$(PY) bench/pipeline.py

lock:
	$(UV) pip compile requirements.in --python-version 3.11 -o requirements.lock

clean:
	rm -rf var .dagster_home/storage .dagster_home/history .dagster_home/schedules .dagster_home/logs
