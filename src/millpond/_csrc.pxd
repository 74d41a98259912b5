# The only file that names csrc/ headers: C declarations for the Cython core, nothing else.
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "millpond.h" nogil:
    enum:
        MILLPOND_LOG_KEY_SIZE
        MILLPOND_VIS_KEY_SIZE
        MILLPOND_RECORD_HEADER_SIZE
        MILLPOND_RECORD_ID_AT
        MILLPOND_VIS_VALUE_SIZE
        MILLPOND_COUNTERS_SIZE
        MILLPOND_RECORD_INDEXED

    void millpond_put_u32(unsigned char *p, uint32_t v)
    void millpond_put_u64(unsigned char *p, uint64_t v)
    uint32_t millpond_get_u32(const unsigned char *p)
    uint64_t millpond_get_u64(const unsigned char *p)
    void millpond_log_key(unsigned char *k, uint32_t queue_id, uint64_t seq)
    void millpond_vis_key(unsigned char *k, uint32_t queue_id, uint64_t visible_at_ms, uint64_t seq)
    void millpond_vis_value(unsigned char *v, uint64_t sent_ms, uint64_t first_receive_ms,
                            uint64_t last_receive_ms, uint32_t receive_count,
                            uint32_t source_queue_id)
    void millpond_crc32c_init()
    uint32_t millpond_crc32c(uint32_t crc, const unsigned char *p, size_t n)
    void millpond_record_seal(unsigned char *rec, uint64_t sent_ms, uint32_t env_id,
                              uint32_t queue_id, uint64_t seq, uint32_t attrs_len,
                              uint32_t body_len, uint32_t flags)
    int millpond_record_check(const unsigned char *rec, size_t n)
    void millpond_record_reflag(unsigned char *rec, size_t n, uint32_t flags)
    size_t millpond_b64url_encode(const unsigned char *data, size_t n, char *out)
    long millpond_b64url_decode(const unsigned char *data, size_t n, unsigned char *out)


cdef extern from "millpond_doorbell.h" nogil:
    int millpond_doorbell_supported()
    uint32_t millpond_doorbell_load(uint32_t *counter)
    void millpond_doorbell_ring(uint32_t *counter, uint32_t *waiters)
    int millpond_doorbell_wait(uint32_t *counter, uint32_t *waiters, uint32_t expected,
                               int64_t timeout_ns)


cdef extern from "millpond_wake.h" nogil:
    int millpond_wake_supported()
    void millpond_wake_set(uint32_t *flag)
    int millpond_wake_wait(uint32_t *flag, int64_t timeout_ns)
