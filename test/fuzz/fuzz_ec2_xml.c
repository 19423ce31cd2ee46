/* libFuzzer target over EC2's XML answers (expat): DescribeTags pages
 * (ec2_parse_describe_tags) and error documents (ec2_parse_error).  Every
 * tag handed out is a pair of NUL-terminated strings; whatever is
 * returned is freed clean. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aws/ec2xml.h"

static void on_tag(const char *key, const char *value, void *ud) {
        size_t *n = ud;
        if (!key || !value)
                abort();
        *n += strlen(key) + strlen(value) + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t n = 0;
        char *next = NULL;
        int r = ec2_parse_describe_tags((const char *) data, size, on_tag, &n, &next);
        if (r < 0 && next)
                abort();
        free(next);
        char *code = NULL, *msg = NULL;
        (void) ec2_parse_error((const char *) data, size, &code, &msg);
        free(code);
        free(msg);
        return 0;
}
