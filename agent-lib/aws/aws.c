/* See aws.h. */
#include "aws/aws.h"

#include <errno.h>
#include <stdio.h>

#include "aws/awserror.h"
#include "basic/backoff.h"
#include "basic/list.h"
#include "basic/log.h"
#include "basic/util.h"

#define AWS_ATTEMPTS 4
#define AWS_TIMEOUT_MS 10000
#define AWS_CONNECT_TIMEOUT_MS 3000
#define AWS_BACKOFF_MS 200
#define AWS_BACKOFF_CAP_MS 5000
/* Throttled (a quota such as SSM GetParameters' 40 TPS, shared by a fleet
 * booting at once): more patience and full jitter, so the retries of many
 * instances spread over seconds instead of colliding again. */
#define AWS_THROTTLE_ATTEMPTS 6
#define AWS_THROTTLE_BACKOFF_MS 1000
#define AWS_THROTTLE_BACKOFF_CAP_MS 8000

struct AwsClient {
        uv_loop_t *loop;
        HttpLoop *http;
        ListLink calls;
        AwsStats stats;
};

struct AwsCall {
        AwsClient *c;
        AwsService service;
        char *url;
        char *sigv4;
        char *key_id, *secret, *token_header;
        char *target_header;
        const char *content_type;
        char *body;
        unsigned attempt;
        Backoff backoff;
        bool https_only;
        uv_timer_t timer;
        HttpCall *http;
        AwsDone done;
        void *userdata;
        ListLink link;
};

const char *aws_service_name(AwsService s) {
        switch (s) {
        case AWS_SECRETS_MANAGER:
                return "secretsmanager";
        case AWS_SSM:
                return "ssm";
        case AWS_AUTO_SCALING:
                return "autoscaling";
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
        case AWS_AUTO_SCALING:
                return "AWS_ENDPOINT_URL_AUTO_SCALING";
        default:
                return "AWS_ENDPOINT_URL_EC2";
        }
}

/* "us-east-1", "ap-southeast-2", "us-gov-west-1", "eusc-de-east-1": 2 to
 * 4 letters, one or more dash-separated lowercase words, a number.  The
 * region becomes a host name and the signing scope; anything else is
 * refused before it does. */
bool aws_region_is_valid(const char *region) {
        if (!region || strlen(region) > 32)
                return false;
        const char *p = region;
        size_t prefix = 0;
        while (prefix < 5 && 'a' <= p[prefix] && p[prefix] <= 'z')
                prefix++;
        if (prefix < 2 || prefix > 4)
                return false;
        p += prefix;
        unsigned words = 0;
        while (*p == '-' && 'a' <= p[1] && p[1] <= 'z') {
                for (p++; 'a' <= *p && *p <= 'z'; p++)
                        ;
                words++;
        }
        if (words == 0 || *p != '-' || !('0' <= p[1] && p[1] <= '9'))
                return false;
        for (p++; '0' <= *p && *p <= '9'; p++)
                ;
        return *p == 0;
}

/* "i-" and 8 or 17 hexadecimal digits. */
bool aws_instance_id_is_valid(const char *id) {
        if (!id || strncmp(id, "i-", 2) != 0)
                return false;
        size_t n = strspn(id + 2, "0123456789abcdef");
        return id[2 + n] == 0 && (n == 8 || n == 17);
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

static void call_detach(AwsCall *a) {
        list_unlink(&a->link);
        http_cancel(a->http);
        a->http = NULL;
        uv_timer_stop(&a->timer);
}

static void call_finish(AwsCall *a, const AwsResult *res) {
        call_detach(a);
        if (res->error)
                a->c->stats.errors++;
        a->done(res, a->userdata);
        uv_close((uv_handle_t *) &a->timer, call_freed);
}

static int dispatch(AwsCall *a);
static void on_backoff(uv_timer_t *t);

static void on_http(const HttpResponse *r, void *userdata) {
        AwsCall *a = userdata;
        AwsClient *c = a->c;
        a->http = NULL;
        if (!r->error && r->status == 200) {
                AwsResult ok = {.status = 200, .body = r->body, .body_len = r->body_len};
                call_finish(a, &ok);
                return;
        }
        AwsError e = {0};
        bool transient;
        if (r->error) {
                snprintf(e.message, sizeof e.message, "%s", r->reason ? r->reason : strerror(-r->error));
                e.error = r->error;
                /* A certificate problem does not go away by asking again. */
                transient = r->error != -EPROTO;
        } else {
                /* Query APIs (EC2, Auto Scaling) answer XML errors. */
                aws_error_classify(a->service == AWS_EC2 || a->service == AWS_AUTO_SCALING, r->status, r->body, r->body_len, &e);
                transient = e.retryable;
        }
        bool throttled = r->status == 429 || strstr(e.code, "Throttl") || streq(e.code, "RequestLimitExceeded") ||
                         streq(e.code, "TooManyRequestsException");
        if (throttled && !a->backoff.full_jitter) {
                backoff_init(&a->backoff, AWS_THROTTLE_BACKOFF_MS, AWS_THROTTLE_BACKOFF_CAP_MS,
                             uv_hrtime() ^ (uintptr_t) a);
                a->backoff.full_jitter = true;
        }
        if (transient && a->attempt < (throttled ? AWS_THROTTLE_ATTEMPTS : AWS_ATTEMPTS)) {
                uint64_t delay = backoff_next(&a->backoff);
                c->stats.retries++;
                log_debug("aws: %s %s failed (%s), retrying in %llu ms", aws_service_name(a->service),
                          a->target_header ? a->target_header : "query", *e.code ? e.code : e.message,
                          (unsigned long long) delay);
                uv_timer_start(&a->timer, on_backoff, delay, 0);
                return;
        }
        AwsResult fail = {.error = e.error, .status = r->status, .code = e.code, .message = e.message};
        call_finish(a, &fail);
}

static int dispatch(AwsCall *a) {
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
        return http_start(a->c->http, &req, on_http, a, &a->http);
}

static void on_backoff(uv_timer_t *t) {
        AwsCall *a = t->data;
        int r = dispatch(a);
        if (r < 0) {
                AwsResult fail = {.error = r, .message = strerror(-r)};
                call_finish(a, &fail);
        }
}

static int call_start(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                      const char *target, const char *content_type, const char *body, AwsDone done,
                      void *userdata, AwsCall **ret_call) {
        if (!aws_region_is_valid(region))
                return -EINVAL;
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
        backoff_init(&a->backoff, AWS_BACKOFF_MS, AWS_BACKOFF_CAP_MS, uv_hrtime() ^ (uintptr_t) a);
        list_init(&a->link);
        /* The first try starts here: a failure to start it is returned,
         * never called back. */
        int r = dispatch(a);
        if (r < 0) {
                uv_close((uv_handle_t *) &a->timer, call_freed);
                return r;
        }
        list_append(&c->calls, &a->link);
        if (ret_call)
                *ret_call = a;
        return 0;
}

int aws_call_json(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                  const char *target, const char *json_body, AwsDone done, void *userdata, AwsCall **ret_call) {
        return call_start(c, creds, region, service, target, "application/x-amz-json-1.1", json_body, done,
                          userdata, ret_call);
}

int aws_call_query(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                   const char *form, AwsDone done, void *userdata, AwsCall **ret_call) {
        return call_start(c, creds, region, service, NULL, "application/x-www-form-urlencoded; charset=utf-8",
                          form, done, userdata, ret_call);
}

int aws_client_new(uv_loop_t *loop, HttpLoop *http, AwsClient **ret) {
        AwsClient *c = calloc(1, sizeof(AwsClient));
        if (!c)
                return -ENOMEM;
        c->loop = loop;
        c->http = http;
        list_init(&c->calls);
        *ret = c;
        return 0;
}

void aws_client_free(AwsClient *c) {
        if (!c)
                return;
        while (!list_empty(&c->calls))
                aws_cancel(list_entry(c->calls.next, AwsCall, link));
        free(c);
}

void aws_cancel(AwsCall *a) {
        if (!a)
                return;
        call_detach(a);
        uv_close((uv_handle_t *) &a->timer, call_freed);
}

const AwsStats *aws_stats(const AwsClient *c) {
        return &c->stats;
}
