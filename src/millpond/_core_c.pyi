"""Types of the Cython core (``_core_c.pyx``).

Its executable specification ``_core_py`` has the same names, signatures and semantics, so the
verbs are typed by the twin's; only the doorbell (``_core_doorbell.pxi``) is the C core's own.
"""

from collections.abc import Iterable

from _typeshed import WriteableBuffer

from millpond._core_py import FRESH as FRESH
from millpond._core_py import GONE as GONE
from millpond._core_py import HEADER_SIZE as HEADER_SIZE
from millpond._core_py import INDEXED as INDEXED
from millpond._core_py import NOT_IN_FLIGHT as NOT_IN_FLIGHT
from millpond._core_py import OK as OK
from millpond._core_py import STALE as STALE
from millpond._core_py import TOO_LONG as TOO_LONG
from millpond._core_py import change_visibility as change_visibility
from millpond._core_py import counts as counts
from millpond._core_py import crc32c as crc32c
from millpond._core_py import create as create
from millpond._core_py import decode_handle as decode_handle
from millpond._core_py import decode_handles as decode_handles
from millpond._core_py import decode_record as decode_record
from millpond._core_py import delete as delete
from millpond._core_py import drop as drop
from millpond._core_py import encode_handle as encode_handle
from millpond._core_py import encode_record as encode_record
from millpond._core_py import exists as exists
from millpond._core_py import expire as expire
from millpond._core_py import log_key as log_key
from millpond._core_py import message_id as message_id
from millpond._core_py import move as move
from millpond._core_py import oldest_ms as oldest_ms
from millpond._core_py import peek as peek
from millpond._core_py import purge as purge
from millpond._core_py import receive as receive
from millpond._core_py import record_flags as record_flags
from millpond._core_py import reflag_record as reflag_record
from millpond._core_py import renew_record as renew_record
from millpond._core_py import send as send
from millpond._core_py import send_each as send_each
from millpond._core_py import send_envelopes as send_envelopes
from millpond._core_py import vis_key as vis_key

IMPLEMENTATION: str

class NextSeqs:
    """Each queue's next seq, kept from one write transaction to the next (see the .pxi)."""

    def confirm(self, txn: object) -> None: ...
    def nest(self, parent: object, child: object) -> None: ...
    def unnest(self, child: object, parent: object, committed: bool) -> None: ...
    def forget(self) -> None: ...
    def __len__(self) -> int: ...

DOORBELL_SUPPORTED: bool

class Doorbell:
    """Futex counters in a shared writable buffer (an mmap of the doorbell file)."""

    def __init__(self, buffer: WriteableBuffer, slots: int) -> None: ...
    def generation(self, queue_id: int) -> int: ...
    def ring(self, queue_id: int) -> None: ...
    def ring_many(self, queue_ids: Iterable[int]) -> None: ...
    def ring_all(self) -> None: ...
    def any_generation(self) -> int: ...
    def wait(self, queue_id: int, expected: int, timeout_s: float) -> int: ...
    def wait_any(self, expected: int, timeout_s: float) -> int: ...
    def close(self) -> None: ...

WAKE_SUPPORTED: bool

class Wake:
    """A one-shot flag set and slept on without the GIL (csrc/millpond_wake.h)."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout_s: float = -1.0, then_set: Wake | None = None) -> bool: ...

def wake_all(wakes: list[Wake]) -> None: ...
