/* libFuzzer target over the IMDS credentials document
 * (aws_credentials_parse: JSON with Code, AccessKeyId, SecretAccessKey,
 * Token, Expiration) and the ISO 8601 timestamps in it: any input parses
 * or fails with a message, never both, and a parsed one has every field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/awscreds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        AwsCredentials *c = NULL;
        char *err = NULL;
        int r = aws_credentials_parse("fuzz-role", (const char *) data, size, &c, &err);
        if (r < 0 ? (c != NULL) : (c == NULL || err != NULL))
                abort();
        aws_credentials_free(c);
        free(err);
        /* The same bytes as a timestamp. */
        char *s = strndup((const char *) data, size);
        time_t t;
        if (s)
                (void) parse_iso8601_utc(s, &t);
        free(s);
        return 0;
}
