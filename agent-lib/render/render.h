/* One render: read the template, resolve its values, render, and (unless
 * asked not to) replace the .env atomically.  Used by `anb-agent render`
 * and by the daemon's bootstrap and reloads.  A failure at any step leaves
 * the old .env exactly as it was.
 *
 * The template is read and the .env written on libuv's work queue, never on
 * the loop.  A render has an overall deadline ([env] render_timeout) for
 * reading and resolving; past it, it fails naming what it still waited
 * for.  A write already started is not interrupted (it is atomic anyway).  The outcome owns its
 * message and rendered content; the job frees itself after calling back.
 * Async contract (README, "The async contract"): no callback before
 * render_start() returns; render_cancel() cancels silently, with every
 * IMDS, credentials and AWS call the job has in flight (work already
 * running on the thread pool finishes, then the job frees itself).
 *
 * Order at shutdown: render_cancel() the job in flight, then
 * render_sources_free(), then run the loop once more.  The config passed
 * to render_start() must live until done runs or the job is cancelled. */
#pragma once

#include "aws/aws.h"
#include "env/config.h"
#include "aws/credentials.h"
#include "aws/imds.h"
#include "env/template.h"

typedef enum RenderFlags {
        RENDER_WRITE = 1 << 0,     /* replace [env] output */
        RENDER_WANT_ROLE = 1 << 1, /* also resolve the role tag */
        /* With RENDER_WANT_ROLE, while the units are not chosen yet: with
         * [units.ROLE] sections, a role tag that cannot be read for a
         * moment (and no role recorded) fails the render (EX_TEMPFAIL)
         * rather than guess default_role. */
        RENDER_NEED_ROLE = 1 << 2,
} RenderFlags;

/* Where a render's role comes from (RENDER_WANT_ROLE). */
typedef enum RoleSource {
        ROLE_UNKNOWN, /* not resolved, or default_role guessed while the tag failed for a moment */
        ROLE_TAG,     /* the tag's value */
        ROLE_DEFAULT, /* default_role: no such tag, or tags not to be had at all */
        ROLE_SAVED,   /* the tag failed for a moment: the role recorded beside the .env */
} RoleSource;

typedef struct RenderOutcome {
        int error;
        int exit_code;   /* sysexits.h code for the CLI */
        char *message;   /* on error: one or more lines, each naming what to fix */
        Rendered *rendered;
        bool changed;    /* .env content differs from what was there */
        /* With RENDER_WRITE: CLOCK_REALTIME us the .env on disk was last
         * written (by this render: when it was in place; else its mtime);
         * a unit started before then runs on an older file.  0: unknown. */
        uint64_t env_written_usec;
        char *role;      /* with RENDER_WANT_ROLE: see role_source; NULL: [units] */
        RoleSource role_source;
        char **warnings; /* e.g. keys with no portable quoting */
        const char *tags_source; /* "imds", "ec2:DescribeTags" or NULL (static) */
        unsigned aws_calls;
} RenderOutcome;

typedef struct RenderJob RenderJob;

/* Where values come from; any may be NULL (IMDS disabled, no AWS). */
typedef struct RenderSources {
        uv_loop_t *loop;
        ImdsClient *imds;
        AwsClient *aws;
        CredentialsCache *creds;
} RenderSources;

void render_outcome_free(RenderOutcome *o);

typedef void (*RenderDone)(RenderOutcome *o, void *userdata);

/* Reads and parses [env] template; on failure *ret_error says what to fix
 * ("cannot read template ..." or "file:line:column: ..."). */
int render_load_template(const Config *c, Template **ret, char **ret_error);

/* Creates the sources a configuration asks for on loop: the IMDS client
 * (none when IMDS is disabled), the AWS client and the credentials cache.
 * render_sources_free() accepts what a failed call left; it cancels their
 * calls silently, but a RenderJob using them must be cancelled first. */
int render_sources_new(uv_loop_t *loop, HttpLoop *http, const Config *c, CredentialsEvents events,
                       void *userdata, RenderSources *ret);
void render_sources_free(RenderSources *s);

/* done takes the outcome (NULL: out of memory); *ret_job (optional) is
 * valid until done runs. */
int render_start(const RenderSources *src, const Config *c, RenderFlags flags, RenderDone done, void *userdata,
                 RenderJob **ret_job);
void render_cancel(RenderJob *j); /* accepts NULL */

/* A role comes from a tag and selects [units.ROLE], names log lines and
 * reaches STATUS=: only letters, digits, '-', '_', '.', 1..64 of them.  A
 * render whose role tag is anything else fails (EX_DATAERR) before it
 * writes. */
bool render_role_is_plain(const char *role);

/* The role a daemon's render last wrote the .env for is kept beside it,
 * in [env] output + ".role" ("worker\n", 0644; removed when no role
 * applies), written after the .env and only when the role is certain:
 * the tag's value, or default_role for an instance without the tag or
 * where tags cannot be had at all (IMDS disabled, DescribeTags denied).
 * A render that cannot read the tag for a moment takes the role from
 * there (ROLE_SAVED), so a restart with IMDS down starts the units
 * of the role the last good .env belongs to, not default_role's.  When
 * the role changes, the old file is removed before the .env is replaced.
 * render_role_path() returns the path (NULL: out of memory). */
char *render_role_path(const Config *c);
/* Whether a failed role-tag lookup says the tag cannot be had at all, for
 * as long as nothing changes on the instance (then default_role is
 * certain): IMDS disabled or an identity document not shaped like AWS's,
 * tags neither in IMDS nor to be had from DescribeTags, access denied, no
 * IAM role.  Anything else (IMDS or EC2 failing, credentials expired, a
 * bad answer) a retry may cure. */
bool render_role_failure_lasts(int error);
/* Reads a role file: only one envfile_open_own() accepts, holding a
 * plain role name (-EPERM, -EBADMSG otherwise; -ENOENT when there is
 * none); *ret is set on success only.  Blocking. */
int render_read_saved_role(const char *path, char **ret);

