/* See strindex.h. */
#include "basic/strindex.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct StrIndexSlot {
        const char *key; /* NULL: empty */
        uint64_t hash;
        unsigned tag;
        size_t value;
};

static uint64_t hash_of(unsigned tag, const char *key) {
        uint64_t h = UINT64_C(14695981039346656037) ^ tag;
        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                h ^= *p;
                h *= UINT64_C(1099511628211);
        }
        return h;
}

static StrIndexSlot *slot_for(StrIndexSlot *slots, size_t cap, uint64_t h, unsigned tag, const char *key) {
        for (size_t i = (size_t) h & (cap - 1);; i = (i + 1) & (cap - 1)) {
                StrIndexSlot *s = &slots[i];
                if (!s->key || (s->hash == h && s->tag == tag && strcmp(s->key, key) == 0))
                        return s;
        }
}

static int grow(StrIndex *x) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        if (cap < x->cap)
                return -ENOMEM;
        StrIndexSlot *slots = calloc(cap, sizeof(StrIndexSlot));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < x->cap; i++)
                if (x->slots[i].key)
                        *slot_for(slots, cap, x->slots[i].hash, x->slots[i].tag, x->slots[i].key) = x->slots[i];
        free(x->slots);
        x->slots = slots;
        x->cap = cap;
        return 0;
}

int strindex_put(StrIndex *x, unsigned tag, const char *key, size_t value, size_t *ret_existing) {
        if ((x->n + 1) * 2 > x->cap) {
                int r = grow(x);
                if (r < 0)
                        return r;
        }
        uint64_t h = hash_of(tag, key);
        StrIndexSlot *s = slot_for(x->slots, x->cap, h, tag, key);
        if (s->key) {
                if (ret_existing)
                        *ret_existing = s->value;
                return 1;
        }
        *s = (StrIndexSlot) {.key = key, .hash = h, .tag = tag, .value = value};
        x->n++;
        return 0;
}

bool strindex_get(const StrIndex *x, unsigned tag, const char *key, size_t *ret_value) {
        if (x->cap == 0)
                return false;
        const StrIndexSlot *s = slot_for(x->slots, x->cap, hash_of(tag, key), tag, key);
        if (!s->key)
                return false;
        if (ret_value)
                *ret_value = s->value;
        return true;
}

void strindex_deinit(StrIndex *x) {
        free(x->slots);
        *x = (StrIndex) {0};
}
