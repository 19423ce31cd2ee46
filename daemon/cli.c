/* Helpers shared by the verbs: configuration loading, argument checks and
 * loop teardown. */
#include <errno.h>
#include <stdio.h>
#include <sysexits.h>

#include "cli.h"
#include "log.h"
#include "util.h"

int cli_load_config(const CliOptions *o, Config **ret) {
        _cleanup_free_ char *err = NULL;
        int r = config_load(o->config_path, ret, &err);
        if (r == -ENOMEM) {
                log_error("out of memory");
                return EX_OSERR;
        }
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return EX_CONFIG;
        }
        return 0;
}

int cli_no_arguments(int argc, char **argv, const char *usage) {
        if (argc <= 1)
                return -1;
        if (streq(argv[1], "--help") || streq(argv[1], "-h")) {
                fputs(usage, stdout);
                return 0;
        }
        log_error("%s takes no arguments", argv[0]);
        return EX_USAGE;
}

static void close_walk(uv_handle_t *h, void *arg) {
        (void) arg;
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

void cli_close_loop(uv_loop_t *loop) {
        uv_walk(loop, close_walk, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
        if (uv_loop_close(loop) != 0)
                log_debug("loop closed with handles left");
}
