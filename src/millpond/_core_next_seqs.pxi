# NextSeqs: each standard queue's next seq, remembered from one write transaction to the next.
#
# A send must append after the queue's last record: finding it costs a counters get and a log
# cursor search (~6k instructions a queue, most of it py-lmdb's per-call cost), which is a
# tenth of a single send and a sixth of a publish to ten queues. send() and send_each() keep
# the seqs they hand out here instead, and use them again while nothing else can have appended:
#
# - in the same transaction (``txn is self.txn``), as long as no other verb that appends
#   (move) or removes a queue (drop, purge) ran: those call forget();
# - in a transaction nested in it, and back in it once the nested one committed (Storage calls
#   nest() and unnest());
# - in the next write transaction, once Storage confirmed that the remembered one committed
#   (confirm()) and LMDB numbers the new one right after it: no other write transaction of any
#   process (or of this one, without this cache) came in between. An aborted transaction is
#   never confirmed, and the one after it has the same number.
#
# Seqs must stay dense (a queue's stored count is its next seq - 1 - its gone count): a send that
# fails after taking seqs forgets them all, since its transaction may still commit without them.
#
# Removals do not make a remembered seq stale: a queue's next seq is max(tail + 1, floor), and
# every removal moves the floor past the seq it removed, so the maximum does not change.
# Queue ids are never reused, so a new queue is simply not in the table yet.

cdef uint64_t _tail_seq(txn, dbs, uint32_t queue_id) except? 0xFFFFFFFFFFFFFFFF:
    """The highest seq the queue has in the log, 0 when it has none."""
    cur = txn.cursor(dbs.log)
    try:
        return _tail_seq_at(cur, queue_id)
    finally:
        cur.close()


cdef uint64_t _tail_seq_at(cur, uint32_t queue_id) except? 0xFFFFFFFFFFFFFFFF:
    """_tail_seq with a cursor of the log the caller owns (it is left anywhere)."""
    # (0xFFFFFFFFU: a C constant; without the U, Cython compares through Python ints)
    if queue_id < 0xFFFFFFFFU and cur.set_range(_u32(queue_id + 1)):
        found = cur.prev()
    else:
        found = cur.last()
    if not found:
        return 0
    key = cur.key()
    if PyBytes_GET_SIZE(key) != MILLPOND_LOG_KEY_SIZE \
            or millpond_get_u32(_buf(key)) != queue_id:
        return 0
    return millpond_get_u64(_buf(key) + 4)


cdef uint64_t _next_seq(txn, dbs, uint32_t queue_id, uint64_t floor) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t after_tail = _tail_seq(txn, dbs, queue_id) + 1
    return floor if floor > after_tail else after_tail


cdef struct _QueueSeq:
    uint32_t queue_id
    bint used
    uint64_t next_seq


cdef _QueueSeq *_queue_seq(_QueueSeq *table, size_t mask, uint32_t queue_id):
    """The entry of ``queue_id`` in an open-addressing table of ``mask + 1`` entries (a power
    of two): its own, or the unused one where it goes."""
    cdef size_t i = (queue_id * <size_t>2654435761) & mask  # Knuth's multiplicative hash
    while table[i].used and table[i].queue_id != queue_id:
        i = (i + 1) & mask
    return &table[i]


cdef enum:
    NEXT_SEQS_INITIAL = 16  # entries (a power of two)
    NEXT_SEQS_MAX_QUEUES = 65536  # past that many queues the table starts over (memory bound)


cdef class NextSeqs:
    """The next seq of the queues written in the remembered transaction (see above)."""

    cdef object txn  # the transaction whose writes the table reflects; None: nothing is known
    cdef uint64_t txn_id
    cdef bint committed
    cdef _QueueSeq *table
    cdef size_t mask, used

    def __cinit__(self):
        self.table = <_QueueSeq *>PyMem_Calloc(NEXT_SEQS_INITIAL, sizeof(_QueueSeq))
        if self.table == NULL:
            raise MemoryError()
        self.mask = NEXT_SEQS_INITIAL - 1

    def __dealloc__(self):
        PyMem_Free(self.table)

    def confirm(self, txn):
        """``txn`` committed (Storage calls this once its commit returned)."""
        if txn is self.txn:
            self.committed = True

    def nest(self, parent, child):
        """``child`` begins inside ``parent``: it starts from what the parent holds."""
        if parent is self.txn:
            self.txn = child

    def unnest(self, child, parent, bint committed):
        """``child`` ended: what it handed out holds in ``parent`` if it committed, else not."""
        if child is self.txn:
            if committed:
                self.txn = parent
            else:
                self.forget()

    def forget(self):
        """Something other than send()/send_each() appended to a queue, or removed one."""
        self.txn = None
        if self.used:
            memset(self.table, 0, (self.mask + 1) * sizeof(_QueueSeq))
            self.used = 0

    def __len__(self):
        return self.used

    cdef int begin(self, txn) except -1:
        """Make the table valid for ``txn``: kept if it still is, else emptied."""
        if txn is self.txn:
            return 0
        if self.committed and self.txn is not None and txn.id() == self.txn_id + 1 \
                and self.used < NEXT_SEQS_MAX_QUEUES:
            self.txn_id += 1
        else:
            self.forget()
            self.txn_id = txn.id()
        self.txn = txn
        self.committed = False
        return 0

    cdef _QueueSeq *entry(self, txn, dbs, cur, uint32_t queue_id) except NULL:
        """The queue's entry, looked up in ``txn`` if the table does not have it (``cur``: a log
        cursor, or None). LookupError if the queue does not exist. The pointer is valid until
        the next call (the table may grow)."""
        cdef _QueueSeq *found = _queue_seq(self.table, self.mask, queue_id)
        cdef uint64_t floor, after_tail
        if found.used:
            return found
        raw = txn.get(_u32(queue_id), None, dbs.counters)
        if raw is None:
            raise LookupError(queue_id)
        floor = millpond_get_u64(_buf(raw))
        after_tail = (_tail_seq(txn, dbs, queue_id) if cur is None
                      else _tail_seq_at(cur, queue_id)) + 1
        if 2 * (self.used + 1) > self.mask + 1:  # keep it at most half full: short probes
            self._grow()
            found = _queue_seq(self.table, self.mask, queue_id)
        found.queue_id, found.used = queue_id, True
        found.next_seq = floor if floor > after_tail else after_tail
        self.used += 1
        return found

    cdef void _grow(self) except *:
        cdef size_t i, old_size = self.mask + 1
        cdef _QueueSeq *old = self.table
        cdef _QueueSeq *new = <_QueueSeq *>PyMem_Calloc(2 * old_size, sizeof(_QueueSeq))
        cdef _QueueSeq *slot
        if new == NULL:
            raise MemoryError()
        self.table, self.mask = new, 2 * old_size - 1
        for i in range(old_size):
            if old[i].used:
                slot = _queue_seq(new, self.mask, old[i].queue_id)
                slot[0] = old[i]
        PyMem_Free(old)


cdef NextSeqs _next_seqs(txn, dbs):
    """The tables' NextSeqs made valid for ``txn`` (created on first use: the pure-Python core
    keeps none)."""
    cdef NextSeqs seqs = dbs.next_seqs
    if seqs is None:
        seqs = dbs.next_seqs = NextSeqs()
    seqs.begin(txn)
    return seqs


cdef inline void _forget_next_seqs(dbs) except *:
    """Called by the verbs that append or remove a queue without the NextSeqs (see above)."""
    cdef NextSeqs seqs = dbs.next_seqs
    if seqs is not None:
        seqs.forget()
