/* See wipe.h. */
#include "basic/wipe.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

void wipe_block(void *p) {
        if (p)
                explicit_bzero(p, malloc_usable_size(p));
}

void *wipe_malloc(size_t n) {
        return malloc(n);
}

void *wipe_calloc(size_t n, size_t size) {
        return calloc(n, size);
}

void wipe_free(void *p) {
        wipe_block(p);
        free(p);
}

/* Never realloc(): it may move the block and free the old one unwiped. */
void *wipe_realloc(void *p, size_t n) {
        if (!p)
                return malloc(n);
        if (n == 0) {
                wipe_free(p);
                return NULL;
        }
        size_t have = malloc_usable_size(p);
        if (n <= have)
                return p;
        void *q = malloc(n);
        if (!q)
                return NULL;
        memcpy(q, p, have);
        wipe_free(p);
        return q;
}

char *wipe_strdup(const char *s) {
        size_t n = strlen(s) + 1;
        char *d = malloc(n);
        if (d)
                memcpy(d, s, n);
        return d;
}
