/* libFuzzer target over AWS error answers (aws_error_classify): the JSON
 * 1.1 shape every Secrets Manager and SSM failure arrives in, and the
 * Query XML shape of EC2 and Auto Scaling, with any HTTP status.  The code
 * and message come back NUL-terminated within their buffers, an errno is
 * always set, and a code never keeps the "...#" prefix. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aws/awserror.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const long statuses[] = {400, 403, 404, 429, 500, 503};
        for (int xml = 0; xml <= 1; xml++) {
                AwsError e;
                memset(&e, 0x55, sizeof e); /* garbage first: the classifier must set everything */
                long status = statuses[(size ? data[0] : 0) % (sizeof statuses / sizeof statuses[0])];
                aws_error_classify(xml, status, (const char *) data, size, &e);
                if (!memchr(e.code, 0, sizeof e.code) || !memchr(e.message, 0, sizeof e.message))
                        abort();
                if (e.error >= 0)
                        abort();
                if (!xml && strchr(e.code, '#'))
                        abort(); /* the code is what follows the last '#' */
        }
        return 0;
}
