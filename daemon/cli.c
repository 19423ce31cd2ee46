/* Helpers shared by the verbs: configuration loading, argument checks and
 * loop teardown. */
#include <errno.h>
#include <stdio.h>
#include <sysexits.h>

#include "cli.h"
#include "basic/log.h"
#include "basic/util.h"

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
