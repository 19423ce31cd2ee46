/* The one clock: CLOCK_MONOTONIC in microseconds.  Every duration,
 * deadline and age inside the agent is measured with it (sd-bus's
 * timeouts and sd_notify's MONOTONIC_USEC= use the same clock and unit).
 * Wall-clock time (time(NULL)) is only for what an operator reads: when the
 * .env was rendered, when credentials expire. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)

static inline uint64_t clock_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* CLOCK_REALTIME in microseconds: only to compare with stamps that exist
 * in wall-clock time alone (a file's mtime, systemd's
 * ExecMainStartTimestamp). */
static inline uint64_t clock_realtime_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Milliseconds since an earlier clock_usec(), for logs and reports. */
static inline double clock_ms_since(uint64_t then_usec) {
        return (double) (clock_usec() - then_usec) / 1000.0;
}

/* How long before now wall-clock time t was, for an operator: "42s",
 * "5m", "2h03m" (seconds below 2 minutes, minutes below 2 hours); "never"
 * for t <= 0; "0s" for a t after now (the clock was stepped back).
 * STATUS= and `anb-agent status` both say it this way. */
static inline void clock_format_age(time_t t, time_t now, char *buf, size_t n) {
        if (t <= 0) {
                snprintf(buf, n, "never");
                return;
        }
        long s = now > t ? (long) (now - t) : 0;
        if (s < 120)
                snprintf(buf, n, "%lds", s);
        else if (s < 7200)
                snprintf(buf, n, "%ldm", s / 60);
        else
                snprintf(buf, n, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
}
