# Everyday targets. The README's two commands need none of this.
PY ?= python

.PHONY: build test test-c test-py bench lint clean

build:
	$(PY) -m pip install -e ".[test]"

test: build            ## both cores: every core test is parametrized over c and py
	MILLPOND_REQUIRE_C=1 $(PY) -m pytest

test-py:               ## the pure-Python twin only, as on a machine without a compiler
	MILLPOND_NO_EXTENSIONS=1 $(PY) -m pytest

bench: build
	$(PY) bench/report.py

lint:
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy

clean:
	rm -rf build src/*.egg-info src/millpond/_core_c.c src/millpond/*.so .pytest_cache .benchmarks
