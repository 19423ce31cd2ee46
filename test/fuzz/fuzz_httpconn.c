/* libFuzzer target over the health server's request handling: the input
 * is fed in pieces whose sizes come from its first bytes, so splits at
 * every position get explored; a response must always be well formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpconn.h"

static void route(void *ud, const char *path, HttpReply *r) {
        (void) ud;
        if (strcmp(path, "/health") == 0) {
                r->status = 200;
                r->body = "{\"status\":\"healthy\"}";
                r->body_len = strlen(r->body);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 2)
                return 0;
        size_t step = (size_t) data[0] % 64 + 1;
        data++, size--;
        HttpConn c;
        Buf out = {0};
        httpconn_init(&c, route, NULL);
        for (size_t off = 0; off < size; off += step) {
                size_t n = size - off < step ? size - off : step;
                /* A private copy, so reads past n are caught by ASan. */
                char *piece = malloc(n);
                memcpy(piece, data + off, n);
                bool close = httpconn_feed(&c, piece, n, &out);
                free(piece);
                if (close)
                        break;
        }
        if (out.len && memcmp(out.data, "HTTP/1.1 ", 9) != 0)
                abort();
        buf_deinit(&out);
        return 0;
}
