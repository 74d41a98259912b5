# Doorbell: cross-process long-poll wake-ups over a shared memory file (csrc/millpond_doorbell.h).

DOORBELL_SUPPORTED = bool(millpond_doorbell_supported())


cdef class Doorbell:
    """Counters and waiter counts in a writable shared buffer (an mmap of the doorbell file).

    Slot ``queue_id % (slots - 1)`` belongs to a queue; two queues sharing a slot only cause
    spurious wake-ups. The last slot rings with every queue's: one thread watching many queues
    (the daemon's parked long polls) sleeps on it. The buffer must stay mapped while this
    object lives; close() lets it go.
    """

    cdef object _view
    cdef uint32_t *_counters
    cdef uint32_t *_waiters
    cdef Py_ssize_t _slots
    cdef Py_ssize_t _any  # the last slot; also the number of queue slots

    def __cinit__(self, buffer, Py_ssize_t slots):
        cdef unsigned char[::1] view = buffer
        if slots < 2 or view.shape[0] < slots * 8:
            raise ValueError("doorbell buffer too small")
        self._view = view
        self._slots = slots
        self._any = slots - 1
        self._counters = <uint32_t *>&view[0]
        self._waiters = self._counters + slots

    cdef inline void _check(self) except *:
        if self._counters == NULL:
            raise ValueError("the doorbell is closed")

    def generation(self, Py_ssize_t queue_id):
        self._check()
        return millpond_doorbell_load(&self._counters[queue_id % self._any])

    def any_generation(self):
        """The counter of the slot every ring moves (see wait_any)."""
        self._check()
        return millpond_doorbell_load(&self._counters[self._any])

    def ring(self, Py_ssize_t queue_id):
        self._check()
        cdef Py_ssize_t i = queue_id % self._any
        millpond_doorbell_ring(&self._counters[i], &self._waiters[i])
        millpond_doorbell_ring(&self._counters[self._any], &self._waiters[self._any])

    def ring_many(self, queue_ids):
        """ring() each queue of the iterable ``queue_ids``, the slot of every queue's once
        (what its waiter watches for is a change, not how many)."""
        cdef Py_ssize_t queue_id, i
        cdef bint rang = False
        self._check()
        for queue_id in queue_ids:
            i = queue_id % self._any
            millpond_doorbell_ring(&self._counters[i], &self._waiters[i])
            rang = True
        if rang:
            millpond_doorbell_ring(&self._counters[self._any], &self._waiters[self._any])

    def ring_all(self):
        cdef Py_ssize_t i
        self._check()
        for i in range(self._slots):
            millpond_doorbell_ring(&self._counters[i], &self._waiters[i])

    def wait(self, Py_ssize_t queue_id, uint32_t expected, double timeout_s):
        """Sleep (GIL released) until the slot moves from ``expected`` or the timeout ends."""
        self._check()
        return self._wait(queue_id % self._any, expected, timeout_s)

    def wait_any(self, uint32_t expected, double timeout_s):
        """Sleep (GIL released) until any queue's doorbell rings after ``any_generation()``
        gave ``expected``, or the timeout ends."""
        self._check()
        return self._wait(self._any, expected, timeout_s)

    cdef int _wait(self, Py_ssize_t i, uint32_t expected, double timeout_s):
        cdef int64_t ns = <int64_t>(timeout_s * 1e9) if timeout_s > 0 else 0
        cdef int err
        with nogil:
            err = millpond_doorbell_wait(&self._counters[i], &self._waiters[i], expected, ns)
        return err

    def close(self):
        self._counters = NULL
        self._waiters = NULL
        self._view = None
