# The verbs. Caller holds the write txn; ``dbs`` has the ``log``, ``vis``, ``qstate`` and
# ``moved`` handles. Semantics, statuses and return shapes: see the same functions in _core_py.py.

cdef enum:
    RELOCATED = 0x80000000  # top bit of receive_count: change_visibility re-timed the delivery
    COUNT_MASK = 0x7FFFFFFF

cdef inline uint64_t _key_u64(bytes key, int at):
    return millpond_get_u64(_buf(key) + at)


cdef tuple _load_qstate(txn, dbs, uint32_t queue_id):
    raw = txn.get(_u32(queue_id), None, dbs.qstate)
    if raw is None:
        raise LookupError(queue_id)
    return millpond_get_u64(_buf(raw)), millpond_get_u64(_buf(raw) + 8)


cdef void _add_count(txn, dbs, uint32_t queue_id, long long delta) except *:
    next_seq, count = _load_qstate(txn, dbs, queue_id)
    txn.put(_u32(queue_id), _qstate(next_seq, <uint64_t>(count + delta)), True, True, False,
            dbs.qstate)


def create(txn, dbs, uint32_t queue_id):
    txn.put(_u32(queue_id), _qstate(1, 0), True, True, False, dbs.qstate)


def exists(txn, dbs, uint32_t queue_id):
    return txn.get(_u32(queue_id), None, dbs.qstate) is not None


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
    next_seq, _ = _load_qstate(txn, dbs, queue_id)
    prefix = _u32(queue_id)
    _delete_prefix(txn, dbs.vis, prefix)
    _delete_prefix(txn, dbs.moved, prefix)
    n = _delete_prefix(txn, dbs.log, prefix)
    txn.put(prefix, _qstate(next_seq, 0), True, True, False, dbs.qstate)
    return n


def drop(txn, dbs, uint32_t queue_id):
    purge(txn, dbs, queue_id)
    txn.delete(_u32(queue_id), b"", dbs.qstate)


def send(txn, dbs, uint32_t queue_id, uint64_t now_ms, list bodies, list attrs, list delays_ms,
         uint32_t env_id):
    cdef uint64_t next_seq, count, seq
    cdef Py_ssize_t i, n = len(bodies)
    next_seq, count = _load_qstate(txn, dbs, queue_id)
    vis_value = _vis_value(now_ms, 0, 0, 0, 0)
    seq = next_seq
    if n == 1:
        lkey = _log_key(queue_id, seq)
        record = _record(now_ms, env_id, queue_id, seq, attrs[0], bodies[0])
        # Append when this queue holds the highest log keys (see below); else a normal insert.
        if not txn.put(lkey, record, True, True, True, dbs.log):
            txn.put(lkey, record, True, True, False, dbs.log)
        txn.put(_vis_key(queue_id, now_ms + <uint64_t>delays_ms[0], seq), vis_value, True, True,
                False, dbs.vis)
    else:
        log_items = [None] * n
        vis_items = [None] * n
        for i in range(n):
            log_items[i] = (_log_key(queue_id, seq + i),
                            _record(now_ms, env_id, queue_id, seq + i, attrs[i], bodies[i]))
            vis_items[i] = (_vis_key(queue_id, now_ms + <uint64_t>delays_ms[i], seq + i), vis_value)
        # The log keys grow, so appending works when this queue holds the highest keys (the
        # common case: one busy queue); it fills pages fully and skips the search. Otherwise
        # LMDB refuses every item (added 0) and we insert normally.
        log = txn.cursor(dbs.log)
        if log.putmulti(log_items, True, True, True)[1] != n:
            log.putmulti(log_items)
        txn.cursor(dbs.vis).putmulti(vis_items)
    txn.put(_u32(queue_id), _qstate(next_seq + n, count + n), True, True, False, dbs.qstate)
    return next_seq


def send_each(txn, dbs, uint64_t now_ms, uint32_t env_id, list deliveries):
    cdef uint64_t seq
    cdef uint32_t queue_id
    cdef Py_ssize_t index
    states = {}
    for index in range(len(deliveries)):
        queue_id = deliveries[index][0]
        if queue_id not in states:
            raw = txn.get(_u32(queue_id), None, dbs.qstate)
            if raw is None:
                raise LookupError(index)  # nothing written yet
            states[queue_id] = [millpond_get_u64(_buf(raw)), millpond_get_u64(_buf(raw) + 8)]
    vis_value = _vis_value(now_ms, 0, 0, 0, 0)
    log, vis = dbs.log, dbs.vis
    seqs = []
    for delivery in deliveries:
        queue_id = delivery[0]
        state = states[queue_id]
        seq = state[0]
        state[0] = seq + 1
        state[1] += 1
        txn.put(_log_key(queue_id, seq), _record(now_ms, env_id, queue_id, seq, delivery[2],
                                                 delivery[1]), True, True, False, log)
        txn.put(_vis_key(queue_id, now_ms + <uint64_t>delivery[3], seq), vis_value, True, True,
                False, vis)
        seqs.append(seq)
    for queue_id, state in states.items():
        txn.put(_u32(queue_id), _qstate(state[0], state[1]), True, True, False, dbs.qstate)
    return seqs


def receive(txn, dbs, uint32_t queue_id, uint64_t now_ms, Py_ssize_t max_messages,
            uint64_t visibility_ms, uint64_t retention_cutoff_ms, uint32_t max_receive_count,
            bytes secret=None):
    cdef const unsigned char *k
    cdef const unsigned char *v
    cdef uint64_t visible_at, seq, sent_ms, first_ms
    cdef uint64_t next_visible_at = 0
    cdef uint64_t new_visible_at = now_ms + visibility_ms
    cdef uint32_t count, source
    cdef Py_ssize_t expired = 0
    cdef uint32_t handle_key = 0 if secret is None else _handle_key(secret)
    received = []
    over_limit = []
    corrupt = []
    rekeyed = []  # new vis entries, written after the scan so it cannot meet them again
    log = dbs.log
    cur = txn.cursor(dbs.vis)
    try:
        found = cur.set_range(_vis_key(queue_id, 0, 0))
        while found:
            key, value = cur.item()
            if PyBytes_GET_SIZE(key) != MILLPOND_VIS_KEY_SIZE:
                break  # past the last entry after a delete
            k = _buf(key)
            if millpond_get_u32(k) != queue_id:
                break
            visible_at = millpond_get_u64(k + 4)
            if visible_at > now_ms:
                next_visible_at = visible_at
                break
            seq = millpond_get_u64(k + 12)
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
            if len(received) >= max_messages:
                break
        if rekeyed:
            cur.putmulti(rekeyed)
    finally:
        cur.close()
    if expired:
        _add_count(txn, dbs, queue_id, -expired)
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
        statuses.append(status)
    if removed:
        _add_count(txn, dbs, queue_id, -removed)
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
        if value is None or (millpond_get_u32(_buf(value) + 24) & COUNT_MASK) != count:
            gone = txn.get(_log_key(queue_id, seq), None, dbs.log) is None
            statuses.append(GONE if gone else STALE)
            continue
        v = _buf(value)
        if _key_u64(key, 4) <= now_ms:
            statuses.append(NOT_IN_FLIGHT)
        elif now_ms + visibility_ms - millpond_get_u64(v + 16) > max_hidden_ms:
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
            statuses.append(OK)
    return statuses


def expire(txn, dbs, uint32_t queue_id, uint64_t retention_cutoff_ms):
    cdef Py_ssize_t removed = 0
    prefix = _u32(queue_id)
    cur = txn.cursor(dbs.log)
    try:
        if cur.set_range(prefix):
            while cur.key()[:4] == prefix:
                if millpond_get_u64(_buf(cur.value()) + 8) >= retention_cutoff_ms:
                    break
                removed += 1
                if not cur.delete():
                    break
    finally:
        cur.close()
    if removed:
        _add_count(txn, dbs, queue_id, -removed)
    return removed


def counts(txn, dbs, uint32_t queue_id, uint64_t now_ms, uint64_t retention_cutoff_ms):
    cdef Py_ssize_t in_flight = 0, delayed = 0
    cdef const unsigned char *v
    _, stored = _load_qstate(txn, dbs, queue_id)
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


def move(txn, dbs, uint32_t queue_id, uint64_t now_ms, list entries, uint32_t to_queue_id,
         bint keep_state):
    cdef uint64_t seq, visible_at, seq_to, to_next, to_count
    cdef Py_ssize_t removed = 0
    cdef const unsigned char *v
    to_next, to_count = _load_qstate(txn, dbs, to_queue_id)
    seq_to = to_next
    vis = dbs.vis
    log = dbs.log
    for seq, visible_at in entries:
        key = _vis_key(queue_id, visible_at, seq)
        value = txn.get(key, None, vis)
        lkey = _log_key(queue_id, seq)
        record = txn.get(lkey, None, log)
        if value is None or record is None:
            continue
        txn.delete(key, b"", vis)
        txn.delete(lkey, b"", log)
        removed += 1
        v = _buf(value)
        if millpond_get_u32(v + 24) & RELOCATED:
            txn.delete(lkey, b"", dbs.moved)
        if keep_state:
            value = _vis_value(millpond_get_u64(v), millpond_get_u64(v + 8),
                               millpond_get_u64(v + 16), millpond_get_u32(v + 24) & COUNT_MASK,
                               queue_id)
        else:
            value = _vis_value(millpond_get_u64(v), 0, 0, 0, 0)
        txn.put(_log_key(to_queue_id, seq_to), record, True, True, False, log)
        txn.put(_vis_key(to_queue_id, now_ms, seq_to), value, True, True, False, vis)
        seq_to += 1
    if removed:
        _add_count(txn, dbs, queue_id, -removed)
        txn.put(_u32(to_queue_id), _qstate(seq_to, to_count + removed), True, True, False,
                dbs.qstate)
    return removed


def peek(txn, dbs, uint32_t queue_id, uint64_t now_ms, Py_ssize_t limit, bint dead_lettered_only):
    cdef const unsigned char *k
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
            source = millpond_get_u32(_buf(cur.value()) + 28)
            if source or not dead_lettered_only:
                out.append((millpond_get_u64(k + 12), millpond_get_u64(k + 4), source))
            found = cur.next()
    finally:
        cur.close()
    return out
