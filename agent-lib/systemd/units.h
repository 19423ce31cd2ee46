/* The unit manager: talks to systemd over sd-bus on the libuv loop.
 *
 * It subscribes to the manager's signals, keeps a state table of the
 * units it tracks from PropertiesChanged signals (never polling), runs
 * jobs on a list of units (StartUnit and StopUnit queued all at once and
 * ordered by systemd's After=/Before=; restarts one unit at a time), each
 * job's result read from JobRemoved, and recovers units systemd gave up
 * on: a tracked unit entering "failed" (its start limit hit, or no
 * Restart=) gets ResetFailedUnit and a new start, with jittered backoff
 * (5-10 s doubling to 160-320 s by default).  It reconnects with backoff
 * (0.5-1 s doubling to 16-32 s) if the bus goes away.
 *
 * It owns its bus connection, the table and every call in flight; every
 * call that refers to a unit or a run holds an sd_bus_slot that goes with
 * it, so no reply reaches freed memory.  It logs nothing above debug; the
 * owner hears of changes through callbacks.
 *
 * The async contract (README): no callback runs before the call that
 * started it returns (units_new, units_track, units_run); a run's done
 * runs exactly once unless units_cancel() or units_free() came first;
 * units_free() cancels everything silently and accepts NULL. */
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
        /* CLOCK_REALTIME us its main process was started (systemd's
         * ExecMainStartTimestamp: when it read its EnvironmentFile=); 0 if
         * unknown or never. */
        uint64_t exec_main_start_usec;
        uint64_t changed_usec; /* CLOCK_MONOTONIC of the last state change seen */
        bool recovering;       /* failed since tracked, and not up for min(recovery delay, 5 s) since */
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
/* Cancels everything silently (no callback runs during or after it) and
 * closes the bus without flushing; the memory goes when the loop has run
 * the close callbacks.  Accepts NULL. */
void units_free(UnitManager *m);

bool units_connected(const UnitManager *m);
/* The start-limit recovery's first wait is a random point in [ms/2, ms];
 * it doubles per attempt up to [16, 32] times ms.  Default 10 s. */
void units_set_recovery_delay(UnitManager *m, uint64_t ms);
/* Off: units that fail are left failed (the instance is terminating). */
void units_set_recovery(UnitManager *m, bool on);

/* Replaces the set of tracked units, keeping the state of those already
 * tracked.  All or nothing: on -ENOMEM the table is as it was.  A new
 * unit's state is empty until read: its changes from then on arrive at
 * once (PropertiesChanged), the whole state on a later loop turn, or when
 * the job the current run has for it ends (systemd answers bus calls
 * before it runs jobs: a full read then would hold up the start). */
int units_track(UnitManager *m, char *const *names);
size_t units_count(const UnitManager *m);
bool units_get(const UnitManager *m, size_t i, UnitInfo *ret);

typedef struct UnitJobResult {
        const char *unit;
        const char *result; /* JobRemoved result ("done", "failed", ...) or "error" */
        const char *message; /* for anything but done: what happened and what to check */
        uint64_t usec; /* from queueing the job to its JobRemoved (includes waiting for After= units) */
} UnitJobResult;

typedef void (*UnitsDone)(UnitManager *m, const UnitJobResult *results, size_t n, void *userdata);

typedef struct UnitsRun UnitsRun;

/* Runs method ("StartUnit", "StopUnit", "RestartUnit", "TryRestartUnit",
 * "ReloadOrRestartUnit") on each unit and calls done once every job has
 * finished, results in the order of names.  StartUnit and StopUnit jobs
 * are queued together (systemd orders them; stops in reverse); the others
 * one unit at a time, in order.  A failed job does not stop the run.
 * RestartUnit is preceded by ResetFailedUnit on each unit: a restart the
 * owner asks for starts the unit's start-limit budget over instead of
 * spending it (crash restarts by Restart= still count between two).
 * done never runs before units_run returns (even for an empty list).
 * -EBUSY while another run is open, -ENOTCONN without a bus.
 * *ret_run (may be NULL) is valid until done begins or units_cancel. */
int units_run(UnitManager *m, const char *method, char *const *names, UnitsDone done, void *userdata,
              UnitsRun **ret_run);
/* done will not run.  The jobs already queued stay with systemd.
 * Accepts NULL. */
void units_cancel(UnitsRun *run);
bool units_busy(const UnitManager *m);
