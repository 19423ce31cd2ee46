/* libFuzzer target over the health server's request handling: the input
 * is fed in pieces whose sizes come from its first byte, so splits at
 * every position get explored; a response must always be well formed.
 * Odd first bytes drive it as the server does: at most
 * HTTPCONN_MAX_ANSWERS_PER_FEED answers per feed, the unused rest fed
 * again; a feed must use all its input unless it stopped at that limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/httpconn.h"

static void route(void *ud, const char *path, HttpReply *r) {
        (void) ud;
        if (strcmp(path, "/health") == 0) {
                r->status = 200;
                r->body = "{\"status\":\"healthy\"}";
                r->body_len = strlen(r->body);
        }
}

/* Feeds piece as health.c does; returns true to close. */
static bool feed_bounded(HttpConn *c, const char *piece, size_t n, Buf *out) {
        size_t off = 0;
        while (off < n) {
                unsigned before = c->requests;
                size_t used;
                bool close = httpconn_feed(c, piece + off, n - off, out, &used);
                if (used > n - off)
                        abort();
                if (close)
                        return true;
                if (off + used < n && c->requests - before != HTTPCONN_MAX_ANSWERS_PER_FEED)
                        abort();
                if (c->requests - before > HTTPCONN_MAX_ANSWERS_PER_FEED)
                        abort();
                off += used;
        }
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 2)
                return 0;
        bool bounded = data[0] & 1;
        size_t step = (size_t) (data[0] >> 1) % 64 + 1;
        data++, size--;
        HttpConn c;
        Buf out = {0};
        httpconn_init(&c, route, NULL);
        for (size_t off = 0; off < size; off += step) {
                size_t n = size - off < step ? size - off : step;
                /* A private copy, so reads past n are caught by ASan. */
                char *piece = malloc(n);
                memcpy(piece, data + off, n);
                bool close = bounded ? feed_bounded(&c, piece, n, &out) : httpconn_feed(&c, piece, n, &out, NULL);
                free(piece);
                if (close)
                        break;
        }
        if (out.len && memcmp(out.data, "HTTP/1.1 ", 9) != 0)
                abort();
        buf_deinit(&out);
        return 0;
}
