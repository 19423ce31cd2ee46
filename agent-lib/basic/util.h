/* Small helpers shared by every module: cleanup attributes, a growable byte
 * buffer and string-vector helpers.  No I/O here. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

#define TAKE_PTR(p)                        \
        ({                                 \
                __typeof__(p) _tp_ = (p);  \
                (p) = NULL;                \
                _tp_;                      \
        })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}
static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* A growable byte buffer, always NUL-terminated when data != NULL.
 * buf_wipe() zeroes the memory before freeing it: use it for anything that
 * may hold a secret or a token. */
typedef struct Buf {
        char *data;
        size_t len;
        size_t cap;
} Buf;

int buf_append(Buf *b, const void *p, size_t n);
int buf_puts(Buf *b, const char *s);
int buf_putc(Buf *b, char c);
int buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
char *buf_steal(Buf *b);
void buf_deinit(Buf *b);
void buf_wipe(Buf *b);
static inline void buf_wipep(Buf *b) {
        buf_wipe(b);
}

/* NULL-terminated string vectors. */
char **strv_split(const char *s, const char *sep);
size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);
char **strv_copy(char *const *l);
int strv_push(char ***l, char *s); /* takes s */
void strv_free(char **l);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
char *strv_join(char *const *l, const char *sep);

/* Frees after zeroing: for secrets. */
void free_wipe(char *s);
static inline void free_wipep(char **s) {
        free_wipe(*s);
}

char *strdup_printf(const char *fmt, ...) _printf_(1, 2);

bool utf8_is_valid(const char *s, size_t n);
