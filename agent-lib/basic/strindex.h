/* StrIndex: a hash index from (tag, string) to a size_t, so that looking a
 * name up among n is O(1) instead of a scan (a 40,000-line template must
 * not cost n^2).  Keys are borrowed: the caller keeps each key alive and
 * unchanged while it is in the index (typically a string owned by the
 * array element whose position is the value).  tag separates namespaces
 * (e.g. a template source) without building a combined key.
 * FNV-1a, open addressing, grown at half full: keys come from the operator's
 * template, not from outside, so no keyed hash is needed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct StrIndexSlot StrIndexSlot;

typedef struct StrIndex {
        StrIndexSlot *slots;
        size_t cap; /* a power of two, or 0 */
        size_t n;
} StrIndex;

/* Adds key -> value and returns 0.  If key is already there, leaves it,
 * sets *ret_existing (may be NULL) to its value and returns 1. */
int strindex_put(StrIndex *x, unsigned tag, const char *key, size_t value, size_t *ret_existing);
bool strindex_get(const StrIndex *x, unsigned tag, const char *key, size_t *ret_value);
void strindex_deinit(StrIndex *x);
