/* The daemon (`anb-agent run`): owns the one libuv loop and everything on
 * it -- the HTTP client (IMDS, AWS), the unit manager (sd-bus), signals,
 * timers -- and the state operators and the ALB see.
 *
 * Bootstrap: render the .env (retrying with backoff until it works), pick
 * the role's units, start them in order, then READY=1.  After that:
 * reloads (SIGHUP, the refresh timer) re-render and restart only the
 * restart_on_change units, and only when the .env changed; unit state
 * changes arrive as signals and are logged.  SIGTERM/SIGINT end the
 * daemon without touching the app's units. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "units.h"

typedef enum Phase {
        PHASE_STARTING,
        PHASE_RUNNING,
        PHASE_STOPPING,
} Phase;

typedef struct Manager Manager;

/* Runs the daemon until SIGTERM/SIGINT; takes ownership of config (a
 * reload may replace it).  Returns a sysexits code. */
int manager_run(Config *config);
