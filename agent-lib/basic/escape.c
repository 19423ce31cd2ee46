/* See escape.h. */
#include "basic/escape.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one;
 * *ret_cp is its code point. */
static size_t utf8_sequence(const unsigned char *s, size_t n, uint32_t *ret_cp) {
        unsigned char c = s[0];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
                *ret_cp = c;
                return 1;
        } else if ((c & 0xe0) == 0xc0)
                k = 1, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
                k = 2, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
                k = 3, cp = c & 0x07;
        else
                return 0;
        if (k >= n)
                return 0;
        for (size_t j = 1; j <= k; j++) {
                if ((s[j] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return k + 1;
}

/* The escaped form of the next character of s into piece (at most 9 bytes
 * for a C1 character); returns the input bytes consumed. */
static size_t escape_next(const char *s, size_t n, char piece[16], size_t *ret_len) {
        const unsigned char *u = (const unsigned char *) s;
        uint32_t cp;
        size_t k = utf8_sequence(u, n, &cp);
        if (k == 0) {
                *ret_len = (size_t) snprintf(piece, 16, "\\x%02x", u[0]);
                return 1;
        }
        if (cp == '\n' || cp == '\r' || cp == '\t' || cp == '\\') {
                piece[0] = '\\';
                piece[1] = cp == '\n' ? 'n' : cp == '\r' ? 'r' : cp == '\t' ? 't' : '\\';
                *ret_len = 2;
        } else if (cp < 0x20 || cp == 0x7f)
                *ret_len = (size_t) snprintf(piece, 16, "\\x%02x", u[0]);
        else if (cp >= 0x80 && cp <= 0x9f)
                *ret_len = (size_t) snprintf(piece, 16, "\\x%02x\\x%02x", u[0], u[1]);
        else {
                memcpy(piece, s, k);
                *ret_len = k;
        }
        return k;
}

int text_escape_append(Buf *out, const char *s, size_t n) {
        for (size_t i = 0; i < n;) {
                char piece[16];
                size_t len;
                i += escape_next(s + i, n - i, piece, &len);
                int r = buf_append(out, piece, len);
                if (r < 0)
                        return r;
        }
        /* An empty input still yields a (NUL-terminated) buffer. */
        return buf_append(out, "", 0);
}

char *text_escape(const char *s) {
        Buf b = {0};
        if (text_escape_append(&b, s ? s : "", s ? strlen(s) : 0) < 0) {
                buf_deinit(&b);
                return NULL;
        }
        return buf_steal(&b);
}

size_t text_escape_to(char *dst, size_t size, const char *s, size_t n) {
        size_t w = 0;
        if (size == 0)
                return 0;
        for (size_t i = 0; i < n;) {
                char piece[16];
                size_t len;
                size_t used = escape_next(s + i, n - i, piece, &len);
                if (w + len >= size)
                        break;
                memcpy(dst + w, piece, len);
                w += len;
                i += used;
        }
        dst[w] = 0;
        return w;
}
