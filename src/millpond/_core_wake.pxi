# Wake: a one-shot flag for group commit's hand-offs, set and slept on without the GIL
# (csrc/millpond_wake.h). millpond/wake.py picks it, or a lock where it is not supported.

WAKE_SUPPORTED = bool(millpond_wake_supported())


cdef class Wake:
    """Set once; wait() sleeps (GIL released) until it is set."""

    cdef uint32_t _flag

    def set(self):
        with nogil:
            millpond_wake_set(&self._flag)

    def is_set(self):
        return self._flag == 1

    def wait(self, double timeout_s=-1.0, Wake then_set=None):
        """Sleep until set (True) or ``timeout_s`` passed (False; < 0: no limit).

        ``then_set`` is set once this thread has let go of the GIL, so the thread it wakes
        finds the GIL free. Signals do not interrupt the wait; their handlers run after it.
        """
        cdef int64_t ns = <int64_t>(timeout_s * 1e9) if timeout_s >= 0 else -1
        cdef uint32_t *other = NULL if then_set is None else &then_set._flag
        cdef int woken
        with nogil:
            if other != NULL:
                millpond_wake_set(other)
            woken = millpond_wake_wait(&self._flag, ns)
        return woken == 1


def wake_all(list wakes):
    """Set every Wake of ``wakes``, in order, after letting go of the GIL."""
    cdef Py_ssize_t n = len(wakes), i
    if n == 0:
        return
    cdef uint32_t **flags = <uint32_t **>PyMem_Malloc(n * sizeof(uint32_t *))
    if flags == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            flags[i] = &(<Wake?>wakes[i])._flag
        with nogil:
            for i in range(n):
                millpond_wake_set(flags[i])
    finally:
        PyMem_Free(flags)
