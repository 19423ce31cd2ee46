/* The daemon's lifecycle: one state machine, pure logic.
 *
 * Every event the daemon sees (a render finished, the units' jobs
 * finished, a timer, a control request, a signal, the bus coming and
 * going) goes through life_step(), which decides the next state and the
 * actions the manager must take.  Nothing else changes the state, and
 * nothing here does I/O: the manager (manager.c) executes the actions and
 * feeds back their results as new events.  That keeps every transition
 * testable in a table (test/unit/test_lifecycle.c).
 *
 *               BEGIN
 *                 │ render
 *                 ▼
 *   ┌──────── STARTING ◄─────────┐ RENDER_FAILED (no .env from before):
 *   │   RENDERED  │ RENDER_FAILED└─ arm retry; RETRY: render again
 *   │  or a .env  │ with a .env
 *   │ from before │ (static stability: start on it, retry the render)
 *   ▼             ▼
 * WAITING_BUS ──BUS_UP──► STARTING_UNITS ──UNITS_DONE──► RUNNING ◄────────┐
 *   (no bus yet)          (start jobs queued)            │  READY=1      │ RENDERED (unchanged),
 *                                                        │               │ RENDER_FAILED,
 *                          RELOAD, RETRY (stale .env) ───┘               │ UNITS_DONE
 *                                                        ▼               │
 *                                                    RELOADING ──────────┘
 *                                                (render; restarts if changed)
 *
 *   any state ──SIGTERM──► DRAINING (grace > 0: /health 503) ──GRACE_OVER──► STOPPING
 *   any state ──SIGTERM──► STOPPING (grace 0, or a second SIGTERM)
 *   any running state ──TERMINATE (ASG Terminated)──► TERMINATING: 503, stop the
 *        units in reverse ──UNITS_DONE──► complete the terminate hook ──HOOK_DONE──►
 *        stays until SIGTERM; a SIGTERM before HOOK_DONE waits for it, then STOPPING;
 *        after HOOK_DONE, or a second one, STOPPING at once (no drain grace:
 *        /health has been 503 since TERMINATE)
 *
 * Requests that arrive while a render or jobs are in flight are not
 * dropped: they set `pending` and run as one coalesced reload as soon as
 * the daemon is RUNNING again.  In DRAINING, TERMINATING and STOPPING no
 * new work starts; a reload is refused, and results of work in flight are
 * ignored (STOPPING cancels it). */
#pragma once

#include <stdbool.h>

typedef enum LifeState {
        LIFE_STARTING,       /* no .env yet: a render in flight or its retry armed */
        LIFE_WAITING_BUS,    /* rendered, waiting for systemd's bus to start the units */
        LIFE_STARTING_UNITS, /* start jobs queued, waiting for their results */
        LIFE_RUNNING,        /* idle, units started */
        LIFE_RELOADING,      /* a render (and the restarts it needs) in flight */
        LIFE_DRAINING,       /* SIGTERM: /health answers 503 for [drain] grace */
        LIFE_TERMINATING,    /* the ASG terminates the instance: stopping units, then the hook */
        LIFE_STOPPING,       /* leaving the loop: nothing new starts */
        _LIFE_STATE_MAX,
} LifeState;

typedef enum LifeEventKind {
        LIFE_BEGIN,         /* the daemon is up: start the first render */
        LIFE_RENDERED,      /* a render succeeded; .changed says whether the .env changed */
        LIFE_RENDER_FAILED, /* .env_exists: a .env (from before) is on disk */
        LIFE_UNITS_DONE,    /* the queued jobs (start, restart or stop) finished */
        LIFE_RETRY,         /* the retry timer fired */
        LIFE_RELOAD,        /* a reload was asked for; .explicit_: by an operator (SIGHUP, control) */
        LIFE_BUS_UP,
        LIFE_BUS_DOWN,      /* STARTING_UNITS goes back to WAITING_BUS */
        LIFE_SIGTERM,       /* .grace: [drain] grace > 0 */
        LIFE_GRACE_OVER,
        LIFE_TERMINATE,     /* ASG lifecycle state Terminated */
        LIFE_HOOK_DONE,     /* the terminate hook's CompleteLifecycleAction ended */
        _LIFE_EVENT_MAX,
} LifeEventKind;

typedef struct LifeEvent {
        LifeEventKind kind;
        bool changed;    /* RENDERED */
        bool restarts;   /* RENDERED: the changed .env has units to restart */
        bool env_exists; /* RENDER_FAILED */
        bool explicit_;  /* RELOAD */
        bool grace;      /* SIGTERM */
} LifeEvent;

/* What the manager must do, in this order. */
typedef enum LifeAction {
        LIFE_DO_RENDER = 1 << 0,         /* start a render (bootstrap or reload) */
        LIFE_DO_RELOAD_CONFIG = 1 << 1,  /* re-read agent.conf first (explicit reload) */
        LIFE_DO_START_UNITS = 1 << 2,    /* queue the start jobs */
        LIFE_DO_RESTART_UNITS = 1 << 3,  /* restart the restart_on_change units */
        LIFE_DO_STOP_UNITS = 1 << 4,     /* stop the managed units, in reverse */
        LIFE_DO_ARM_RETRY = 1 << 5,      /* arm the retry timer (backoff) */
        LIFE_DO_RESET_RETRY = 1 << 6,    /* renders work: reset the backoff */
        LIFE_DO_READY = 1 << 7,          /* READY=1 (bootstrap done, or an explicit reload done) */
        LIFE_DO_RELOADING = 1 << 8,      /* RELOADING=1 (an explicit reload begins) */
        LIFE_DO_END_RELOAD = 1 << 9,     /* answer the waiters, log the summary */
        LIFE_DO_REFUSE = 1 << 10,        /* refuse the request: the agent is leaving */
        LIFE_DO_ARM_GRACE = 1 << 11,     /* arm the drain grace timer */
        LIFE_DO_CANCEL = 1 << 12,        /* cancel work in flight (render, jobs) */
        LIFE_DO_EXIT = 1 << 13,          /* STOPPING=1, leave the loop */
        LIFE_DO_COMPLETE_HOOK = 1 << 14, /* complete the terminate lifecycle hook */
        LIFE_DO_TAKE_PENDING = 1 << 15,  /* the coalesced requests' waiters join this reload */
} LifeAction;

typedef struct Life {
        LifeState state;
        bool units_started;    /* the units were started by this run */
        bool env_stale;        /* running on a .env from a previous run: renders failing */
        bool bus_up;
        bool pending;          /* a reload or retry asked while busy */
        bool pending_explicit; /* ... and one of them was explicit */
        bool current_explicit; /* the reload in flight is explicit */
        bool restarting;       /* RELOADING: the restart jobs are in flight */
        bool exit_after_hook;  /* TERMINATING: SIGTERM came; leave once the hook is answered */
        bool hook_done;        /* TERMINATING: the terminate hook was answered */
} Life;

void life_init(Life *l);
/* Applies ev to l and returns the actions (LifeAction bits). */
unsigned life_step(Life *l, const LifeEvent *ev);

const char *life_state_to_string(LifeState s);
const char *life_event_to_string(LifeEventKind k);
/* The daemon serves traffic in this state (not starting, not leaving). */
bool life_serving(LifeState s);
