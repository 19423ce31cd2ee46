/* See backoff.h. */
#include "basic/backoff.h"

void backoff_init(Backoff *b, uint64_t base_ms, uint64_t cap_ms, uint64_t seed) {
        *b = (Backoff) {
                .base_ms = base_ms ? base_ms : 1,
                .cap_ms = cap_ms >= base_ms ? cap_ms : base_ms,
                .rng = seed ? seed : UINT64_C(0x9e3779b97f4a7c15),
        };
}

void backoff_set(Backoff *b, uint64_t base_ms, uint64_t cap_ms, unsigned attempts) {
        b->base_ms = base_ms ? base_ms : 1;
        b->cap_ms = cap_ms >= b->base_ms ? cap_ms : b->base_ms;
        b->attempt = attempts;
}

uint64_t backoff_peek(const Backoff *b) {
        unsigned shift = b->attempt;
        if (shift >= 32)
                return b->cap_ms;
        uint64_t d = b->base_ms << shift;
        return d > b->cap_ms ? b->cap_ms : d;
}

uint64_t backoff_next(Backoff *b) {
        uint64_t d = backoff_peek(b);
        if (b->attempt < UINT32_MAX)
                b->attempt++;
        /* xorshift64*: jitter only, not security. */
        b->rng ^= b->rng >> 12;
        b->rng ^= b->rng << 25;
        b->rng ^= b->rng >> 27;
        uint64_t r = b->rng * UINT64_C(2685821657736338717);
        if (b->full_jitter)
                return r % (d + 1);
        return d / 2 + r % (d / 2 + 1);
}
