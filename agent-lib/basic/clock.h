/* The one clock: CLOCK_MONOTONIC in microseconds.  Every duration,
 * deadline and age inside the agent is measured with it (sd-bus's
 * timeouts and sd_notify's MONOTONIC_USEC= use the same clock and unit).
 * Wall-clock time (time(NULL)) is only for what an operator reads: when the
 * .env was rendered, when credentials expire. */
#pragma once

#include <stdint.h>
#include <time.h>

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)

static inline uint64_t clock_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Milliseconds since an earlier clock_usec(), for logs and reports. */
static inline double clock_ms_since(uint64_t then_usec) {
        return (double) (clock_usec() - then_usec) / 1000.0;
}
