/* libFuzzer target over the control socket's request parsing
 * (control_parse_request): the input is one request line as the server
 * reads it; it is an object with a "cmd" string, or refused with a reason. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "server/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *error = NULL;
        json_t *req = control_parse_request((const char *) data, size, &error);
        if (req ? !json_is_string(json_object_get(req, "cmd")) : !error)
                abort();
        json_decref(req);
        return 0;
}
