/* Role credentials as IMDS serves them (meta-data/iam/security-credentials/
 * ROLE): the struct, its JSON parser and the ISO 8601 timestamps it holds.
 * Pure: no I/O, no loop.  Fetching them is imds.h's, caching them
 * credentials.h's. */
#pragma once

#include <stddef.h>
#include <time.h>

typedef struct AwsCredentials {
        char *role;
        char *access_key_id;
        char *secret_access_key;
        char *token;
        time_t expiration;
} AwsCredentials;

/* Wipes the secrets; accepts NULL. */
void aws_credentials_free(AwsCredentials *c);
static inline void aws_credentials_freep(AwsCredentials **c) {
        aws_credentials_free(*c);
}
/* Parses the credentials JSON; Code other than "Success" is an error.
 * *ret_error names the problem, never a value. */
int aws_credentials_parse(const char *role, const char *json, size_t len, AwsCredentials **ret, char **ret_error);
/* Parses "2026-11-22T21:00:00Z" (fractional seconds allowed, UTC only). */
int parse_iso8601_utc(const char *s, time_t *ret);
