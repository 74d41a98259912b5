"""Looking into a broker's stored tables from tests (what the public API does not show)."""

from __future__ import annotations

from typing import Any

import millpond


def meta_keys(broker: millpond.Broker, prefix: bytes) -> int:
    """How many keys of the broker's ``meta`` table start with ``prefix``."""

    def count(txn: Any) -> int:
        n = 0
        with txn.cursor(db=broker._storage.tables.meta) as cur:
            if cur.set_range(prefix):
                for key in cur.iternext(values=False):
                    if not key.startswith(prefix):
                        break
                    n += 1
        return n

    return broker._storage.read(count)  # type: ignore[no-any-return]
