/* slow_fsync.c: make fdatasync() slower, to measure millpond as on a slower disk.
 *
 * The 8-thread group-commit target compares 8 threads with one; how far apart they land
 * depends on how long a durable commit takes next to CPython's thread hand-offs. This shim
 * adds SLOW_FSYNC_US microseconds after every fdatasync() of the process, so a fast disk can
 * be measured as the slower one of the reference machine the project's targets were set on
 * (about 0.3-0.6 ms per durable commit). Nothing of millpond changes; only the wait for the
 * disk grows.
 *
 *   cc -shared -fPIC -O2 -o /tmp/slow_fsync.so bench/tools/slow_fsync.c -ldl
 *   SLOW_FSYNC_US=400 LD_PRELOAD=/tmp/slow_fsync.so \
 *       python -m pytest bench/test_bench_breakdown.py -k group_commit_gaps
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int (*real_fdatasync)(int);
static long delay_us = -1;

int fdatasync(int fd) {
    if (!real_fdatasync)
        real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (delay_us < 0) {
        const char *text = getenv("SLOW_FSYNC_US");
        delay_us = text ? atol(text) : 0;
    }
    int result = real_fdatasync(fd);
    if (delay_us > 0) {
        struct timespec pause = {delay_us / 1000000, (delay_us % 1000000) * 1000};
        nanosleep(&pause, NULL);
    }
    return result;
}
