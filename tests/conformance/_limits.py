"""What a backend of the conformance suite cannot do, and the hooks that skip those tests there.

A test (or one ``pytest.param``) that needs a feature some backend lacks is marked
``@requires("feature")``. On a backend listed under that feature in :data:`LIMITS` it is
skipped with the reason written there (``-ra`` prints it), never passed; on every other backend
it runs. Only documented limits belong here, each with its source: a backend that is merely
wrong gets a failing test (or a strict xfail naming the bug), not an entry.

``conftest.py`` imports the two hooks below; nothing else in the suite needs to know.
"""

from __future__ import annotations

from typing import Any

import pytest

# feature -> {backend: why it cannot do it (with a source)}
LIMITS: dict[str, dict[str, str]] = {}

BACKENDS = ("embedded", "native", "daemon-boto3", "moto")


def requires(*features: str) -> pytest.MarkDecorator:
    """Mark a test as needing ``features``; a backend that lacks one skips it with the reason."""
    unknown = [feature for feature in features if feature not in LIMITS]
    if unknown:  # a typo would otherwise run the test everywhere, silently
        raise ValueError(f"requires(): unknown feature(s) {unknown}; add them to LIMITS")
    return pytest.mark.requires(*features)


def _check_limits() -> None:
    for feature, backends in LIMITS.items():
        for backend, reason in backends.items():
            if backend not in BACKENDS or not reason:
                raise ValueError(f"LIMITS[{feature!r}]: bad backend {backend!r} or empty reason")


_check_limits()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(feature, ...): skip on the conformance backends LIMITS lists as lacking it",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec: Any = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if backend is None:
            continue
        for mark in item.iter_markers("requires"):
            for feature in mark.args:
                reason = LIMITS[feature].get(backend)
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=f"{backend}: {feature}: {reason}"))
