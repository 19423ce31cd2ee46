/* The instance role's credentials, from IMDS, kept in memory only.
 *
 * credentials_get() hands out valid credentials, fetching them when there
 * are none (or when asked to, after an ExpiredTokenException).  Credentials
 * IMDS serves already expired count as a failed fetch and are asked for
 * again (a few times, with backoff) before the waiters hear of it.  With
 * keep-fresh on (the daemon), they are refreshed `margin` seconds before
 * Expiration, with jitter; if IMDS fails then, the current ones stay in
 * use while valid (static stability) and the refresh is retried with
 * backoff.  The cache owns the credentials and wipes them when replaced.
 * Async contract (README, "The async contract"): no callback before
 * credentials_get() returns; credentials_cancel() and credentials_free()
 * (NULL-safe) cancel silently, the IMDS fetch in flight included. */
#pragma once

#include <stdbool.h>
#include <time.h>
#include <uv.h>

#include "aws/imds.h"

typedef struct CredentialsCache CredentialsCache;
typedef struct CredentialsWait CredentialsWait;

typedef void (*CredentialsDone)(int error, const char *message, const AwsCredentials *creds, void *userdata);

typedef enum CredentialsEvent {
        CREDENTIALS_REFRESHED,
        CREDENTIALS_REFRESH_FAILED, /* still valid: kept */
        CREDENTIALS_EXPIRED,        /* refresh failed and they ran out */
} CredentialsEvent;

typedef void (*CredentialsEvents)(CredentialsEvent ev, const char *message, time_t expiration, void *userdata);

int credentials_new(uv_loop_t *loop, ImdsClient *imds, unsigned margin_sec, CredentialsEvents events,
                    void *userdata, CredentialsCache **ret);
void credentials_free(CredentialsCache *c);

/* done runs once, from the loop, unless cancelled; the credentials are
 * borrowed for the callback's duration.  *ret_wait (optional) is valid
 * until done runs. */
int credentials_get(CredentialsCache *c, bool force, CredentialsDone done, void *userdata,
                    CredentialsWait **ret_wait);
void credentials_cancel(CredentialsWait *w); /* accepts NULL */
void credentials_keep_fresh(CredentialsCache *c, bool on);

time_t credentials_expiration(const CredentialsCache *c); /* 0: none */
const char *credentials_role(const CredentialsCache *c);
const char *credentials_last_error(const CredentialsCache *c);
