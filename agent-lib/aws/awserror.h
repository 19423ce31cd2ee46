/* What an AWS API's error answer means for the caller: the error code and
 * message from either shape (JSON 1.1 {"__type", "message"} for Secrets
 * Manager and SSM, Query XML <Error><Code> for EC2), an errno, and whether
 * asking again may help (throttling, 5xx).  Pure: no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct AwsError {
        char code[128];   /* e.g. "AccessDeniedException"; "" when none */
        char message[512]; /* AWS's message, else "HTTP <status>" */
        int error;        /* -EACCES, -ENOENT, -EKEYEXPIRED or -EIO */
        bool retryable;   /* throttling or a server-side error */
} AwsError;

/* status: the HTTP status of an answer that is not 200; xml: the Query
 * protocol (EC2), else JSON. */
void aws_error_classify(bool xml, long status, const char *body, size_t len, AwsError *ret);
