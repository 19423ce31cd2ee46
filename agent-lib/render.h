/* One render: read the template, resolve its values, render, and (unless
 * asked not to) replace the .env atomically.  Used by `anb-agent render`
 * and by the daemon's bootstrap and reloads.  A failure at any step leaves
 * the old .env exactly as it was.
 *
 * The outcome owns its message and rendered content; the job frees itself
 * after calling back. */
#pragma once

#include "aws.h"
#include "config.h"
#include "credentials.h"
#include "imds.h"
#include "template.h"

typedef enum RenderFlags {
        RENDER_WRITE = 1 << 0,     /* replace [env] output */
        RENDER_WANT_ROLE = 1 << 1, /* also resolve the role tag */
} RenderFlags;

typedef struct RenderOutcome {
        int error;
        int exit_code;   /* sysexits.h code for the CLI */
        char *message;   /* on error: one or more lines, each naming what to fix */
        Rendered *rendered;
        bool changed;    /* .env content differs from what was there */
        char *role;      /* with RENDER_WANT_ROLE: tag value, default_role, or NULL */
        char **warnings; /* e.g. keys with no portable quoting */
        const char *tags_source; /* "imds", "ec2:DescribeTags" or NULL (static) */
        unsigned aws_calls;
} RenderOutcome;

/* Where values come from; any may be NULL (IMDS disabled, no AWS). */
typedef struct RenderSources {
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
 * render_sources_free() accepts what a failed call left. */
int render_sources_new(uv_loop_t *loop, HttpLoop *http, const Config *c, CredentialsEvents events,
                       void *userdata, RenderSources *ret);
void render_sources_free(RenderSources *s);

/* done takes the outcome. */
int render_start(const RenderSources *src, const Config *c, RenderFlags flags, RenderDone done, void *userdata);

/* Resolves owner/group names (or numbers) to ids. */
int lookup_owner(const char *user, const char *group, uid_t *ret_uid, gid_t *ret_gid);
