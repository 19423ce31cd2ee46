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
 * needs from the credentials; it never logs a value. */
#pragma once

#include <stdbool.h>
#include <uv.h>

#include "http.h"
#include "imds.h"

typedef enum AwsService {
        AWS_SECRETS_MANAGER,
        AWS_SSM,
        AWS_EC2,
} AwsService;

typedef struct AwsClient AwsClient;

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

/* The endpoint URL for service in region (environment overrides first). */
char *aws_endpoint(AwsService service, const char *region);
const char *aws_service_name(AwsService service); /* signing name */

/* JSON 1.1 call: target is e.g. "secretsmanager.GetSecretValue". */
int aws_call_json(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                  const char *target, const char *json_body, AwsDone done, void *userdata);
/* Query call (EC2): form is "Action=...&Version=...". */
int aws_call_query(AwsClient *c, const AwsCredentials *creds, const char *region, AwsService service,
                   const char *form, AwsDone done, void *userdata);

const AwsStats *aws_stats(const AwsClient *c);

/* Parses an EC2 DescribeTags XML answer: calls fn for each tag; sets
 * *ret_next_token (caller frees) when there are more pages.  Parses an EC2
 * error answer the same way into *ret_code and *ret_message. */
int ec2_parse_describe_tags(const char *xml, size_t len, void (*fn)(const char *key, const char *value, void *ud),
                            void *ud, char **ret_next_token);
int ec2_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message);
