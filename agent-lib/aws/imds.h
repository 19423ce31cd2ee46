/* IMDSv2 client on the libuv loop.
 *
 * Every GET carries a session token from PUT /latest/api/token (TTL
 * header configurable, 1..21600 s).  The token is reused until shortly
 * before it expires; a 401 drops it, fetches a new one and retries once.
 * Connection errors, timeouts, 5xx and 429 are retried a bounded number of
 * times with exponential backoff and jitter; other 4xx are not.  There is
 * no IMDSv1 fallback: a failed token PUT fails the request and says why.
 *
 * The client owns its token (wiped on free) and every request in flight.
 * Async contract (README, "The async contract"): no callback before the
 * starting call returns; imds_cancel() and imds_client_free() (NULL-safe)
 * cancel silently. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <uv.h>

#include "aws/awscreds.h"
#include "loop/http.h"

typedef struct ImdsClient ImdsClient;
typedef struct ImdsCall ImdsCall;

typedef struct ImdsOptions {
        const char *endpoint; /* "http://169.254.169.254", no trailing slash */
        unsigned token_ttl;   /* seconds, 1..21600 */
        long connect_timeout_ms;
        long timeout_ms;
        unsigned attempts;   /* tries per request, >= 1 */
        unsigned backoff_ms; /* first retry delay; doubles, with jitter */
} ImdsOptions;

typedef struct ImdsResult {
        int error;           /* 0; -ENOENT for 404; other negative errno */
        long status;         /* last HTTP status, 0 if none */
        const char *body;    /* on success; valid during the callback */
        size_t body_len;
        const char *message; /* on error: one line for the operator */
} ImdsResult;

typedef void (*ImdsDone)(const ImdsResult *res, void *userdata);

typedef struct ImdsStats {
        unsigned token_requests;
        unsigned get_requests;
        unsigned retries;
        unsigned errors;
} ImdsStats;

int imds_client_new(uv_loop_t *loop, HttpLoop *http, const ImdsOptions *opts, ImdsClient **ret);
void imds_client_free(ImdsClient *c);

/* GET /latest/PATH, e.g. "meta-data/placement/region" or
 * "dynamic/instance-identity/document".  done runs exactly once, from the
 * loop, unless cancelled; *ret_call (optional) is valid until then. */
int imds_get(ImdsClient *c, const char *path, ImdsDone done, void *userdata, ImdsCall **ret_call);
/* The callback of a call from imds_get() or imds_fetch_credentials() will
 * not run.  Accepts NULL. */
void imds_cancel(ImdsCall *call);

/* Forgets the token (next request fetches a new one). */
void imds_drop_token(ImdsClient *c);
const ImdsStats *imds_stats(const ImdsClient *c);

typedef void (*ImdsCredentialsDone)(int error, const char *message, AwsCredentials *creds, void *userdata);
/* Fetches the role name, then its credentials (one call, cancelled with
 * imds_cancel()); on success the callback takes ownership of creds. */
int imds_fetch_credentials(ImdsClient *c, ImdsCredentialsDone done, void *userdata, ImdsCall **ret_call);
