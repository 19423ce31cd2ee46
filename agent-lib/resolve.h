/* Resolves the values a template refers to, from their sources, on the
 * libuv loop: each distinct (source, key) is fetched once per render, the
 * identity document and the tag list once, all requests in parallel.
 *
 * Sources today: imds (meta-data paths), identity (identity document
 * fields), tag (IMDS tags/instance), env (the agent's environment).
 * secret and param fail with "not available yet".
 * The Resolver owns every fetched value and wipes it on free. */
#pragma once

#include "imds.h"
#include "template.h"

typedef struct Resolver Resolver;
typedef void (*ResolverDone)(Resolver *r, void *userdata);

/* imds may be NULL: IMDS sources then fail with disabled_reason. */
int resolver_new(ImdsClient *imds, const char *disabled_reason, Resolver **ret);
void resolver_free(Resolver *r);
static inline void resolver_freep(Resolver **r) {
        resolver_free(*r);
}

int resolver_want(Resolver *r, TemplateSource source, const char *key);
int resolver_want_template(Resolver *r, const Template *t);
/* done runs on the loop once everything is known (or failed). */
int resolver_start(Resolver *r, ResolverDone done, void *userdata);

/* A TemplateLookup over the results. */
int resolver_lookup(void *resolver, TemplateSource source, const char *key, const char **ret_value,
                    const char **ret_reason);

/* The worst transport-level error seen (for the exit code), 0 if none. */
int resolver_fetch_error(const Resolver *r);
