/* millpond_wake.h: a one-shot flag one thread sleeps on until another sets it.
 *
 * For group commit: a leader wakes the threads whose writes it committed. Unlike a Python
 * lock, both calls run without the GIL, so a leader wakes them after letting the GIL go (none
 * is woken while the leader still holds it; the ones woken together still queue for it), and a
 * thread can wake the leader and fall asleep in one step, the leader finding the GIL free.
 *
 * States: 0 unset, 2 unset with a sleeper, 1 set (final). set() makes a system call only when
 * someone sleeps. Private futexes: the threads of one process.
 *
 * Linux only; elsewhere millpond_wake_supported() is 0 and Python uses a lock instead.
 */
#ifndef MILLPOND_WAKE_H
#define MILLPOND_WAKE_H

#include <stdint.h>

#if defined(__linux__)
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline int millpond_wake_supported(void) { return 1; }

static inline void millpond_wake_set(uint32_t *flag) {
    if (__atomic_exchange_n(flag, 1u, __ATOMIC_ACQ_REL) == 2u)
        syscall(SYS_futex, flag, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Sleep until *flag is set, at most timeout_ns (< 0: no limit). 1: set; 0: timed out.
 * Signals do not end the wait: the interpreter runs their handlers once it returns. */
static inline int millpond_wake_wait(uint32_t *flag, int64_t timeout_ns) {
    struct timespec now, left, *limit = NULL;
    int64_t deadline_ns = 0;
    if (timeout_ns >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        deadline_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec + timeout_ns;
        limit = &left;
    }
    for (;;) {
        uint32_t state = 0u;
        if (!__atomic_compare_exchange_n(flag, &state, 2u, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE) && state == 1u)
            return 1;
        if (limit != NULL) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t rest = deadline_ns - ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
            if (rest <= 0)
                return 0;
            left.tv_sec = (time_t)(rest / 1000000000);
            left.tv_nsec = (long)(rest % 1000000000);
        }
        syscall(SYS_futex, flag, FUTEX_WAIT_PRIVATE, 2u, limit, NULL, 0);
    }
}
#else
static inline int millpond_wake_supported(void) { return 0; }
static inline void millpond_wake_set(uint32_t *flag) { *flag = 1u; }
static inline int millpond_wake_wait(uint32_t *flag, int64_t timeout_ns) {
    (void)timeout_ns;
    return *flag == 1u;
}
#endif

#endif /* MILLPOND_WAKE_H */
