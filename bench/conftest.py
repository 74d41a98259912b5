"""Benchmark options and fixtures.

``--bench-quick`` (or ``MILLPOND_BENCH_QUICK=1``) cuts every round count about 15x: a smoke run
for CI that checks the benchmarks still work, not numbers to compare.
"""

from __future__ import annotations

import os
import sys

import pytest

# The raw baseline sits next to the benchmarks (bench/ is not a package).
sys.path.insert(0, os.path.dirname(__file__))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-quick",
        action="store_true",
        default=False,
        help="millpond: few rounds per benchmark (smoke run, < 60 s); "
        "same as MILLPOND_BENCH_QUICK=1",
    )


def is_quick(config: pytest.Config) -> bool:
    env = os.environ.get("MILLPOND_BENCH_QUICK", "")
    return bool(config.getoption("--bench-quick")) or env not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    # Read by test_bench_queue.pytest_generate_tests (quick runs collect one slice per case).
    config.millpond_bench_quick = is_quick(config)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def quick(pytestconfig: pytest.Config) -> bool:
    return is_quick(pytestconfig)


def pytest_report_header(config: pytest.Config) -> str:
    return f"millpond bench: {'QUICK (smoke) rounds' if is_quick(config) else 'full rounds'}"
