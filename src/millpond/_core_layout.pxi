# Byte layouts: keys, records, delivery states, receipt handles, message ids.
# Every function returns new bytes objects: nothing here keeps a pointer into LMDB memory.

cdef inline unsigned char* _buf(bytes b):
    return <unsigned char*>PyBytes_AS_STRING(b)


cdef inline bytes _u32(uint32_t v):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 4)
    millpond_put_u32(_buf(out), v)
    return out


cdef inline bytes _log_key(uint32_t queue_id, uint64_t seq):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, MILLPOND_LOG_KEY_SIZE)
    millpond_log_key(_buf(out), queue_id, seq)
    return out


cdef inline bytes _vis_key(uint32_t queue_id, uint64_t visible_at_ms, uint64_t seq):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, MILLPOND_VIS_KEY_SIZE)
    millpond_vis_key(_buf(out), queue_id, visible_at_ms, seq)
    return out


cdef inline bytes _vis_value(uint64_t sent_ms, uint64_t first_ms, uint64_t last_ms, uint32_t count,
                             uint32_t source):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, MILLPOND_VIS_VALUE_SIZE)
    millpond_vis_value(_buf(out), sent_ms, first_ms, last_ms, count, source)
    return out


cdef inline bytes _counters_value(uint64_t floor, uint64_t gone, uint64_t fresh):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, MILLPOND_COUNTERS_SIZE)
    millpond_put_u64(_buf(out), floor)
    millpond_put_u64(_buf(out) + 8, gone)
    millpond_put_u64(_buf(out) + 16, fresh)
    return out


cdef bytes _record(uint64_t sent_ms, uint32_t env_id, uint32_t queue_id, uint64_t seq,
                   bytes attrs, bytes body, uint32_t flags=0):
    cdef Py_ssize_t la = PyBytes_GET_SIZE(attrs), lb = PyBytes_GET_SIZE(body)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, MILLPOND_RECORD_HEADER_SIZE + la + lb)
    cdef unsigned char *p = _buf(out)
    memcpy(p + MILLPOND_RECORD_HEADER_SIZE, PyBytes_AS_STRING(attrs), la)
    memcpy(p + MILLPOND_RECORD_HEADER_SIZE + la, PyBytes_AS_STRING(body), lb)
    millpond_record_seal(p, sent_ms, env_id, queue_id, seq, <uint32_t>la, <uint32_t>lb, flags)
    return out


cdef bytes _record_of_parts(uint64_t sent_ms, uint32_t env_id, uint32_t queue_id, uint64_t seq,
                            bytes attrs, tuple parts):
    # _record (a fresh message's) of the body made of ``parts`` (bytes), stored one after the
    # other: a fan-out's envelopes share all but one part, and joining the parts first would
    # copy each body once more. (Not _record's way for one body: a tuple of it costs a send.)
    cdef Py_ssize_t la = PyBytes_GET_SIZE(attrs), lb = 0
    for part in parts:
        lb += PyBytes_GET_SIZE(<bytes?>part)  # (a checked cast: TypeError if not bytes)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, MILLPOND_RECORD_HEADER_SIZE + la + lb)
    cdef unsigned char *p = _buf(out) + MILLPOND_RECORD_HEADER_SIZE
    memcpy(p, PyBytes_AS_STRING(attrs), la)
    p += la
    for part in parts:
        memcpy(p, PyBytes_AS_STRING(part), PyBytes_GET_SIZE(part))
        p += PyBytes_GET_SIZE(part)
    millpond_record_seal(_buf(out), sent_ms, env_id, queue_id, seq, <uint32_t>la, <uint32_t>lb, 0)
    return out


cdef inline uint32_t _record_flags(bytes record):
    return millpond_get_u32(_buf(record) + 4) & MILLPOND_RECORD_INDEXED


cdef bytes _reflag(bytes record, uint32_t flags):
    # A record that fails its check stays as it is: sealing it again would hide the corruption.
    cdef Py_ssize_t n = PyBytes_GET_SIZE(record)
    if millpond_record_check(_buf(record), n) != 0 or _record_flags(record) == flags:
        return record
    cdef bytes out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(record), n)
    millpond_record_reflag(_buf(out), n, flags)
    return out


cdef bytes _renew(bytes record, uint64_t sent_ms, uint32_t queue_id, uint64_t seq):
    # A redriven message's record (see renew_record); a corrupt one stays as it is.
    cdef Py_ssize_t n = PyBytes_GET_SIZE(record)
    if millpond_record_check(_buf(record), n) != 0:
        return record
    cdef bytes out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(record), n)
    cdef unsigned char *p = _buf(out)
    millpond_record_seal(p, sent_ms, millpond_get_u32(p + MILLPOND_RECORD_ID_AT), queue_id, seq,
                         millpond_get_u32(p + 16), millpond_get_u32(p + 20), 0)
    return out


cdef str _message_id(uint32_t env_id, uint32_t queue_id, uint64_t seq):
    # 8-4-4-4-12 hex digits of env_id | queue_id | seq, formatted without Python's % machinery.
    cdef char out[36]
    cdef unsigned char raw[16]
    cdef const char *hexdigits = "0123456789abcdef"
    cdef int i, j = 0
    millpond_put_u32(raw, env_id)
    millpond_put_u32(raw + 4, queue_id)
    millpond_put_u64(raw + 8, seq)
    for i in range(16):
        if i == 4 or i == 6 or i == 8 or i == 10:
            out[j] = 45  # '-'
            j += 1
        out[j] = hexdigits[raw[i] >> 4]
        out[j + 1] = hexdigits[raw[i] & 15]
        j += 2
    return out[:36].decode("ascii")


cdef tuple _decode_record(bytes record):
    cdef const unsigned char *p = _buf(record)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(record)
    if millpond_record_check(p, n) != 0:
        return None
    cdef uint32_t la = millpond_get_u32(p + 16)
    cdef Py_ssize_t body_at = MILLPOND_RECORD_HEADER_SIZE + la
    cdef const unsigned char *mid = p + MILLPOND_RECORD_ID_AT
    # attrs and body copied straight from the record's buffer: a bytes slice goes through
    # Python's generic slicing (a slice object each), several times the cost of the copy.
    return (
        millpond_get_u64(p + 8),
        _message_id(millpond_get_u32(mid), millpond_get_u32(mid + 4), millpond_get_u64(mid + 8)),
        PyBytes_FromStringAndSize(<const char *>p + MILLPOND_RECORD_HEADER_SIZE, la),
        PyBytes_FromStringAndSize(<const char *>p + body_at, n - body_at),
    )


def crc32c(const unsigned char[:] data, uint32_t crc=0):
    """CRC32C (Castagnoli) of ``data``, continuing from ``crc``."""
    if data.shape[0] == 0:
        return crc
    return millpond_crc32c(crc, &data[0], data.shape[0])


def log_key(uint32_t queue_id, uint64_t seq):
    return _log_key(queue_id, seq)


def vis_key(uint32_t queue_id, uint64_t visible_at_ms, uint64_t seq):
    return _vis_key(queue_id, visible_at_ms, seq)


def encode_record(uint64_t sent_ms, uint32_t env_id, uint32_t queue_id, uint64_t seq,
                  bytes attrs, bytes body, uint32_t flags=0):
    """The immutable log value for one message, sealed with its CRC."""
    return _record(sent_ms, env_id, queue_id, seq, attrs, body, flags)


def record_flags(bytes record):
    """The flags of a record (INDEXED or 0); meaningful once decode_record() accepted it."""
    return _record_flags(record)


def reflag_record(bytes record, uint32_t flags):
    """The same record with ``flags`` instead of its own, sealed again (a move between queues)."""
    return _reflag(record, flags)


def renew_record(bytes record, uint64_t sent_ms, uint32_t queue_id, uint64_t seq):
    """The record of a redriven message: sent at ``sent_ms``, the id of ``seq`` in queue
    ``queue_id``, unflagged; a record that fails its check is returned unchanged."""
    return _renew(record, sent_ms, queue_id, seq)


def decode_record(bytes record):
    """(sent_ms, message_id, attrs, body) of a record, or None when its lengths or CRC fail."""
    return _decode_record(record)


cdef str _encode_handle(uint32_t key, uint32_t queue_id, uint64_t seq, uint64_t visible_at_ms,
                        uint32_t count):
    cdef unsigned char raw[28]
    cdef char text[38]
    millpond_put_u32(raw, queue_id)
    millpond_put_u64(raw + 4, seq)
    millpond_put_u64(raw + 12, visible_at_ms)
    millpond_put_u32(raw + 20, count)
    millpond_put_u32(raw + 24, millpond_crc32c(key, raw, 24))
    millpond_b64url_encode(raw, 28, text)
    return text[:38].decode("ascii")


cdef inline uint32_t _handle_key(bytes secret):
    return millpond_crc32c(0, _buf(secret), PyBytes_GET_SIZE(secret))


def encode_handle(bytes secret, uint32_t queue_id, uint64_t seq, uint64_t visible_at_ms,
                  uint32_t count):
    """Receipt handle: where the delivery sits in ``vis``, checked by a CRC keyed by ``secret``."""
    return _encode_handle(_handle_key(secret), queue_id, seq, visible_at_ms, count)


cdef bint _handle_fields(uint32_t key, handle, unsigned char *raw):
    """Decode ``handle`` into ``raw`` (28 bytes, 30 of room); False if it is not ours."""
    cdef Py_ssize_t n
    cdef const char *text
    # A handle is 38 ASCII characters; checking that first also keeps strings that have no
    # UTF-8 form (lone surrogates) away from PyUnicode_AsUTF8AndSize, which would raise.
    # PyUnicode_IS_ASCII reads the string's flag, where str.isascii() was a method call.
    if not isinstance(handle, str) or len(<str>handle) != 38 or not PyUnicode_IS_ASCII(handle):
        return False
    text = PyUnicode_AsUTF8AndSize(handle, &n)  # the string's own UTF-8: no copy for ASCII
    return n == 38 and millpond_b64url_decode(<const unsigned char *>text, 38, raw) == 28 \
        and millpond_get_u32(raw + 24) == millpond_crc32c(key, raw, 24)


cdef object _decode_handle(uint32_t key, handle):
    cdef unsigned char raw[30]
    if not _handle_fields(key, handle, raw):
        return None
    return (millpond_get_u32(raw), millpond_get_u64(raw + 4), millpond_get_u64(raw + 12),
            millpond_get_u32(raw + 20))


def decode_handle(bytes secret, handle):
    """(queue_id, seq, visible_at_ms, receive_count) of a handle, or None if it is not ours."""
    return _decode_handle(_handle_key(secret), handle)


def decode_handles(bytes secret, uint32_t queue_id, list handles):
    """(seq, visible_at_ms, receive_count) of each handle of queue ``queue_id``; None for a
    handle that is not ours or names another queue. One call for a batch."""
    cdef uint32_t key = _handle_key(secret)
    cdef unsigned char raw[30]
    out = []
    for handle in handles:
        if _handle_fields(key, handle, raw) and millpond_get_u32(raw) == queue_id:
            out.append((millpond_get_u64(raw + 4), millpond_get_u64(raw + 12),
                        millpond_get_u32(raw + 20)))
        else:
            out.append(None)
    return out


def message_id(uint32_t env_id, uint32_t queue_id, uint64_t seq):
    """A UUID-shaped id, unique per data directory (``env_id``), queue incarnation and seq."""
    return _message_id(env_id, queue_id, seq)
