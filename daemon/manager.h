/* The daemon (`anb-agent run`): owns the one libuv loop and everything on
 * it -- the HTTP client (IMDS, AWS), the unit manager (sd-bus), signals,
 * timers -- and the state operators and the ALB see.
 *
 * Bootstrap: render the .env (retrying with backoff until it works), pick
 * the role's units, start them in order, then READY=1.  After that:
 * reloads (SIGHUP, the refresh timer) re-render and restart only the
 * restart_on_change units, and only when the .env changed; unit state
 * changes arrive as signals and are logged.  SIGTERM drains first
 * (/health 503 for [drain] grace), then the daemon exits without touching
 * the app's units; SIGINT exits at once.  The lifecycle is the state
 * machine in lifecycle.h; the Manager's fields are in manager-internal.h. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "env/config.h"
#include "systemd/units.h"


/* Runs the daemon until SIGTERM/SIGINT; takes ownership of config (a
 * reload may replace it).  Returns a sysexits code. */
int manager_run(Config *config);
