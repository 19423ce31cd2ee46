/* Resolves the values a template refers to, from their sources, on the
 * libuv loop: each distinct (source, key) is fetched once per render, the
 * identity document and the tag list once, all requests in parallel.
 *
 * Independent requests run concurrently, at most 8 at a time (the rest
 * queue): IMDS paths, the identity document, the tag list and the role's
 * credentials on one token; secrets and parameter batches once the
 * credentials and the region are known.
 *
 * Sources: imds (meta-data paths), identity (identity document fields),
 * tag (IMDS tags/instance; EC2 DescribeTags when IMDS does not expose
 * tags), secret (Secrets Manager GetSecretValue, one call per secret id,
 * "id#field" picks a field of a JSON SecretString), param (SSM
 * GetParameters with decryption, at most 10 names per call), env (the
 * agent's environment).  AWS calls are signed with the role's credentials
 * in the identity document's region.
 * The Resolver owns every fetched value and wipes it on free.
 * Async contract (README, "The async contract"): no callback before
 * resolver_start() returns; resolver_free() (NULL-safe) cancels every
 * IMDS, credentials and AWS call it has in flight, silently.  Its memory
 * goes when the loop runs once more. */
#pragma once

#include "aws/aws.h"
#include "aws/credentials.h"
#include "aws/imds.h"
#include "env/template.h"

typedef struct Resolver Resolver;
typedef void (*ResolverDone)(Resolver *r, void *userdata);

/* imds may be NULL: IMDS sources then fail with disabled_reason.  aws and
 * creds may be NULL: secret and param then fail, and tags come from IMDS
 * only. */
int resolver_new(uv_loop_t *loop, ImdsClient *imds, const char *disabled_reason, AwsClient *aws,
                 CredentialsCache *creds, Resolver **ret);
void resolver_free(Resolver *r);
static inline void resolver_freep(Resolver **r) {
        resolver_free(*r);
}

int resolver_want(Resolver *r, TemplateSource source, const char *key);
int resolver_want_template(Resolver *r, const Template *t);
/* done runs on the loop once everything is known (or failed). */
int resolver_start(Resolver *r, ResolverDone done, void *userdata);
/* "imds:placement/region, secret:db" for what is still awaited (caller
 * frees); "" when nothing is. */
char *resolver_describe_pending(const Resolver *r);

/* A TemplateLookup over the results. */
int resolver_lookup(void *resolver, TemplateSource source, const char *key, const char **ret_value,
                    const char **ret_reason);

/* The worst transport-level error seen (for the exit code), 0 if none. */
int resolver_fetch_error(const Resolver *r);

/* "imds" or "ec2:DescribeTags" (or NULL when no tag was needed). */
const char *resolver_tags_source(const Resolver *r);
/* AWS calls made by this resolver. */
unsigned resolver_aws_calls(const Resolver *r);
/* The most requests this resolver had in flight at once. */
unsigned resolver_peak_in_flight(const Resolver *r);
