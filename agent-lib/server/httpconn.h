/* One HTTP/1.x server connection's request handling, without I/O: bytes
 * in (httpconn_feed), response bytes out, parsed by llhttp.  The health
 * server drives it from libuv; the unit tests and the fuzzer drive it
 * directly.
 *
 * Rules: GET and HEAD only (405 otherwise, with Allow:), 404 for unknown
 * paths, 400 for malformed requests (including Content-Length together
 * with Transfer-Encoding), 414 for a URL over 2 KiB, 431 for headers over
 * 8 KiB, 413 for a body over 4 KiB; after any of those the connection
 * closes.  Keep-alive and pipelining per llhttp_should_keep_alive();
 * "Connection: close" is honoured.  Responses carry Content-Length and
 * Cache-Control: no-store.
 *
 * One feed answers at most HTTPCONN_MAX_ANSWERS_PER_FEED pipelined
 * requests and says how much input it used; the caller keeps the rest
 * and feeds it once the answers have drained (back-pressure: a client
 * that never reads cannot make one feed produce unbounded output).
 *
 * An HttpConn is embedded by its owner (_init/_deinit); it owns nothing
 * on the heap. */
#pragma once

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>

#include "basic/util.h"

#define HTTPCONN_MAX_URL 2048
#define HTTPCONN_MAX_HEADERS 8192
#define HTTPCONN_MAX_BODY 4096
#define HTTPCONN_MAX_ANSWERS_PER_FEED 8

typedef struct HttpReply {
        int status;
        const char *content_type;
        const char *body;
        size_t body_len;
} HttpReply;

/* Fills reply for a GET or HEAD of path (query string removed); body is
 * borrowed until the call returns.  Returns the status to send. */
typedef void (*HttpRoute)(void *userdata, const char *path, HttpReply *reply);

typedef struct HttpConn {
        llhttp_t parser;
        HttpRoute route;
        void *userdata;
        Buf *out;
        char url[HTTPCONN_MAX_URL + 1];
        size_t url_len;
        size_t header_bytes;
        size_t body_bytes;
        int error_status; /* set by a callback that rejects the request */
        bool close;       /* close once out is flushed */
        bool in_message;
        unsigned answered; /* in this feed */
        unsigned begun;    /* requests begun (first byte seen) */
        unsigned requests; /* requests complete and answered */
} HttpConn;

void httpconn_init(HttpConn *c, HttpRoute route, void *userdata);

/* Parses data, appending responses to out.  Returns true when the
 * connection must close after out is sent (no further input is read).
 * With ret_used, stops after HTTPCONN_MAX_ANSWERS_PER_FEED answers and
 * sets *ret_used to the bytes consumed (the rest, starting at a request
 * boundary, is to be fed again later); without it, consumes all of data. */
bool httpconn_feed(HttpConn *c, const char *data, size_t len, Buf *out, size_t *ret_used);
/* The peer closed its side; true (always) -- any partial request is
 * dropped. */
bool httpconn_eof(HttpConn *c, Buf *out);
/* True while a request has begun but not completed (for timeouts: a
 * request's deadline runs from the feed in which `begun` changed). */
bool httpconn_in_request(const HttpConn *c);

const char *http_status_text(int status);
