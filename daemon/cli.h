/* Shared bits of the anb-agent command line: the verbs live in their own
 * files (render.c here, run in manager.c, the control clients in ctl.c). */
#pragma once

#include <stdbool.h>

#include <uv.h>

#include "env/config.h"

/* Parsed once, in main.c, for every verb. */
typedef struct CliOptions {
        const char *config_path;
        bool verbose;
        bool json;      /* status --json */
        bool undo;      /* drain --undo */
        bool to_stdout; /* render --stdout */
} CliOptions;

/* Loads the configuration, printing "file:line: message" on failure.
 * Returns 0 or a sysexits code. */
int cli_load_config(const CliOptions *o, Config **ret);

/* What check-config checks once the configuration is loaded: the
 * template parses (file:line on error) and the .env's directory is safe.
 * `run` checks the same before it starts, so the unit needs no
 * ExecStartPre=.  Returns 0 or a sysexits code. */
int cli_check_config(const Config *c);

/* Closes every handle left on loop, runs their close callbacks and closes
 * the loop. */
void cli_close_loop(uv_loop_t *loop);

int verb_render(const CliOptions *o);
int verb_check_config(const CliOptions *o);
int verb_run(const CliOptions *o);
int verb_reload(const CliOptions *o);
int verb_status(const CliOptions *o);
int verb_drain(const CliOptions *o);
