/* See resolve.h. */
#include "render/resolve.h"

#include <errno.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>

#include "aws/ec2xml.h"
#include "basic/list.h"
#include "basic/log.h"
#include "basic/strindex.h"
#include "basic/util.h"

/* DescribeTags pages followed at most: an instance has at most 50 tags. */
#define DESCRIBE_MAX_PAGES 20
/* IMDS requests and AWS operations in flight at once; the rest queue. */
#define RESOLVE_MAX_IN_FLIGHT 8

typedef struct Entry {
        TemplateSource source;
        char *key;
        char *value;
        int error; /* 0 known, -ENOENT absent, other: failed */
        char *reason;
        bool pending;
} Entry;

struct Resolver {
        uv_loop_t *loop;
        uv_timer_t defer; /* an answer known in resolver_start(), deferred */
        ListLink fetches, ops; /* every Fetch and AwsOp in flight */
        ImdsClient *imds;
        char *disabled_reason;
        AwsClient *aws;
        CredentialsCache *creds;
        char *region, *instance_id;
        bool identity_requested;
        bool identity_done;   /* the identity document arrived (or failed) */
        int identity_error;   /* it failed: why (what AWS sources then fail with) */
        bool need_aws;        /* secret or param entries */
        bool need_describe;   /* tags must come from DescribeTags */
        bool aws_started, describe_started, creds_asked, creds_retried;
        const AwsCredentials *credentials; /* borrowed from the cache */
        const char *tags_source;
        unsigned aws_calls;
        Entry *entries;
        size_t n_entries, entries_cap;
        StrIndex index; /* (source, key) -> entry: no scan per reference */
        unsigned pending;   /* fetches and operations not ended, queued ones included */
        unsigned in_flight; /* of which started */
        unsigned peak_in_flight;
        bool started, finishing, starting, pumping;
        CredentialsWait *prefetch;
        int fetch_error;
        ResolverDone done;
        void *userdata;
};

typedef struct Fetch {
        Resolver *r;
        size_t entry; /* for single-entry fetches */
        char *path;
        ImdsDone cb;
        bool started;
        ImdsCall *call;
        ListLink link;
} Fetch;

/* One AWS call (and its one retry after an ExpiredTokenException). */
typedef enum AwsJob {
        JOB_SECRET,
        JOB_PARAMS,
        JOB_DESCRIBE,
} AwsJob;

typedef struct AwsOp {
        Resolver *r;
        AwsJob job;
        char *key;        /* secret id */
        char **names;     /* parameter names of this batch */
        char *next_token; /* DescribeTags paging */
        char **seen_tokens;
        unsigned pages;
        bool retried;
        bool started;
        CredentialsWait *wait;
        AwsCall *call;
        ListLink link;
} AwsOp;

static void op_free(AwsOp *op) {
        list_unlink(&op->link);
        credentials_cancel(op->wait);
        aws_cancel(op->call);
        free(op->key);
        strv_free(op->names);
        free(op->next_token);
        strv_free(op->seen_tokens);
        free(op);
}

static void maybe_done(Resolver *r);

static void on_defer(uv_timer_t *t) {
        maybe_done(t->data);
}

int resolver_new(uv_loop_t *loop, ImdsClient *imds, const char *disabled_reason, AwsClient *aws,
                 CredentialsCache *creds, Resolver **ret) {
        Resolver *r = calloc(1, sizeof(Resolver));
        if (!r)
                return -ENOMEM;
        r->loop = loop;
        list_init(&r->fetches);
        list_init(&r->ops);
        r->imds = imds;
        r->aws = aws;
        r->creds = creds;
        if (disabled_reason && !(r->disabled_reason = strdup(disabled_reason))) {
                free(r);
                return -ENOMEM;
        }
        uv_timer_init(loop, &r->defer);
        r->defer.data = r;
        *ret = r;
        return 0;
}

static void resolver_closed(uv_handle_t *h) {
        free(h->data);
}

void resolver_free(Resolver *r) {
        if (!r)
                return;
        /* Cancels what is in flight: no callback reaches a freed resolver. */
        while (!list_empty(&r->fetches)) {
                Fetch *f = list_entry(r->fetches.next, Fetch, link);
                list_unlink(&f->link);
                imds_cancel(f->call);
                free(f->path);
                free(f);
        }
        while (!list_empty(&r->ops))
                op_free(list_entry(r->ops.next, AwsOp, link));
        credentials_cancel(r->prefetch);
        for (size_t i = 0; i < r->n_entries; i++) {
                free(r->entries[i].key);
                free_wipe(r->entries[i].value);
                free(r->entries[i].reason);
        }
        free(r->entries);
        strindex_deinit(&r->index);
        free(r->disabled_reason);
        free(r->region);
        free(r->instance_id);
        uv_close((uv_handle_t *) &r->defer, resolver_closed);
}

static Entry *find(Resolver *r, TemplateSource s, const char *key) {
        size_t i;
        return strindex_get(&r->index, s, key, &i) ? &r->entries[i] : NULL;
}

int resolver_want(Resolver *r, TemplateSource s, const char *key) {
        if (find(r, s, key))
                return 0;
        if (r->n_entries == r->entries_cap) {
                size_t cap = r->entries_cap ? r->entries_cap * 2 : 16;
                Entry *e = reallocarray(r->entries, cap, sizeof(Entry));
                if (!e)
                        return -ENOMEM;
                r->entries = e;
                r->entries_cap = cap;
        }
        Entry *e = &r->entries[r->n_entries];
        *e = (Entry) {.source = s, .key = strdup(key), .pending = true};
        if (!e->key || strindex_put(&r->index, s, e->key, r->n_entries, NULL) < 0) {
                free(e->key);
                return -ENOMEM;
        }
        r->n_entries++;
        return 0;
}

int resolver_want_template(Resolver *r, const Template *t) {
        for (size_t i = 0; i < template_n_refs(t); i++) {
                const TemplateRef *ref = template_ref(t, i);
                int k = resolver_want(r, ref->source, ref->key);
                if (k < 0)
                        return k;
        }
        return 0;
}

static void set_result(Entry *e, const char *value, size_t len, int error, const char *reason) {
        if (!e->pending)
                return;
        e->pending = false;
        e->error = error;
        if (!error) {
                e->value = strndup(value, len);
                if (!e->value)
                        e->error = -ENOMEM, e->reason = strdup("out of memory");
                else if (strlen(e->value) != len)
                        e->error = -EBADMSG, e->reason = strdup("the value contains a NUL byte");
        } else if (reason)
                e->reason = strdup(reason);
}

static void fail_source(Resolver *r, TemplateSource s, int error, const char *reason) {
        for (size_t i = 0; i < r->n_entries; i++)
                if (r->entries[i].source == s)
                        set_result(&r->entries[i], NULL, 0, error, reason);
}

static void note_error(Resolver *r, int error) {
        if (error && error != -ENOENT && !r->fetch_error)
                r->fetch_error = error;
}

static void maybe_done(Resolver *r) {
        if (r->pending > 0 || !r->started || r->finishing || r->starting)
                return;
        r->finishing = true;
        r->done(r, r->userdata);
}

static void pump(Resolver *r);

static void fetch_end(Fetch *f) {
        Resolver *r = f->r;
        list_unlink(&f->link);
        free(f->path);
        free(f);
        r->in_flight--;
        r->pending--;
        pump(r);
        maybe_done(r);
}

/* Queues an IMDS GET; pump() starts it when there is room. */
static int fetch(Resolver *r, const char *path, ImdsDone cb, size_t entry) {
        Fetch *f = calloc(1, sizeof(Fetch));
        if (!f)
                return -ENOMEM;
        *f = (Fetch) {.r = r, .entry = entry, .cb = cb, .path = strdup(path)};
        if (!f->path) {
                free(f);
                return -ENOMEM;
        }
        r->pending++;
        list_append(&r->fetches, &f->link);
        pump(r);
        return 0;
}

static void fetch_launch(Fetch *f) {
        f->started = true;
        if (++f->r->in_flight > f->r->peak_in_flight)
                f->r->peak_in_flight = f->r->in_flight;
        int k = imds_get(f->r->imds, f->path, f->cb, f, &f->call);
        if (k < 0) {
                ImdsResult res = {.error = k, .message = "cannot start an IMDS request"};
                f->cb(&res, f);
        }
}

static void on_value(const ImdsResult *res, void *userdata) {
        Fetch *f = userdata;
        f->call = NULL;
        Entry *e = &f->r->entries[f->entry];
        note_error(f->r, res->error);
        set_result(e, res->body, res->body_len, res->error, res->message);
        fetch_end(f);
}

static void aws_stage(Resolver *r);
static int start_identity(Resolver *r);

static void on_identity(const ImdsResult *res, void *userdata) {
        Fetch *f = userdata;
        f->call = NULL;
        Resolver *r = f->r;
        r->identity_done = true;
        note_error(r, res->error);
        if (res->error) {
                r->identity_error = res->error == -ENOENT ? -EIO : res->error;
                fail_source(r, SOURCE_IDENTITY, r->identity_error, res->message);
                aws_stage(r);
                fetch_end(f);
                return;
        }
        json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
        if (!json_is_object(doc))
                fail_source(r, SOURCE_IDENTITY, -EBADMSG, "the identity document is not a JSON object");
        const char *region = json_string_value(json_object_get(doc, "region"));
        const char *iid = json_string_value(json_object_get(doc, "instanceId"));
        /* Both go into AWS host names, signing scopes and request forms:
         * only AWS's own shapes are used (the values themselves still
         * render, as text, for ${identity:...}). */
        r->region = aws_region_is_valid(region) ? strdup(region) : NULL;
        r->instance_id = aws_instance_id_is_valid(iid) ? strdup(iid) : NULL;
        for (size_t i = 0; doc && i < r->n_entries; i++) {
                Entry *e = &r->entries[i];
                if (e->source != SOURCE_IDENTITY || !e->pending)
                        continue;
                json_t *v = json_object_get(doc, e->key);
                char num[64];
                if (json_is_string(v))
                        set_result(e, json_string_value(v), json_string_length(v), 0, NULL);
                else if (json_is_integer(v)) {
                        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                        set_result(e, num, strlen(num), 0, NULL);
                } else if (!v || json_is_null(v))
                        set_result(e, NULL, 0, -ENOENT, NULL);
                else
                        set_result(e, NULL, 0, -EINVAL, "this identity field is not a string or number");
        }
        json_decref(doc);
        aws_stage(r);
        fetch_end(f);
}

static bool list_has(const char *body, size_t len, const char *key) {
        size_t k = strlen(key);
        for (size_t pos = 0; pos < len;) {
                const char *nl = memchr(body + pos, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - (body + pos)) : len - pos;
                if (n == k && memcmp(body + pos, key, k) == 0)
                        return true;
                pos += n + 1;
        }
        return false;
}

static void on_tag_list(const ImdsResult *res, void *userdata) {
        Fetch *f = userdata;
        f->call = NULL;
        Resolver *r = f->r;
        if (res->error == -ENOENT && r->aws) {
                /* Tags are not exposed in IMDS: ask EC2 (signed). */
                r->need_describe = true;
                r->tags_source = "ec2:DescribeTags";
                if (!r->identity_requested)
                        start_identity(r);
                else
                        aws_stage(r);
        } else if (res->error == -ENOENT) {
                fail_source(r, SOURCE_TAG, -EOPNOTSUPP,
                            "instance tags are not available from IMDS (404): enable them in the instance's "
                            "metadata options (InstanceMetadataTags=enabled)");
                note_error(r, -EOPNOTSUPP);
        } else if (res->error) {
                note_error(r, res->error);
                fail_source(r, SOURCE_TAG, res->error, res->message);
        } else
                for (size_t i = 0; i < r->n_entries; i++) {
                        Entry *e = &r->entries[i];
                        r->tags_source = "imds";
                        if (e->source != SOURCE_TAG || !e->pending)
                                continue;
                        if (!list_has(res->body, res->body_len, e->key)) {
                                set_result(e, NULL, 0, -ENOENT, NULL);
                                continue;
                        }
                        _cleanup_free_ char *path = strdup_printf("meta-data/tags/instance/%s", e->key);
                        if (!path || fetch(r, path, on_value, i) < 0)
                                set_result(e, NULL, 0, -ENOMEM, "out of memory");
                }
        fetch_end(f);
}


/* ---- AWS sources -------------------------------------------------------- */

static void op_end(AwsOp *op) {
        Resolver *r = op->r;
        op_free(op);
        r->in_flight--;
        r->pending--;
        pump(r);
        maybe_done(r);
}

static bool entry_in_op(const AwsOp *op, const Entry *e) {
        switch (op->job) {
        case JOB_SECRET:
                return e->source == SOURCE_SECRET && strncmp(e->key, op->key, strlen(op->key)) == 0 &&
                       (e->key[strlen(op->key)] == 0 || e->key[strlen(op->key)] == '#');
        case JOB_PARAMS:
                return e->source == SOURCE_PARAM && strv_contains(op->names, e->key);
        default:
                return e->source == SOURCE_TAG;
        }
}

static void fail_op(AwsOp *op, int error, const char *reason) {
        Resolver *r = op->r;
        note_error(r, error == -ENOENT ? 0 : error);
        for (size_t i = 0; i < r->n_entries; i++)
                if (r->entries[i].pending && entry_in_op(op, &r->entries[i]))
                        set_result(&r->entries[i], NULL, 0, error, reason);
}

static const char *op_action(const AwsOp *op) {
        return op->job == JOB_SECRET ? "secretsmanager:GetSecretValue"
               : op->job == JOB_PARAMS ? "ssm:GetParameters"
                                       : "ec2:DescribeTags";
}

static void op_failed(AwsOp *op, const AwsResult *res) {
        const char *role = credentials_role(op->r->creds);
        _cleanup_free_ char *what = op->job == JOB_SECRET  ? strdup(op->key)
                                    : op->job == JOB_PARAMS ? strv_join(op->names, ", ")
                                                            : strdup(op->r->instance_id ? op->r->instance_id : "?");
        _cleanup_free_ char *msg = NULL;
        if (res->error == -EACCES)
                msg = strdup_printf("%s on %s denied for role %s (%s)", op_action(op), what, role ? role : "?",
                                    res->code && *res->code ? res->code : "HTTP 403");
        else if (res->error == -ENOENT)
                msg = strdup_printf("%s: %s not found (%s)", op_action(op), what, res->code);
        else
                msg = strdup_printf("%s on %s failed: %s%s%s", op_action(op), what,
                                    res->code && *res->code ? res->code : "", res->code && *res->code ? ": " : "",
                                    res->message ? res->message : "error");
        fail_op(op, res->error, msg ? msg : "AWS call failed");
}

static void set_secret_entries(AwsOp *op, const char *body, size_t len) {
        Resolver *r = op->r;
        json_t *doc = json_loadb(body, len, 0, NULL);
        const char *str = json_string_value(json_object_get(doc, "SecretString"));
        json_t *fields = NULL;
        for (size_t i = 0; i < r->n_entries; i++) {
                Entry *e = &r->entries[i];
                if (!e->pending || !entry_in_op(op, e))
                        continue;
                const char *hash = strchr(e->key, '#');
                if (!str) {
                        set_result(e, NULL, 0, -EINVAL,
                                   json_object_get(doc, "SecretBinary") ? "binary secrets are not supported"
                                                                         : "the answer has no SecretString");
                        continue;
                }
                if (!hash) {
                        set_result(e, str, strlen(str), 0, NULL);
                        continue;
                }
                if (!fields)
                        fields = json_loads(str, 0, NULL);
                if (!json_is_object(fields)) {
                        set_result(e, NULL, 0, -EINVAL, "the SecretString is not a JSON object, so it has no fields");
                        continue;
                }
                json_t *v = json_object_get(fields, hash + 1);
                if (json_is_string(v))
                        set_result(e, json_string_value(v), json_string_length(v), 0, NULL);
                else if (v && !json_is_null(v)) {
                        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                        set_result(e, t ? t : "", t ? strlen(t) : 0, t ? 0 : -ENOMEM, "out of memory");
                        free_wipe(t);
                } else
                        set_result(e, NULL, 0, -ENOENT, NULL);
        }
        json_decref(fields);
        json_decref(doc);
}

static void set_param_entries(AwsOp *op, const char *body, size_t len) {
        Resolver *r = op->r;
        json_t *doc = json_loadb(body, len, 0, NULL);
        json_t *params = json_object_get(doc, "Parameters"), *p;
        size_t i;
        json_array_foreach(params, i, p) {
                const char *name = json_string_value(json_object_get(p, "Name"));
                const char *value = json_string_value(json_object_get(p, "Value"));
                if (!name || !value)
                        continue;
                Entry *e = find(r, SOURCE_PARAM, name);
                if (e)
                        set_result(e, value, strlen(value), 0, NULL);
        }
        json_decref(doc);
        /* InvalidParameters, and anything not answered, do not exist. */
        for (size_t k = 0; k < r->n_entries; k++)
                if (r->entries[k].pending && entry_in_op(op, &r->entries[k]))
                        set_result(&r->entries[k], NULL, 0, -ENOENT, NULL);
}

static void on_describe_tag(const char *key, const char *value, void *ud) {
        Resolver *r = ud;
        Entry *e = find(r, SOURCE_TAG, key);
        if (e && e->pending)
                set_result(e, value, strlen(value), 0, NULL);
}

static void op_send(AwsOp *op, const AwsCredentials *creds);

static void on_op_creds(int error, const char *message, const AwsCredentials *creds, void *userdata) {
        AwsOp *op = userdata;
        op->wait = NULL;
        /* No IAM role (IMDS 404) says nothing of the secret, parameter or
         * tag asked for: never "absent", which would render a template's
         * default in its place. */
        if (error == -ENOENT)
                error = -ENOKEY;
        if (error) {
                note_error(op->r, error);
                fail_op(op, error, message);
                op_end(op);
                return;
        }
        op_send(op, creds);
}

static void op_get_credentials(AwsOp *op, bool force) {
        int k = credentials_get(op->r->creds, force, on_op_creds, op, &op->wait);
        if (k < 0) {
                fail_op(op, k, strerror(-k));
                op_end(op);
        }
}

/* A DescribeTags answer named another page: follow it, within bounds. */
static void describe_next_page(AwsOp *op, char *next) {
        _cleanup_free_ char *msg = NULL;
        op->pages++;
        if (strv_contains(op->seen_tokens, next))
                msg = strdup_printf("ec2:DescribeTags on %s returned the same NextToken twice (page %u); "
                                    "stopped paging",
                                    op->r->instance_id, op->pages + 1);
        else if (op->pages >= DESCRIBE_MAX_PAGES)
                msg = strdup_printf("ec2:DescribeTags on %s still had more after %u pages; stopped paging",
                                    op->r->instance_id, op->pages);
        if (msg || strv_push(&op->seen_tokens, strdup(next)) < 0) {
                free(next);
                note_error(op->r, -EPROTO);
                fail_op(op, -EPROTO, msg ? msg : "out of memory");
                op_end(op);
                return;
        }
        free(op->next_token);
        op->next_token = next;
        op_get_credentials(op, false);
}

static void on_aws(const AwsResult *res, void *userdata) {
        AwsOp *op = userdata;
        Resolver *r = op->r;
        op->call = NULL;
        if (res->error == -EKEYEXPIRED && !op->retried) {
                /* Expired under us: new credentials, one more try. */
                op->retried = true;
                op_get_credentials(op, true);
                return;
        }
        if (res->error) {
                op_failed(op, res);
                op_end(op);
                return;
        }
        if (op->job == JOB_SECRET)
                set_secret_entries(op, res->body, res->body_len);
        else if (op->job == JOB_PARAMS)
                set_param_entries(op, res->body, res->body_len);
        else {
                char *next = NULL;
                if (ec2_parse_describe_tags(res->body, res->body_len, on_describe_tag, r, &next) < 0) {
                        AwsResult bad = {.error = -EBADMSG, .message = "unreadable DescribeTags answer"};
                        op_failed(op, &bad);
                } else if (next) {
                        describe_next_page(op, next);
                        return;
                } else
                        fail_op(op, -ENOENT, NULL); /* tags not on the instance */
        }
        op_end(op);
}

static char *describe_form(const AwsOp *op) {
        Buf b = {0};
        char *id = curl_easy_escape(NULL, op->r->instance_id, 0);
        buf_printf(&b, "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1=%s",
                   id ? id : "");
        curl_free(id);
        if (op->next_token) {
                char *t = curl_easy_escape(NULL, op->next_token, 0);
                buf_printf(&b, "&NextToken=%s", t ? t : "");
                curl_free(t);
        }
        return buf_steal(&b);
}

static void op_send(AwsOp *op, const AwsCredentials *creds) {
        Resolver *r = op->r;
        int k;
        r->aws_calls++;
        if (op->job == JOB_DESCRIBE) {
                _cleanup_free_ char *form = describe_form(op);
                k = form ? aws_call_query(r->aws, creds, r->region, AWS_EC2, form, on_aws, op, &op->call) : -ENOMEM;
        } else {
                json_t *body = op->job == JOB_SECRET
                                       ? json_pack("{s:s}", "SecretId", op->key)
                                       : json_pack("{s:o, s:b}", "Names", json_array(), "WithDecryption", 1);
                for (size_t i = 0; op->job == JOB_PARAMS && op->names[i]; i++)
                        json_array_append_new(json_object_get(body, "Names"), json_string(op->names[i]));
                _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
                json_decref(body);
                k = text ? aws_call_json(r->aws, creds, r->region, op->job == JOB_SECRET ? AWS_SECRETS_MANAGER : AWS_SSM,
                                         op->job == JOB_SECRET ? "secretsmanager.GetSecretValue"
                                                               : "AmazonSSM.GetParameters",
                                         text, on_aws, op, &op->call)
                         : -ENOMEM;
        }
        if (k < 0) {
                fail_op(op, k, strerror(-k));
                op_end(op);
        }
}

static void op_start(Resolver *r, AwsJob job, char *key, char **names) {
        AwsOp *op = calloc(1, sizeof(AwsOp));
        if (!op) {
                free(key);
                strv_free(names);
                return;
        }
        *op = (AwsOp) {.r = r, .job = job, .key = key, .names = names};
        list_init(&op->link);
        list_append(&r->ops, &op->link);
        r->pending++;
        pump(r);
}

/* Starts queued fetches and operations while fewer than
 * RESOLVE_MAX_IN_FLIGHT run.  Not reentrant: a start that fails at once
 * ends inside, and the outer loop goes on. */
static void pump(Resolver *r) {
        if (r->pumping)
                return;
        r->pumping = true;
        while (r->in_flight < RESOLVE_MAX_IN_FLIGHT) {
                Fetch *f = NULL;
                AwsOp *op = NULL;
                list_for_each(l, &r->fetches) {
                        Fetch *x = list_entry(l, Fetch, link);
                        if (!x->started) {
                                f = x;
                                break;
                        }
                }
                if (f) {
                        fetch_launch(f);
                        continue;
                }
                list_for_each(l, &r->ops) {
                        AwsOp *x = list_entry(l, AwsOp, link);
                        if (!x->started) {
                                op = x;
                                break;
                        }
                }
                if (!op)
                        break;
                op->started = true;
                if (++r->in_flight > r->peak_in_flight)
                        r->peak_in_flight = r->in_flight;
                op_get_credentials(op, false);
        }
        r->pumping = false;
}

static void start_secrets_and_params(Resolver *r) {
        char **ids = NULL, **batch = NULL;
        for (size_t i = 0; i < r->n_entries; i++) {
                Entry *e = &r->entries[i];
                if (!e->pending || e->source != SOURCE_SECRET)
                        continue;
                char *id = strndup(e->key, strcspn(e->key, "#"));
                if (id && !strv_contains(ids, id))
                        strv_push(&ids, id);
                else
                        free(id);
        }
        for (size_t i = 0; ids && ids[i]; i++)
                op_start(r, JOB_SECRET, strdup(ids[i]), NULL);
        strv_free(ids);
        /* GetParameters takes at most 10 names. */
        for (size_t i = 0; i < r->n_entries; i++) {
                Entry *e = &r->entries[i];
                if (!e->pending || e->source != SOURCE_PARAM)
                        continue;
                strv_push(&batch, strdup(e->key));
                if (strv_length(batch) == 10) {
                        op_start(r, JOB_PARAMS, NULL, batch);
                        batch = NULL;
                }
        }
        if (batch)
                op_start(r, JOB_PARAMS, NULL, batch);
}

/* Runs once the identity document is known: the AWS calls need its
 * region (and DescribeTags its instance id). */
static void aws_stage(Resolver *r) {
        if (!r->identity_done || !r->aws)
                return;
        bool secrets = r->need_aws && !r->aws_started;
        bool describe = r->need_describe && !r->describe_started;
        if (!secrets && !describe)
                return;
        r->aws_started = r->aws_started || secrets;
        r->describe_started = r->describe_started || describe;
        if (!r->region || (describe && !r->instance_id)) {
                const char *why = "cannot call AWS: the identity document (region, instance id) is unavailable "
                                  "or not shaped like AWS's (\"eu-west-1\", \"i-0123456789abcdef0\")";
                /* A document IMDS failed to give may come on a retry; one
                 * AWS's shapes do not fit will not. */
                int error = r->identity_error ? r->identity_error : -ENETUNREACH;
                for (size_t i = 0; i < r->n_entries; i++) {
                        Entry *e = &r->entries[i];
                        if ((secrets && (e->source == SOURCE_SECRET || e->source == SOURCE_PARAM)) ||
                            (describe && e->source == SOURCE_TAG))
                                set_result(e, NULL, 0, error, why);
                }
                note_error(r, error);
                return;
        }
        if (describe)
                op_start(r, JOB_DESCRIBE, NULL, NULL);
        if (secrets)
                start_secrets_and_params(r);
}

static int start_identity(Resolver *r) {
        if (r->identity_requested)
                return 0;
        r->identity_requested = true;
        if (!r->imds) {
                r->identity_done = true;
                aws_stage(r);
                return 0;
        }
        return fetch(r, "dynamic/instance-identity/document", on_identity, 0);
}

static void on_prefetched(int error, const char *message, const AwsCredentials *creds, void *userdata) {
        (void) error, (void) message, (void) creds;
        ((Resolver *) userdata)->prefetch = NULL; /* the cache keeps them */
}

static bool key_is_safe_path(const char *k) {
        /* A meta-data path or tag key goes into a URL: no "..", no
         * characters that would change the request. */
        if (strstr(k, "..") || k[0] == '/')
                return false;
        for (const char *p = k; *p; p++)
                if ((unsigned char) *p <= ' ' || strchr("?#%\\\"<>^`{|}", *p) || (unsigned char) *p >= 0x7f)
                        return false;
        return true;
}

static int start_source(Resolver *r, TemplateSource s) {
        bool any = false;
        for (size_t i = 0; i < r->n_entries; i++)
                any = any || r->entries[i].source == s;
        if (!any)
                return 0;
        if (!r->imds) {
                fail_source(r, s, -ENETUNREACH, r->disabled_reason);
                note_error(r, -ENETUNREACH);
                return 0;
        }
        if (s == SOURCE_IDENTITY)
                return start_identity(r);
        if (s == SOURCE_TAG)
                return fetch(r, "meta-data/tags/instance", on_tag_list, 0);
        return 0;
}

int resolver_start(Resolver *r, ResolverDone done, void *userdata) {
        int k;
        r->done = done;
        r->userdata = userdata;
        r->starting = true;
        for (size_t i = 0; i < r->n_entries; i++) {
                Entry *e = &r->entries[i];
                if (e->source == SOURCE_ENV) {
                        const char *v = getenv(e->key);
                        set_result(e, v, v ? strlen(v) : 0, v ? 0 : -ENOENT, NULL);
                } else if ((e->source == SOURCE_SECRET || e->source == SOURCE_PARAM) && !r->aws)
                        set_result(e, NULL, 0, -EOPNOTSUPP, "AWS sources are not configured");
                else if (e->source == SOURCE_SECRET || e->source == SOURCE_PARAM)
                        r->need_aws = true;
                else if ((e->source == SOURCE_IMDS || e->source == SOURCE_TAG) && !key_is_safe_path(e->key))
                        set_result(e, NULL, 0, -EINVAL, "not a valid metadata path or tag key");
        }
        k = start_source(r, SOURCE_IDENTITY);
        if (k >= 0 && r->need_aws)
                k = start_identity(r); /* the region for the calls */
        /* The role's credentials do not depend on the identity document:
         * fetch them meanwhile, on the same IMDS token. */
        if (k >= 0 && r->need_aws && r->creds && r->imds)
                k = credentials_get(r->creds, false, on_prefetched, r, &r->prefetch);
        if (k >= 0)
                k = start_source(r, SOURCE_TAG);
        for (size_t i = 0; k >= 0 && i < r->n_entries; i++) {
                Entry *e = &r->entries[i];
                if (e->source != SOURCE_IMDS || !e->pending)
                        continue;
                if (!r->imds) {
                        set_result(e, NULL, 0, -ENETUNREACH, r->disabled_reason);
                        continue;
                }
                _cleanup_free_ char *path = strdup_printf("meta-data/%s", e->key);
                k = path ? fetch(r, path, on_value, i) : -ENOMEM;
        }
        r->starting = false;
        if (k < 0)
                return k;
        r->started = true;
        if (r->pending == 0)
                uv_timer_start(&r->defer, on_defer, 0, 0);
        return 0;
}

char *resolver_describe_pending(const Resolver *r) {
        Buf b = {0};
        for (size_t i = 0; i < r->n_entries; i++) {
                const Entry *e = &r->entries[i];
                if (!e->pending)
                        continue;
                buf_printf(&b, "%s%s:%s", b.len ? ", " : "", template_source_to_string(e->source), e->key);
        }
        if (!b.data)
                buf_puts(&b, "");
        return buf_steal(&b);
}

int resolver_lookup(void *userdata, TemplateSource s, const char *key, const char **ret_value,
                    const char **ret_reason) {
        Resolver *r = userdata;
        Entry *e = find(r, s, key);
        if (!e || e->pending) {
                *ret_reason = "not fetched";
                return -EIO;
        }
        if (e->error) {
                *ret_reason = e->reason;
                return e->error;
        }
        *ret_value = e->value;
        return 0;
}

int resolver_fetch_error(const Resolver *r) {
        return r->fetch_error;
}

const char *resolver_tags_source(const Resolver *r) {
        return r->tags_source;
}

unsigned resolver_aws_calls(const Resolver *r) {
        return r->aws_calls;
}

unsigned resolver_peak_in_flight(const Resolver *r) {
        return r->peak_in_flight;
}
