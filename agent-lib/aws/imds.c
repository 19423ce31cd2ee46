/* See imds.h. */
#include "aws/imds.h"

#include <errno.h>
#include <stdio.h>

#include "basic/backoff.h"
#include "basic/clock.h"
#include "basic/list.h"
#include "basic/log.h"
#include "basic/util.h"

#define IMDS_BACKOFF_CAP_MS 5000
#define CREDS_PATH "meta-data/iam/security-credentials/"

struct ImdsClient {
        uv_loop_t *loop;
        HttpLoop *http;
        char *endpoint;
        unsigned token_ttl;
        long connect_timeout_ms, timeout_ms;
        unsigned attempts, backoff_ms;

        char *token;
        uint64_t token_valid_until; /* clock_usec() */
        unsigned token_generation;
        ImdsCall *token_req; /* the token PUT in flight, if any */

        ListLink reqs; /* every live request */
        ImdsStats stats;
};

/* One request: a GET, the token PUT (path NULL), or a credentials fetch
 * (a GET of the role name, then of its credentials, in the same object so
 * that one handle cancels both). */
struct ImdsCall {
        ImdsClient *c;
        char *path; /* NULL for the token PUT */
        ImdsDone done;
        ImdsCredentialsDone creds_done;
        void *userdata;
        char *role; /* credentials fetch, second stage */
        unsigned attempt;
        Backoff backoff;
        bool reauthed;
        bool waiting_token;
        unsigned token_generation;
        uv_timer_t timer; /* first dispatch and backoff; freed in its close callback */
        HttpCall *call;
        ListLink link;
};

static void req_dispatch(ImdsCall *q);

static void req_free_cb(uv_handle_t *h) {
        ImdsCall *q = h->data;
        free(q->path);
        free(q->role);
        free(q);
}

/* Detaches q from everything that could call it back. */
static void req_detach(ImdsCall *q) {
        list_unlink(&q->link);
        if (q->c->token_req == q)
                q->c->token_req = NULL;
        http_cancel(q->call);
        q->call = NULL;
        uv_timer_stop(&q->timer);
}

static void req_release(ImdsCall *q) {
        uv_close((uv_handle_t *) &q->timer, req_free_cb);
}

/* Completes q: detaches it, calls back, frees it once its timer closes. */
static void req_finish(ImdsCall *q, const ImdsResult *res) {
        req_detach(q);
        if (res->error)
                q->c->stats.errors++;
        if (q->creds_done)
                q->creds_done(res->error ? res->error : -EIO, res->message, NULL, q->userdata);
        else if (q->done)
                q->done(res, q->userdata);
        req_release(q);
}

static void req_fail(ImdsCall *q, int error, long status, const char *fmt, ...) _printf_(4, 5);
static void req_fail(ImdsCall *q, int error, long status, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        ImdsResult res = {.error = error, .status = status, .message = msg};
        req_finish(q, &res);
}

static ImdsCall *req_new(ImdsClient *c, const char *path, void *userdata) {
        ImdsCall *q = calloc(1, sizeof(ImdsCall));
        if (!q)
                return NULL;
        if (path && !(q->path = strdup(path))) {
                free(q);
                return NULL;
        }
        q->c = c;
        q->userdata = userdata;
        backoff_init(&q->backoff, c->backoff_ms, IMDS_BACKOFF_CAP_MS, uv_hrtime() ^ (uintptr_t) q);
        uv_timer_init(c->loop, &q->timer);
        q->timer.data = q;
        list_append(&c->reqs, &q->link);
        return q;
}

static bool retryable(const HttpResponse *r) {
        return r->error || r->status >= 500 || r->status == 429;
}

static void on_timer(uv_timer_t *t) {
        req_dispatch(t->data);
}

/* Schedules another try; false when the attempts are used up. */
static bool req_retry(ImdsCall *q) {
        ImdsClient *c = q->c;
        if (q->attempt >= c->attempts)
                return false;
        uint64_t delay = backoff_next(&q->backoff);
        c->stats.retries++;
        log_debug("imds: retrying %s in %llu ms", q->path ? q->path : "token", (unsigned long long) delay);
        uv_timer_start(&q->timer, on_timer, delay, 0);
        return true;
}

static void describe_failure(const HttpResponse *r, char *buf, size_t n) {
        if (r->error)
                snprintf(buf, n, "%s", r->reason ? r->reason : strerror(-r->error));
        else
                snprintf(buf, n, "HTTP %ld", r->status);
}

static ImdsCall *first_waiting(ImdsClient *c) {
        list_for_each(l, &c->reqs) {
                ImdsCall *q = list_entry(l, ImdsCall, link);
                if (q->waiting_token)
                        return q;
        }
        return NULL;
}

static void token_failed(ImdsClient *c, const HttpResponse *r) {
        char why[300];
        const char *hint;
        describe_failure(r, why, sizeof why);
        if (r->status == 403)
                hint = "IMDS refuses tokens: is the metadata service disabled for this instance "
                       "(http-endpoint), or did the request pass a proxy (X-Forwarded-For)?";
        else if (r->status == 400)
                hint = "IMDS rejected the token request as malformed (token TTL must be 1..21600 s)";
        else if (r->error == -ETIMEDOUT || r->error == -ECONNREFUSED || r->error == -EHOSTUNREACH)
                hint = "is IMDS enabled, and from a container is the hop limit "
                       "(http-put-response-hop-limit) at least 2?";
        else
                hint = "check the instance's metadata options";
        /* Fail everything waiting for a token; IMDSv1 is never tried.  From
         * the head each time: a callback may cancel any other request.  A
         * refusal is -EACCES; IMDS failing (5xx, 429 after the retries) is
         * -EIO, as for any other request: a retry may cure it. */
        int error = r->error ? r->error : retryable(r) ? -EIO : -EACCES;
        ImdsCall *q;
        while ((q = first_waiting(c)))
                req_fail(q, error, r->status,
                         "IMDSv2 token request to %s failed (%s): %s; IMDSv1 is never used", c->endpoint, why, hint);
}

static void on_token(const HttpResponse *r, void *userdata) {
        ImdsCall *q = userdata;
        ImdsClient *c = q->c;
        q->call = NULL;
        if (!r->error && r->status == 200 && r->body_len > 0 && r->body_len < 4096) {
                free_wipe(c->token);
                c->token = strndup(r->body, r->body_len);
                uint64_t ttl = (uint64_t) c->token_ttl * USEC_PER_SEC;
                uint64_t margin = ttl / 4 < 60 * USEC_PER_SEC ? ttl / 4 : 60 * USEC_PER_SEC;
                c->token_valid_until = clock_usec() + ttl - margin;
                c->token_generation++;
                req_detach(q);
                req_release(q);
                /* Send everything that waited for this token. */
                ImdsCall *w;
                while ((w = first_waiting(c))) {
                        w->waiting_token = false;
                        req_dispatch(w);
                }
                return;
        }
        if (retryable(r) && req_retry(q))
                return;
        req_detach(q);
        req_release(q);
        c->stats.errors++;
        token_failed(c, r);
}

static void start_token(ImdsClient *c) {
        if (c->token_req)
                return;
        ImdsCall *q = req_new(c, NULL, NULL);
        if (!q) {
                HttpResponse r = {.error = -ENOMEM, .reason = "out of memory"};
                token_failed(c, &r);
                return;
        }
        c->token_req = q;
        req_dispatch(q);
}

static bool token_valid(ImdsClient *c) {
        return c->token && clock_usec() < c->token_valid_until;
}

/* A credentials fetch got its answer for the current stage. */
static void creds_stage_done(ImdsCall *q, const ImdsResult *res) {
        if (!q->role) {
                size_t n = strcspn(res->body, "\r\n");
                if (n == 0) {
                        req_fail(q, -ENOENT, 200, "the instance has no IAM role (instance profile)");
                        return;
                }
                q->role = strndup(res->body, n);
                char *path = q->role ? strdup_printf(CREDS_PATH "%s", q->role) : NULL;
                if (!path) {
                        req_fail(q, -ENOMEM, 0, "out of memory");
                        return;
                }
                free(q->path);
                q->path = path;
                q->attempt = 0;
                q->reauthed = false;
                backoff_reset(&q->backoff);
                req_dispatch(q);
                return;
        }
        AwsCredentials *creds = NULL;
        _cleanup_free_ char *err = NULL;
        int r = aws_credentials_parse(q->role, res->body, res->body_len, &creds, &err);
        req_detach(q);
        if (r < 0)
                q->c->stats.errors++;
        q->creds_done(r, err ? err : r < 0 ? strerror(-r) : NULL, creds, q->userdata);
        req_release(q);
}

static void on_get(const HttpResponse *r, void *userdata) {
        ImdsCall *q = userdata;
        ImdsClient *c = q->c;
        q->call = NULL;
        if (!r->error && r->status == 200) {
                ImdsResult ok = {.status = 200, .body = r->body, .body_len = r->body_len};
                if (q->creds_done)
                        creds_stage_done(q, &ok);
                else
                        req_finish(q, &ok);
                return;
        }
        if (!r->error && r->status == 401) {
                if (q->reauthed) {
                        req_fail(q, -EACCES, 401, "IMDS rejected a fresh token for %s (401)", q->path);
                        return;
                }
                /* Token expired or revoked: drop it (unless another request
                 * already replaced it) and try once more with a new one. */
                if (q->token_generation == c->token_generation)
                        imds_drop_token(c);
                q->reauthed = true;
                q->attempt = 0;
                backoff_reset(&q->backoff);
                req_dispatch(q);
                return;
        }
        if (!r->error && r->status == 404) {
                if (q->creds_done && !q->role)
                        req_fail(q, -ENOENT, 404, "the instance has no IAM role (instance profile)");
                else
                        req_fail(q, -ENOENT, 404, "IMDS has no %s (404)", q->path);
                return;
        }
        if (retryable(r) && req_retry(q))
                return;
        char why[300];
        describe_failure(r, why, sizeof why);
        req_fail(q, r->error ? r->error : -EIO, r->status, "IMDS request for %s failed after %u attempt(s): %s",
                 q->path, q->attempt, why);
}

/* Runs from the loop only (a timer, an HTTP answer), never from a start
 * function, so whatever it completes is called back from the loop. */
static void req_dispatch(ImdsCall *q) {
        ImdsClient *c = q->c;
        char url[2048], hdr[4200];
        const char *headers[2] = {hdr, NULL};
        HttpRequest req = {
                .url = url,
                .headers = headers,
                .connect_timeout_ms = c->connect_timeout_ms,
                .timeout_ms = c->timeout_ms,
        };
        int r;

        if (!q->path) {
                snprintf(url, sizeof url, "%s/latest/api/token", c->endpoint);
                snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token-ttl-seconds: %u", c->token_ttl);
                req.method = "PUT";
                q->attempt++;
                c->stats.token_requests++;
                r = http_start(c->http, &req, on_token, q, &q->call);
                if (r < 0) {
                        HttpResponse fake = {.error = r, .reason = strerror(-r)};
                        on_token(&fake, q);
                }
                return;
        }
        if (!token_valid(c)) {
                q->waiting_token = true;
                start_token(c);
                return;
        }
        snprintf(url, sizeof url, "%s/latest/%s", c->endpoint, q->path);
        snprintf(hdr, sizeof hdr, "X-aws-ec2-metadata-token: %s", c->token);
        req.method = "GET";
        q->attempt++;
        q->token_generation = c->token_generation;
        c->stats.get_requests++;
        r = http_start(c->http, &req, on_get, q, &q->call);
        explicit_bzero(hdr, sizeof hdr);
        if (r < 0)
                req_fail(q, r, 0, "cannot start IMDS request for %s: %s", q->path, strerror(-r));
}

int imds_client_new(uv_loop_t *loop, HttpLoop *http, const ImdsOptions *o, ImdsClient **ret) {
        ImdsClient *c = calloc(1, sizeof(ImdsClient));
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->http = http;
        list_init(&c->reqs);
        c->endpoint = strdup(o->endpoint);
        if (!c->endpoint) {
                free(c);
                return -ENOMEM;
        }
        c->token_ttl = o->token_ttl ? o->token_ttl : 21600;
        c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
        c->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
        c->attempts = o->attempts ? o->attempts : 4;
        c->backoff_ms = o->backoff_ms ? o->backoff_ms : 200;
        *ret = c;
        return 0;
}

void imds_client_free(ImdsClient *c) {
        if (!c)
                return;
        while (!list_empty(&c->reqs))
                imds_cancel(list_entry(c->reqs.next, ImdsCall, link));
        free_wipe(c->token);
        free(c->endpoint);
        free(c);
}

/* The first dispatch goes through the loop: a failure known at once (no
 * token, out of memory) is then called back after this returns. */
static int req_start(ImdsCall *q, ImdsCall **ret_call) {
        uv_timer_start(&q->timer, on_timer, 0, 0);
        if (ret_call)
                *ret_call = q;
        return 0;
}

int imds_get(ImdsClient *c, const char *path, ImdsDone done, void *userdata, ImdsCall **ret_call) {
        ImdsCall *q = req_new(c, path, userdata);
        if (!q)
                return -ENOMEM;
        q->done = done;
        return req_start(q, ret_call);
}

int imds_fetch_credentials(ImdsClient *c, ImdsCredentialsDone done, void *userdata, ImdsCall **ret_call) {
        ImdsCall *q = req_new(c, CREDS_PATH, userdata);
        if (!q)
                return -ENOMEM;
        q->creds_done = done;
        return req_start(q, ret_call);
}

void imds_cancel(ImdsCall *q) {
        if (!q)
                return;
        req_detach(q);
        req_release(q);
}

void imds_drop_token(ImdsClient *c) {
        free_wipe(c->token);
        c->token = NULL;
        c->token_valid_until = 0;
}

const ImdsStats *imds_stats(const ImdsClient *c) {
        return &c->stats;
}
