# The verbs. Caller holds the write txn; ``dbs`` has the ``log``, ``vis``, ``counters`` and
# ``moved`` handles. Semantics, statuses and return shapes: see the same functions in _core_py.py.

cdef enum:
    RELOCATED = 0x80000000  # top bit of receive_count: change_visibility re-timed the delivery
    COUNT_MASK = 0x7FFFFFFF

cdef inline uint64_t _key_u64(bytes key, int at):
    return millpond_get_u64(_buf(key) + at)


cdef enum:
    EXPIRY_KEY_SIZE = 21  # in ``moved``: queue_id u32 | EXPIRY_MARK | sent_ms u64 | seq u64
    EXPIRY_MARK = 0xFF

cdef inline bytes _expiry_key(uint32_t queue_id, uint64_t sent_ms, uint64_t seq):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, EXPIRY_KEY_SIZE)
    millpond_put_u32(_buf(out), queue_id)
    _buf(out)[4] = EXPIRY_MARK
    millpond_put_u64(_buf(out) + 5, sent_ms)
    millpond_put_u64(_buf(out) + 13, seq)
    return out


cdef tuple _counters(txn, dbs, uint32_t queue_id):
    """(floor, gone, fresh); LookupError if the queue does not exist."""
    raw = txn.get(_u32(queue_id), None, dbs.counters)
    if raw is None:
        raise LookupError(queue_id)
    return (millpond_get_u64(_buf(raw)), millpond_get_u64(_buf(raw) + 8),
            millpond_get_u64(_buf(raw) + 16))


cdef inline void _store_counters(txn, dbs, uint32_t queue_id, uint64_t floor, uint64_t gone,
                                 uint64_t fresh) except *:
    txn.put(_u32(queue_id), _counters_value(floor, gone, fresh), True, True, False, dbs.counters)


cdef void _forget(txn, dbs, uint32_t queue_id, uint64_t removed, uint64_t top_seq) except *:
    """Count ``removed`` records as gone, the highest of them ``top_seq``: the floor moves past
    it, so that its seq is never handed out again."""
    floor, gone, fresh = _counters(txn, dbs, queue_id)
    if top_seq + 1 > floor:
        floor = top_seq + 1
    _store_counters(txn, dbs, queue_id, floor, gone + removed, fresh)


def create(txn, dbs, uint32_t queue_id):
    _store_counters(txn, dbs, queue_id, 1, 0, 1)


def exists(txn, dbs, uint32_t queue_id):
    return txn.get(_u32(queue_id), None, dbs.counters) is not None


cdef Py_ssize_t _delete_prefix(txn, db, bytes prefix) except -1:
    cdef Py_ssize_t n = 0
    cur = txn.cursor(db)
    try:
        if not cur.set_range(prefix):
            return 0
        while cur.key()[:4] == prefix:
            n += 1
            if not cur.delete():
                break
    finally:
        cur.close()
    return n


def purge(txn, dbs, uint32_t queue_id):
    _forget_next_seqs(dbs)
    cdef uint64_t next_seq = _next_seq(txn, dbs, queue_id, _counters(txn, dbs, queue_id)[0])
    prefix = _u32(queue_id)
    _delete_prefix(txn, dbs.vis, prefix)
    _delete_prefix(txn, dbs.moved, prefix)
    n = _delete_prefix(txn, dbs.log, prefix)
    _store_counters(txn, dbs, queue_id, next_seq, next_seq - 1, next_seq)
    return n


def drop(txn, dbs, uint32_t queue_id):
    _forget_next_seqs(dbs)
    purge(txn, dbs, queue_id)
    txn.delete(_u32(queue_id), b"", dbs.counters)


cdef inline void _store_message(txn, log, vis, uint32_t queue_id, uint64_t seq, uint64_t now_ms,
                                uint32_t env_id, bytes body, bytes attrs, uint64_t delay_ms,
                                bint append) except *:
    # A fresh message is its log record alone; a delayed one also gets its vis entry.
    lkey = _log_key(queue_id, seq)
    if delay_ms:
        txn.put(lkey, _record(now_ms, env_id, queue_id, seq, attrs, body, MILLPOND_RECORD_INDEXED),
                True, True, False, log)
        txn.put(_vis_key(queue_id, now_ms + delay_ms, seq), _vis_value(now_ms, 0, 0, 0, 0),
                True, True, False, vis)
        return
    record = _record(now_ms, env_id, queue_id, seq, attrs, body)
    # Append when this queue holds the highest log keys (the common case: one busy queue): it
    # skips the search and fills pages fully. Otherwise LMDB refuses it and we insert normally.
    if not append or not txn.put(lkey, record, True, True, True, log):
        txn.put(lkey, record, True, True, False, log)


def send(txn, dbs, uint32_t queue_id, uint64_t now_ms, list bodies, list attrs, list delays_ms,
         uint32_t env_id):
    cdef NextSeqs next_seqs = _next_seqs(txn, dbs)
    cdef _QueueSeq *entry = next_seqs.entry(txn, dbs, None, queue_id)
    cdef uint64_t first = entry.next_seq
    cdef Py_ssize_t i, n = len(bodies)
    cdef uint64_t delay
    entry.next_seq += n
    log, vis = dbs.log, dbs.vis
    try:
        if n == 1:
            _store_message(txn, log, vis, queue_id, first, now_ms, env_id, bodies[0], attrs[0],
                           delays_ms[0], True)
            return first
        log_items = []
        for i in range(n):
            delay = delays_ms[i]
            if delay:
                _store_message(txn, log, vis, queue_id, first + i, now_ms, env_id, bodies[i],
                               attrs[i], delay, False)
            else:
                log_items.append((_log_key(queue_id, first + i),
                                  _record(now_ms, env_id, queue_id, first + i, attrs[i],
                                          bodies[i])))
        if log_items:
            # Appending works when this queue holds the highest keys; LMDB refuses every item
            # (added 0) otherwise, and we insert normally.
            cur = txn.cursor(log)
            if cur.putmulti(log_items, True, True, True)[1] != len(log_items):
                cur.putmulti(log_items)
    except BaseException:
        next_seqs.forget()  # the seqs it took may be unused: looked up again (see NextSeqs)
        raise
    return first


def send_each(txn, dbs, uint64_t now_ms, uint32_t env_id, list deliveries):
    return _send_to_each(txn, dbs, now_ms, env_id, deliveries, None)


def send_envelopes(txn, dbs, uint64_t now_ms, uint32_t env_id, list targets, bytes head,
                   bytes tail, bytes attrs):
    return _send_to_each(txn, dbs, now_ms, env_id, targets, (head, tail, attrs))


cdef list _send_to_each(txn, dbs, uint64_t now_ms, uint32_t env_id, list items, tuple shared):
    """send_each (``shared`` None: ``items`` are its deliveries) and send_envelopes (``items``
    are its targets, ``shared`` the (head, tail, attrs) of every envelope)."""
    cdef uint32_t queue_id
    cdef Py_ssize_t index, n = len(items)
    cdef uint64_t delay
    cdef _QueueSeq *entry
    cdef NextSeqs next_seqs = _next_seqs(txn, dbs)
    # Each delivery's seq in C: a list of them cost ~1.2k instructions per delivery.
    cdef uint64_t *seq_of = <uint64_t *>PyMem_Malloc(n * sizeof(uint64_t))
    if seq_of == NULL:
        raise MemoryError()
    log, vis = dbs.log, dbs.vis
    # One log cursor for the tails of queues the cache does not know and then for every fresh
    # record (one putmulti): each py-lmdb call costs more than LMDB's own work.
    cur = txn.cursor(log)
    try:
        for index in range(n):
            queue_id = items[index][0]
            try:
                entry = next_seqs.entry(txn, dbs, cur, queue_id)
            except LookupError:
                raise LookupError(index) from None  # nothing written yet
            seq_of[index] = entry.next_seq
            entry.next_seq += 1
        seqs = []
        fresh = []
        for index in range(n):
            item = items[index]
            queue_id = item[0]
            if shared is None:
                body, attrs, delay = item[1], item[2], item[3]
            else:  # the queue's own part between the shared ones
                body, attrs, delay = (shared[0], item[1], shared[1]), shared[2], item[2]
            if delay:  # delayed: its vis entry too
                if isinstance(body, tuple):
                    body = b"".join(body)
                _store_message(txn, log, vis, queue_id, seq_of[index], now_ms, env_id, body,
                               attrs, delay, False)
            elif isinstance(body, tuple):  # in parts (a fan-out's envelope)
                fresh.append((_log_key(queue_id, seq_of[index]),
                              _record_of_parts(now_ms, env_id, queue_id, seq_of[index], attrs,
                                               body)))
            else:
                fresh.append((_log_key(queue_id, seq_of[index]),
                              _record(now_ms, env_id, queue_id, seq_of[index], attrs, body)))
            seqs.append(seq_of[index])
        if fresh:
            cur.putmulti(fresh)
    except BaseException:
        next_seqs.forget()  # the seqs it took may be unused: looked up again (see NextSeqs)
        raise
    finally:
        cur.close()
        PyMem_Free(seq_of)
    return seqs


cdef class _FreshWalk:
    """A receive's walk over fresh messages: a log cursor from the queue's fresh cursor on.

    Records are read only as the receive asks for them: after the last message it takes, the
    next one is not read (a large body would be copied and checked for nothing).
    """

    cdef object cur
    cdef uint32_t queue_id
    cdef uint64_t cutoff_ms
    cdef bint started, stale  # stale: the head was taken and its successor not read yet
    cdef public uint64_t fresh, top_removed
    cdef public Py_ssize_t expired
    cdef public list corrupt
    cdef public object seq, decoded  # the head: the next deliverable fresh message, or None

    def __init__(self, txn, dbs, uint32_t queue_id, uint64_t fresh, uint64_t cutoff_ms,
                 list corrupt):
        self.cur = txn.cursor(dbs.log)
        self.queue_id, self.fresh, self.cutoff_ms = queue_id, fresh, cutoff_ms
        self.top_removed, self.expired, self.corrupt = 0, 0, corrupt
        self.started = self.stale = False
        self.seq = self.decoded = None

    cdef object head(self):
        """The seq of the next fresh message (its record in ``decoded``), or None."""
        if not self.started:
            self.started = True
            self._advance(self.cur.set_range(_log_key(self.queue_id, self.fresh)))
        elif self.stale:
            self.stale = False
            self._advance(self.cur.next())
        return self.seq

    cdef void _advance(self, bint found) except *:
        """Make the head the next fresh message from the cursor on, passing over (and moving
        the fresh cursor past) INDEXED, corrupt and expired records."""
        cdef uint64_t seq
        cur = self.cur
        self.seq = self.decoded = None
        while found:
            key, record = cur.item()
            if PyBytes_GET_SIZE(key) != MILLPOND_LOG_KEY_SIZE \
                    or millpond_get_u32(_buf(key)) != self.queue_id:
                return  # another queue's, or past the end of the table after a delete
            seq = millpond_get_u64(_buf(key) + 4)
            decoded = _decode_record(record)
            if decoded is not None and not _record_flags(record):
                if <uint64_t>decoded[0] >= self.cutoff_ms:
                    self.seq, self.decoded = seq, decoded
                    return
                self.expired += 1
                if seq > self.top_removed:
                    self.top_removed = seq
                self.fresh = seq + 1
                found = cur.delete()
                continue
            if decoded is None:
                self.corrupt.append(seq)  # never served; the record stays for inspection
            self.fresh = seq + 1  # an INDEXED one is delivered through its vis entry
            found = cur.next()

    cdef void taken(self):
        self.fresh = <uint64_t>self.seq + 1
        self.stale = True

    cdef void close(self):
        self.cur.close()


def receive(txn, dbs, uint32_t queue_id, uint64_t now_ms, Py_ssize_t max_messages,
            uint64_t visibility_ms, uint64_t retention_cutoff_ms, uint32_t max_receive_count,
            bytes secret=None):
    cdef const unsigned char *k
    cdef const unsigned char *v
    cdef uint64_t visible_at = 0, seq = 0, sent_ms, first_ms, floor, gone, walked_from
    cdef uint64_t next_visible_at = 0, top_removed = 0
    cdef uint64_t new_visible_at = now_ms + visibility_ms
    cdef uint32_t count, source
    cdef Py_ssize_t expired = 0
    cdef bint due, found
    cdef _FreshWalk walk
    cdef uint32_t handle_key = 0 if secret is None else _handle_key(secret)
    received = []
    over_limit = []
    corrupt = []
    rekeyed = []  # new vis entries, written after the scan so it cannot meet them again
    log = dbs.log
    floor, gone, walked_from = _counters(txn, dbs, queue_id)
    walk = _FreshWalk(txn, dbs, queue_id, walked_from, retention_cutoff_ms, corrupt)
    cur = txn.cursor(dbs.vis)
    try:
        # Two sources merged in one (visible_at, seq) order: due vis entries (visibility ran
        # out, delay over, dead-lettered) and fresh messages (visible since they were sent).
        found = cur.set_range(_vis_key(queue_id, 0, 0))
        while len(received) < max_messages:
            due = False
            if found:
                key, value = cur.item()
                k = _buf(key)
                if PyBytes_GET_SIZE(key) == MILLPOND_VIS_KEY_SIZE \
                        and millpond_get_u32(k) == queue_id:
                    visible_at = millpond_get_u64(k + 4)
                    seq = millpond_get_u64(k + 12)
                    if visible_at <= now_ms:
                        due = True
                    else:
                        next_visible_at = visible_at
                if not due:
                    found = False  # no more due entries in this receive
            if walk.head() is not None and (
                    not due or (<uint64_t>walk.decoded[0], <uint64_t>walk.seq) < (visible_at, seq)):
                decoded = walk.decoded
                seq = walk.seq
                sent_ms = decoded[0]
                rekeyed.append((_vis_key(queue_id, new_visible_at, seq),
                                _vis_value(sent_ms, now_ms, now_ms, 1, 0)))
                received.append((seq, new_visible_at, 1, sent_ms, now_ms, decoded[2], decoded[3],
                                 decoded[1], 0,
                                 None if secret is None else
                                 _encode_handle(handle_key, queue_id, seq, new_visible_at, 1)))
                walk.taken()
                continue
            if not due:
                break
            v = _buf(value)
            sent_ms = millpond_get_u64(v)
            count = millpond_get_u32(v + 24)
            if max_receive_count and (count & COUNT_MASK) >= max_receive_count \
                    and sent_ms >= retention_cutoff_ms:
                over_limit.append((seq, visible_at))  # left for the dead-letter move
                found = cur.next()
                continue
            # Expired or delivered: the entry goes; the cursor moves to the next one.
            found = cur.delete()
            lkey = _log_key(queue_id, seq)
            if count & RELOCATED:
                txn.delete(lkey, b"", dbs.moved)
            if sent_ms < retention_cutoff_ms:
                if txn.delete(lkey, b"", log):
                    expired += 1
                    if seq > top_removed:
                        top_removed = seq
                continue
            record = txn.get(lkey, None, log)
            if record is None:
                continue  # left behind by expire(); the message is gone
            decoded = _decode_record(record)
            if decoded is None:
                corrupt.append(seq)  # never served; the record stays for inspection
                continue
            count = (count & COUNT_MASK) + 1
            first_ms = millpond_get_u64(v + 8) or now_ms
            source = millpond_get_u32(v + 28)
            rekeyed.append((_vis_key(queue_id, new_visible_at, seq),
                            _vis_value(sent_ms, first_ms, now_ms, count, source)))
            received.append((seq, new_visible_at, count, sent_ms, first_ms, decoded[2],
                             decoded[3], decoded[1], source,
                             None if secret is None else
                             _encode_handle(handle_key, queue_id, seq, new_visible_at, count)))
        if rekeyed:
            cur.putmulti(rekeyed)
    finally:
        cur.close()
        walk.close()
    expired += walk.expired
    if walk.top_removed > top_removed:
        top_removed = walk.top_removed
    if expired or walk.fresh != walked_from:
        if top_removed + 1 > floor:
            floor = top_removed + 1
        _store_counters(txn, dbs, queue_id, floor, gone + expired, walk.fresh)
    return received, over_limit, corrupt, expired, next_visible_at


cdef object _find_delivery(txn, dbs, uint32_t queue_id, uint64_t seq, uint64_t from_visible_at):
    cur = txn.cursor(dbs.vis)
    try:
        for start in (_vis_key(queue_id, from_visible_at, 0), _u32(queue_id)):
            found = cur.set_range(start)
            while found:
                key = cur.key()
                if millpond_get_u32(_buf(key)) != queue_id:
                    break
                if _key_u64(key, 12) == seq:
                    return key
                found = cur.next()
    finally:
        cur.close()
    return None


cdef object _relocated_key(txn, dbs, uint32_t queue_id, uint64_t seq):
    raw = txn.get(_log_key(queue_id, seq), None, dbs.moved)
    return None if raw is None else _vis_key(queue_id, millpond_get_u64(_buf(raw)), seq)


def delete(txn, dbs, uint32_t queue_id, list entries):
    cdef Py_ssize_t removed = 0
    cdef uint64_t top = 0
    cdef int status
    cdef uint64_t seq, visible_at
    cdef uint32_t count
    statuses = []
    vis = dbs.vis
    log = dbs.log
    for seq, visible_at, count in entries:
        lkey = _log_key(queue_id, seq)
        if txn.delete(_vis_key(queue_id, visible_at, seq), b"", vis):
            status = OK  # the fast path: the handle names the delivery's key exactly
        else:
            key = _relocated_key(txn, dbs, queue_id, seq)
            value = None if key is None else txn.get(key, None, vis)
            if value is not None:
                status = OK if (millpond_get_u32(_buf(value) + 24) & COUNT_MASK) == count else STALE
                txn.delete(lkey, b"", dbs.moved)
            elif txn.get(lkey, None, log) is None:
                statuses.append(GONE)
                continue
            else:
                status = STALE
                key = _find_delivery(txn, dbs, queue_id, seq, visible_at)
                txn.delete(lkey, b"", dbs.moved)
            if key is not None:
                txn.delete(key, b"", vis)
        if txn.delete(lkey, b"", log):
            removed += 1
            if seq > top:
                top = seq
        statuses.append(status)
    if removed:
        _forget(txn, dbs, queue_id, removed, top)
    return statuses


def change_visibility(txn, dbs, uint32_t queue_id, uint64_t now_ms, list entries,
                      uint64_t max_hidden_ms):
    cdef uint64_t seq, visible_at, visibility_ms, new_visible_at
    cdef uint32_t count, raw_count
    cdef const unsigned char *v
    statuses = []
    vis = dbs.vis
    for seq, visible_at, count, visibility_ms in entries:
        key = _vis_key(queue_id, visible_at, seq)
        value = txn.get(key, None, vis)
        if value is None:
            key = _relocated_key(txn, dbs, queue_id, seq)
            value = None if key is None else txn.get(key, None, vis)
        if value is None and txn.get(_log_key(queue_id, seq), None, dbs.log) is not None:
            key = _find_delivery(txn, dbs, queue_id, seq, visible_at)  # a newer receive's
            value = None if key is None else txn.get(key, None, vis)
        if value is None:
            statuses.append(GONE)
            continue
        v = _buf(value)
        if _key_u64(key, 4) <= now_ms:
            statuses.append(NOT_IN_FLIGHT)
        elif now_ms + visibility_ms > millpond_get_u64(v + 16) + max_hidden_ms:
            # no subtraction: once the wall clock stepped back, now is before the receive, and
            # now - receive would wrap around in unsigned arithmetic
            statuses.append(TOO_LONG)
        else:
            new_visible_at = now_ms + visibility_ms
            raw_count = millpond_get_u32(v + 24)
            txn.delete(key, b"", vis)
            txn.put(_vis_key(queue_id, new_visible_at, seq),
                    _vis_value(millpond_get_u64(v), millpond_get_u64(v + 8),
                               millpond_get_u64(v + 16), raw_count | RELOCATED,
                               millpond_get_u32(v + 28)),
                    True, True, False, vis)
            moved_at = PyBytes_FromStringAndSize(NULL, 8)
            millpond_put_u64(_buf(moved_at), new_visible_at)
            txn.put(_log_key(queue_id, seq), moved_at, True, True, False, dbs.moved)
            statuses.append(OK if (raw_count & COUNT_MASK) == count else STALE)
    return statuses


def expire(txn, dbs, uint32_t queue_id, uint64_t retention_cutoff_ms):
    cdef Py_ssize_t removed = 0
    cdef uint64_t top = 0, seq
    cdef const unsigned char *k
    prefix = _u32(queue_id)
    cur = txn.cursor(dbs.log)
    try:
        if cur.set_range(prefix):
            while cur.key()[:4] == prefix:
                if millpond_get_u64(_buf(cur.value()) + 8) >= retention_cutoff_ms:
                    break
                removed += 1
                top = _key_u64(cur.key(), 4)
                if not cur.delete():
                    break
    finally:
        cur.close()
    # Dead-lettered records past retention behind younger ones: through the expiry index.
    cur = txn.cursor(dbs.moved)
    try:
        found = cur.set_range(_expiry_key(queue_id, 0, 0))
        while found:
            key = cur.key()
            k = _buf(key)
            if PyBytes_GET_SIZE(key) != EXPIRY_KEY_SIZE or millpond_get_u32(k) != queue_id \
                    or k[4] != EXPIRY_MARK or millpond_get_u64(k + 5) >= retention_cutoff_ms:
                break
            seq = millpond_get_u64(k + 13)
            lkey = _log_key(queue_id, seq)
            record = txn.get(lkey, None, dbs.log)  # None: deleted or expired already
            if record is not None and PyBytes_GET_SIZE(record) >= MILLPOND_RECORD_HEADER_SIZE \
                    and millpond_get_u64(_buf(record) + 8) < retention_cutoff_ms:
                txn.delete(lkey, b"", dbs.log)
                removed += 1
                if seq > top:
                    top = seq
            found = cur.delete()
    finally:
        cur.close()
    if removed:
        _forget(txn, dbs, queue_id, removed, top)
    return removed


def counts(txn, dbs, uint32_t queue_id, uint64_t now_ms, uint64_t retention_cutoff_ms):
    cdef Py_ssize_t in_flight = 0, delayed = 0
    cdef const unsigned char *v
    floor, gone, _ = _counters(txn, dbs, queue_id)
    stored = _next_seq(txn, dbs, queue_id, floor) - 1 - gone
    cur = txn.cursor(dbs.vis)
    try:
        found = cur.set_range(_vis_key(queue_id, now_ms + 1, 0))
        while found:
            if millpond_get_u32(_buf(cur.key())) != queue_id:
                break
            value = cur.value()
            v = _buf(value)
            if millpond_get_u64(v) >= retention_cutoff_ms:
                if millpond_get_u32(v + 24) & COUNT_MASK:
                    in_flight += 1
                else:
                    delayed += 1
            found = cur.next()
    finally:
        cur.close()
    return stored, in_flight, delayed


def oldest_ms(txn, dbs, uint32_t queue_id):
    cdef uint64_t sent_ms
    prefix = _u32(queue_id)
    cur = txn.cursor(dbs.log)
    try:
        if not cur.set_range(prefix) or cur.key()[:4] != prefix:
            return None
        key, record = cur.item()
    finally:
        cur.close()
    if PyBytes_GET_SIZE(record) < MILLPOND_RECORD_HEADER_SIZE:
        return None  # corrupt: no sent time to trust (a receive reports it)
    sent_ms = millpond_get_u64(_buf(record) + 8)
    if _record_flags(record):  # delayed or dead-lettered: only these can have moved
        moved_at = txn.get(_expiry_key(queue_id, sent_ms, _key_u64(key, 4)), None, dbs.moved)
        if moved_at is not None and PyBytes_GET_SIZE(moved_at) == 8:
            return millpond_get_u64(_buf(moved_at))
    return sent_ms


def move(txn, dbs, uint32_t queue_id, uint64_t now_ms, list entries, uint32_t to_queue_id,
         bint keep_state):
    cdef uint64_t seq, visible_at, seq_to, top = 0
    _forget_next_seqs(dbs)  # it appends to to_queue_id without them
    cdef uint32_t count
    cdef Py_ssize_t removed = 0
    cdef const unsigned char *v
    cdef uint64_t fresh_from = _counters(txn, dbs, queue_id)[2]
    seq_to = _next_seq(txn, dbs, to_queue_id, _counters(txn, dbs, to_queue_id)[0])
    vis = dbs.vis
    log = dbs.log
    for seq, visible_at in entries:
        lkey = _log_key(queue_id, seq)
        record = txn.get(lkey, None, log)
        if record is None:
            continue
        key = value = None
        if visible_at != FRESH:
            key = _vis_key(queue_id, visible_at, seq)
            value = txn.get(key, None, vis)
            if value is None:
                continue
        elif seq < fresh_from or PyBytes_GET_SIZE(record) < MILLPOND_RECORD_HEADER_SIZE \
                or _record_flags(record):
            continue  # not fresh (any more): it has a vis entry, to be moved by that
        if key is not None:
            txn.delete(key, b"", vis)
        txn.delete(lkey, b"", log)
        removed += 1
        if seq > top:
            top = seq
        to_key = _log_key(to_queue_id, seq_to)
        if keep_state:
            if value is None:
                value = _vis_value(millpond_get_u64(_buf(record) + 8), 0, 0, 0, 0)
            v = _buf(value)
            count = millpond_get_u32(v + 24)
            if count & RELOCATED:
                txn.delete(lkey, b"", dbs.moved)
            txn.put(to_key, _reflag(record, MILLPOND_RECORD_INDEXED), True, True, False, log)
            txn.put(_vis_key(to_queue_id, now_ms, seq_to),
                    _vis_value(millpond_get_u64(v), millpond_get_u64(v + 8),
                               millpond_get_u64(v + 16), count & COUNT_MASK, queue_id),
                    True, True, False, vis)
            # it keeps its sent time, likely older than its new neighbours': for expire(); and
            # the time of the move, from which its age counts there: for oldest_ms()
            moved_at = PyBytes_FromStringAndSize(NULL, 8)
            millpond_put_u64(_buf(moved_at), now_ms)
            txn.put(_expiry_key(to_queue_id, millpond_get_u64(v), seq_to), moved_at, True, True,
                    False, dbs.moved)
        else:
            if value is not None and millpond_get_u32(_buf(value) + 24) & RELOCATED:
                txn.delete(lkey, b"", dbs.moved)
            # a redrive: a new message id and sent time, a fresh message (no vis entry)
            txn.put(to_key, _renew(record, now_ms, to_queue_id, seq_to), True, True, False, log)
        seq_to += 1
    if removed:
        _forget(txn, dbs, queue_id, removed, top)
    return removed


def peek(txn, dbs, uint32_t queue_id, uint64_t now_ms, Py_ssize_t limit, bint dead_lettered_only,
         uint64_t retention_cutoff_ms=0):
    cdef const unsigned char *k
    cdef const unsigned char *v
    cdef uint32_t source
    out = []
    cur = txn.cursor(dbs.vis)
    try:
        found = cur.set_range(_vis_key(queue_id, 0, 0))
        while found and len(out) < limit:
            key = cur.key()
            k = _buf(key)
            if millpond_get_u32(k) != queue_id or millpond_get_u64(k + 4) > now_ms:
                break
            value = cur.value()
            v = _buf(value)
            source = millpond_get_u32(v + 28)
            if millpond_get_u64(v) >= retention_cutoff_ms \
                    and (source or not dead_lettered_only):  # sent_ms: past retention, never
                out.append((millpond_get_u64(k + 12), millpond_get_u64(k + 4), source))
            found = cur.next()
    finally:
        cur.close()
    if dead_lettered_only or len(out) >= limit:
        return out
    cur = txn.cursor(dbs.log)
    try:
        found = cur.set_range(_log_key(queue_id, _counters(txn, dbs, queue_id)[2]))
        while found and len(out) < limit:
            key, record = cur.item()
            if millpond_get_u32(_buf(key)) != queue_id:
                break
            if PyBytes_GET_SIZE(record) >= MILLPOND_RECORD_HEADER_SIZE \
                    and not _record_flags(record) \
                    and millpond_get_u64(_buf(record) + 8) >= retention_cutoff_ms:
                out.append((_key_u64(key, 4), FRESH, 0))
            found = cur.next()
    finally:
        cur.close()
    return out
