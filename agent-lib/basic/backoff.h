/* The one retry policy: exponential backoff with "equal jitter".
 *
 * Attempt n waits base·2^(n-1), capped, then a random point in the upper
 * half of that, so a fleet of instances that failed together does not
 * retry in lockstep.  Every retry loop (IMDS, AWS calls, credentials,
 * bootstrap, unit recovery) holds one Backoff and asks it for the next
 * delay; success resets it.  "Full jitter" (a random point in [0, delay])
 * spreads a crowd wider: it is what throttled AWS calls use, where the
 * total number of calls matters more than each one's wait.  Milliseconds, because that is what uv timers
 * take. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct Backoff {
        uint64_t base_ms;
        uint64_t cap_ms;
        unsigned attempt; /* retries handed out since the last reset */
        uint64_t rng;     /* xorshift64* state, never 0 */
        bool full_jitter; /* a random point in [0, delay] instead of its upper half */
} Backoff;

/* seed: any value (e.g. uv_hrtime()); 0 is allowed. */
void backoff_init(Backoff *b, uint64_t base_ms, uint64_t cap_ms, uint64_t seed);
/* The delay before the next retry; counts the attempt. */
uint64_t backoff_next(Backoff *b);
/* The delay backoff_next() would jitter, without jitter or counting:
 * for messages ("retrying in about 8 s"). */
uint64_t backoff_peek(const Backoff *b);
/* Re-aims b (keeping its jitter state): base and cap as backoff_init
 * takes them, and `attempts` retries already handed out, for a caller
 * that counts its own attempts and whose base may change. */
void backoff_set(Backoff *b, uint64_t base_ms, uint64_t cap_ms, unsigned attempts);
static inline void backoff_reset(Backoff *b) {
        b->attempt = 0;
}
