/* millpond_doorbell.h: cross-process wake-ups for long polls, on a shared memory file.
 *
 * A doorbell file holds `slots` u32 counters followed by `slots` u32 waiter counts. A sender
 * bumps its queue's counter after its commit and, only if someone waits on that slot, wakes
 * them with FUTEX_WAKE. A poller reads the counter, looks for messages, and if it found none
 * sleeps in FUTEX_WAIT until the counter moves away from what it read: the kernel compares
 * atomically, so a bump between the read and the sleep is never missed. Shared (not PRIVATE)
 * futexes on a MAP_SHARED file mapping work across processes.
 *
 * Linux only; elsewhere millpond_doorbell_supported() is 0 and Python falls back to polling.
 */
#ifndef MILLPOND_DOORBELL_H
#define MILLPOND_DOORBELL_H

#include <stdint.h>

#if defined(__linux__)
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline int millpond_doorbell_supported(void) { return 1; }

static inline uint32_t millpond_doorbell_load(uint32_t *counter) {
    return __atomic_load_n(counter, __ATOMIC_SEQ_CST);
}

static inline void millpond_doorbell_ring(uint32_t *counter, uint32_t *waiters) {
    __atomic_fetch_add(counter, 1u, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(waiters, __ATOMIC_SEQ_CST) > 0)
        syscall(SYS_futex, counter, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Sleep while *counter == expected, at most timeout_ns. 0: woken or value moved; ETIMEDOUT. */
static inline int millpond_doorbell_wait(uint32_t *counter, uint32_t *waiters, uint32_t expected,
                                         int64_t timeout_ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(timeout_ns / 1000000000);
    ts.tv_nsec = (long)(timeout_ns % 1000000000);
    __atomic_fetch_add(waiters, 1u, __ATOMIC_SEQ_CST);
    long r = syscall(SYS_futex, counter, FUTEX_WAIT, expected, &ts, NULL, 0);
    int err = r == 0 ? 0 : errno;
    __atomic_fetch_sub(waiters, 1u, __ATOMIC_SEQ_CST);
    return err == EAGAIN || err == EINTR ? 0 : err;
}
#else
static inline int millpond_doorbell_supported(void) { return 0; }
static inline uint32_t millpond_doorbell_load(uint32_t *counter) { return *counter; }
static inline void millpond_doorbell_ring(uint32_t *counter, uint32_t *waiters) {
    (void)waiters;
    *counter += 1;
}
static inline int millpond_doorbell_wait(uint32_t *counter, uint32_t *waiters, uint32_t expected,
                                         int64_t timeout_ns) {
    (void)counter; (void)waiters; (void)expected; (void)timeout_ns;
    return -1;
}
#endif

#endif /* MILLPOND_DOORBELL_H */
