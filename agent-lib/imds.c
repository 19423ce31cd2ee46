/* See imds.h. */
#include "imds.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>

#include "log.h"
#include "util.h"

typedef struct ImdsReq ImdsReq;

struct ImdsClient {
        uv_loop_t *loop;
        HttpLoop *http;
        char *endpoint;
        unsigned token_ttl;
        long connect_timeout_ms, timeout_ms;
        unsigned attempts, backoff_ms;

        char *token;
        uint64_t token_valid_until; /* uv_now() ms */
        unsigned token_generation;
        ImdsReq *token_req; /* the token PUT in flight, if any */

        ImdsReq *reqs; /* every live request */
        uint64_t rng;
        ImdsStats stats;
};

struct ImdsReq {
        ImdsClient *c;
        char *path; /* NULL for the token PUT */
        ImdsDone done;
        void *userdata;
        unsigned attempt;
        bool reauthed;
        bool waiting_token;
        unsigned token_generation;
        uv_timer_t timer; /* backoff; the request is freed in its close callback */
        HttpCall *call;
        ImdsReq *prev, *next;
};

static void req_dispatch(ImdsReq *q);

static void req_free_cb(uv_handle_t *h) {
        ImdsReq *q = h->data;
        free(q->path);
        free(q);
}

static void req_unlink(ImdsReq *q) {
        ImdsClient *c = q->c;
        if (q->prev)
                q->prev->next = q->next;
        else if (c->reqs == q)
                c->reqs = q->next;
        if (q->next)
                q->next->prev = q->prev;
        q->prev = q->next = NULL;
        if (c->token_req == q)
                c->token_req = NULL;
}

/* Completes q: unlinks it, calls back, frees it once its timer closes. */
static void req_finish(ImdsReq *q, const ImdsResult *res) {
        req_unlink(q);
        if (q->call)
                http_cancel(q->call), q->call = NULL;
        uv_timer_stop(&q->timer);
        if (res->error)
                q->c->stats.errors++;
        if (q->done)
                q->done(res, q->userdata);
        uv_close((uv_handle_t *) &q->timer, req_free_cb);
}

static void req_fail(ImdsReq *q, int error, long status, const char *fmt, ...) _printf_(4, 5);
static void req_fail(ImdsReq *q, int error, long status, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        ImdsResult res = {.error = error, .status = status, .message = msg};
        req_finish(q, &res);
}

static ImdsReq *req_new(ImdsClient *c, const char *path, ImdsDone done, void *userdata) {
        ImdsReq *q = calloc(1, sizeof(ImdsReq));
        if (!q)
                return NULL;
        if (path && !(q->path = strdup(path))) {
                free(q);
                return NULL;
        }
        q->c = c;
        q->done = done;
        q->userdata = userdata;
        uv_timer_init(c->loop, &q->timer);
        q->timer.data = q;
        q->next = c->reqs;
        if (c->reqs)
                c->reqs->prev = q;
        c->reqs = q;
        return q;
}

static bool retryable(const HttpResponse *r) {
        return r->error || r->status >= 500 || r->status == 429;
}

static void on_backoff(uv_timer_t *t) {
        ImdsReq *q = t->data;
        req_dispatch(q);
}

/* Schedules another try; false when the attempts are used up. */
static bool req_retry(ImdsReq *q) {
        ImdsClient *c = q->c;
        if (q->attempt >= c->attempts)
                return false;
        uint64_t delay = backoff_delay(&c->rng, q->attempt, c->backoff_ms, 5000);
        c->stats.retries++;
        log_debug("imds: retrying %s in %llu ms", q->path ? q->path : "token", (unsigned long long) delay);
        uv_timer_start(&q->timer, on_backoff, delay, 0);
        return true;
}

static void describe_failure(const HttpResponse *r, char *buf, size_t n) {
        if (r->error)
                snprintf(buf, n, "%s", r->reason ? r->reason : strerror(-r->error));
        else
                snprintf(buf, n, "HTTP %ld", r->status);
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
        /* Fail everything waiting for a token; IMDSv1 is never tried. */
        ImdsReq *q = c->reqs;
        while (q) {
                ImdsReq *next = q->next;
                if (q->waiting_token)
                        req_fail(q, r->error ? r->error : -EACCES, r->status,
                                 "IMDSv2 token request to %s failed (%s): %s; IMDSv1 is never used", c->endpoint,
                                 why, hint);
                q = next;
        }
}

static void on_token(const HttpResponse *r, void *userdata) {
        ImdsReq *q = userdata;
        ImdsClient *c = q->c;
        q->call = NULL;
        if (!r->error && r->status == 200 && r->body_len > 0 && r->body_len < 4096) {
                free_wipe(c->token);
                c->token = strndup(r->body, r->body_len);
                uint64_t ttl_ms = (uint64_t) c->token_ttl * 1000;
                uint64_t margin = ttl_ms / 4 < 60000 ? ttl_ms / 4 : 60000;
                c->token_valid_until = uv_now(c->loop) + ttl_ms - margin;
                c->token_generation++;
                ImdsResult ok = {0};
                req_finish(q, &ok);
                /* Send everything that waited for this token. */
                ImdsReq *w = c->reqs;
                while (w) {
                        ImdsReq *next = w->next;
                        if (w->waiting_token) {
                                w->waiting_token = false;
                                req_dispatch(w);
                        }
                        w = next;
                }
                return;
        }
        if (retryable(r) && req_retry(q))
                return;
        ImdsResult fail = {.error = -EACCES, .status = r->status, .message = "token"};
        req_finish(q, &fail);
        token_failed(c, r);
}

static void start_token(ImdsClient *c) {
        if (c->token_req)
                return;
        ImdsReq *q = req_new(c, NULL, NULL, NULL);
        if (!q) {
                HttpResponse r = {.error = -ENOMEM, .reason = "out of memory"};
                token_failed(c, &r);
                return;
        }
        c->token_req = q;
        req_dispatch(q);
}

static bool token_valid(ImdsClient *c) {
        return c->token && uv_now(c->loop) < c->token_valid_until;
}

static void on_get(const HttpResponse *r, void *userdata) {
        ImdsReq *q = userdata;
        ImdsClient *c = q->c;
        q->call = NULL;
        if (!r->error && r->status == 200) {
                ImdsResult ok = {.status = 200, .body = r->body, .body_len = r->body_len};
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
                req_dispatch(q);
                return;
        }
        if (!r->error && r->status == 404) {
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

static void req_dispatch(ImdsReq *q) {
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
        c->rng = uv_hrtime() | 1;
        *ret = c;
        return 0;
}

void imds_client_free(ImdsClient *c) {
        if (!c)
                return;
        while (c->reqs) {
                ImdsReq *q = c->reqs;
                ImdsResult res = {.error = -ECANCELED, .message = "cancelled"};
                req_finish(q, &res);
        }
        free_wipe(c->token);
        free(c->endpoint);
        free(c);
}

int imds_get(ImdsClient *c, const char *path, ImdsDone done, void *userdata) {
        ImdsReq *q = req_new(c, path, done, userdata);
        if (!q)
                return -ENOMEM;
        req_dispatch(q);
        return 0;
}

void imds_drop_token(ImdsClient *c) {
        free_wipe(c->token);
        c->token = NULL;
        c->token_valid_until = 0;
}

const ImdsStats *imds_stats(const ImdsClient *c) {
        return &c->stats;
}

void aws_credentials_free(AwsCredentials *c) {
        if (!c)
                return;
        free(c->role);
        free_wipe(c->access_key_id);
        free_wipe(c->secret_access_key);
        free_wipe(c->token);
        free(c);
}

int parse_iso8601_utc(const char *s, time_t *ret) {
        struct tm tm = {0};
        const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end)
                return -EINVAL;
        if (*end == '.')
                for (end++; *end >= '0' && *end <= '9'; end++)
                        ;
        if (!streq(end, "Z"))
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        *ret = t;
        return 0;
}

int aws_credentials_parse(const char *role, const char *json, size_t len, AwsCredentials **ret, char **ret_error) {
        json_error_t jerr;
        *ret_error = NULL;
        json_t *root = json_loadb(json, len, 0, &jerr);
        if (!root || !json_is_object(root)) {
                json_decref(root);
                *ret_error = strdup_printf("credentials for role %s are not a JSON object", role);
                return -EBADMSG;
        }
        const char *code = json_string_value(json_object_get(root, "Code"));
        const char *kid = json_string_value(json_object_get(root, "AccessKeyId"));
        const char *secret = json_string_value(json_object_get(root, "SecretAccessKey"));
        const char *token = json_string_value(json_object_get(root, "Token"));
        const char *exp = json_string_value(json_object_get(root, "Expiration"));
        int r = 0;
        AwsCredentials *c = NULL;
        time_t t;
        if (!code || !streq(code, "Success")) {
                *ret_error = strdup_printf("IMDS reports Code=%s for role %s's credentials", code ? code : "(none)",
                                           role);
                r = -EACCES;
        } else if (!kid || !secret || !token || !exp) {
                *ret_error = strdup_printf("credentials for role %s lack AccessKeyId, SecretAccessKey, Token or "
                                           "Expiration",
                                           role);
                r = -EBADMSG;
        } else if (parse_iso8601_utc(exp, &t) < 0) {
                *ret_error = strdup_printf("credentials for role %s have an unreadable Expiration", role);
                r = -EBADMSG;
        } else if (!(c = calloc(1, sizeof(AwsCredentials))) || !(c->role = strdup(role)) ||
                   !(c->access_key_id = strdup(kid)) || !(c->secret_access_key = strdup(secret)) ||
                   !(c->token = strdup(token))) {
                r = -ENOMEM;
        } else
                c->expiration = t;
        json_decref(root); /* jansson does not wipe; the strings were ours only briefly */
        if (r < 0) {
                aws_credentials_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

typedef struct CredFetch {
        ImdsClient *c;
        ImdsCredentialsDone done;
        void *userdata;
        char *role;
} CredFetch;

static void cred_fetch_end(CredFetch *f, int error, const char *message, AwsCredentials *creds) {
        f->done(error, message, creds, f->userdata);
        free(f->role);
        free(f);
}

static void on_creds(const ImdsResult *res, void *userdata) {
        CredFetch *f = userdata;
        if (res->error) {
                cred_fetch_end(f, res->error, res->message, NULL);
                return;
        }
        AwsCredentials *creds = NULL;
        _cleanup_free_ char *err = NULL;
        int r = aws_credentials_parse(f->role, res->body, res->body_len, &creds, &err);
        cred_fetch_end(f, r, err, creds);
}

static void on_role(const ImdsResult *res, void *userdata) {
        CredFetch *f = userdata;
        if (res->error == -ENOENT) {
                cred_fetch_end(f, -ENOENT, "the instance has no IAM role (instance profile)", NULL);
                return;
        }
        if (res->error) {
                cred_fetch_end(f, res->error, res->message, NULL);
                return;
        }
        size_t n = strcspn(res->body, "\r\n");
        f->role = strndup(res->body, n);
        _cleanup_free_ char *path = f->role ? strdup_printf("meta-data/iam/security-credentials/%s", f->role) : NULL;
        int r = path && n > 0 ? imds_get(f->c, path, on_creds, f) : -ENOMEM;
        if (n == 0)
                cred_fetch_end(f, -ENOENT, "the instance has no IAM role (instance profile)", NULL);
        else if (r < 0)
                cred_fetch_end(f, r, "out of memory", NULL);
}

int imds_fetch_credentials(ImdsClient *c, ImdsCredentialsDone done, void *userdata) {
        CredFetch *f = calloc(1, sizeof(CredFetch));
        if (!f)
                return -ENOMEM;
        *f = (CredFetch) {.c = c, .done = done, .userdata = userdata};
        int r = imds_get(c, "meta-data/iam/security-credentials/", on_role, f);
        if (r < 0)
                free(f);
        return r;
}
