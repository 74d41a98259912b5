/* millpond.h: byte layouts of millpond's LMDB keys and values, and CRC32C.
 *
 * Header-only C99: static inline helpers, no Python.h, no allocation. Every multi-byte integer
 * is stored big-endian so that LMDB's memcmp key order is numeric order.
 *
 * The pure-Python twin (src/millpond/_core_py.py) mirrors these layouts with struct formats;
 * a change here must change it too (tests/test_core.py compares the bytes both produce).
 */
#ifndef MILLPOND_H
#define MILLPOND_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- big-endian integers ---------------------------------------------------------------- */

static inline void millpond_put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
}

static inline void millpond_put_u64(unsigned char *p, uint64_t v) {
    millpond_put_u32(p, (uint32_t)(v >> 32));
    millpond_put_u32(p + 4, (uint32_t)v);
}

static inline uint32_t millpond_get_u32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t millpond_get_u64(const unsigned char *p) {
    return ((uint64_t)millpond_get_u32(p) << 32) | (uint64_t)millpond_get_u32(p + 4);
}

/* ---- keys ----------------------------------------------------------------------------------
 * log: queue_id u32 | seq u64                      -> record
 * vis: queue_id u32 | visible_at_ms u64 | seq u64  -> delivery state
 */
#define MILLPOND_LOG_KEY_SIZE 12
#define MILLPOND_VIS_KEY_SIZE 20

static inline void millpond_log_key(unsigned char *k, uint32_t queue_id, uint64_t seq) {
    millpond_put_u32(k, queue_id);
    millpond_put_u64(k + 4, seq);
}

static inline void millpond_vis_key(unsigned char *k, uint32_t queue_id, uint64_t visible_at_ms,
                                    uint64_t seq) {
    millpond_put_u32(k, queue_id);
    millpond_put_u64(k + 4, visible_at_ms);
    millpond_put_u64(k + 12, seq);
}

/* ---- record (the immutable log value) -------------------------------------------------------
 * crc32c u32 | format u32 (MILLPOND_RECORD_FORMAT, | MILLPOND_RECORD_INDEXED) | sent_ms u64 |
 * attrs_len u32 | body_len u32 |
 * message id (env_id u32 | queue_id u32 | seq u64 of its send, or of its redrive) | attrs | body
 * The CRC covers every byte after itself. The id travels with the record when a message moves
 * to a dead-letter queue, so its MessageId stays; a redrive makes a new message (SQS gives it a
 * new MessageId and enqueue time): its record is sealed again with its new seq and the time.
 */
#define MILLPOND_RECORD_HEADER_SIZE 40
#define MILLPOND_RECORD_ID_AT 24
#define MILLPOND_RECORD_FORMAT 1u
/* Flag in the format word: the message got its vis entry when it was stored (a delay, a
 * dead-letter move), so a receive's walk over fresh messages passes it by. */
#define MILLPOND_RECORD_INDEXED 0x100u

/* ---- delivery state (the vis value) ---------------------------------------------------------
 * sent_ms u64 | first_receive_ms u64 | last_receive_ms u64 | receive_count u32 |
 * dead_letter_source_queue_id u32 (0: the message was sent to this queue)
 */
#define MILLPOND_VIS_VALUE_SIZE 32

static inline void millpond_vis_value(unsigned char *v, uint64_t sent_ms, uint64_t first_receive_ms,
                                      uint64_t last_receive_ms, uint32_t receive_count,
                                      uint32_t source_queue_id) {
    millpond_put_u64(v, sent_ms);
    millpond_put_u64(v + 8, first_receive_ms);
    millpond_put_u64(v + 16, last_receive_ms);
    millpond_put_u32(v + 24, receive_count);
    millpond_put_u32(v + 28, source_queue_id);
}

/* ---- per-queue counters (the counters value, key = queue_id u32) ------------------------------
 * floor u64 | gone u64 | fresh u64
 * A send does not touch them: next seq = max(floor, last log seq + 1), stored records =
 * next seq - 1 - gone; fresh = the first seq a receive's walk of fresh messages has not passed.
 */
#define MILLPOND_COUNTERS_SIZE 24

/* ---- CRC32C (Castagnoli, reflected 0x82F63B78) ----------------------------------------------
 * SSE4.2 instruction when the CPU has it, else slice-by-8 tables. millpond_crc32c_init() must run
 * once before the first call (the extension module calls it at import).
 */
static uint32_t millpond_crc32c_table[8][256];
static int millpond_crc32c_hw;

static inline void millpond_crc32c_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        millpond_crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = millpond_crc32c_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = millpond_crc32c_table[0][c & 0xff] ^ (c >> 8);
            millpond_crc32c_table[t][n] = c;
        }
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    millpond_crc32c_hw = __builtin_cpu_supports("sse4.2");
#else
    millpond_crc32c_hw = 0;
#endif
}

static inline uint32_t millpond_crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        uint32_t lo = (uint32_t)w ^ crc, hi = (uint32_t)(w >> 32);
        crc = millpond_crc32c_table[7][lo & 0xff] ^ millpond_crc32c_table[6][(lo >> 8) & 0xff] ^
              millpond_crc32c_table[5][(lo >> 16) & 0xff] ^ millpond_crc32c_table[4][lo >> 24] ^
              millpond_crc32c_table[3][hi & 0xff] ^ millpond_crc32c_table[2][(hi >> 8) & 0xff] ^
              millpond_crc32c_table[1][(hi >> 16) & 0xff] ^ millpond_crc32c_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = millpond_crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static inline uint32_t
millpond_crc32c_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

/* crc32c of p[0..n) continuing from crc (0 to start). */
static inline uint32_t millpond_crc32c(uint32_t crc, const unsigned char *p, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (millpond_crc32c_hw) return millpond_crc32c_sse42(crc, p, n);
#endif
    return millpond_crc32c_sw(crc, p, n);
}

/* Write a record header for attrs/body already placed after it, then its CRC. */
static inline void millpond_record_seal(unsigned char *rec, uint64_t sent_ms, uint32_t env_id,
                                        uint32_t queue_id, uint64_t seq, uint32_t attrs_len,
                                        uint32_t body_len, uint32_t flags) {
    millpond_put_u32(rec + MILLPOND_RECORD_ID_AT, env_id);
    millpond_put_u32(rec + MILLPOND_RECORD_ID_AT + 4, queue_id);
    millpond_put_u64(rec + MILLPOND_RECORD_ID_AT + 8, seq);
    millpond_put_u32(rec + 4, MILLPOND_RECORD_FORMAT | flags);
    millpond_put_u64(rec + 8, sent_ms);
    millpond_put_u32(rec + 16, attrs_len);
    millpond_put_u32(rec + 20, body_len);
    millpond_put_u32(rec, millpond_crc32c(0, rec + 4,
                                          MILLPOND_RECORD_HEADER_SIZE - 4 + attrs_len + body_len));
}

/* 0 when the record's lengths and CRC are consistent with its size n, -1 otherwise. */
static inline int millpond_record_check(const unsigned char *rec, size_t n) {
    if (n < MILLPOND_RECORD_HEADER_SIZE) return -1;
    uint64_t want = (uint64_t)MILLPOND_RECORD_HEADER_SIZE + millpond_get_u32(rec + 16) +
                    millpond_get_u32(rec + 20);
    if (want != n) return -1;
    if ((millpond_get_u32(rec + 4) & ~MILLPOND_RECORD_INDEXED) != MILLPOND_RECORD_FORMAT) return -1;
    return millpond_get_u32(rec) == millpond_crc32c(0, rec + 4, n - 4) ? 0 : -1;
}

/* Set a checked record's flags (of n bytes) and seal it again. */
static inline void millpond_record_reflag(unsigned char *rec, size_t n, uint32_t flags) {
    millpond_put_u32(rec + 4, MILLPOND_RECORD_FORMAT | flags);
    millpond_put_u32(rec, millpond_crc32c(0, rec + 4, n - 4));
}

/* ---- base64url without padding (receipt handles) ------------------------------------------- */

static const char millpond_b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encode n bytes; out needs (4n + 2) / 3 chars. Returns the number written. */
static inline size_t millpond_b64url_encode(const unsigned char *in, size_t n, char *out) {
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = millpond_b64_chars[(v >> 18) & 63];
        out[o++] = millpond_b64_chars[(v >> 12) & 63];
        out[o++] = millpond_b64_chars[(v >> 6) & 63];
        out[o++] = millpond_b64_chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = millpond_b64_chars[(v >> 18) & 63];
        out[o++] = millpond_b64_chars[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = millpond_b64_chars[(v >> 18) & 63];
        out[o++] = millpond_b64_chars[(v >> 12) & 63];
        out[o++] = millpond_b64_chars[(v >> 6) & 63];
    }
    return o;
}

static inline int millpond_b64url_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decode n chars (no padding) into out; -1 on a bad character or length, else bytes written.
 * Unused low bits of the last character must be zero, so each text has one decoding. */
static inline long millpond_b64url_decode(const unsigned char *in, size_t n, unsigned char *out) {
    size_t o = 0, i = 0;
    if (n % 4 == 1) return -1;
    for (; i < n; i += 4) {
        size_t k = n - i < 4 ? n - i : 4;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = j < k ? millpond_b64url_value(in[i + j]) : 0;
            if (d < 0) return -1;
            v = (v << 6) | (uint32_t)d;
        }
        out[o++] = (unsigned char)(v >> 16);
        if (k > 2) out[o++] = (unsigned char)(v >> 8);
        if (k > 3) out[o++] = (unsigned char)v;
        if (k == 2 && (v & 0xFFFF)) return -1;
        if (k == 3 && (v & 0xFF)) return -1;
    }
    return (long)o;
}

#endif /* MILLPOND_H */
