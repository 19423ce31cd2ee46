/* See render.h. */
#include "render.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <sysexits.h>

#include "envfile.h"
#include "log.h"
#include "resolve.h"
#include "util.h"

#define TEMPLATE_MAX (1024 * 1024)

typedef struct RenderJob {
        const Config *config;
        RenderFlags flags;
        Template *template;
        Resolver *resolver;
        RenderDone done;
        void *userdata;
} RenderJob;

void render_outcome_free(RenderOutcome *o) {
        if (!o)
                return;
        free(o->message);
        rendered_free(o->rendered);
        free(o->role);
        strv_free(o->warnings);
        free(o);
}

static void job_free(RenderJob *j) {
        template_free(j->template);
        resolver_free(j->resolver);
        free(j);
}

static int parse_id(const char *s, unsigned long *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (!*s || *end || errno)
                return -EINVAL;
        *ret = v;
        return 0;
}

int lookup_owner(const char *user, const char *group, uid_t *ret_uid, gid_t *ret_gid) {
        unsigned long id;
        char buf[16384];
        if (parse_id(user, &id) >= 0)
                *ret_uid = (uid_t) id;
        else {
                struct passwd pw, *res = NULL;
                if (getpwnam_r(user, &pw, buf, sizeof buf, &res) != 0 || !res)
                        return -ESRCH;
                *ret_uid = pw.pw_uid;
        }
        if (parse_id(group, &id) >= 0)
                *ret_gid = (gid_t) id;
        else {
                struct group gr, *res = NULL;
                if (getgrnam_r(group, &gr, buf, sizeof buf, &res) != 0 || !res)
                        return -ESRCH;
                *ret_gid = gr.gr_gid;
        }
        return 0;
}

static int exit_code_for_fetch(int error) {
        switch (error) {
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -EHOSTUNREACH:
        case -EIO:
                return EX_TEMPFAIL;
        default:
                return EX_UNAVAILABLE;
        }
}

static void finish(RenderJob *j, RenderOutcome *o) {
        RenderDone done = j->done;
        void *ud = j->userdata;
        job_free(j);
        done(o, ud);
}

static void fail(RenderJob *j, RenderOutcome *o, int error, int exit_code, char *message) {
        o->error = error;
        o->exit_code = exit_code;
        o->message = message ? message : strdup("out of memory");
        finish(j, o);
}

static int collect_warnings(RenderOutcome *o, const Config *c) {
        for (size_t i = 0; i < o->rendered->n_vars; i++) {
                const RenderedVar *v = &o->rendered->vars[i];
                if (v->portable)
                        continue;
                char *w = strdup_printf("%s has no quoting that systemd, python-dotenv and sh all read back "
                                        "the same; written for [env] format=%s",
                                        v->name, envfile_format_to_string(c->env_format));
                if (!w || strv_push(&o->warnings, w) < 0) {
                        free(w);
                        return -ENOMEM;
                }
        }
        return 0;
}

static void resolve_role(RenderJob *j, RenderOutcome *o) {
        const char *v = NULL, *reason = NULL;
        if (!(j->flags & RENDER_WANT_ROLE))
                return;
        if (resolver_lookup(j->resolver, SOURCE_TAG, j->config->role_tag, &v, &reason) == 0)
                o->role = strdup(v);
        else if (j->config->default_role)
                o->role = strdup(j->config->default_role);
}

static void on_resolved(Resolver *r, void *userdata) {
        RenderJob *j = userdata;
        const Config *c = j->config;
        RenderOutcome *o = calloc(1, sizeof(RenderOutcome));
        char *err = NULL;
        if (o) {
                o->tags_source = resolver_tags_source(r);
                o->aws_calls = resolver_aws_calls(r);
        }
        if (!o) {
                j->done(NULL, j->userdata);
                job_free(j);
                return;
        }
        /* The role is known (tag or default) even when the render fails: a
         * daemon falling back to the last good .env still needs its units. */
        resolve_role(j, o);
        int k = template_render(j->template, resolver_lookup, r, c->env_format, &o->rendered, &err);
        if (k == -ENOENT || k == -EILSEQ || k == -EOPNOTSUPP || k == -EINVAL)
                return fail(j, o, k, EX_DATAERR, err);
        if (k == -EACCES)
                return fail(j, o, k, EX_NOPERM, err);
        if (k == -ENOMEM)
                return fail(j, o, k, EX_OSERR, err);
        if (k < 0)
                return fail(j, o, k, exit_code_for_fetch(resolver_fetch_error(r) ? resolver_fetch_error(r) : k),
                            err);
        if (collect_warnings(o, c) < 0)
                return fail(j, o, -ENOMEM, EX_OSERR, NULL);

        if (j->flags & RENDER_WRITE) {
                uid_t uid;
                gid_t gid;
                if (lookup_owner(c->env_owner, c->env_group, &uid, &gid) < 0)
                        return fail(j, o, -ESRCH, EX_NOUSER,
                                    strdup_printf("%s: [env] owner %s or group %s does not exist", c->path,
                                                  c->env_owner, c->env_group));
                k = envfile_write(c->env_output, o->rendered->text, o->rendered->len, uid, gid, c->env_mode,
                                  &o->changed);
                if (k < 0)
                        return fail(j, o, k, EX_CANTCREAT,
                                    strdup_printf("cannot write %s: %s (the previous file is unchanged)",
                                                  c->env_output, strerror(-k)));
        }
        finish(j, o);
}

int render_load_template(const Config *c, Template **ret, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        *ret_error = NULL;
        int k = read_file_full(c->env_template, TEMPLATE_MAX, &text, &len);
        if (k < 0) {
                *ret_error = strdup_printf("cannot read template %s: %s ([env] template in %s)", c->env_template,
                                           strerror(-k), c->path);
                return k;
        }
        return template_parse(c->env_template, text, len, ret, ret_error);
}

int render_sources_new(uv_loop_t *loop, HttpLoop *http, const Config *c, CredentialsEvents events,
                       void *userdata, RenderSources *ret) {
        int r = 0;
        *ret = (RenderSources) {0};
        if (!c->imds_disabled) {
                ImdsOptions io = {
                        .endpoint = c->imds_endpoint,
                        .token_ttl = c->imds_token_ttl,
                        .connect_timeout_ms = c->imds_connect_timeout_ms,
                        .timeout_ms = c->imds_timeout_ms,
                        .attempts = c->imds_attempts,
                };
                r = imds_client_new(loop, http, &io, &ret->imds);
        }
        if (r >= 0)
                r = aws_client_new(loop, http, &ret->aws);
        if (r >= 0)
                r = credentials_new(loop, ret->imds, c->credentials_refresh_sec, events, userdata, &ret->creds);
        return r;
}

/* The credentials first: cancelling IMDS requests calls back into them. */
void render_sources_free(RenderSources *s) {
        credentials_free(s->creds);
        aws_client_free(s->aws);
        imds_client_free(s->imds);
        *s = (RenderSources) {0};
}

int render_start(const RenderSources *src, const Config *c, RenderFlags flags, RenderDone done, void *userdata) {
        RenderJob *j = calloc(1, sizeof(RenderJob));
        int k;

        if (!j)
                return -ENOMEM;
        *j = (RenderJob) {.config = c, .flags = flags, .done = done, .userdata = userdata};
        RenderOutcome *o = calloc(1, sizeof(RenderOutcome));
        if (!o) {
                job_free(j);
                return -ENOMEM;
        }
        char *err = NULL;
        k = render_load_template(c, &j->template, &err);
        if (k < 0) {
                fail(j, o, k, k == -ENOMEM ? EX_OSERR : EX_CONFIG, err);
                return 0;
        }
        free(o);
        k = resolver_new(src->imds, "IMDS is disabled (AWS_EC2_METADATA_DISABLED=true)", src->aws, src->creds,
                         &j->resolver);
        if (k >= 0)
                k = resolver_want_template(j->resolver, j->template);
        if (k >= 0 && (flags & RENDER_WANT_ROLE))
                k = resolver_want(j->resolver, SOURCE_TAG, c->role_tag);
        if (k >= 0)
                k = resolver_start(j->resolver, on_resolved, j);
        if (k < 0) {
                job_free(j);
                return k;
        }
        return 0;
}
