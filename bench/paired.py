"""Paired rounds: every variant timed once per round, in an order that rotates each round.

On this shared machine the disk and CPU change speed within seconds; timing variants one after
the other would let a slow spell land on one of them. Paired rounds give each variant the same
weather, so the ratios of their medians can be trusted.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any


def rotating_rounds(
    variants: dict[str, Callable[[], Any]],
) -> tuple[Callable[[], None], dict[str, list[float]]]:
    """(a round running every variant once, the seconds each call took, by variant)."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    turn = itertools.count()
    clock = time.perf_counter

    def one_round() -> None:
        shift = next(turn) % len(names)
        for name in names[shift:] + names[:shift]:
            started = clock()
            variants[name]()
            times[name].append(clock() - started)

    return one_round, times
