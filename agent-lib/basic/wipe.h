/* Allocation functions that zero a block before it is freed (and before a
 * realloc moves it), for the libraries whose buffers hold secrets, tokens
 * and credentials and that let a program set their allocator: jansson
 * (json_set_alloc_funcs) and libcurl (curl_global_init_mem).  The daemon
 * installs them in main(); agent-lib never does (no globals here).
 * The whole usable block is wiped (malloc_usable_size), not just what the
 * library asked for. */
#pragma once

#include <stddef.h>

void *wipe_malloc(size_t n);
void *wipe_calloc(size_t n, size_t size);
void *wipe_realloc(void *p, size_t n);
char *wipe_strdup(const char *s);
void wipe_free(void *p);

/* Zeroes all of p's allocation without freeing it (p from malloc). */
void wipe_block(void *p);
