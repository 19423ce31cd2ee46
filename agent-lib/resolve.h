/* Resolves the values a template refers to, from their sources, on the
 * libuv loop: each distinct (source, key) is fetched once per render, the
 * identity document and the tag list once, all requests in parallel.
 *
 * Sources: imds (meta-data paths), identity (identity document fields),
 * tag (IMDS tags/instance; EC2 DescribeTags when IMDS does not expose
 * tags), secret (Secrets Manager GetSecretValue, one call per secret id,
 * "id#field" picks a field of a JSON SecretString), param (SSM
 * GetParameters with decryption, at most 10 names per call), env (the
 * agent's environment).  AWS calls are signed with the role's credentials
 * in the identity document's region.
 * The Resolver owns every fetched value and wipes it on free. */
#pragma once

#include "aws.h"
#include "credentials.h"
#include "imds.h"
#include "template.h"

typedef struct Resolver Resolver;
typedef void (*ResolverDone)(Resolver *r, void *userdata);

/* imds may be NULL: IMDS sources then fail with disabled_reason.  aws and
 * creds may be NULL: secret and param then fail, and tags come from IMDS
 * only. */
int resolver_new(ImdsClient *imds, const char *disabled_reason, AwsClient *aws, CredentialsCache *creds,
                 Resolver **ret);
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

/* "imds" or "ec2:DescribeTags" (or NULL when no tag was needed). */
const char *resolver_tags_source(const Resolver *r);
/* AWS calls made by this resolver. */
unsigned resolver_aws_calls(const Resolver *r);
