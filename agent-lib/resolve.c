/* See resolve.h. */
#include "resolve.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>

#include "log.h"
#include "util.h"

typedef struct Entry {
        TemplateSource source;
        char *key;
        char *value;
        int error; /* 0 known, -ENOENT absent, other: failed */
        char *reason;
        bool pending;
} Entry;

struct Resolver {
        ImdsClient *imds;
        char *disabled_reason;
        Entry *entries;
        size_t n_entries;
        unsigned pending;
        bool started, finishing;
        int fetch_error;
        ResolverDone done;
        void *userdata;
};

typedef struct Fetch {
        Resolver *r;
        size_t entry; /* for single-entry fetches */
} Fetch;

int resolver_new(ImdsClient *imds, const char *disabled_reason, Resolver **ret) {
        Resolver *r = calloc(1, sizeof(Resolver));
        if (!r)
                return -ENOMEM;
        r->imds = imds;
        if (disabled_reason && !(r->disabled_reason = strdup(disabled_reason))) {
                free(r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

void resolver_free(Resolver *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_entries; i++) {
                free(r->entries[i].key);
                free_wipe(r->entries[i].value);
                free(r->entries[i].reason);
        }
        free(r->entries);
        free(r->disabled_reason);
        free(r);
}

static Entry *find(Resolver *r, TemplateSource s, const char *key) {
        for (size_t i = 0; i < r->n_entries; i++)
                if (r->entries[i].source == s && streq(r->entries[i].key, key))
                        return &r->entries[i];
        return NULL;
}

int resolver_want(Resolver *r, TemplateSource s, const char *key) {
        if (find(r, s, key))
                return 0;
        Entry *e = realloc(r->entries, (r->n_entries + 1) * sizeof(Entry));
        if (!e)
                return -ENOMEM;
        r->entries = e;
        e = &r->entries[r->n_entries];
        *e = (Entry) {.source = s, .key = strdup(key), .pending = true};
        if (!e->key)
                return -ENOMEM;
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
        if (r->pending > 0 || !r->started || r->finishing)
                return;
        r->finishing = true;
        r->done(r, r->userdata);
}

static void fetch_end(Fetch *f) {
        Resolver *r = f->r;
        free(f);
        r->pending--;
        maybe_done(r);
}

static int fetch(Resolver *r, const char *path, ImdsDone cb, size_t entry) {
        Fetch *f = calloc(1, sizeof(Fetch));
        if (!f)
                return -ENOMEM;
        *f = (Fetch) {r, entry};
        r->pending++;
        int k = imds_get(r->imds, path, cb, f);
        if (k < 0) {
                r->pending--;
                free(f);
        }
        return k;
}

static void on_value(const ImdsResult *res, void *userdata) {
        Fetch *f = userdata;
        Entry *e = &f->r->entries[f->entry];
        note_error(f->r, res->error);
        set_result(e, res->body, res->body_len, res->error, res->message);
        fetch_end(f);
}

static void on_identity(const ImdsResult *res, void *userdata) {
        Fetch *f = userdata;
        Resolver *r = f->r;
        note_error(r, res->error);
        if (res->error) {
                fail_source(r, SOURCE_IDENTITY, res->error == -ENOENT ? -EIO : res->error, res->message);
                fetch_end(f);
                return;
        }
        json_t *doc = json_loadb(res->body, res->body_len, 0, NULL);
        if (!json_is_object(doc))
                fail_source(r, SOURCE_IDENTITY, -EBADMSG, "the identity document is not a JSON object");
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
        Resolver *r = f->r;
        if (res->error == -ENOENT) {
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
                return fetch(r, "dynamic/instance-identity/document", on_identity, 0);
        if (s == SOURCE_TAG)
                return fetch(r, "meta-data/tags/instance", on_tag_list, 0);
        return 0;
}

int resolver_start(Resolver *r, ResolverDone done, void *userdata) {
        int k;
        r->done = done;
        r->userdata = userdata;
        for (size_t i = 0; i < r->n_entries; i++) {
                Entry *e = &r->entries[i];
                if (e->source == SOURCE_ENV) {
                        const char *v = getenv(e->key);
                        set_result(e, v, v ? strlen(v) : 0, v ? 0 : -ENOENT, NULL);
                } else if (e->source == SOURCE_SECRET)
                        set_result(e, NULL, 0, -EOPNOTSUPP, "Secrets Manager sources are not available yet");
                else if (e->source == SOURCE_PARAM)
                        set_result(e, NULL, 0, -EOPNOTSUPP, "SSM Parameter Store sources are not available yet");
                else if ((e->source == SOURCE_IMDS || e->source == SOURCE_TAG) && !key_is_safe_path(e->key))
                        set_result(e, NULL, 0, -EINVAL, "not a valid metadata path or tag key");
        }
        k = start_source(r, SOURCE_IDENTITY);
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
        if (k < 0)
                return k;
        r->started = true;
        maybe_done(r);
        return 0;
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
