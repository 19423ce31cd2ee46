/* Shared bits of the anb-agent command line: the verbs live in their own
 * files (render.c here, run in manager.c, the control clients in ctl.c). */
#pragma once

#include <stdbool.h>

#include <uv.h>

#include "config.h"

typedef struct CliOptions {
        const char *config_path;
        bool verbose;
} CliOptions;

/* Loads the configuration, printing "file:line: message" on failure.
 * Returns 0 or a sysexits code. */
int cli_load_config(const CliOptions *o, Config **ret);

/* For a verb that takes no arguments: prints usage on --help (returns 0),
 * refuses anything else (EX_USAGE), returns -1 when argv is just the verb. */
int cli_no_arguments(int argc, char **argv, const char *usage);

/* Closes every handle left on loop, runs their close callbacks and closes
 * the loop. */
void cli_close_loop(uv_loop_t *loop);

int verb_render(const CliOptions *o, int argc, char **argv);
int verb_check_config(const CliOptions *o, int argc, char **argv);
int verb_run(const CliOptions *o, int argc, char **argv);
int verb_reload(const CliOptions *o, int argc, char **argv);
int verb_status(const CliOptions *o, int argc, char **argv);
int verb_drain(const CliOptions *o, int argc, char **argv);
