/* Implementation of util.h.  Allocation failures return -ENOMEM / NULL. */
#include "basic/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

static int buf_reserve(Buf *b, size_t extra) {
        size_t need = b->len + extra + 1;
        if (need < b->len)
                return -ENOMEM;
        if (need <= b->cap)
                return 0;
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need)
                cap *= 2;
        char *p = malloc(cap);
        if (!p)
                return -ENOMEM;
        if (b->data) {
                memcpy(p, b->data, b->len + 1);
                explicit_bzero(b->data, b->cap);
                free(b->data);
        }
        b->data = p;
        b->cap = cap;
        return 0;
}

int buf_append(Buf *b, const void *p, size_t n) {
        int r = buf_reserve(b, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int buf_puts(Buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

int buf_putc(Buf *b, char c) {
        return buf_append(b, &c, 1);
}

int buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        int r = buf_reserve(b, (size_t) n);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t) n;
        return 0;
}

char *buf_steal(Buf *b) {
        if (!b->data) {
                if (buf_reserve(b, 0) < 0)
                        return NULL;
                b->data[0] = 0;
        }
        char *p = b->data;
        *b = (Buf) {0};
        return p;
}

void buf_deinit(Buf *b) {
        free(b->data);
        *b = (Buf) {0};
}

void buf_wipe(Buf *b) {
        if (b->data)
                explicit_bzero(b->data, b->cap);
        buf_deinit(b);
}

char **strv_split(const char *s, const char *sep) {
        char **l = calloc(1, sizeof(char *));
        if (!l)
                return NULL;
        const char *p = s;
        for (;;) {
                p += strspn(p, sep);
                if (!*p)
                        break;
                size_t n = strcspn(p, sep);
                char *w = strndup(p, n);
                if (!w || strv_push(&l, w) < 0) {
                        free(w);
                        strv_free(l);
                        return NULL;
                }
                p += n;
        }
        return l;
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

char **strv_copy(char *const *l) {
        char **c = calloc(1, sizeof(char *));
        if (!c)
                return NULL;
        for (size_t i = 0; l && l[i]; i++) {
                char *d = strdup(l[i]);
                if (!d || strv_push(&c, d) < 0) {
                        free(d);
                        strv_free(c);
                        return NULL;
                }
        }
        return c;
}

int strv_push(char ***l, char *s) {
        size_t n = strv_length(*l);
        char **nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl)
                return -ENOMEM;
        nl[n] = s;
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

void strv_free(char **l) {
        for (size_t i = 0; l && l[i]; i++)
                free(l[i]);
        free(l);
}

char *strv_join(char *const *l, const char *sep) {
        Buf b = {0};
        for (size_t i = 0; l && l[i]; i++)
                if ((i && buf_puts(&b, sep) < 0) || buf_puts(&b, l[i]) < 0) {
                        buf_deinit(&b);
                        return NULL;
                }
        return buf_steal(&b);
}

void free_wipe(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *s = NULL;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

bool utf8_is_valid(const char *str, size_t n) {
        const unsigned char *s = (const unsigned char *) str;
        size_t i = 0;
        while (i < n) {
                unsigned char c = s[i];
                size_t k;
                uint32_t cp;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        k = 1, cp = c & 0x1f;
                } else if ((c & 0xf0) == 0xe0) {
                        k = 2, cp = c & 0x0f;
                } else if ((c & 0xf8) == 0xf0) {
                        k = 3, cp = c & 0x07;
                } else
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + j] & 0x3f);
                }
                if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
                    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += k + 1;
        }
        return true;
}
