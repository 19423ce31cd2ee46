/* See render.h. */
#include "render/render.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "basic/clock.h"
#include "basic/log.h"
#include "basic/util.h"
#include "env/envfile.h"
#include "render/resolve.h"

#define TEMPLATE_MAX (1024 * 1024)

typedef enum RenderStage {
        STAGE_READ,    /* the template, on the work queue */
        STAGE_RESOLVE, /* the resolver's fetches */
        STAGE_WRITE,   /* envfile_write, on the work queue */
        STAGE_DONE,    /* the outcome is known: delivered on the next turn */
} RenderStage;

struct RenderJob {
        uv_loop_t *loop;
        const Config *config; /* borrowed until done runs or the job is cancelled */
        RenderSources src;
        RenderFlags flags;
        RenderStage stage;
        Template *template;
        Resolver *resolver;
        RenderOutcome *outcome;
        RenderDone done;
        void *userdata;
        bool cancelled; /* no callback any more */
        unsigned refs;  /* the timer, and the work in flight */
        uv_timer_t timer; /* the deadline, then the deferred delivery */
        uv_work_t work;
        bool working;
        /* What the work on the thread pool reads and writes: copies, as the
         * owner may free the config once it cancelled the job. */
        char *template_path, *output_path;
        uid_t uid; /* resolved when the config was loaded */
        gid_t gid;
        mode_t mode;
        char *text; /* the template read */
        size_t len;
        const char *content; /* to write: borrowed from the outcome */
        size_t content_len;
        int work_error;
        bool changed;
        uint64_t written_usec;
        /* With RENDER_WANT_ROLE: the role file beside the .env; the role
         * it held when the template was read (read_role on the thread
         * pool, saved_role once after_read published it); with
         * role_update, the role recorded with the .env (NULL: none;
         * borrowed from the outcome, like content). */
        char *role_path, *read_role, *saved_role;
        const char *new_role;
        bool role_update;
        int role_write_error;
        int role_error;  /* the tag's lookup failed: why */
        char *role_reason;
};

void render_outcome_free(RenderOutcome *o) {
        if (!o)
                return;
        free(o->message);
        rendered_free(o->rendered);
        free(o->role);
        strv_free(o->warnings);
        free(o);
}

static void job_unref(RenderJob *j) {
        if (--j->refs > 0)
                return;
        template_free(j->template);
        render_outcome_free(j->outcome);
        free(j->text);
        free(j->template_path);
        free(j->output_path);
        free(j->role_path);
        free(j->read_role);
        free(j->saved_role);
        free(j->role_reason);
        free(j);
}

static void timer_closed(uv_handle_t *h) {
        job_unref(h->data);
}

/* Ends the job's activity on the loop: the resolver's calls are cancelled
 * (silently), the timer closed; work on the thread pool, if any, runs to
 * its end and then drops the last reference. */
static void job_close(RenderJob *j) {
        resolver_free(j->resolver);
        j->resolver = NULL;
        if (j->working)
                uv_cancel((uv_req_t *) &j->work); /* fails once the work runs: fine */
        uv_timer_stop(&j->timer);
        uv_close((uv_handle_t *) &j->timer, timer_closed);
}

void render_cancel(RenderJob *j) {
        if (!j)
                return;
        j->cancelled = true;
        job_close(j);
}

static void on_deliver(uv_timer_t *t) {
        RenderJob *j = t->data;
        RenderOutcome *o = TAKE_PTR(j->outcome);
        RenderDone done = j->done;
        void *ud = j->userdata;
        job_close(j);
        done(o, ud);
}

/* Every outcome reaches the owner from the loop, one turn later, after the
 * resolver's callback that produced it has returned. */
static void finish(RenderJob *j) {
        j->stage = STAGE_DONE;
        uv_timer_stop(&j->timer);
        uv_timer_start(&j->timer, on_deliver, 0, 0);
}

static void fail(RenderJob *j, int error, int exit_code, char *message) {
        RenderOutcome *o = j->outcome;
        o->error = error;
        o->exit_code = exit_code;
        free(o->message);
        o->message = message ? message : strdup("out of memory");
        finish(j);
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

bool render_role_is_plain(const char *role) {
        size_t n = strlen(role);
        if (n == 0 || n > 64)
                return false;
        for (const char *p = role; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

char *render_role_path(const Config *c) {
        return strdup_printf("%s.role", c->env_output);
}

int render_read_saved_role(const char *path, char **ret) {
        /* Only a file the agent wrote (envfile_open_own), so nothing
         * another user put there is read. */
        int fd = envfile_open_own(path);
        if (fd < 0)
                return fd == -ELOOP ? -EPERM : fd;
        char buf[80];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        int e = errno;
        close(fd);
        if (n < 0)
                return -e;
        buf[n] = 0;
        if (n > 0 && buf[n - 1] == '\n')
                buf[--n] = 0;
        if (!render_role_is_plain(buf))
                return -EBADMSG;
        char *role = strdup(buf);
        if (!role)
                return -ENOMEM;
        *ret = role;
        return 0;
}

bool render_role_failure_lasts(int error) {
        return error == -ENETUNREACH || error == -EOPNOTSUPP || error == -EACCES || error == -ENOKEY;
}

/* The role (RoleSource): the tag's value; default_role when the instance
 * has no such tag or tags cannot be had at all; when the tag could not be
 * read for a moment, the role the last .env was written for (a failed
 * render's units run on that .env), else default_role as a guess. */
static void resolve_role(RenderJob *j, RenderOutcome *o) {
        const char *v = NULL, *reason = NULL;
        if (!(j->flags & RENDER_WANT_ROLE) || o->role_source != ROLE_UNKNOWN)
                return;
        int k = j->resolver ? resolver_lookup(j->resolver, SOURCE_TAG, j->config->role_tag, &v, &reason) : -EIO;
        const char *role = j->config->default_role;
        if (k == 0) {
                role = v;
                o->role_source = ROLE_TAG;
        } else if (k == -ENOENT || render_role_failure_lasts(k))
                o->role_source = ROLE_DEFAULT;
        else if (j->saved_role) {
                role = j->saved_role;
                o->role_source = ROLE_SAVED;
        }
        free(o->role);
        o->role = role ? strdup(role) : NULL;
        if (role && !o->role)
                o->role_source = ROLE_UNKNOWN; /* out of memory: nothing certain */
        j->role_error = k;
        free(j->role_reason);
        j->role_reason = k == 0 ? NULL : strdup(reason ? reason : "not fetched");
}

/* Records role in the role file ("ROLE\n", 0644), or removes the file
 * for none. */
static int write_role(const char *path, const char *role) {
        if (!role)
                return envfile_remove(path);
        _cleanup_free_ char *line = strdup_printf("%s\n", role);
        bool changed;
        return line ? envfile_write(path, line, strlen(line), geteuid(), getegid(), 0644, &changed) : -ENOMEM;
}

static void on_write_work(uv_work_t *w) {
        RenderJob *j = w->data;
        /* The role file never names another role than the .env's: when the
         * role changes, the old file goes before the .env is replaced (a
         * crash between the two leaves none), the new one comes after; if
         * the .env cannot be replaced, the old file is put back. */
        bool removed = j->role_update && !streq_ptr(j->new_role, j->saved_role) && envfile_remove(j->role_path) == 0;
        j->work_error = envfile_write(j->output_path, j->content, j->content_len, j->uid, j->gid, j->mode,
                                      &j->changed);
        if (j->work_error < 0) {
                if (removed && j->saved_role)
                        (void) write_role(j->role_path, j->saved_role);
                return;
        }
        if (j->role_update) {
                j->role_write_error = write_role(j->role_path, j->new_role);
                if (j->role_write_error < 0 && j->new_role)
                        (void) envfile_remove(j->role_path);
        }
        /* The file's mtime comes from the kernel's coarse clock (a tick
         * behind): when this render wrote it, the clock read now is the
         * exact bound; units started after it read this content. */
        struct stat st;
        if (j->changed)
                j->written_usec = clock_realtime_usec();
        else if (lstat(j->output_path, &st) == 0)
                j->written_usec = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC + (uint64_t) st.st_mtim.tv_nsec / 1000;
}

static void after_write(uv_work_t *w, int status) {
        RenderJob *j = w->data;
        j->working = false;
        if (j->cancelled || status == UV_ECANCELED) {
                job_unref(j);
                return;
        }
        job_unref(j); /* the timer still holds one */
        const Config *c = j->config;
        int k = j->work_error;
        if (k < 0)
                return fail(j, k, EX_CANTCREAT,
                            strdup_printf("cannot write %s: %s (the previous file is unchanged)", c->env_output,
                                          strerror(-k)));
        j->outcome->changed = j->changed;
        j->outcome->env_written_usec = j->written_usec;
        if (j->role_write_error < 0) {
                char *warn = strdup_printf("cannot record the role beside the .env (%s: %s): a restart that "
                                           "cannot read the role tag starts default_role's units",
                                           j->role_path, strerror(-j->role_write_error));
                if (!warn || strv_push(&j->outcome->warnings, warn) < 0)
                        free(warn);
        }
        finish(j);
}

static void start_write(RenderJob *j) {
        j->stage = STAGE_WRITE;
        /* The deadline covers waiting, not the write: stopping it halfway
         * could not keep the old .env anyway. */
        uv_timer_stop(&j->timer);
        j->content = j->outcome->rendered->text;
        j->content_len = j->outcome->rendered->len;
        /* The role goes beside the .env only when it is certain: a default
         * guessed because the tag could not be read keeps the one there. */
        RoleSource src = j->outcome->role_source;
        if ((j->flags & RENDER_WANT_ROLE) && (src == ROLE_TAG || src == ROLE_DEFAULT)) {
                j->new_role = j->outcome->role;
                j->role_update = true;
        }
        j->work.data = j;
        int k = uv_queue_work(j->loop, &j->work, on_write_work, after_write);
        if (k < 0)
                return fail(j, -EIO, EX_OSERR, strdup_printf("cannot queue the write of %s: %s",
                                                             j->config->env_output, uv_strerror(k)));
        j->working = true;
        j->refs++;
}

static void on_resolved(Resolver *r, void *userdata) {
        RenderJob *j = userdata;
        /* The deadline may have failed the job in the same loop turn (with
         * libuv >= 1.45 a timer started in a timer callback waits for the
         * next turn): its outcome is out, nothing may be written. */
        if (j->stage != STAGE_RESOLVE)
                return;
        const Config *c = j->config;
        RenderOutcome *o = j->outcome;
        char *err = NULL;
        o->tags_source = resolver_tags_source(r);
        o->aws_calls = resolver_aws_calls(r);
        /* The role is known (tag or default) even when the render fails: a
         * daemon falling back to the last good .env still needs its units. */
        resolve_role(j, o);
        if (o->role && !render_role_is_plain(o->role)) {
                free(TAKE_PTR(o->role));
                return fail(j, -EINVAL, EX_DATAERR,
                            strdup_printf("tag '%s': the role is not a plain name (letters, digits, '-', '_', '.'; "
                                          "at most 64): refused, the .env was not changed; fix the instance's tag",
                                          c->role_tag));
        }
        int k = template_render(j->template, resolver_lookup, r, c->env_format, &o->rendered, &err);
        if (k == -ENOENT || k == -EILSEQ || k == -EOPNOTSUPP || k == -EINVAL)
                return fail(j, k, EX_DATAERR, err);
        if (k == -EACCES)
                return fail(j, k, EX_NOPERM, err);
        if (k == -ENOMEM)
                return fail(j, k, EX_OSERR, err);
        if (k < 0)
                return fail(j, k, exit_code_for_fetch(resolver_fetch_error(r) ? resolver_fetch_error(r) : k), err);
        /* Units to choose by role: a default guessed because IMDS or EC2
         * failed for a moment would start another role's units (a worker's
         * agent starting nginx).  The render fails and is retried instead.
         * A lasting reason (IMDS disabled, tags not to be had, DescribeTags
         * denied) takes default_role. */
        if ((j->flags & RENDER_NEED_ROLE) && o->role_source == ROLE_UNKNOWN && c->n_roles > 0)
                return fail(j, j->role_error ? j->role_error : -ENOMEM, EX_TEMPFAIL,
                            strdup_printf("cannot read the role tag '%s' (%s): the units to start depend on it; "
                                          "the .env was not changed",
                                          c->role_tag, j->role_reason ? j->role_reason : "not fetched"));
        if (collect_warnings(o, c) < 0)
                return fail(j, -ENOMEM, EX_OSERR, NULL);
        if (j->flags & RENDER_WRITE)
                return start_write(j);
        finish(j);
}

static void on_deadline(uv_timer_t *t) {
        RenderJob *j = t->data;
        const Config *c = j->config;
        _cleanup_free_ char *waiting = j->resolver ? resolver_describe_pending(j->resolver) : NULL;
        char *msg;
        resolve_role(j, j->outcome);
        if (j->stage == STAGE_READ)
                msg = strdup_printf("render timed out after %u s reading the template %s ([env] render_timeout); "
                                    "the .env was not changed",
                                    j->config->render_timeout_sec, c->env_template);
        else
                msg = strdup_printf("render timed out after %u s waiting for %s ([env] render_timeout); the .env "
                                    "was not changed",
                                    j->config->render_timeout_sec,
                                    waiting && *waiting ? waiting : "the sources to answer");
        /* What is still in flight is cancelled when the outcome goes out. */
        fail(j, -ETIMEDOUT, EX_TEMPFAIL, msg);
}

static void on_read_work(uv_work_t *w) {
        RenderJob *j = w->data;
        j->work_error = read_file_full(j->template_path, TEMPLATE_MAX, &j->text, &j->len);
        if (j->role_path)
                (void) render_read_saved_role(j->role_path, &j->read_role);
}

static void after_read(uv_work_t *w, int status) {
        RenderJob *j = w->data;
        const Config *c = j->config;
        j->working = false;
        if (j->cancelled || status == UV_ECANCELED || j->stage != STAGE_READ) {
                job_unref(j); /* cancelled, or timed out while reading */
                return;
        }
        job_unref(j);
        j->saved_role = TAKE_PTR(j->read_role); /* the loop's from here */
        int k = j->work_error;
        if (k < 0)
                return fail(j, k, k == -ENOMEM ? EX_OSERR : EX_CONFIG,
                            strdup_printf("cannot read template %s: %s ([env] template in %s)", c->env_template,
                                          strerror(-k), c->path));
        char *err = NULL;
        k = template_parse(c->env_template, j->text, j->len, &j->template, &err);
        free(TAKE_PTR(j->text));
        if (k < 0)
                return fail(j, k, k == -ENOMEM ? EX_OSERR : EX_CONFIG, err);
        j->stage = STAGE_RESOLVE;
        k = resolver_new(j->loop, j->src.imds, "IMDS is disabled (AWS_EC2_METADATA_DISABLED=true)", j->src.aws,
                         j->src.creds, &j->resolver);
        if (k >= 0)
                k = resolver_want_template(j->resolver, j->template);
        if (k >= 0 && (j->flags & RENDER_WANT_ROLE))
                k = resolver_want(j->resolver, SOURCE_TAG, c->role_tag);
        if (k >= 0)
                k = resolver_start(j->resolver, on_resolved, j);
        if (k < 0)
                return fail(j, k, EX_OSERR, strdup_printf("cannot start the render: %s", strerror(-k)));
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
        *ret = (RenderSources) {.loop = loop};
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

/* Every module cancels silently, so the order only has to keep the
 * credentials' IMDS call valid while they cancel it. */
void render_sources_free(RenderSources *s) {
        credentials_free(s->creds);
        aws_client_free(s->aws);
        imds_client_free(s->imds);
        *s = (RenderSources) {0};
}

int render_start(const RenderSources *src, const Config *c, RenderFlags flags, RenderDone done, void *userdata,
                 RenderJob **ret_job) {
        RenderJob *j = calloc(1, sizeof(RenderJob));
        if (!j)
                return -ENOMEM;
        *j = (RenderJob) {
                .loop = src->loop,
                .config = c,
                .src = *src,
                .flags = flags,
                .done = done,
                .userdata = userdata,
                .mode = c->env_mode,
                .refs = 1, /* the timer */
        };
        j->outcome = calloc(1, sizeof(RenderOutcome));
        j->template_path = strdup(c->env_template);
        j->output_path = strdup(c->env_output);
        j->uid = c->env_uid;
        j->gid = c->env_gid;
        if ((flags & RENDER_WANT_ROLE) && !(j->role_path = render_role_path(c))) {
                free(j->template_path); /* fails the start below */
                j->template_path = NULL;
        }
        uv_timer_init(j->loop, &j->timer);
        j->timer.data = j;
        j->work.data = j;
        int k = j->outcome && j->template_path && j->output_path ? 0 : -ENOMEM;
        if (k >= 0)
                k = uv_queue_work(j->loop, &j->work, on_read_work, after_read);
        if (k < 0) {
                uv_close((uv_handle_t *) &j->timer, timer_closed);
                return k == -ENOMEM ? k : -EIO;
        }
        j->working = true;
        j->refs++;
        uint64_t timeout = (uint64_t) (c->render_timeout_sec ? c->render_timeout_sec : 60) * 1000;
        uv_timer_start(&j->timer, on_deadline, timeout, 0);
        if (ret_job)
                *ret_job = j;
        return 0;
}
