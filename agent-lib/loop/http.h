/* HTTP client calls on a libuv loop: libcurl's multi interface driven by
 * uv_poll_t/uv_timer_t (the pattern of curl's docs/examples/multi-uv.c), so
 * no request ever blocks the loop.
 *
 * Every call is plain and bounded: no redirects, no proxy from the
 * environment, no verbose output, a connect and a total timeout, a cap on
 * the response size.  The HttpLoop owns its multi handle and every call in
 * flight.  Bodies may hold secrets: they are wiped before they are freed.
 * Async contract (README, "The async contract"): no callback before
 * http_start() returns; http_cancel() and http_loop_free() (NULL-safe)
 * cancel silently. */
#pragma once

#include <curl/curl.h>
#include <stdbool.h>
#include <uv.h>

typedef struct HttpLoop HttpLoop;
typedef struct HttpCall HttpCall;

typedef struct HttpRequest {
        const char *method; /* "GET", "PUT", "POST" */
        const char *url;
        const char *const *headers; /* NULL-terminated "Name: value" lines, copied */
        const char *body;           /* copied; NULL for none */
        size_t body_len;
        long connect_timeout_ms;
        long timeout_ms;
        bool https_only; /* otherwise http only */
        bool any_http;   /* http or https (endpoint overrides) */
        const char *ca_file;       /* CA bundle instead of the system's, or NULL */
        const char *aws_sigv4;     /* "aws:amz:REGION:SERVICE" or NULL */
        const char *aws_key_id;    /* with aws_sigv4 */
        const char *aws_secret;    /* with aws_sigv4 */
} HttpRequest;

typedef struct HttpResponse {
        int error;          /* 0, or negative errno for a transport failure */
        const char *reason; /* curl's description of a transport failure */
        long status;        /* HTTP status when error == 0 */
        const char *body;   /* NUL-terminated; valid during the callback */
        size_t body_len;
} HttpResponse;

typedef void (*HttpDone)(const HttpResponse *res, void *userdata);

#define HTTP_MAX_BODY (1024 * 1024)

int http_loop_new(uv_loop_t *loop, HttpLoop **ret);
/* Cancels calls in flight (no callbacks) and closes the loop's handles;
 * the memory goes when the uv loop runs their close callbacks. */
void http_loop_free(HttpLoop *h);

/* Starts a call; done runs on the loop exactly once unless the call is
 * cancelled.  *ret_call (optional) is valid until done runs. */
int http_start(HttpLoop *h, const HttpRequest *req, HttpDone done, void *userdata, HttpCall **ret_call);
void http_cancel(HttpCall *c); /* accepts NULL */
