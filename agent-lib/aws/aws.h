/* Signed calls to AWS APIs on the libuv loop: Secrets Manager and SSM
 * (JSON 1.1 protocol, X-Amz-Target) and EC2 (Query protocol, XML answers),
 * signed by libcurl's CURLOPT_AWS_SIGV4 with the role's credentials plus
 * X-Amz-Security-Token.
 *
 * Endpoints: https://SERVICE.REGION.amazonaws.com with certificate
 * verification, unless AWS_ENDPOINT_URL_<SERVICE> or AWS_ENDPOINT_URL
 * overrides them (as in the AWS SDKs); AWS_CA_BUNDLE names a CA bundle to
 * trust instead of the system's, as in the SDKs.  TLS is always verified.  Throttling, 5xx and transport
 * errors are retried with exponential backoff and jitter; other errors
 * come back with AWS's error code and message.  The client copies what it
 * needs from the credentials; it never logs a value.
 * Async contract (README, "The async contract"): no callback before the
 * starting call returns; aws_cancel() and aws_client_free() (NULL-safe)
 * cancel silently. */
#pragma once

#include <stdbool.h>
#include <uv.h>

#include "loop/http.h"
#include "aws/awscreds.h"

typedef enum AwsService {
        AWS_SECRETS_MANAGER,
        AWS_SSM,
        AWS_EC2,
        AWS_AUTO_SCALING, /* Query API 2011-01-01, signing name "autoscaling" */
} AwsService;

typedef struct AwsClient AwsClient;
typedef struct AwsCall AwsCall;

typedef struct AwsResult {
        int error;           /* 0, or negative errno */
        long status;         /* HTTP status, 0 if none */
        const char *code;    /* AWS error code, e.g. "AccessDeniedException" */
        const char *message; /* AWS's message or the transport error */
        const char *body;    /* on success */
        size_t body_len;
} AwsResult;

typedef void (*AwsDone)(const AwsResult *res, void *userdata);

typedef struct AwsStats {
        unsigned calls;
        unsigned retries;
        unsigned errors;
} AwsStats;

int aws_client_new(uv_loop_t *loop, HttpLoop *http, AwsClient **ret);
void aws_client_free(AwsClient *c);

/* Whether the identity document's region and instance id look like
 * AWS's own: they go into host names, the signing scope and request
 * forms, so nothing else is used. */
bool aws_region_is_valid(const char *region);
bool aws_instance_id_is_valid(const char *id);
/* The endpoint URL for service in region (environment overrides first). */
char *aws_endpoint(AwsService service, const char *region);
const char *aws_service_name(AwsService service); /* signing name */

/* JSON 1.1 call: target is e.g. "secretsmanager.GetSecretValue".  done
 * runs exactly once, from the loop, unless cancelled; *ret_call (optional)
 * is valid until then.  -EINVAL (nothing sent) for a region
 * aws_region_is_valid() refuses. */
int aws_call_json(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                  const char *target, const char *json_body, AwsDone done, void *userdata, AwsCall **ret_call);
/* Query call (EC2, Auto Scaling): form is "Action=...&Version=...". */
int aws_call_query(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                   const char *form, AwsDone done, void *userdata, AwsCall **ret_call);
void aws_cancel(AwsCall *call); /* accepts NULL */

const AwsStats *aws_stats(const AwsClient *c);
