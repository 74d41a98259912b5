# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: binding=True, embedsignature=True
"""Cython core: the append log and visibility index over LMDB.

The executable specification is ``_core_py.py``: same names, signatures and semantics. This
module only makes the per-message byte work (keys, records, CRC32C, handles) and the loops over
batches cheaper; it calls py-lmdb exactly where the twin does. Layouts live in csrc/millpond.h.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset

from millpond._csrc cimport *

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)  # a macro: the str's ASCII flag (not in Cython's pxds)

IMPLEMENTATION = "c"
HEADER_SIZE = MILLPOND_RECORD_HEADER_SIZE
INDEXED = MILLPOND_RECORD_INDEXED
FRESH = 0xFFFFFFFFFFFFFFFF  # peek()'s visible_at for a fresh message (it has no vis entry)

OK = 0
STALE = 1
GONE = 2
NOT_IN_FLIGHT = 3
TOO_LONG = 4

millpond_crc32c_init()

include "_core_layout.pxi"
include "_core_next_seqs.pxi"
include "_core_verbs.pxi"
include "_core_doorbell.pxi"
include "_core_wake.pxi"
