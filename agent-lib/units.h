/* The unit manager: talks to systemd over sd-bus on the libuv loop.
 *
 * It subscribes to the manager's signals, keeps a state table of the
 * units it tracks from PropertiesChanged signals (never polling), runs
 * sequences of jobs (StartUnit, RestartUnit, ...) one unit at a time,
 * each job's result read from JobRemoved before the next begins, and
 * recovers units systemd gave up on: a tracked unit entering "failed"
 * (its start limit hit, or no Restart=) gets ResetFailedUnit and a new
 * start, with backoff (10 s doubling to 320 s by default).  It reconnects with backoff if the bus goes away.
 *
 * It owns its bus connection, the table and every call in flight.  It
 * logs nothing above debug; the owner hears of changes through callbacks. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct UnitManager UnitManager;

typedef struct UnitInfo {
        const char *name;
        const char *load_state;   /* "loaded", "not-found", ... or "" if unknown */
        const char *active_state; /* "active", "failed", ... or "" */
        const char *sub_state;
        const char *result; /* the service's Result, e.g. "exit-code" */
        uint32_t main_pid;
        uint32_t n_restarts;
        uint64_t changed_usec; /* CLOCK_MONOTONIC of the last state change seen */
} UnitInfo;

typedef struct UnitManagerEvents {
        /* A tracked unit's ActiveState/SubState/MainPID changed. */
        void (*unit_changed)(UnitManager *m, const UnitInfo *u, const char *old_active, const char *old_sub,
                             uint32_t old_pid, void *userdata);
        /* Bus connected (true) or lost (false). */
        void (*bus_changed)(UnitManager *m, bool connected, int error, void *userdata);
        /* A unit that stayed failed is being reset and started again. */
        void (*recovery)(UnitManager *m, const char *unit, unsigned attempt, uint64_t delay_ms, void *userdata);
} UnitManagerEvents;

int units_new(uv_loop_t *loop, bool user_bus, const UnitManagerEvents *events, void *userdata, UnitManager **ret);
/* Cancels everything (sequence callbacks are not called) and closes the
 * bus; the memory goes when the loop has run the close callbacks. */
void units_free(UnitManager *m);

bool units_connected(const UnitManager *m);
/* First delay of the start-limit recovery (doubles per attempt, up to 32
 * times this); default 10 s. */
void units_set_recovery_delay(UnitManager *m, uint64_t ms);

/* Replaces the set of tracked units. */
int units_track(UnitManager *m, char *const *names);
size_t units_count(const UnitManager *m);
bool units_get(const UnitManager *m, size_t i, UnitInfo *ret);

typedef struct UnitJobResult {
        const char *unit;
        const char *result; /* JobRemoved result ("done", "failed", ...) or "error" */
        const char *message; /* for anything but done: what happened and what to check */
} UnitJobResult;

typedef void (*UnitsDone)(UnitManager *m, const UnitJobResult *results, size_t n, void *userdata);

/* Runs method ("StartUnit", "RestartUnit", "TryRestartUnit",
 * "ReloadOrRestartUnit", "StopUnit") on each unit in order, waiting for
 * each job.  A failed job does not stop the sequence.  -EBUSY while
 * another sequence runs, -ENOTCONN without a bus. */
int units_run(UnitManager *m, const char *method, char *const *names, UnitsDone done, void *userdata);
bool units_busy(const UnitManager *m);
