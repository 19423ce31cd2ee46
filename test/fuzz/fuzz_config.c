/* libFuzzer target over agent.conf parsing (config_load, libinih plus the
 * agent's key handlers and checks): the input is the file, served from a
 * memfd so config_load reads it exactly as it reads /etc.  It loads or
 * fails with one message naming the file; a loaded Config is freed clean. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "env/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int fd = -1;
        static char path[64];
        if (fd < 0) {
                fd = memfd_create("fuzz-agent.conf", MFD_CLOEXEC);
                if (fd < 0)
                        abort();
                snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        }
        if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t) size)
                abort();
        Config *c = NULL;
        char *err = NULL;
        int r = config_load(path, &c, &err);
        if (r < 0) {
                if (c || (!err && r != -ENOMEM))
                        abort(); /* a refused file always says why */
        } else {
                if (!c || err || !c->health_listen || !c->env_output)
                        abort();
                (void) config_unit_set(c, "web");
                config_free(c);
        }
        free(err);
        return 0;
}
