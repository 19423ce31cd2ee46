/* See aws.h. */
#include "aws.h"

#include <ctype.h>
#include <errno.h>
#include <expat.h>
#include <jansson.h>
#include <stdio.h>

#include "log.h"
#include "util.h"

#define AWS_ATTEMPTS 4
#define AWS_TIMEOUT_MS 10000
#define AWS_CONNECT_TIMEOUT_MS 3000

struct AwsClient {
        uv_loop_t *loop;
        HttpLoop *http;
        struct AwsCall *calls;
        uint64_t rng;
        AwsStats stats;
};

typedef struct AwsCall {
        AwsClient *c;
        AwsService service;
        char *url;
        char *sigv4;
        char *key_id, *secret, *token_header;
        char *target_header;
        const char *content_type;
        char *body;
        unsigned attempt;
        bool https_only;
        uv_timer_t timer;
        HttpCall *http;
        AwsDone done;
        void *userdata;
        struct AwsCall *prev, *next;
} AwsCall;

const char *aws_service_name(AwsService s) {
        switch (s) {
        case AWS_SECRETS_MANAGER:
                return "secretsmanager";
        case AWS_SSM:
                return "ssm";
        default:
                return "ec2";
        }
}

static const char *endpoint_env(AwsService s) {
        switch (s) {
        case AWS_SECRETS_MANAGER:
                return "AWS_ENDPOINT_URL_SECRETS_MANAGER";
        case AWS_SSM:
                return "AWS_ENDPOINT_URL_SSM";
        default:
                return "AWS_ENDPOINT_URL_EC2";
        }
}

char *aws_endpoint(AwsService s, const char *region) {
        const char *e = getenv(endpoint_env(s));
        if (!e || !*e)
                e = getenv("AWS_ENDPOINT_URL");
        if (e && *e) {
                char *d = strdup(e);
                size_t n = d ? strlen(d) : 0;
                while (n > 0 && d[n - 1] == '/')
                        d[--n] = 0;
                return d;
        }
        return strdup_printf("https://%s.%s.amazonaws.com", aws_service_name(s), region);
}

static void call_freed(uv_handle_t *h) {
        AwsCall *a = h->data;
        free(a->url);
        free(a->sigv4);
        free_wipe(a->key_id);
        free_wipe(a->secret);
        free_wipe(a->token_header);
        free(a->target_header);
        free_wipe(a->body);
        free(a);
}

static void call_finish(AwsCall *a, const AwsResult *res) {
        AwsClient *c = a->c;
        if (a->prev)
                a->prev->next = a->next;
        else if (c->calls == a)
                c->calls = a->next;
        if (a->next)
                a->next->prev = a->prev;
        if (a->http)
                http_cancel(a->http), a->http = NULL;
        uv_timer_stop(&a->timer);
        if (res->error)
                c->stats.errors++;
        if (a->done)
                a->done(res, a->userdata);
        uv_close((uv_handle_t *) &a->timer, call_freed);
}

/* AWS JSON errors: {"__type": "...#Code", "message"|"Message": "..."}. */
static void parse_json_error(const char *body, size_t len, char *code, size_t ncode, char *msg, size_t nmsg) {
        json_t *j = json_loadb(body, len, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "__type"));
        const char *m = json_string_value(json_object_get(j, "message"));
        if (!m)
                m = json_string_value(json_object_get(j, "Message"));
        if (t) {
                const char *hash = strrchr(t, '#');
                snprintf(code, ncode, "%s", hash ? hash + 1 : t);
        }
        if (m)
                snprintf(msg, nmsg, "%s", m);
        json_decref(j);
}

static bool retryable(long status, const char *code) {
        return status >= 500 || status == 429 || streq(code, "ThrottlingException") ||
               streq(code, "Throttling") || streq(code, "RequestLimitExceeded") ||
               streq(code, "TooManyUpdates") || streq(code, "ServiceUnavailable") ||
               streq(code, "InternalServiceError") || streq(code, "InternalServerError");
}

static void dispatch(AwsCall *a);

static void on_backoff(uv_timer_t *t) {
        dispatch(t->data);
}

static void on_http(const HttpResponse *r, void *userdata) {
        AwsCall *a = userdata;
        AwsClient *c = a->c;
        a->http = NULL;
        char code[128] = "", msg[512] = "";
        if (!r->error && r->status == 200) {
                AwsResult ok = {.status = 200, .body = r->body, .body_len = r->body_len};
                call_finish(a, &ok);
                return;
        }
        if (r->error)
                snprintf(msg, sizeof msg, "%s", r->reason ? r->reason : strerror(-r->error));
        else if (a->service == AWS_EC2) {
                char *cd = NULL, *m = NULL;
                if (ec2_parse_error(r->body, r->body_len, &cd, &m) >= 0) {
                        snprintf(code, sizeof code, "%s", cd ? cd : "");
                        snprintf(msg, sizeof msg, "%s", m ? m : "");
                }
                free(cd);
                free(m);
        } else
                parse_json_error(r->body, r->body_len, code, sizeof code, msg, sizeof msg);
        if (!*msg)
                snprintf(msg, sizeof msg, "HTTP %ld", r->status);

        /* A certificate problem does not go away by asking again. */
        bool transient = r->error ? r->error != -EPROTO : retryable(r->status, code);
        if (transient && a->attempt < AWS_ATTEMPTS) {
                uint64_t delay = backoff_delay(&c->rng, a->attempt, 200, 5000);
                c->stats.retries++;
                log_debug("aws: %s %s failed (%s), retrying in %llu ms", aws_service_name(a->service),
                          a->target_header ? a->target_header : "query", *code ? code : msg,
                          (unsigned long long) delay);
                uv_timer_start(&a->timer, on_backoff, delay, 0);
                return;
        }
        AwsResult fail = {
                .error = r->error ? r->error : r->status == 403 || strstr(code, "AccessDenied") ? -EACCES : -EIO,
                .status = r->status,
                .code = code,
                .message = msg,
        };
        if (streq(code, "ResourceNotFoundException") || streq(code, "ParameterNotFound"))
                fail.error = -ENOENT;
        if (streq(code, "ExpiredTokenException") || streq(code, "RequestExpired"))
                fail.error = -EKEYEXPIRED;
        call_finish(a, &fail);
}

static void dispatch(AwsCall *a) {
        const char *headers[4] = {0};
        char ctype[96];
        size_t n = 0;
        snprintf(ctype, sizeof ctype, "Content-Type: %s", a->content_type);
        headers[n++] = ctype;
        headers[n++] = a->token_header;
        if (a->target_header)
                headers[n++] = a->target_header;
        HttpRequest req = {
                .method = "POST",
                .url = a->url,
                .headers = headers,
                .body = a->body,
                .body_len = strlen(a->body),
                .connect_timeout_ms = AWS_CONNECT_TIMEOUT_MS,
                .timeout_ms = AWS_TIMEOUT_MS,
                .https_only = a->https_only,
                .any_http = !a->https_only,
                .ca_file = getenv("AWS_CA_BUNDLE"),
                .aws_sigv4 = a->sigv4,
                .aws_key_id = a->key_id,
                .aws_secret = a->secret,
        };
        a->attempt++;
        a->c->stats.calls++;
        int r = http_start(a->c->http, &req, on_http, a, &a->http);
        if (r < 0) {
                AwsResult fail = {.error = r, .message = strerror(-r)};
                call_finish(a, &fail);
        }
}

static int call_start(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                      const char *target, const char *content_type, const char *body, AwsDone done,
                      void *userdata) {
        AwsCall *a = calloc(1, sizeof(AwsCall));
        if (!a)
                return -ENOMEM;
        a->c = c;
        a->service = service;
        a->content_type = content_type;
        a->done = done;
        a->userdata = userdata;
        /* The API's path is "/". */
        _cleanup_free_ char *base = aws_endpoint(service, region);
        a->url = base ? strdup_printf("%s/", base) : NULL;
        a->sigv4 = strdup_printf("aws:amz:%s:%s", region, aws_service_name(service));
        a->key_id = strdup(creds->access_key_id);
        a->secret = strdup(creds->secret_access_key);
        a->token_header = strdup_printf("X-Amz-Security-Token: %s", creds->token);
        a->target_header = target ? strdup_printf("X-Amz-Target: %s", target) : NULL;
        a->body = strdup(body);
        uv_timer_init(c->loop, &a->timer);
        a->timer.data = a;
        if (!a->url || !a->sigv4 || !a->key_id || !a->secret || !a->token_header || (target && !a->target_header) ||
            !a->body) {
                uv_close((uv_handle_t *) &a->timer, call_freed);
                return -ENOMEM;
        }
        /* Default endpoints are HTTPS only; an override may be plain HTTP
         * (a local fake, an interface endpoint), as the SDKs allow. */
        a->https_only = strncmp(a->url, "https://", 8) == 0;
        a->next = c->calls;
        if (c->calls)
                c->calls->prev = a;
        c->calls = a;
        dispatch(a);
        return 0;
}

int aws_call_json(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                  const char *target, const char *json_body, AwsDone done, void *userdata) {
        return call_start(c, creds, region, service, target, "application/x-amz-json-1.1", json_body, done,
                          userdata);
}

int aws_call_query(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                   const char *form, AwsDone done, void *userdata) {
        return call_start(c, creds, region, service, NULL, "application/x-www-form-urlencoded; charset=utf-8",
                          form, done, userdata);
}

int aws_client_new(uv_loop_t *loop, HttpLoop *http, AwsClient **ret) {
        AwsClient *c = calloc(1, sizeof(AwsClient));
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->http = http;
        c->rng = uv_hrtime() | 1;
        *ret = c;
        return 0;
}

void aws_client_free(AwsClient *c) {
        if (!c)
                return;
        while (c->calls) {
                AwsResult res = {.error = -ECANCELED, .message = "cancelled"};
                call_finish(c->calls, &res);
        }
        free(c);
}

const AwsStats *aws_stats(const AwsClient *c) {
        return &c->stats;
}

/* ---- EC2 XML (expat) --------------------------------------------------- */

typedef struct XmlCtx {
        char path[512]; /* element names joined by '/' */
        Buf text;
        char *key, *value;
        bool in_item;
        void (*fn)(const char *, const char *, void *);
        void *ud;
        char *next_token;
        char *code, *message;
} XmlCtx;

static const char *leaf(const char *name) {
        const char *colon = strrchr(name, ':'); /* namespace-qualified */
        return colon ? colon + 1 : name;
}

static void xml_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
        (void) attrs;
        XmlCtx *x = ud;
        size_t n = strlen(x->path);
        snprintf(x->path + n, sizeof x->path - n, "/%s", leaf(name));
        x->text.len = 0;
        if (x->text.data)
                x->text.data[0] = 0;
}

static bool path_ends(const XmlCtx *x, const char *suffix) {
        size_t n = strlen(x->path), k = strlen(suffix);
        return n >= k && streq(x->path + n - k, suffix);
}

static void set(char **dst, const Buf *b) {
        free(*dst);
        *dst = strndup(b->data ? b->data : "", b->len);
}

static void xml_end(void *ud, const XML_Char *name) {
        (void) name;
        XmlCtx *x = ud;
        if (path_ends(x, "/tagSet/item/key"))
                set(&x->key, &x->text);
        else if (path_ends(x, "/tagSet/item/value"))
                set(&x->value, &x->text);
        else if (path_ends(x, "/tagSet/item")) {
                if (x->key && x->fn)
                        x->fn(x->key, x->value ? x->value : "", x->ud);
                free(x->key), free_wipe(x->value);
                x->key = x->value = NULL;
        } else if (path_ends(x, "/DescribeTagsResponse/nextToken") && x->text.len)
                set(&x->next_token, &x->text);
        else if (path_ends(x, "/Error/Code"))
                set(&x->code, &x->text);
        else if (path_ends(x, "/Error/Message"))
                set(&x->message, &x->text);
        char *slash = strrchr(x->path, '/');
        if (slash)
                *slash = 0;
        x->text.len = 0;
}

static void xml_text(void *ud, const XML_Char *s, int len) {
        XmlCtx *x = ud;
        buf_append(&x->text, s, (size_t) len);
}

static int xml_run(XmlCtx *x, const char *xml, size_t len) {
        XML_Parser p = XML_ParserCreate("UTF-8");
        if (!p)
                return -ENOMEM;
        XML_SetUserData(p, x);
        XML_SetElementHandler(p, xml_start, xml_end);
        XML_SetCharacterDataHandler(p, xml_text);
        int ok = XML_Parse(p, xml, (int) len, 1) == XML_STATUS_OK;
        XML_ParserFree(p);
        buf_wipe(&x->text);
        free(x->key);
        free_wipe(x->value);
        return ok ? 0 : -EBADMSG;
}

int ec2_parse_describe_tags(const char *xml, size_t len, void (*fn)(const char *, const char *, void *), void *ud,
                            char **ret_next_token) {
        XmlCtx x = {.fn = fn, .ud = ud};
        int r = xml_run(&x, xml, len);
        free(x.code);
        free(x.message);
        if (r < 0) {
                free(x.next_token);
                return r;
        }
        *ret_next_token = x.next_token;
        return 0;
}

int ec2_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message) {
        XmlCtx x = {0};
        int r = xml_run(&x, xml, len);
        free(x.next_token);
        *ret_code = x.code;
        *ret_message = x.message;
        return r;
}
