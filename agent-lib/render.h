/* One render: read the template, resolve its values, render, and (unless
 * asked not to) replace the .env atomically.  Used by `anb-agent render`
 * and by the daemon's bootstrap and reloads.  A failure at any step leaves
 * the old .env exactly as it was.
 *
 * The outcome owns its message and rendered content; the job frees itself
 * after calling back. */
#pragma once

#include "config.h"
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
} RenderOutcome;

void render_outcome_free(RenderOutcome *o);

typedef void (*RenderDone)(RenderOutcome *o, void *userdata);

/* imds may be NULL when IMDS is disabled.  done takes the outcome. */
int render_start(ImdsClient *imds, const Config *c, RenderFlags flags, RenderDone done, void *userdata);

/* Resolves owner/group names (or numbers) to ids. */
int lookup_owner(const char *user, const char *group, uid_t *ret_uid, gid_t *ret_gid);
